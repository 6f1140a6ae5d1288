package autotask

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"psagate/internal/psa"
)

// DefaultZoneURL is the base of zone discovery when autotask.zone_url is
// empty. Any Autotask zone host answers zoneInformation; this is the one the
// official examples use.
const DefaultZoneURL = "https://webservices.autotask.net/atservicesrest/v1.0/"

// DefaultTimeout is the per-request timeout when autotask.timeout is empty.
const DefaultTimeout = 30 * time.Second

// config is the parsed autotask section of one call's settings.
type config struct {
	settings  psa.Settings // the whole settings, for Scrub
	username  string
	secret    string
	code      string
	discovery *url.URL // ends with ".../v1.0/"
	company   string   // an id or a company name
	picks     map[string]string
	timeout   time.Duration
	dueIn     time.Duration     // dueDateTime = now + dueIn
	contact   string            // a contact id, e-mail address or "First Last"
	udfs      map[string]string // userDefinedFields by name
}

// DefaultDueIn is the due date of a new ticket when autotask.due_in is not
// set. Autotask refuses a ticket without dueDateTime unless the ticket
// category defaults one ("dueDateTime is required.; on record number [0]."
// as an HTTP 500, seen on a Datto Autotask tenant: WYRE-AI/autotask-mcp pull
// request #288), so psagate always sends one.
const DefaultDueIn = 24 * time.Hour

// key identifies the integration whose state (zone, picklists, limiter,
// budget) a call shares. It is a hash so the map never holds the
// integration code in clear.
func (c *config) key() string {
	h := sha256.Sum256([]byte(strings.ToLower(c.discovery.String()) + "\x00" + strings.ToLower(c.username) + "\x00" + c.code))
	return hex.EncodeToString(h[:12])
}

func (c *config) get(key string) string { return strings.TrimSpace(c.picks[key]) }

// pickSetting ties a setting to the picklist field its value comes from.
type pickSetting struct {
	key     string // setting key without "autotask."
	entity  string // "Tickets" or "TicketNotes"
	field   string // Autotask field name
	what    string // for messages: "queue"
	plural  string
	lookup  string // psagate psa lookup kind
	label   string // Test step label
	deflt   string // value used when the setting is empty ("" = none)
	useTkDf bool   // when empty, use the picklist's default value
}

var pickSettings = []pickSetting{
	{key: "queue_id", entity: "Tickets", field: "queueID", what: "queue", plural: "queues", lookup: "queues", label: "Queue"},
	{key: "status", entity: "Tickets", field: "status", what: "status", plural: "statuses", lookup: "statuses", label: "Status", deflt: "1"},
	{key: "complete_status", entity: "Tickets", field: "status", what: "status", plural: "statuses", lookup: "statuses", label: "Complete status", deflt: "5"},
	{key: "priority", entity: "Tickets", field: "priority", what: "priority", plural: "priorities", lookup: "priorities", label: "Priority", useTkDf: true},
	{key: "issue_type", entity: "Tickets", field: "issueType", what: "issue type", plural: "issue types", lookup: "issue_types", label: "Issue type"},
	{key: "sub_issue_type", entity: "Tickets", field: "subIssueType", what: "sub-issue type", plural: "sub-issue types", lookup: "sub_issue_types", label: "Sub-issue type"},
	{key: "ticket_type", entity: "Tickets", field: "ticketType", what: "ticket type", plural: "ticket types", lookup: "ticket_types", label: "Ticket type"},
	{key: "source", entity: "Tickets", field: "source", what: "source", plural: "sources", lookup: "sources", label: "Source"},
	{key: "note_type", entity: "TicketNotes", field: "noteType", what: "note type", plural: "note types", lookup: "note_types", label: "Note type", deflt: "1"},
	{key: "note_publish", entity: "TicketNotes", field: "publish", what: "note publish value", plural: "note publish values", lookup: "note_publish", label: "Note publish", deflt: "1"},
	// ticketCategory and billingCodeID (the work type) are what tenants
	// most often make required; both are resolved like the picklists
	// (billingCodeID is a reference to a billing code that the tenant's
	// fields metadata lists with its values; modelled, see docs/autotask.md).
	{key: "ticket_category", entity: "Tickets", field: "ticketCategory", what: "ticket category", plural: "ticket categories", lookup: "ticket_categories", label: "Ticket category"},
	{key: "billing_code_id", entity: "Tickets", field: "billingCodeID", what: "billing code (work type)", plural: "billing codes", lookup: "billing_codes", label: "Billing code"},
	{key: "attachment_publish", entity: "TicketAttachments", field: "publish", what: "attachment publish value", plural: "attachment publish values", lookup: "attachment_publish", label: "Attachment publish", deflt: "1"},
}

