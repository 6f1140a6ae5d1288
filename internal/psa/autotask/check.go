package autotask

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"psagate/internal/psa"
	"psagate/internal/sanitize"
)

// Validate checks the settings without a network call.
func (p *Provider) Validate(s psa.Settings) []error {
	_, errs := parseConfig(s, true)
	for i, e := range errs {
		errs[i] = errors.New(s.Scrub(e.Error()))
	}
	return errs
}

// Probe makes one cheap authenticated call: GET Version, or, on a zone
// without that route, a small read.
func (p *Provider) Probe(ctx context.Context, s psa.Settings) error {
	j, err := p.job(s, "probe", false, false)
	if err != nil {
		return err
	}
	j.noBudget = true
	_, err = j.version(ctx)
	return err
}

// version reads the API version. Version is not on every zone (the API
// digest's open question 10: older v1.json lacks it), so a 404 falls back to
// ThresholdInformation, which needs the same credentials and is as cheap;
// the answer then has no version (nil map, nil error).
func (j *job) version(ctx context.Context) (map[string]any, error) {
	var ver map[string]any
	err := j.call(ctx, http.MethodGet, "Version", nil, &ver)
	var pe *psa.Error
	if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
		var ti map[string]any
		return nil, j.call(ctx, http.MethodGet, "ThresholdInformation", nil, &ti)
	}
	return ver, err
}

// Test is the "Test It" button. It checks, one line per step: zone
// discovery (the username), Version (the secret and integration code),
// ThresholdInformation (prints the usage), the company, and every configured
// picklist value; it ends with "Connection Succeeded" and returns nil only
// when every step passed.
func (p *Provider) Test(ctx context.Context, s psa.Settings, out io.Writer) error {
	say := func(format string, args ...any) {
		fmt.Fprintln(out, s.Scrub(fmt.Sprintf(format, args...)))
	}
	var failed []string
	worst := psa.Permanent
	fail := func(step string, err error) {
		msg := err.Error()
		var pe *psa.Error
		if errors.As(err, &pe) {
			if pe.Message != "" {
				msg = pe.Message
			}
			if pe.Kind == psa.Auth {
				worst = psa.Auth
			} else if pe.Kind == psa.Transient && worst != psa.Auth {
				worst = psa.Transient
			}
		}
		say("%s: FAILED: %s", step, msg)
		failed = append(failed, step)
	}
	result := func() error {
		if len(failed) == 0 {
			say("Connection Succeeded")
			return nil
		}
		say("Connection FAILED: %d problem(s): %s", len(failed), strings.Join(failed, ", "))
		return &psa.Error{Provider: Name, Op: "test", Kind: worst,
			Message: s.Scrub("test failed: " + strings.Join(failed, ", "))}
	}

	if errs := p.Validate(s); len(errs) > 0 {
		for _, e := range errs {
			say("Settings: FAILED: %v", e)
		}
		failed = append(failed, "settings")
		return result()
	}
	j, err := p.job(s, "test", true, false)
	if err != nil {
		fail("Settings", err)
		return result()
	}
	j.noBudget = true

	// 1. Zone discovery: the username.
	j.in.zoneMu.Lock()
	z, _, err := j.discoverLocked(ctx)
	j.in.zoneMu.Unlock()
	if err != nil {
		fail("Zone discovery", err)
		return result()
	}
	say("Zone discovery: OK, API user %s is in zone %q (%s)", j.c.username, sanitize.Line(z.name), z.base)

	// 2. Version: the secret and the integration code.
	ver, err := j.version(ctx)
	if err != nil {
		fail("Authentication", err)
		return result()
	}
	if ver == nil {
		say("Authentication: OK (this zone has no Version route; a read worked)")
	} else {
		say("Authentication: OK, Autotask API %v.%v build %v", ver["majorVersion"], ver["minorVersion"], ver["build"])
	}

	// 3. ThresholdInformation: show the usage.
	j.in.mu.Lock()
	j.in.budget.refreshing = true
	j.in.mu.Unlock()
	if ti, err := j.readThreshold(ctx, z); err != nil {
		fail("API usage", err)
	} else {
		say("API usage: %d of %d requests in the last %d minutes (%d%%)", ti.Count, ti.Threshold, ti.Timeframe, ti.Count*100/ti.Threshold)
	}

	// 4. The company.
	if line, err := j.testCompany(ctx); err != nil {
		fail("Company", err)
	} else {
		say("Company (autotask.company_id): OK, %s", line)
	}

	// 5. Every picklist setting, against fresh field lists.
	fieldsOK := true
	for _, ent := range []string{"Tickets", "TicketNotes", "TicketAttachments"} {
		if _, err := j.fields(ctx, ent, true); err != nil {
			fail(ent+" fields", err)
			fieldsOK = false
		}
	}
	if fieldsOK {
		resolved := map[string]string{}
		for _, ps := range pickSettings {
			step := ps.label + " (autotask." + ps.key + ")"
			parent := ""
			if ps.key == "sub_issue_type" {
				if parent = resolved["issue_type"]; parent == "" && !isUnset(j.c.get(ps.key)) {
					fail(step, j.settingErr(ps.key, "autotask.sub_issue_type is set without a valid autotask.issue_type"))
					continue
				}
			}
			v, ok, err := j.pick(ctx, ps.key, parent)
			switch {
			case err != nil:
				fail(step, err)
			case !ok:
				say("%s: not set", step)
			default:
				resolved[ps.key] = v.Value
				note := ""
				if isUnset(j.c.get(ps.key)) {
					note = ", the default"
				}
				say("%s: OK, %s%s", step, v, note)
			}
		}
		for _, purpose := range psa.NotePurposes {
			key := "note_publish." + purpose
			if isUnset(j.c.get(key)) {
				continue
			}
			step := "Note publish for " + purpose + " notes (autotask." + key + ")"
			if v, _, err := j.pick(ctx, key, ""); err != nil {
				fail(step, err)
			} else {
				say("%s: OK, %s", step, v)
			}
		}
		if st, cs := resolved["status"], resolved["complete_status"]; st != "" && st == cs {
			fail("Status", fmt.Errorf("autotask.status and autotask.complete_status are both %s: new tickets would be opened complete", st))
		}
		// 6. What the tenant requires that the config does not set.
		for _, f := range j.requiredUnset(ctx, resolved) {
			fail(f.step, f.err)
		}
	}
	say("Due date (autotask.due_in): OK, tickets are due %s after they are opened (sent as dueDateTime in UTC)", j.c.dueIn)
	if j.c.contact != "" && !isUnset(j.c.contact) {
		if company, err := j.companyID(ctx); err != nil {
			fail("Contact (autotask.contact)", err)
		} else if id, err := j.contactID(ctx, company); err != nil {
			fail("Contact (autotask.contact)", err)
		} else {
			say("Contact (autotask.contact): OK, %q is contact %d", j.c.contact, id)
		}
	}
	if err := j.testUDFs(ctx, say); err != nil {
		fail("User-defined fields (autotask.fields)", err)
	}
	return result()
}

