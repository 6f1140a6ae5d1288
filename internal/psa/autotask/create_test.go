package autotask_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"psagate/internal/psa"
	"psagate/internal/psa/autotask/fake"
)

func TestCreateSendsTheTicketWithHeadersToTheZoneOnly(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := e.with(
		"autotask.queue_id", "Backup Alerts",
		"autotask.priority", "high",
		"autotask.issue_type", "Backup",
		"autotask.sub_issue_type", "Backup Failed",
		"autotask.ticket_type", "5",
		"autotask.source", "Monitoring Alert",
	)
	ref := e.mustCreate(s, sample)
	if ref.Provider != "autotask" || ref.ID == "" || !strings.HasPrefix(ref.Number, "T20260211.") {
		t.Fatalf("ref = %+v", ref)
	}
	tk := e.ticket(ref)
	if tk.CompanyID != 500 || tk.QueueID != 29683482 || tk.Priority != 1 || tk.Status != 1 ||
		tk.IssueType != 10 || tk.SubIssueType != 101 || tk.TicketType != 5 || tk.Source != 4 {
		t.Errorf("stored ticket = %+v", tk)
	}
	if tk.Title != sample.Summary || tk.Description != sample.Description || tk.ExternalID != sample.ExternalRef {
		t.Errorf("text fields = %q / %q / %q", tk.Title, tk.Description, tk.ExternalID)
	}

	posts := e.reqs(http.MethodPost, "/V1.0/Tickets")
	if len(posts) != 1 {
		t.Fatalf("%d POST Tickets, want 1", len(posts))
	}
	body := bodyMap(t, posts[0])
	want := map[string]any{
		"companyID": 500.0, "title": sample.Summary, "description": sample.Description, "status": 1.0,
		"priority": 1.0, "queueID": 29683482.0, "issueType": 10.0, "subIssueType": 101.0,
		"ticketType": 5.0, "source": 4.0, "externalID": sample.ExternalRef,
		// due_in defaults to 24h after the fake clock's 2026-02-11 09:30 UTC.
		"dueDateTime": "2026-02-12T09:30:00Z",
	}
	if len(body) != len(want) {
		t.Errorf("body has %d keys, want %d: %s", len(body), len(want), posts[0].Body)
	}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("body[%s] = %v, want %v", k, body[k], v)
		}
	}

	// A second ticket reuses the zone and the picklists.
	e.mustCreate(s, psa.Ticket{Summary: "second", ExternalRef: "x2"})
	if n := len(e.reqs(http.MethodGet, "zoneInformation")); n != 1 {
		t.Errorf("%d zone discoveries, want 1 (cached)", n)
	}
	if n := len(e.reqs(http.MethodGet, "Tickets/entityInformation/fields")); n != 1 {
		t.Errorf("%d field reads, want 1 (cached)", n)
	}

	for _, r := range e.fk.Requests() {
		switch r.Listener {
		case "discovery":
			if r.HasCredentials() {
				t.Errorf("credentials sent to the discovery host: %s %s", r.Method, r.Path)
			}
		case "zone":
			h := r.Header
			if h.Get("ApiIntegrationCode") != fake.DefaultIntegrationCode || h.Get("UserName") != fake.DefaultUsername ||
				h.Get("Secret") != fake.DefaultSecret || h.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s lacks a header: %v", r.Method, r.Path, h)
			}
			if r.Host != e.fk.ZoneHost() {
				t.Errorf("API call to %s, zone is %s", r.Host, e.fk.ZoneHost())
			}
		}
		if r.Status != http.StatusOK {
			t.Errorf("%s %s answered %d", r.Method, r.Path, r.Status)
		}
	}
	if leaks := e.fk.CredentialLeaks(); len(leaks) != 0 {
		t.Errorf("credential leaks: %d", len(leaks))
	}
}