// notePublishKey is the setting that decides the publish value of a note of
// the given purpose (psa.NotePurposes): "note_publish.<purpose>", else
// "note_publish.default", else "note_publish".
func (c *config) notePublishKey(purpose string) string {
	for _, k := range []string{"note_publish." + purpose, "note_publish.default"} {
		if !isUnset(c.get(k)) {
			return k
		}
	}
	return "note_publish"
}

func pickSettingFor(key string) pickSetting {
	for _, ps := range pickSettings {
		if ps.key == key {
			return ps
		}
	}
	panic("autotask: no picklist setting " + key)
}

// parseConfig reads the autotask settings. It returns every problem it
// finds; full also requires the settings tickets need (company_id), which
// lookups do not: an admin runs a lookup to find the company id.
func parseConfig(s psa.Settings, full bool) (*config, []error) {
	g := func(k string) string { return strings.TrimSpace(s.Get("autotask." + k)) }
	c := &config{settings: s, username: g("username"), secret: s.Get("autotask.secret"), code: strings.TrimSpace(s.Get("autotask.integration_code")),
		company: g("company_id"), picks: map[string]string{}}
	var errs []error
	if c.username == "" {
		errs = append(errs, fmt.Errorf("autotask.username is missing: the API-only user's username (an e-mail address)"))
	}
	if c.secret == "" {
		errs = append(errs, fmt.Errorf("autotask.secret is missing: the API-only user's secret (use \"env:NAME\" or \"file:/path\")"))
	}
	if c.code == "" {
		errs = append(errs, fmt.Errorf("autotask.integration_code is missing: the API tracking identifier of the API user"))
	}
	if full && c.company == "" {
		errs = append(errs, fmt.Errorf("autotask.company_id is missing: the id (or exact name) of the Autotask company tickets are opened for; see `psagate psa lookup companies`"))
	}
	u, err := discoveryBase(g("zone_url"))
	if err != nil {
		errs = append(errs, err)
	}
	c.discovery = u
	c.timeout = DefaultTimeout
	if t := g("timeout"); t != "" {
		d, err := parseTimeout(t)
		if err != nil {
			errs = append(errs, err)
		} else {
			c.timeout = d
		}
	}
	for _, ps := range pickSettings {
		c.picks[ps.key] = g(ps.key)
	}
	for _, purpose := range psa.NotePurposes {
		c.picks["note_publish."+purpose] = g("note_publish." + purpose)
	}
	c.dueIn = DefaultDueIn
	if t := g("due_in"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("autotask.due_in %q is not a positive duration such as \"24h\" or \"30m\"", t))
		} else {
			c.dueIn = d
		}
	}
	c.contact = g("contact")
	c.udfs = map[string]string{}
	for k, v := range s.Table("autotask.fields") {
		c.udfs[strings.TrimSpace(k)] = v
	}
	if st, cs := c.get("status"), c.get("complete_status"); st != "" && cs != "" && strings.EqualFold(st, cs) {
		errs = append(errs, fmt.Errorf("autotask.status and autotask.complete_status are both %q: new tickets would be opened complete", st))
	}
	if c.get("sub_issue_type") != "" && !isUnset(c.get("sub_issue_type")) && isUnset(c.get("issue_type")) {
		errs = append(errs, fmt.Errorf("autotask.sub_issue_type is set without autotask.issue_type: a sub-issue type belongs to an issue type"))
	}
	return c, errs
}

// isUnset treats "" and "0" as "not set": the example config writes 0 for
// picklist settings nobody chose.
func isUnset(v string) bool { return v == "" || v == "0" }

func parseTimeout(t string) (time.Duration, error) {
	if n, err := strconv.Atoi(t); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("autotask.timeout %q must be positive", t)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("autotask.timeout %q is not a duration such as \"30s\"", t)
	}
	return d, nil
}

// discoveryBase checks and normalises autotask.zone_url to an URL whose
// path ends with "/v1.0/". A REST root without the version
// (".../ATServicesRest/") is accepted and completed.
func discoveryBase(raw string) (*url.URL, error) {
	if raw == "" {
		raw = DefaultZoneURL
	}
	u, err := url.Parse(raw)
	bad := func(why string) (*url.URL, error) {
		return nil, fmt.Errorf("autotask.zone_url %q %s; expected e.g. %q", psa.RedactURL(raw), why, DefaultZoneURL)
	}
	if err != nil {
		return bad("is not an URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return bad("must start with https://")
	}
	if u.Host == "" {
		return bad("has no host")
	}
	if u.User != nil {
		return bad("must not contain a user or password")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return bad("must not have a query or fragment")
	}
	p := u.Path
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	lp := strings.ToLower(p)
	switch {
	case strings.HasSuffix(lp, "/atservicesrest/v1.0/"):
	case strings.HasSuffix(lp, "/atservicesrest/"):
		p += "v1.0/"
	default:
		return bad("must end with /atservicesrest/v1.0/")
	}
	if strings.Contains(p, "//") {
		return bad("has an empty path segment")
	}
	u.Path, u.RawPath = p, ""
	return u, nil
}
