package connectwise

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"psagate/internal/psa"
)

// Validate checks the settings without a network call: the site form,
// the endpoint, the credentials and clientId being set, api_version and timeout.
func (p *Provider) Validate(s psa.Settings) []error {
	_, problems := parseConfig(s)
	return problems
}

// Probe makes one cheap authenticated call (GET /system/info).
func (p *Provider) Probe(ctx context.Context, s psa.Settings) error {
	cl, err := p.newCall(s, "probe")
	if err != nil {
		return err
	}
	var info struct{}
	return cl.getJSON(ctx, "/system/info", nil, &info)
}

// reporter writes the steps of Test, one line each, with every secret removed.
type reporter struct {
	w        io.Writer
	cfg      *config
	problems []error
}

func (r *reporter) line(tag, step, detail string) {
	fmt.Fprintf(r.w, "%-4s %s: %s\n", tag, step, r.cfg.scrub(detail))
}

func (r *reporter) ok(step, detail string)   { r.line("ok", step, detail) }
func (r *reporter) skip(step, detail string) { r.line("--", step, detail) }

func (r *reporter) fail(step string, err error) {
	msg := err.Error()
	var pe *psa.Error
	if errors.As(err, &pe) {
		msg = pe.Message
		if pe.Status != 0 {
			msg = fmt.Sprintf("HTTP %d: %s", pe.Status, msg)
		}
		if pe.Field != "" {
			msg = "field " + pe.Field + ": " + msg
		}
	}
	r.line("FAIL", step, msg)
	r.problems = append(r.problems, fmt.Errorf("%s: %s", step, r.cfg.scrub(msg)))
}

func (r *reporter) finish() error {
	if len(r.problems) == 0 {
		fmt.Fprintln(r.w, "Connection Succeeded")
		return nil
	}
	fmt.Fprintf(r.w, "Connection Failed: %d problem(s)\n", len(r.problems))
	return &psa.Error{Provider: Name, Op: "test", Kind: psa.Permanent,
		Message: fmt.Sprintf("%d problem(s): %v", len(r.problems), errors.Join(r.problems...)),
		Err:     errors.Join(r.problems...)}
}