func TestCreateOmitsUnsetFieldsAndUsesDefaults(t *testing.T) {
	e := newEnv(t, nil, nil)
	// The example config writes 0 for picklists nobody chose.
	s := e.with("autotask.queue_id", "0", "autotask.issue_type", "0", "autotask.priority", "0")
	e.mustCreate(s, psa.Ticket{Summary: "no description"})
	posts := e.reqs(http.MethodPost, "/V1.0/Tickets")
	body := bodyMap(t, posts[0])
	for _, k := range []string{"queueID", "issueType", "subIssueType", "ticketType", "source", "description", "externalID"} {
		if _, ok := body[k]; ok {
			t.Errorf("unset %s sent: %s", k, posts[0].Body)
		}
	}
	if body["priority"] != 2.0 || body["status"] != 1.0 {
		t.Errorf("defaults: priority %v (want the picklist default 2), status %v (want 1)", body["priority"], body["status"])
	}
	if strings.Contains(string(posts[0].Body), "null") {
		t.Errorf("body contains null: %s", posts[0].Body)
	}
}

func TestCreateCompanyByName(t *testing.T) {
	e := newEnv(t, nil, nil)
	ref := e.mustCreate(e.with("autotask.company_id", "acme"), sample)
	if tk := e.ticket(ref); tk.CompanyID != 501 {
		t.Errorf("companyID = %d, want 501 (ACME)", tk.CompanyID)
	}
	e.mustCreate(e.with("autotask.company_id", "ACME"), psa.Ticket{Summary: "again"})
	if n := len(e.reqs(http.MethodPost, "Companies/query")); n != 1 {
		t.Errorf("%d company queries, want 1 (cached)", n)
	}
	_, err := e.create(e.with("autotask.company_id", "Nobody Inc"), false, sample)
	pe := asPSA(t, err)
	if pe.Kind != psa.Permanent || pe.Field != "autotask.company_id" || !strings.Contains(pe.Message, "Nobody Inc") {
		t.Errorf("unknown company name: %+v", pe)
	}
}