// settingOfTicketField names the setting that fills a ticket field.
var settingOfTicketField = map[string]string{
	"queueid": "queue_id", "status": "status", "priority": "priority", "issuetype": "issue_type",
	"subissuetype": "sub_issue_type", "tickettype": "ticket_type", "source": "source",
	"ticketcategory": "ticket_category", "billingcodeid": "billing_code_id", "contactid": "contact",
}

// alwaysSent are the ticket fields psagate fills on every create.
var alwaysSent = map[string]bool{"id": true, "companyid": true, "title": true, "duedatetime": true, "description": true, "externalid": true}

type finding struct {
	step string
	err  error
}

// requiredUnset lists the fields the tenant marks required (on tickets and
// notes) that the effective settings leave empty: the first alert would be
// refused for each of them.
func (j *job) requiredUnset(ctx context.Context, resolved map[string]string) []finding {
	var out []finding
	tf, err := j.fields(ctx, "Tickets", false)
	if err != nil {
		return []finding{{"Required ticket fields", err}}
	}
	for _, f := range tf.fields {
		low := strings.ToLower(f.Name)
		if !f.Required || f.ReadOnly || alwaysSent[low] {
			continue
		}
		key, known := settingOfTicketField[low]
		switch {
		case known && key == "contact" && j.c.contact != "" && !isUnset(j.c.contact):
		case known && resolved[key] != "":
		case known:
			hint := ""
			if ps, ok := lookupOf(key); ok {
				hint = fmt.Sprintf("; see `psagate psa lookup %s`", ps)
			}
			out = append(out, finding{"Required field " + f.Name, j.settingErr(key, fmt.Sprintf(
				"this Autotask tenant requires the ticket field %s and autotask.%s is not set: the first alert would be refused%s", f.Name, key, hint))})
		default:
			out = append(out, finding{"Required field " + f.Name, j.fail(psa.Permanent, fmt.Sprintf(
				"this Autotask tenant requires the ticket field %s, which psagate cannot set: make it optional in Autotask (or default it through the ticket category)", f.Name))})
		}
	}
	nf, err := j.fields(ctx, "TicketNotes", false)
	if err != nil {
		return append(out, finding{"Required note fields", err})
	}
	for _, f := range nf.fields {
		switch strings.ToLower(f.Name) {
		case "id", "ticketid", "title", "description", "notetype", "publish":
			continue
		}
		if f.Required && !f.ReadOnly {
			out = append(out, finding{"Required note field " + f.Name, j.fail(psa.Permanent, fmt.Sprintf(
				"this Autotask tenant requires the ticket note field %s, which psagate cannot set", f.Name))})
		}
	}
	return out
}

