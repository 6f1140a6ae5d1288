package autotask_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"psagate/internal/psa"
	"psagate/internal/psa/autotask/fake"
)

func TestTestSucceeds(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := e.with("autotask.priority", "Medium", "autotask.issue_type", "Backup", "autotask.sub_issue_type", "Backup Failed")
	var out bytes.Buffer
	if err := e.p.Test(t.Context(), s, &out); err != nil {
		t.Fatalf("Test: %v\n%s", err, out.String())
	}
	text := out.String()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if lines[len(lines)-1] != "Connection Succeeded" {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
	for _, w := range []string{
		"Zone discovery: OK", `zone "Fake Zone"`,
		"Authentication: OK, Autotask API 2025.1 build 42",
		"API usage: 2 of 10000 requests in the last 60 minutes (0%)",
		`Company (autotask.company_id): OK, 500 "Pinecrest Veterinary Clinic"`,
		"Queue (autotask.queue_id): OK, 29683482 (Backup Alerts)",
		"Priority (autotask.priority): OK, 2 (Medium)",
		"Status (autotask.status): OK, 1 (New), the default",
		"Complete status (autotask.complete_status): OK, 5 (Complete), the default",
		"Sub-issue type (autotask.sub_issue_type): OK, 101 (Backup Failed)",
		"Source (autotask.source): not set",
		"Note publish (autotask.note_publish): OK, 1 (All Autotask Users), the default",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("output lacks %q:\n%s", w, text)
		}
	}
	if strings.Contains(text, "FAILED") {
		t.Errorf("a step failed:\n%s", text)
	}
	e.noSecrets("Test output", text)
	// Test only reads.
	for _, r := range e.fk.Requests() {
		if r.Method != http.MethodGet && !strings.HasSuffix(r.Path, "/query") {
			t.Errorf("Test wrote: %s %s", r.Method, r.Path)
		}
	}
}

func TestTestReportsEachWrongValue(t *testing.T) {
	tests := []struct {
		name     string
		settings []string
		want     []string
		stops    bool // later steps are not run
	}{
		{"user", []string{"autotask.username", "nobody@pinecrest-msp.example"}, []string{
			"Zone discovery: FAILED", `does not know the API user "nobody@pinecrest-msp.example"`, "check autotask.username"}, true},
		{"secret", []string{"autotask.secret", "wrong-secret-value"}, []string{
			"Zone discovery: OK", "Authentication: FAILED", "check autotask.username and autotask.secret"}, true},
		{"integration code", []string{"autotask.integration_code", "WRONGCODE1234567890"}, []string{
			"Authentication: FAILED", "check autotask.integration_code"}, true},
		{"company", []string{"autotask.company_id", "999"}, []string{
			"Company: FAILED: there is no Autotask company with id 999", "Queue (autotask.queue_id): OK"}, false},
		{"company name", []string{"autotask.company_id", "Pinecrest"}, []string{
			`Company: FAILED: no Autotask company is named "Pinecrest"`}, false},
		{"queue", []string{"autotask.queue_id", "Backups"}, []string{
			`Company (autotask.company_id): OK`, `Queue (autotask.queue_id): FAILED: autotask.queue_id "Backups" is not a queue in Autotask; valid queues: 29683482 (Backup Alerts), 29683483 (Monitoring)`}, false},
		{"inactive queue", []string{"autotask.queue_id", "29683490"}, []string{"Queue (autotask.queue_id): FAILED", "inactive"}, false},
		{"priority", []string{"autotask.priority", "Urgent"}, []string{"Priority (autotask.priority): FAILED", "4 (Critical)"}, false},
		{"settings", []string{"autotask.zone_url", "webservices.autotask.net"}, []string{"Settings: FAILED", "autotask.zone_url"}, true},
		{"zone url path", []string{"autotask.zone_url", "DISCOVERY/api/atservicesrest/v1.0/"}, []string{"Zone discovery: FAILED", "(autotask.zone_url): not found"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			for i, v := range tt.settings {
				tt.settings[i] = strings.Replace(v, "DISCOVERY/", "http://"+e.fk.DiscoveryHost()+"/", 1)
			}
			var out bytes.Buffer
			err := e.p.Test(t.Context(), e.with(tt.settings...), &out)
			text := out.String()
			if err == nil {
				t.Fatalf("Test passed:\n%s", text)
			}
			if strings.Contains(text, "Connection Succeeded") {
				t.Errorf("claims success:\n%s", text)
			}
			if !strings.Contains(text, "Connection FAILED") {
				t.Errorf("no final verdict:\n%s", text)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			if tt.stops && strings.Contains(text, "Company") {
				t.Errorf("went on after a failed connection step:\n%s", text)
			}
			e.noSecrets("Test output", text)
			e.noSecrets("Test error", err.Error())
		})
	}
}

func TestLookup(t *testing.T) {
	companies := []fake.Company{
		{ID: 500, Name: "Pinecrest Veterinary Clinic"}, {ID: 501, Name: "ACME"}, {ID: 502, Name: "Birchwood Dental", Inactive: true},
		{ID: 503, Name: "Cedar Logistics"}, {ID: 504, Name: "Dune Outfitters"},
	}
	e := newEnv(t, func(c *fake.Config) { c.PageSize = 2; c.Companies = companies }, nil)
	// An admin looks up the company before setting company_id.
	s := e.with("autotask.company_id", "")
	got, err := e.p.Lookup(t.Context(), s, "companies")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0] != (psa.Value{ID: "500", Name: "Pinecrest Veterinary Clinic"}) || got[2].Detail != "inactive" || got[4].ID != "504" {
		t.Errorf("companies = %+v", got)
	}
	pages := e.reqs(http.MethodPost, "/query/next")
	first := e.reqs(http.MethodPost, "Companies/query")
	if len(pages) != 2 || len(first) != 1 {
		t.Fatalf("%d first pages, %d next pages; want 1 and 2", len(first), len(pages))
	}
	for _, p := range pages {
		if !bytes.Equal(p.Body, first[0].Body) || p.Host != e.fk.ZoneHost() {
			t.Errorf("next page body %s (first %s) to %s", p.Body, first[0].Body, p.Host)
		}
	}

	tests := []struct {
		what  string
		n     int
		first psa.Value
	}{
		{"queues", 3, psa.Value{ID: "29683482", Name: "Backup Alerts"}},
		{"priorities", 5, psa.Value{ID: "1", Name: "High"}},
		{"statuses", 5, psa.Value{ID: "1", Name: "New", Detail: "default"}},
		{"issue_types", 2, psa.Value{ID: "10", Name: "Backup"}},
		{"sub_issue_types", 4, psa.Value{ID: "101", Name: "Backup Failed", Detail: "issue type 10 (Backup)"}},
		{"ticket_types", 5, psa.Value{ID: "1", Name: "Service Request", Detail: "default"}},
		{"sources", 4, psa.Value{ID: "-1", Name: "Client Portal"}},
		{"note_types", 3, psa.Value{ID: "1", Name: "Task Notes", Detail: "default"}},
		{"note_publish", 2, psa.Value{ID: "1", Name: "All Autotask Users", Detail: "default"}},
	}
	for _, tt := range tests {
		got, err := e.p.Lookup(t.Context(), s, tt.what)
		if err != nil {
			t.Errorf("%s: %v", tt.what, err)
			continue
		}
		if len(got) != tt.n || got[0] != tt.first {
			t.Errorf("%s = %+v", tt.what, got)
		}
	}
	queues, _ := e.p.Lookup(t.Context(), s, "queues")
	if queues[2].Detail != "inactive" {
		t.Errorf("inactive queue not marked: %+v", queues[2])
	}
	if _, err := e.p.Lookup(t.Context(), s, "boards"); err == nil || !strings.Contains(err.Error(), "queues") {
		t.Errorf("unknown kind: %v", err)
	}
}