func TestPicklistErrors(t *testing.T) {
	tests := []struct {
		name, key, value, field string
		want                    []string
		notWant                 []string
	}{
		{"unknown queue label", "autotask.queue_id", "Backup Alertz", "autotask.queue_id",
			[]string{`"Backup Alertz" is not a queue`, "29683482 (Backup Alerts)", "29683483 (Monitoring)", "psagate psa lookup queues"},
			[]string{"Old Alerts"}},
		{"unknown queue number", "autotask.queue_id", "123", "autotask.queue_id", []string{`"123" is not a queue`}, nil},
		{"inactive priority", "autotask.priority", "Obsolete", "autotask.priority", []string{"inactive", "1 (High)"}, []string{"(Critical), 6"}},
		{"inactive status number", "autotask.status", "13", "autotask.status", []string{"13 (Retired)", "inactive"}, nil},
		{"sub-issue type of another issue type", "autotask.sub_issue_type", "111", "autotask.sub_issue_type",
			[]string{"belongs to issue type 11", "101 (Backup Failed)"}, []string{"112 (Disk Space)"}},
		{"sub-issue label under the wrong parent", "autotask.sub_issue_type", "Agent Offline", "autotask.sub_issue_type",
			[]string{`"Agent Offline" is not a sub-issue type`, "102 (Backup Warning)"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			s := e.with("autotask.issue_type", "10", tt.key, tt.value)
			_, err := e.create(s, false, sample)
			pe := asPSA(t, err)
			if pe.Kind != psa.Permanent || pe.Field != tt.field {
				t.Errorf("kind %v field %q, want permanent %q", pe.Kind, pe.Field, tt.field)
			}
			for _, w := range tt.want {
				if !strings.Contains(pe.Message, w) {
					t.Errorf("message lacks %q: %s", w, pe.Message)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(pe.Message, w) {
					t.Errorf("message has %q: %s", w, pe.Message)
				}
			}
			if n := len(e.reqs(http.MethodPost, "/V1.0/Tickets")); n != 0 {
				t.Errorf("%d tickets posted despite the bad setting", n)
			}
		})
	}
}

func TestPicklistRefreshOnMiss(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.mustCreate(e.s, sample)
	e.fk.AddTicketPicklistValue("queueID", fake.PicklistValue{Value: "29683499", Label: "Vault Alerts"})
	s := e.with("autotask.queue_id", "Vault Alerts")

	// Just read: a miss does not re-read the fields at once (a typo must not
	// cost two calls per job).
	if _, err := e.create(s, false, sample); err == nil {
		t.Fatal("new queue resolved without a re-read")
	}
	if n := len(e.reqs(http.MethodGet, "Tickets/entityInformation/fields")); n != 1 {
		t.Fatalf("%d field reads, want 1", n)
	}
	e.clock.Advance(time.Minute)
	ref := e.mustCreate(s, sample)
	if tk := e.ticket(ref); tk.QueueID != 29683499 {
		t.Errorf("queue = %d", tk.QueueID)
	}
	if n := len(e.reqs(http.MethodGet, "Tickets/entityInformation/fields")); n != 2 {
		t.Errorf("%d field reads, want 2 (one refresh on the miss)", n)
	}
}

func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

func TestTruncationAtRuneBoundaries(t *testing.T) {
	e := newEnv(t, nil, nil)
	title := "Sicherung fehlgeschlagen \r\nBcc: x " + strings.Repeat("ö😀", 200)
	desc := strings.Repeat("Wöchentliche-Dateiserver € 😀 ", 600)
	ext := "psagate:" + strings.Repeat("ä", 60)
	ref := e.mustCreate(e.s, psa.Ticket{Summary: title, Description: desc, ExternalRef: ext})
	tk := e.ticket(ref)
	if n := utf16Len(tk.Title); n > 255 || n < 250 || !utf8.ValidString(tk.Title) || !strings.HasSuffix(tk.Title, "…") {
		t.Errorf("title: %d UTF-16 units, valid %v: %q", n, utf8.ValidString(tk.Title), tk.Title)
	}
	if strings.ContainsAny(tk.Title, "\r\n") {
		t.Errorf("title keeps a line break: %q", tk.Title)
	}
	if n := utf16Len(tk.Description); n > 8000 || n < 7900 || !utf8.ValidString(tk.Description) {
		t.Errorf("description: %d UTF-16 units", n)
	}
	if !strings.Contains(tk.Description, "cut by psagate") {
		t.Errorf("description has no cut marker: ...%q", tk.Description[len(tk.Description)-120:])
	}
	if n := utf16Len(tk.ExternalID); n != 50 || !strings.HasPrefix(tk.ExternalID, "psagate:ää") {
		t.Errorf("externalID = %q (%d)", tk.ExternalID, n)
	}
}

func TestRetriedCreateFindsTheTicketOfALostResponse(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.fk.Inject(fake.Fault{Kind: fake.FaultLostResponse, Method: http.MethodPost, Path: "Tickets"})
	_, err := e.create(e.s, false, sample)
	if err == nil || psa.KindOf(err) != psa.Transient {
		t.Fatalf("lost response: err = %v, want transient", err)
	}
	if n := len(e.fk.Tickets()); n != 1 {
		t.Fatalf("fake holds %d tickets after the lost response, want 1", n)
	}
	ref, err := e.create(e.s, true, sample)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	tk := e.fk.Tickets()
	if len(tk) != 1 || ref.ID != itoa(tk[0].ID) || ref.Number != tk[0].TicketNumber {
		t.Fatalf("retry returned %+v; fake holds %d tickets", ref, len(tk))
	}
	if n := len(e.reqs(http.MethodPost, "/V1.0/Tickets")); n != 1 {
		t.Errorf("%d ticket POSTs, want 1", n)
	}
	q := e.reqs(http.MethodPost, "Tickets/query")
	if len(q) != 1 || !strings.Contains(string(q[0].Body), `"externalID"`) {
		t.Errorf("retry query: %v", q)
	}

	// A retry whose first attempt never arrived creates the ticket.
	other := sample
	other.ExternalRef = "psagate:other"
	if _, err := e.create(e.s, true, other); err != nil {
		t.Fatal(err)
	}
	if n := len(e.fk.Tickets()); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
}

func TestCreateWithoutTicketNumberStillSucceeds(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.fk.Inject(fake.Fault{Kind: fake.Fault503, Method: http.MethodGet, Path: "Tickets/*"})
	ref, err := e.create(e.s, false, sample)
	if err != nil {
		t.Fatalf("Create failed because the number could not be read: %v", err)
	}
	if ref.ID == "" || ref.Number != "" {
		t.Errorf("ref = %+v", ref)
	}
}