func lookupOf(key string) (string, bool) {
	for _, ps := range pickSettings {
		if ps.key == key {
			return ps.lookup, true
		}
	}
	return "", false
}

// testUDFs checks autotask.fields against the tenant's ticket user-defined
// fields: every name must exist and every required one be set.
func (j *job) testUDFs(ctx context.Context, say func(string, ...any)) error {
	var ans struct {
		Fields []struct {
			Name       string `json:"name"`
			IsRequired bool   `json:"isRequired"`
			IsActive   *bool  `json:"isActive"`
			Length     int    `json:"length"`
		} `json:"fields"`
	}
	if err := j.call(ctx, http.MethodGet, "Tickets/entityInformation/userDefinedFields", nil, &ans); err != nil {
		return err
	}
	var problems []string
	known := map[string]bool{}
	for _, f := range ans.Fields {
		name := sanitize.Line(f.Name)
		known[strings.ToLower(name)] = true
		v, set := "", false
		for k, val := range j.c.udfs {
			if strings.EqualFold(k, name) {
				v, set = val, true
			}
		}
		if f.IsRequired && (!set || v == "") {
			problems = append(problems, fmt.Sprintf("the user-defined field %q is required by this tenant and autotask.fields.%q is not set", name, name))
		}
		if set && f.Length > 0 && units(v) > f.Length {
			problems = append(problems, fmt.Sprintf("autotask.fields.%q is %d characters; the field takes %d", name, units(v), f.Length))
		}
	}
	for k := range j.c.udfs {
		if !known[strings.ToLower(k)] {
			problems = append(problems, fmt.Sprintf("autotask.fields.%q is not a ticket user-defined field of this tenant", k))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		e := j.fail(psa.Permanent, strings.Join(problems, "; "))
		e.Field = "autotask.fields"
		return e
	}
	if len(j.c.udfs) > 0 {
		say("User-defined fields (autotask.fields): OK, %d set", len(j.c.udfs))
	}
	return nil
}

// testCompany checks autotask.company_id and describes the company.
func (j *job) testCompany(ctx context.Context) (string, error) {
	raw := j.c.company
	if id, err := strconv.ParseInt(raw, 10, 64); err == nil {
		var got struct {
			Item *companyRow `json:"item"`
		}
		err := j.call(ctx, http.MethodGet, "Companies/"+strconv.FormatInt(id, 10), nil, &got)
		var pe *psa.Error
		if (errors.As(err, &pe) && pe.Status == http.StatusNotFound) || (err == nil && got.Item == nil) {
			return "", j.settingErr("company_id", fmt.Sprintf("there is no Autotask company with id %d (autotask.company_id); see `psagate psa lookup companies`", id))
		}
		if err != nil {
			return "", err
		}
		if got.Item.IsActive != nil && !*got.Item.IsActive {
			return "", j.settingErr("company_id", fmt.Sprintf("the Autotask company %d %q is inactive", id, sanitize.Line(got.Item.CompanyName)))
		}
		return fmt.Sprintf("%d %q", id, sanitize.Line(got.Item.CompanyName)), nil
	}
	rows, err := j.companiesNamed(ctx, raw)
	if err != nil {
		return "", err
	}
	id, err := j.pickCompany(raw, rows)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%q is company %d", raw, id), nil
}

// lookupKinds maps what Lookup accepts to the picklist setting behind it
// ("" for companies). Aliases follow the words of the CLI.
var lookupKinds = map[string]string{
	"queues": "queue_id", "priorities": "priority", "statuses": "status",
	"issue_types": "issue_type", "types": "issue_type",
	"sub_issue_types": "sub_issue_type", "subtypes": "sub_issue_type",
	"ticket_types": "ticket_type", "sources": "source",
	"note_types": "note_type", "note_publish": "note_publish",
	"ticket_categories": "ticket_category", "categories": "ticket_category",
	"billing_codes": "billing_code_id", "work_types": "billing_code_id",
	"attachment_publish": "attachment_publish",
	"companies":          "",
}

// LookupKinds lists the kinds Lookup accepts.
func LookupKinds() []string {
	out := make([]string, 0, len(lookupKinds))
	for k := range lookupKinds {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Lookup lists the values of one kind: queues, priorities, statuses,
// issue_types, sub_issue_types, ticket_types, sources, note_types,
// note_publish (picklists, read fresh) or companies. It needs the
// credentials only, not a company_id.
func (p *Provider) Lookup(ctx context.Context, s psa.Settings, what string) ([]psa.Value, error) {
	key, ok := lookupKinds[strings.ToLower(strings.TrimSpace(what))]
	if !ok {
		return nil, &psa.Error{Provider: Name, Op: "lookup", Kind: psa.Permanent,
			Message: fmt.Sprintf("autotask cannot list %q; it lists %s", sanitize.Line(what), strings.Join(LookupKinds(), ", "))}
	}
	j, err := p.job(s, "lookup", false, false)
	if err != nil {
		return nil, err
	}
	j.noBudget = true
	if key == "" {
		return j.lookupCompanies(ctx)
	}
	ps := pickSettingFor(key)
	fs, err := j.fields(ctx, ps.entity, true)
	if err != nil {
		return nil, err
	}
	var parents map[string]string
	if ps.key == "sub_issue_type" {
		parents = map[string]string{}
		for _, v := range fs.picks["issuetype"] {
			parents[v.Value] = v.Label
		}
	}
	var out []psa.Value
	for _, v := range fs.picks[strings.ToLower(ps.field)] {
		var d []string
		if parents != nil {
			d = append(d, fmt.Sprintf("issue type %s (%s)", v.Parent, parents[v.Parent]))
		}
		if v.Default {
			d = append(d, "default")
		}
		if !v.Active {
			d = append(d, "inactive")
		}
		out = append(out, psa.Value{ID: v.Value, Name: v.Label, Detail: strings.Join(d, ", ")})
	}
	return out, nil
}

// lookupCompanies lists every company, following nextPageUrl with the same
// POST body as Autotask requires.
func (j *job) lookupCompanies(ctx context.Context) ([]psa.Value, error) {
	body := []byte(`{"filter":[{"op":"gte","field":"id","value":0}],"IncludeFields":["id","companyName","isActive"],"MaxRecords":500}`)
	var out []psa.Value
	var ans queryAnswer[companyRow]
	if err := j.call(ctx, http.MethodPost, "Companies/query", body, &ans); err != nil {
		return nil, err
	}
	for page := 1; ; page++ {
		for _, c := range ans.Items {
			v := psa.Value{ID: strconv.FormatInt(c.ID, 10), Name: sanitize.Line(c.CompanyName)}
			if c.IsActive != nil && !*c.IsActive {
				v.Detail = "inactive"
			}
			out = append(out, v)
		}
		next := ans.PageDetails.NextPageURL
		if next == nil || *next == "" {
			return out, nil
		}
		if page >= 1000 {
			return out, j.fail(psa.Permanent, "more than 1000 pages of companies; stopped")
		}
		ans = queryAnswer[companyRow]{}
		if err := j.callAbs(ctx, http.MethodPost, *next, body, &ans); err != nil {
			return nil, err
		}
	}
}