func TestValidate(t *testing.T) {
	e := newEnv(t, nil, nil)
	if errs := e.p.Validate(e.s); len(errs) != 0 {
		t.Fatalf("valid settings: %v", errs)
	}
	tests := []struct {
		name string
		kv   []string
		want string
	}{
		{"username", []string{"autotask.username", ""}, "autotask.username is missing"},
		{"secret", []string{"autotask.secret", ""}, "autotask.secret is missing"},
		{"code", []string{"autotask.integration_code", ""}, "autotask.integration_code is missing"},
		{"company", []string{"autotask.company_id", ""}, "autotask.company_id is missing"},
		{"zone scheme", []string{"autotask.zone_url", "webservices5.autotask.net/atservicesrest/v1.0/"}, "autotask.zone_url"},
		{"zone path", []string{"autotask.zone_url", "https://webservices5.autotask.net/"}, "/atservicesrest/v1.0/"},
		{"timeout", []string{"autotask.timeout", "soon"}, "autotask.timeout"},
		{"status equals complete", []string{"autotask.status", "Complete", "autotask.complete_status", "complete"}, "opened complete"},
		{"sub-issue without issue", []string{"autotask.sub_issue_type", "101"}, "without autotask.issue_type"},
	}
	for _, tt := range tests {
		errs := e.p.Validate(e.with(tt.kv...))
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.want) {
			t.Errorf("%s: %v, want one error with %q", tt.name, errs, tt.want)
		}
	}
	if errs := e.p.Validate(psa.Settings{}); len(errs) != 4 {
		t.Errorf("empty settings: %d errors, want 4: %v", len(errs), errs)
	}
	if len(e.fk.Requests()) != 0 {
		t.Error("Validate made a network call")
	}
	if errs := e.p.Validate(e.with("autotask.timeout", "45")); len(errs) != 0 {
		t.Errorf("timeout in seconds: %v", errs)
	}
}