// Test is the "Test It" button. It checks, in order: the settings, the site
// and the login company (company info), the credentials and clientId
// (/system/info), read access to service tickets, and that every configured
// name resolves: company, contact, board, status, type, subtype, item,
// closed status and priority. It reads the live system, not the caches of
// earlier calls.
func (p *Provider) Test(ctx context.Context, s psa.Settings, out io.Writer) error {
	cfg, problems := parseConfig(s)
	r := &reporter{w: out, cfg: cfg}
	if len(problems) > 0 {
		for _, e := range problems {
			r.fail("settings", e)
		}
		return r.finish()
	}
	r.ok("settings", "company_id, public_key, private_key and client_id are set")
	cl := &call{p: p, cfg: cfg, cn: newConn(), op: "test"}

	if cfg.endpoint != "" {
		r.ok("endpoint", cfg.endpoint+" (codebase discovery skipped)")
		// A self-hosted server usually serves company info beside the API:
		// ask it, so an unknown company ID is named as such rather than
		// showing up as the 401 of the next step.
		if u, err := url.Parse(cfg.endpoint); err == nil && u.Host != "" {
			info, err := cl.companyInfo(ctx, u.Scheme+"://"+u.Host, u.Host)
			switch {
			case err == nil:
				r.ok("company info", fmt.Sprintf("company ID %q found (%s)", cfg.companyID, info.CompanyName))
			case errors.As(err, new(unknownCompanyError)):
				r.fail("company info", err)
				return r.finish()
			default:
				r.skip("company info", "not served beside the endpoint; the company ID is checked with the credentials")
			}
		}
	} else {
		detail := cfg.site
		if cfg.siteMapped != "" {
			detail += fmt.Sprintf(" (%s is the login host; the API answers at %s)", cfg.siteMapped, cfg.site)
		}
		r.ok("site", detail)
		info, base, err := cl.discover(ctx)
		if err != nil {
			r.fail("company info", err)
			return r.finish()
		}
		name := info.CompanyName
		if info.VersionCode != "" {
			name += ", " + info.VersionCode
		}
		r.ok("company info", fmt.Sprintf("company ID %q found (%s); API base %s", cfg.companyID, name, base))
	}

	var sys struct {
		Version string `json:"version"`
	}
	if err := cl.getJSON(ctx, "/system/info", nil, &sys); err != nil {
		r.fail("credentials", err)
		return r.finish()
	}
	r.ok("credentials", fmt.Sprintf("API key pair and clientId accepted (ConnectWise %s, API version %s pinned)", sys.Version, cfg.apiVersion))

	var some []struct{}
	if err := cl.getJSON(ctx, "/service/tickets", url.Values{"pageSize": {"1"}}, &some); err != nil {
		r.fail("service tickets", err)
	} else {
		r.ok("service tickets", "readable")
	}

	company, err := cl.resolveCompany(ctx)
	switch {
	case err != nil:
		r.fail("company", err)
	default:
		r.ok("company", fmt.Sprintf("%s = #%d %s", company.Identifier, company.ID, company.Name))
	}
	switch {
	case cfg.contact == "":
		r.skip("contact", "not set")
	case err != nil:
		r.skip("contact", "not checked: the company did not resolve")
	default:
		if ct, err := cl.resolveContact(ctx, company); err != nil {
			r.fail("contact", err)
		} else {
			r.ok("contact", fmt.Sprintf("%s = #%d", ct.label(), ct.ID))
		}
	}

	if cfg.board == "" {
		r.skip("board", "not set: ConnectWise puts tickets on the API member's default board")
		for _, x := range [][2]string{{"status", cfg.status}, {"type", cfg.typ}, {"subtype", cfg.subtype}, {"item", cfg.item}, {"closed_status", cfg.closedStatus}} {
			if x[1] != "" {
				r.fail(strings.ReplaceAll(x[0], "_", " "), fmt.Errorf("connectwise.%s %q needs connectwise.board: statuses, types, subtypes and items belong to a board", x[0], x[1]))
			}
		}
	} else if board, err := cl.resolveBoard(ctx); err != nil {
		r.fail("board", err)
		for _, x := range [][2]string{{"status", cfg.status}, {"type", cfg.typ}, {"subtype", cfg.subtype}, {"item", cfg.item}, {"closed status", cfg.closedStatus}} {
			if x[1] != "" {
				r.skip(x[0], fmt.Sprintf("%q not checked: the board did not resolve", x[1]))
			}
		}
	} else {
		r.ok("board", fmt.Sprintf("%s = #%d", board.Name, board.ID))
		if cfg.status == "" {
			if st, err := cl.openStatus(ctx, board); err != nil {
				r.fail("status", err)
			} else {
				r.skip("status", fmt.Sprintf("not set: new tickets get the board's default status %q", st.Name))
			}
		} else if st, err := cl.openStatus(ctx, board); err != nil {
			r.fail("status", err)
		} else {
			r.ok("status", fmt.Sprintf("%s = #%d", st.Name, st.ID))
		}
		refs := map[string]*idRef{}
		resolvedAll := true
		for _, x := range []struct{ step, setting, value, sub string }{
			{"type", "connectwise.type", cfg.typ, "types"},
			{"subtype", "connectwise.subtype", cfg.subtype, "subtypes"},
			{"item", "connectwise.item", cfg.item, "items"},
		} {
			if x.value == "" {
				r.skip(x.step, "not set")
				continue
			}
			if e, err := cl.resolveOnBoard(ctx, x.setting, x.value, board, x.sub); err != nil {
				r.fail(x.step, err)
				resolvedAll = false
			} else {
				r.ok(x.step, fmt.Sprintf("%s = #%d", e.Name, e.ID))
				refs[x.step] = &idRef{e.ID}
			}
		}
		if resolvedAll && refs["type"] != nil && (refs["subtype"] != nil || refs["item"] != nil) {
			if err := cl.checkCombination(ctx, board, refs["type"], refs["subtype"], refs["item"], [3]string{cfg.typ, cfg.subtype, cfg.item}); err != nil {
				r.fail("type/subtype/item", err)
			} else {
				r.ok("type/subtype/item", "a combination the board allows")
			}
		}
		if st, err := cl.closedStatus(ctx, board); err != nil {
			r.fail("closed status", err)
		} else if cfg.closedStatus == "" {
			r.ok("closed status", fmt.Sprintf("not set: closing uses the board's first closed status %q = #%d", st.Name, st.ID))
		} else {
			r.ok("closed status", fmt.Sprintf("%s = #%d", st.Name, st.ID))
		}
	}

	// The ticket address and location.
	addrErrs := cfg.checkAddress()
	for _, e := range addrErrs {
		r.fail("address", e)
	}
	var addr []string
	for _, f := range cfg.addressFields() {
		if f.value != "" {
			addr = append(addr, f.field+"="+strconv.Quote(f.value))
		}
	}
	if len(addrErrs) == 0 && len(addr) > 0 {
		r.ok("address", strings.Join(addr, " "))
	}
	for _, x := range []struct {
		step, value string
		resolve     func(context.Context) (entity, error)
	}{{"country", cfg.country, cl.resolveCountry}, {"location", cfg.location, cl.resolveLocation}} {
		if x.value == "" {
			continue
		}
		if e, err := x.resolve(ctx); err != nil {
			r.fail(x.step, err)
		} else {
			r.ok(x.step, fmt.Sprintf("%s = #%d", e.Name, e.ID))
		}
	}

	if cfg.priority == "" {
		r.skip("priority", "not set: ConnectWise uses its default priority")
	} else if pr, err := cl.resolvePriority(ctx); err != nil {
		r.fail("priority", err)
	} else {
		r.ok("priority", fmt.Sprintf("%s = #%d", pr.Name, pr.ID))
	}
	return r.finish()
}

