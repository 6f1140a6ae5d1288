package connectwise

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"psagate/internal/psa"
	"psagate/internal/psa/connectwise/fake"
)

// newTLSEnv starts a fake over HTTPS and configures the provider with
// site = 127.0.0.1:PORT, so every call goes through codebase discovery.
func newTLSEnv(t *testing.T, mod func(*fake.Config)) *env {
	t.Helper()
	cfg := fake.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	srv := fake.StartTLS(cfg)
	t.Cleanup(srv.Close)
	e := newEnvFor(t, srv)
	delete(e.st, "connectwise.endpoint")
	e.st["connectwise.site"] = srv.Host()
	return e
}

func TestDiscovery(t *testing.T) {
	e := newTLSEnv(t, func(c *fake.Config) { c.Codebase = "v2025_1/" })
	ctx := context.Background()
	ref := e.create(t)
	if err := e.p.AddNote(ctx, e.call(false), ref, psa.Note{Text: "n"}); err != nil {
		t.Fatal(err)
	}
	reqs := e.srv.Requests()
	info := reqs[0]
	if info.Path != "/login/companyinfo/mymsp" || info.Header.Get("Authorization") != "" || info.Header.Get("clientId") != "" {
		t.Fatalf("first request %s, Authorization %q, clientId %q: discovery must come first and carry no credentials",
			info.Path, info.Header.Get("Authorization"), info.Header.Get("clientId"))
	}
	for _, r := range reqs[1:] {
		if !strings.HasPrefix(r.Path, "/v2025_1/apis/3.0/") {
			t.Errorf("%s %s is not under the discovered codebase", r.Method, r.Path)
		}
	}
	if n := countPath(reqs, "/login/companyinfo/mymsp"); n != 1 {
		t.Fatalf("company info read %d times, want once (cached)", n)
	}

	// Hosted ConnectWise moves the codebase: the old prefix answers 404, the
	// client asks company info again and repeats the call.
	e.srv.SetCodebase("v2025_2/")
	if err := e.p.AddNote(ctx, e.call(false), ref, psa.Note{Text: "after the move"}); err != nil {
		t.Fatal(err)
	}
	reqs = e.srv.Requests()
	if n := countPath(reqs, "/login/companyinfo/mymsp"); n != 2 {
		t.Fatalf("company info read %d times after the move, want 2", n)
	}
	if last := reqs[len(reqs)-1]; last.Path != "/v2025_2/apis/3.0/service/tickets/"+ref.ID+"/notes" || last.Status != 201 {
		t.Fatalf("last request %s %d", last.Path, last.Status)
	}

	// A 404 that is a real 404 costs one company info read and stays a 404.
	err := e.p.AddNote(ctx, e.call(false), psa.TicketRef{ID: "999999"}, psa.Note{Text: "x"})
	if pe := asPSAError(t, err); pe.Status != 404 || pe.Kind != psa.Permanent {
		t.Fatalf("unknown ticket: %v", err)
	}
}

func countPath(reqs []fake.Request, path string) int {
	n := 0
	for _, r := range reqs {
		if r.Path == path {
			n++
		}
	}
	return n
}

func TestDiscoveryNullCodebaseAndUnknownCompany(t *testing.T) {
	e := newTLSEnv(t, func(c *fake.Config) { c.NullCodebase = true })
	e.create(t)
	reqs := e.srv.Requests()
	if last := reqs[len(reqs)-1]; last.Path != "/v4_6_release/apis/3.0/service/tickets" {
		t.Fatalf("null codebase: %s", last.Path)
	}

	e.st["connectwise.company_id"] = "nobody"
	_, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{Summary: "s"})
	pe := asPSAError(t, err)
	want := `company ID "nobody" (connectwise.company_id) is not known at ` + e.srv.Host() + `: use the company ID you type on the ConnectWise login page`
	if pe.Kind != psa.Auth || pe.Message != want {
		t.Fatalf("unknown company id: %q (%v)\nwant %q", pe.Message, pe.Kind, want)
	}
}

func runTest(t *testing.T, e *env, st psa.Settings) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := e.p.Test(context.Background(), st, &out)
	assertNoSecrets(t, "the Test output", out.String())
	if err != nil {
		assertNoSecrets(t, "the Test error", err.Error())
	}
	return out.String(), err
}