// LookupKinds are the kinds Lookup lists.
var LookupKinds = []string{"boards", "statuses", "types", "subtypes", "items", "priorities", "companies", "contacts", "countries", "locations"}

// Lookup lists values an admin may put in the settings. statuses, types,
// subtypes and items are those of the configured board; contacts are those
// of the configured company when one is set.
func (p *Provider) Lookup(ctx context.Context, s psa.Settings, what string) ([]psa.Value, error) {
	cl, err := p.newCall(s, "lookup")
	if err != nil {
		return nil, err
	}
	kind := strings.ToLower(strings.TrimSpace(what))
	var rows []entity
	switch kind {
	case "boards":
		rows, err = getAll[entity](ctx, cl, "/service/boards", url.Values{"conditions": {"inactiveFlag=false"}, "orderBy": {"name"}})
	case "statuses", "types", "subtypes", "items":
		if cl.cfg.board == "" {
			return nil, cl.errorf(psa.Permanent, fmt.Sprintf("connectwise.board is not set: %s are listed for the configured board", kind))
		}
		var board entity
		if board, err = cl.resolveBoard(ctx); err != nil {
			return nil, err
		}
		rows, err = getAll[entity](ctx, cl, boardPath(board, kind), nil)
		if kind == "statuses" {
			slices.SortStableFunc(rows, func(a, b entity) int { return cmp.Compare(a.SortOrder, b.SortOrder) })
		}
	case "countries":
		rows, err = getAll[entity](ctx, cl, "/company/countries", nil)
	case "locations":
		rows, err = getAll[entity](ctx, cl, "/system/locations", nil)
	case "priorities":
		rows, err = getAll[entity](ctx, cl, "/service/priorities", nil)
		slices.SortStableFunc(rows, func(a, b entity) int { return cmp.Compare(a.SortOrder, b.SortOrder) })
	case "companies":
		rows, err = getAll[entity](ctx, cl, "/company/companies", url.Values{"conditions": {"deletedFlag=false"}, "orderBy": {"identifier"}})
	case "contacts":
		q := url.Values{}
		if cl.cfg.company != "" {
			company, err := cl.resolveCompany(ctx)
			if err != nil {
				return nil, err
			}
			q.Set("conditions", fmt.Sprintf("company/id=%d", company.ID))
		}
		rows, err = getAll[entity](ctx, cl, "/company/contacts", q)
		slices.SortStableFunc(rows, func(a, b entity) int {
			return cmp.Or(strings.Compare(strings.ToLower(a.LastName), strings.ToLower(b.LastName)),
				strings.Compare(strings.ToLower(a.FirstName), strings.ToLower(b.FirstName)))
		})
	default:
		return nil, cl.errorf(psa.Permanent, fmt.Sprintf("cannot look up %q: ConnectWise lists %s", what, strings.Join(LookupKinds, ", ")))
	}
	if err != nil {
		return nil, err
	}
	out := make([]psa.Value, 0, len(rows))
	for _, e := range rows {
		v := psa.Value{ID: strconv.Itoa(e.ID), Name: e.label()}
		var detail []string
		switch kind {
		case "companies":
			detail = append(detail, e.Name)
		case "contacts":
			if m := e.email(); m != "" {
				detail = append(detail, m)
			}
			if e.Company != nil {
				detail = append(detail, e.Company.Identifier)
			}
		}
		if e.DefaultFlag {
			detail = append(detail, "default")
		}
		if e.ClosedStatus {
			detail = append(detail, "closed")
		}
		if e.inactive() {
			detail = append(detail, "inactive")
		}
		v.Detail = strings.Join(detail, ", ")
		out = append(out, v)
	}
	return out, nil
}