func TestTestButtonSuccess(t *testing.T) {
	e := newTLSEnv(t, nil)
	e.st["connectwise.contact"] = "Jane Doe"
	e.st["connectwise.item"] = "Server"
	out, err := runTest(t, e, e.st)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []string{
		"ok   settings: company_id, public_key, private_key and client_id are set",
		"ok   site: " + e.srv.Host(),
		`ok   company info: company ID "mymsp" found (My MSP, v2025.1); API base https://` + e.srv.Host() + "/v4_6_release/apis/3.0",
		"ok   credentials: API key pair and clientId accepted (ConnectWise v2025.1.10431, API version 2025.8 pinned)",
		"ok   service tickets: readable",
		"ok   company: PVC01 = #250 Pinecrest Veterinary Clinic",
		"ok   contact: Jane Doe = #700",
		"ok   board: Backup Alerts = #12",
		"ok   status: New = #101",
		"ok   type: Backup = #201",
		"ok   subtype: Failure = #301",
		"ok   item: Server = #401",
		"ok   type/subtype/item: a combination the board allows",
		`ok   closed status: not set: closing uses the board's first closed status "Closed" = #103`,
		"ok   priority: Priority 3 - Normal Response = #4",
		"Connection Succeeded",
	}
	if got := strings.TrimSpace(out); got != strings.Join(want, "\n") {
		t.Fatalf("output\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestTestButtonFailures(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
		mod  func(st psa.Settings)
		want []string // lines that must appear
		not  []string // text that must not
	}{
		{"wrong key", false, func(st psa.Settings) { st["connectwise.private_key"] = "NotTheRightKey123" }, []string{
			`FAIL credentials: HTTP 401: The supplied authentication is incorrect. ConnectWise refused the API key: check connectwise.public_key and connectwise.private_key`,
			"Connection Failed: 1 problem(s)",
		}, []string{"NotTheRightKey123", "company:", "board:"}},
		{"unknown company id", true, func(st psa.Settings) { st["connectwise.company_id"] = "nobody" }, []string{
			`FAIL company info: company ID "nobody" (connectwise.company_id) is not known at`,
			"Connection Failed: 1 problem(s)",
		}, []string{"credentials"}},
		{"bad site", true, func(st psa.Settings) { st["connectwise.site"] = "https://na.myconnectwise.net/v4_6_release/apis/3.0" }, []string{
			`FAIL settings: connectwise.site "https://na.myconnectwise.net/v4_6_release/apis/3.0" must not include a scheme such as "https://": write only the host, e.g. site = "api-na.myconnectwise.net"`,
			"Connection Failed: 1 problem(s)",
		}, nil},
		{"unknown board", false, func(st psa.Settings) { st["connectwise.board"] = "Backup Alertz" }, []string{
			`FAIL board: connectwise.board "Backup Alertz" does not exist in ConnectWise; valid boards: "Help Desk", "Backup Alerts", "Vault Alerts"`,
			`--   status: "New" not checked: the board did not resolve`,
			"ok   priority: Priority 3 - Normal Response = #4",
			"Connection Failed: 1 problem(s)",
		}, nil},
		{"unknown names", false, func(st psa.Settings) {
			st["connectwise.company"] = "NOPE"
			st["connectwise.subtype"] = "Fail"
			st["connectwise.closed_status"] = "Done"
			st["connectwise.priority"] = "Urgent"
		}, []string{
			`FAIL company: connectwise.company "NOPE" is not a company identifier in ConnectWise`,
			`FAIL subtype: connectwise.subtype "Fail" does not exist in ConnectWise; valid subtypes of board "Backup Alerts": "Failure", "Warning"`,
			`FAIL closed status: connectwise.closed_status "Done" does not exist in ConnectWise; valid statuses of board "Backup Alerts"`,
			`FAIL priority: connectwise.priority "Urgent" does not exist`,
			"Connection Failed: 4 problem(s)",
		}, nil},
		{"no board but a status", false, func(st psa.Settings) { delete(st, "connectwise.board") }, []string{
			"--   board: not set",
			`FAIL status: connectwise.status "New" needs connectwise.board`,
			`FAIL type: connectwise.type "Backup" needs connectwise.board`,
		}, nil},
		{"missing credentials", false, func(st psa.Settings) {
			delete(st, "connectwise.public_key")
			delete(st, "connectwise.client_id")
		}, []string{
			"FAIL settings: connectwise.public_key is not set",
			"FAIL settings: connectwise.client_id is not set: register a clientId at developer.connectwise.com",
			"Connection Failed: 2 problem(s)",
		}, nil},
		{"forbidden lookups", false, nil, []string{
			"FAIL board: HTTP 403: You do not have security permission to perform this action. The API member's security role lacks System > Table Setup: Inquire",
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			if tc.tls {
				e = newTLSEnv(t, nil)
			} else {
				e = newEnv(t, nil)
			}
			if tc.mod != nil {
				tc.mod(e.st)
			} else {
				e.srv.Inject(fake.Fault{Path: "/service/boards", Status: 403})
			}
			out, err := runTest(t, e, e.st)
			if err == nil || psa.KindOf(err) != psa.Permanent {
				t.Fatalf("Test returned %v\n%s", err, out)
			}
			if strings.Contains(out, "Connection Succeeded") {
				t.Fatalf("success printed:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("output contains %q:\n%s", n, out)
				}
			}
			if tc.name == "bad site" && len(e.srv.Requests()) != 0 {
				t.Error("a bad site must be refused before any request")
			}
		})
	}
}

func TestLookupPaginates(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) {
		c.PageSizeLimit = 2
		c.Boards = append(c.Boards, fake.Board{ID: 40, Name: "Archive", Inactive: true}, fake.Board{ID: 41, Name: "Alerts EU"})
	})
	ctx := context.Background()
	names := func(vs []psa.Value) string {
		var b []string
		for _, v := range vs {
			s := v.ID + " " + v.Name
			if v.Detail != "" {
				s += " (" + v.Detail + ")"
			}
			b = append(b, s)
		}
		return strings.Join(b, "; ")
	}
	tests := []struct {
		what  string
		want  string
		pages int // requests to the list path
		path  string
	}{
		{"boards", "41 Alerts EU; 12 Backup Alerts; 1 Help Desk; 13 Vault Alerts", 2, "/service/boards"},
		{"statuses", "101 New (default); 102 In Progress; 105 Closed (old) (closed, inactive); 103 Closed (closed); 104 Closed - Auto (closed)", 3, "/service/boards/12/statuses"},
		{"types", "201 Backup; 202 Monitoring", 1, "/service/boards/12/types"},
		{"subtypes", "301 Failure; 302 Warning", 1, "/service/boards/12/subtypes"},
		{"items", "401 Server; 402 Workstation", 1, "/service/boards/12/items"},
		{"priorities", "1 Priority 1 - Emergency Response; 2 Priority 2 - Quick Response; 4 Priority 3 - Normal Response (default); 6 Priority 4 - Schedule Maintenance", 2, "/service/priorities"},
		{"companies", "251 ACME01 (Acme Inc); 2 MyMSP (My MSP); 252 OLD01 (Former Customer); 250 PVC01 (Pinecrest Veterinary Clinic)", 2, "/company/companies"},
		{"Contacts", "700 Jane Doe (jane.doe@pinecrest.example, PVC01); 701 Tom Weber (tom.weber@pinecrest.example, PVC01)", 1, "/company/contacts"},
	}
	for _, tc := range tests {
		t.Run(tc.what, func(t *testing.T) {
			e.srv.ResetRequests()
			vs, err := e.p.Lookup(ctx, e.st, tc.what)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(vs); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if n := len(e.requests("GET", tc.path)); n != tc.pages {
				t.Fatalf("%d requests to %s, want %d", n, tc.path, tc.pages)
			}
		})
	}
	if _, err := e.p.Lookup(ctx, e.st, "queues"); err == nil || !strings.Contains(err.Error(), "boards, statuses, types, subtypes, items, priorities, companies, contacts") {
		t.Fatalf("unknown kind: %v", err)
	}
	delete(e.st, "connectwise.board")
	if _, err := e.p.Lookup(ctx, e.st, "statuses"); err == nil || !strings.Contains(err.Error(), "connectwise.board is not set") {
		t.Fatalf("statuses without board: %v", err)
	}
}

func TestProbe(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.p.Probe(context.Background(), e.st); err != nil {
		t.Fatal(err)
	}
	if r := e.srv.Requests(); len(r) != 1 || r[0].APIPath != "/system/info" {
		t.Fatalf("probe requests %+v", r)
	}
	e.srv.Inject(fake.Fault{Status: 401})
	if err := e.p.Probe(context.Background(), e.st); psa.KindOf(err) != psa.Auth {
		t.Fatalf("probe with bad keys: %v", err)
	}
}
