package rules

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"psagate/internal/message"
)

func TestConditions(t *testing.T) {
	noMailFrom := func(a *message.Alert) { a.MailFrom = "" }
	noRemote := func(a *message.Alert) { a.RemoteIP = netip.Addr{} }
	v6 := func(a *message.Alert) { a.RemoteIP = netip.MustParseAddr("2001:db8::5") }
	mapped := func(a *message.Alert) { a.RemoteIP = netip.MustParseAddr("::ffff:10.1.2.3") }
	noAttach := func(a *message.Alert) { a.Attachments = nil }
	yes, no := true, false
	authOK := func(a *message.Alert) {
		a.Auth = &message.AuthResults{Authenticated: true, DKIMDomains: []string{"datto.com"}, Header: "x; dkim=pass"}
	}
	authSub := func(a *message.Alert) { a.Auth = &message.AuthResults{DKIMDomains: []string{"mail.datto.com"}} }
	authFail := func(a *message.Alert) { a.Auth = &message.AuthResults{DKIMDomains: []string{"evil.example"}} }
	fromHeaderOnly := func(a *message.Alert) { a.MailFrom = ""; a.From = "Alerts@Axcient.NET" }
	tests := []struct {
		name   string
		cond   string // body of [rule.if]
		mutate func(*message.Alert)
		client string
		want   bool
		// anyHolds, for conditions with several keys: whether at least
		// one key holds, which is when [rule.except] skips the rule.
		anyHolds *bool
	}{
		// from: address, @domain, glob; header From or envelope sender.
		{"from address", `from = "alerts@axcient.net"`, nil, "", true, nil},
		{"from address case", `from = "ALERTS@Axcient.NET"`, nil, "", true, nil},
		{"from address other", `from = "other@axcient.net"`, nil, "", false, nil},
		{"from address envelope", `from = "bounce@mailer.axcient.net"`, nil, "", true, nil},
		{"from domain header", `from = "@axcient.net"`, nil, "", true, nil},
		{"from domain envelope", `from = "@mailer.axcient.net"`, nil, "", true, nil},
		{"from domain is exact", `from = "@mailer.axcient.net"`, noMailFrom, "", false, nil},
		{"from domain not a suffix", `from = "@net"`, nil, "", false, nil},
		{"from domain other", `from = "@example.com"`, nil, "", false, nil},
		{"from glob subdomain", `from = "*@*.axcient.net"`, nil, "", true, nil},
		{"from glob subdomain only", `from = "*@*.axcient.net"`, noMailFrom, "", false, nil},
		{"from glob question mark", `from = "alert?@axcient.net"`, nil, "", true, nil},
		{"from glob too short", `from = "alert?@axcient.ne"`, nil, "", false, nil},
		{"from list any", `from = ["x@y.example", "@axcient.net"]`, nil, "", true, nil},
		{"from header mixed case in message", `from = "alerts@axcient.net"`, fromHeaderOnly, "", true, nil},
		{"from nothing", `from = "*"`, func(a *message.Alert) { a.From, a.MailFrom = "", "" }, "", false, nil},
		// to: envelope recipients or To/Cc.
		{"to envelope", `to = "acme@alerts.example.net"`, nil, "", true, nil},
		{"to header domain", `to = "@acme.example"`, nil, "", true, nil},
		{"to envelope domain", `to = "@alerts.example.net"`, nil, "", true, nil},
		{"to glob miss", `to = "*@beta.*"`, nil, "", false, nil},
		{"to angle brackets", `to = "x@y.example"`, func(a *message.Alert) { a.RcptTo = []string{"<X@Y.example>"} }, "", true, nil},
		// sender_ip
		{"ip v4 cidr", `sender_ip = "10.0.0.0/8"`, nil, "", true, nil},
		{"ip v4 single", `sender_ip = "10.1.2.3"`, nil, "", true, nil},
		{"ip v4 miss", `sender_ip = ["192.168.0.0/16", "10.1.2.4"]`, nil, "", false, nil},
		{"ip v4 non-canonical cidr", `sender_ip = "10.9.9.9/8"`, nil, "", true, nil},
		{"ip v6 cidr", `sender_ip = "2001:db8::/32"`, v6, "", true, nil},
		{"ip v6 miss", `sender_ip = "2001:db9::/32"`, v6, "", false, nil},
		{"ip v6 single", `sender_ip = "2001:db8::5"`, v6, "", true, nil},
		// authenticated, dkim_domain (the result package auth sets)
		{"authenticated, none ran", `authenticated = true`, nil, "", false, nil},
		{"not authenticated, none ran", `authenticated = false`, nil, "", true, nil},
		{"authenticated", `authenticated = true`, authOK, "", true, nil},
		{"authenticated false", `authenticated = false`, authOK, "", false, nil},
		{"authenticated fail", `authenticated = true`, authFail, "", false, nil},
		{"dkim domain", `dkim_domain = "datto.com"`, authOK, "", true, nil},
		{"dkim domain parent", `dkim_domain = ["x.example", "@datto.com"]`, authSub, "", true, nil},
		{"dkim domain other", `dkim_domain = "datto.com"`, authFail, "", false, nil},
		{"dkim domain not a suffix", `dkim_domain = "to.com"`, authOK, "", false, nil},
		{"dkim domain none ran", `dkim_domain = "datto.com"`, nil, "", false, nil},
		{"ip v4-mapped peer", `sender_ip = "10.0.0.0/8"`, mapped, "", true, nil},
		{"ip v4 rule v6 peer", `sender_ip = "10.0.0.0/8"`, v6, "", false, nil},
		{"ip none", `sender_ip = "0.0.0.0/0"`, noRemote, "", false, nil},
		// subject
		{"subject contains", `subject_contains = "failed backup"`, nil, "", true, nil},
		{"subject contains any", `subject_contains = ["Connection:", "ACME-SRV"]`, nil, "", true, nil},
		{"subject contains miss", `subject_contains = "Connection:"`, nil, "", false, nil},
		{"subject matches", `subject_matches = 'Failed Backup: (ACME|BETA)-'`, nil, "", true, nil},
		{"subject matches case", `subject_matches = 'failed backup'`, nil, "", true, nil},
		{"subject matches anchored miss", `subject_matches = '^Failed'`, nil, "", false, nil},
		{"subject matches case-sensitive", `subject_matches = '(?-i)failed backup'`, nil, "", false, nil},
		// body
		{"body contains", `body_contains = "GENERATED AUTOMATICALLY"`, nil, "", true, nil},
		{"body contains miss", `body_contains = "veeam"`, nil, "", false, nil},
		{"body matches", `body_matches = 'backup of \S+ failed'`, nil, "", true, nil},
		{"body matches begin of text", `body_matches = '^The backup'`, nil, "", true, nil},
		{"body matches no multiline", `body_matches = '^This alert'`, nil, "", false, nil},
		{"body matches multiline flag", `body_matches = '(?m)^This alert'`, nil, "", true, nil},
		// header
		{"header", `header = { "X-Mailer" = ["x360recover"] }`, nil, "", true, nil},
		{"header lower-case key", `header = { "x-mailer" = "MAILER 2" }`, nil, "", true, nil},
		{"header miss", `header = { "X-Mailer" = ["veeam"] }`, nil, "", false, nil},
		{"header absent", `header = { "X-Missing" = ["a"] }`, nil, "", false, nil},
		{"header all must hold", `header = { "X-Mailer" = ["x360"], "X-Prio" = ["low"] }`, nil, "", false, &yes},
		{"header both hold", `header = { "X-Mailer" = ["x360"], "X-Prio" = ["low", "HIGH"] }`, nil, "", true, nil},
		// attachments
		{"has attachment", `has_attachment = true`, nil, "", true, nil},
		{"has attachment false", `has_attachment = false`, nil, "", false, nil},
		{"has no attachment", `has_attachment = false`, noAttach, "", true, nil},
		{"has attachment none", `has_attachment = true`, noAttach, "", false, nil},
		{"attachment name", `attachment_name_matches = '\.PNG$'`, nil, "", true, nil},
		{"attachment name miss", `attachment_name_matches = ['\.pdf$', '^boot']`, nil, "", false, nil},
		{"attachment name none", `attachment_name_matches = '.'`, noAttach, "", false, nil},
		// size (the message is 40000 bytes)
		{"size int", `size_over = 30000`, nil, "", true, nil},
		{"size int equal", `size_over = 40000`, nil, "", false, nil},
		{"size KB", `size_over = "39KB"`, nil, "", true, nil},
		{"size KiB", `size_over = "39KiB"`, nil, "", true, nil},
		{"size KiB over", `size_over = "40KiB"`, nil, "", false, nil},
		{"size decimal MB with space", `size_over = "0.03 MB"`, nil, "", true, nil},
		{"size 1.5 MB", `size_over = "1.5 MB"`, nil, "", false, nil},
		{"size bytes unit", `size_over = "39999 B"`, nil, "", true, nil},
		{"size lower-case unit", `size_over = "1mib"`, nil, "", false, nil},
		// client
		{"client", `client = ["acme", "beta"]`, nil, "acme", true, nil},
		{"client case", `client = "ACME"`, nil, "acme", true, nil},
		{"client other", `client = "beta"`, nil, "acme", false, nil},
		{"client none", `client = "acme"`, nil, "", false, nil},
		// several keys: all must hold
		{"all hold", "from = \"@axcient.net\"\nsubject_contains = \"failed\"\nhas_attachment = true", nil, "", true, nil},
		{"one fails", "from = \"@axcient.net\"\nsubject_contains = \"succeeded\"", nil, "", false, &yes},
		{"none holds", "from = \"@example.com\"\nsubject_contains = \"succeeded\"", nil, "", false, &no},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compileOne(t, "[[rule]]\nname = \"r\"\n[rule.if]\n"+tt.cond+"\n[rule.then]\naction = \"quarantine\"\n")
			a := testAlert()
			if tt.mutate != nil {
				tt.mutate(a)
			}
			d := checkConsistent(t, s, Input{Alert: a, Client: tt.client})
			if got := d.Rule != nil; got != tt.want {
				t.Fatalf("matched = %v, want %v", got, tt.want)
			}
			if tt.want && d.Action != ActionQuarantine {
				t.Errorf("action = %s", d.Action)
			}
			if !tt.want && (d.Action != ActionTicket || d.Rule != nil) {
				t.Errorf("no match should give the default ticket, got %s", describe(d))
			}
			// The same condition under [rule.except] skips the rule
			// exactly when it holds (any of its keys, when several).
			skip := tt.want
			if tt.anyHolds != nil {
				skip = *tt.anyHolds
			}
			s = compileOne(t, "[[rule]]\nname = \"r\"\n[rule.except]\n"+tt.cond+"\n[rule.then]\naction = \"quarantine\"\n")
			d = checkConsistent(t, s, Input{Alert: a, Client: tt.client})
			if got := d.Rule == nil; got != skip {
				t.Fatalf("under except: skipped = %v, want %v", got, skip)
			}
		})
	}
}

func TestUnicodeFolding(t *testing.T) {
	tests := []struct {
		name, subject, body, cond string
		want                      bool
	}{
		{"umlaut upper in text", "Sicherung BÜRO fehlgeschlagen", "", `subject_contains = "Büro"`, true},
		{"umlaut upper in rule", "Sicherung Büro fehlgeschlagen", "", `subject_contains = "BÜRO"`, true},
		{"sharp s in rule", "STRASSE 5 backup", "", `subject_contains = "straße"`, true},
		{"sharp s in text", "Straße 5 backup", "", `subject_contains = "STRASSE"`, true},
		{"capital sharp s", "GROẞE Datei", "", `subject_contains = "grosse"`, true},
		{"umlaut miss", "Sicherung Buero", "", `subject_contains = "Büro"`, false},
		{"kelvin sign", "5 \u212A over", "", `subject_contains = "5 k over"`, true},
		{"ascii rule non-ascii body", "", "Grüße — Backup FAILED on Server", `body_contains = "backup failed"`, true},
		{"non-ascii body miss", "", "Grüße — Backup OK", `body_contains = "backup failed"`, false},
		{"ligature", "", "see the oﬃce", `body_contains = "OFFICE"`, true},
		{"turkish dotted capital", "İSTANBUL yedekleme hatası", "", `subject_contains = "stanbul"`, true},
		{"turkish dotted both", "İstanbul", "", `subject_contains = "İSTANBUL"`, true},
		{"turkish dotless", "ıstanbul", "", `subject_contains = "istanbul"`, false},
		{"regex umlaut", "BÜRO down", "", `subject_matches = 'büro\s+down'`, true},
		{"regex turkish", "İSTANBUL", "", `subject_matches = 'i̇stanbul|İstanbul'`, true},
		{"regex non-ascii literal prefilter", "Dateiserver WÖCHENTLICH fehlgeschlagen", "", `subject_matches = 'wöchentlich\s+fehl'`, true},
		{"header umlaut", "", "", `header = { "X-Site" = ["BÜRO"] }`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compileOne(t, "[[rule]]\nname = \"r\"\n[rule.if]\n"+tt.cond+"\n[rule.then]\naction = \"quarantine\"\n")
			a := testAlert()
			a.Subject, a.Text = tt.subject, tt.body
			a.Header["x-site"] = []string{"Büro Nord"}
			d := checkConsistent(t, s, Input{Alert: a})
			if got := d.Rule != nil; got != tt.want {
				t.Fatalf("matched = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExceptions(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "connection lost"
[rule.if]
subject_contains = ["Connection:"]
[rule.except]
subject_contains = ["restored", "re-established"]
from = "@trusted.example"
[rule.then]
action = "drop"
`)
	tests := []struct {
		subject, from string
		outcome       string
	}{
		{"Connection: agent lost", "alerts@axcient.net", OutcomeMatched},
		{"Connection: agent restored", "alerts@axcient.net", OutcomeExcepted},
		{"Connection: RE-ESTABLISHED", "alerts@axcient.net", OutcomeExcepted},
		{"Connection: agent lost", "x@trusted.example", OutcomeExcepted}, // any except key skips
		{"Backup failed", "alerts@axcient.net", OutcomeNoMatch},
	}
	for _, tt := range tests {
		a := testAlert()
		a.Subject, a.From, a.MailFrom = tt.subject, tt.from, ""
		d := checkConsistent(t, s, Input{Alert: a})
		_, tr := s.Explain(Input{Alert: a})
		if tr[0].Outcome != tt.outcome {
			t.Errorf("%q from %s: outcome %s, want %s", tt.subject, tt.from, tr[0].Outcome, tt.outcome)
		}
		if (d.Action == ActionDrop) != (tt.outcome == OutcomeMatched) {
			t.Errorf("%q: action %s", tt.subject, d.Action)
		}
		if tt.outcome == OutcomeNoMatch {
			for _, c := range tr[0].Conds {
				if c.Section == "except" {
					t.Errorf("exceptions evaluated although the conditions failed: %+v", c)
				}
			}
		}
	}
}

func TestPriorityAndTies(t *testing.T) {
	a := []byte(`
[[rule]]
name = "a-default-priority"
[rule.then]
action = "ticket"

[[rule]]
name = "a-200"
priority = 200
[rule.then]
action = "note"

[[rule]]
name = "a-100-first"
priority = 100
[rule.extract]
device = 'on (\S+)'
[rule.then]
action = "close"

[[rule]]
name = "a-100-second"
priority = 100
[rule.then]
action = "quarantine"
`)
	b := []byte(`
[[rule]]
name = "b-100"
priority = 100
[rule.then]
action = "note"

[[rule]]
name = "b-999"
priority = 999
[rule.then]
action = "ticket"

[[rule]]
name = "b-negative"
priority = -5
mode = "audit"
[rule.then]
action = "ticket"
`)
	s, err := Compile([]File{{"a.toml", a}, {"b.toml", b}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b-negative", "a-100-first", "a-100-second", "b-100", "a-200", "b-999", "a-default-priority"}
	if got := ruleNames(s.Rules()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v, want %v", got, want)
	}
	d := checkConsistent(t, s, Input{Alert: testAlert()})
	if d.Rule.Name != "a-100-first" {
		t.Errorf("decided by %s", describe(d))
	}
	// Ties follow the order the files are given in, not their names.
	s, err = Compile([]File{{"b.toml", b}, {"a.toml", a}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"b-negative", "b-100", "a-100-first", "a-100-second", "a-200", "b-999", "a-default-priority"}
	if got := ruleNames(s.Rules()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v, want %v", got, want)
	}
	if r := s.Rules()[0]; r.File != "b.toml" || r.Line != 14 || r.Priority != -5 || r.Mode != ModeAudit {
		t.Errorf("rule fields: %+v", r)
	}
	if r := s.Rules()[6]; r.Priority != DefaultPriority || !r.Stop || r.Mode != ModeEnforce {
		t.Errorf("defaults: %+v", r)
	}
}

func TestStopFalseChain(t *testing.T) {
	src := `
[[rule]]
name = "tag device"
priority = 1
stop = false
[rule.if]
from = "@axcient.net"
[rule.extract]
device = 'Backup: (?P<device>[\w.-]+)'
appliance = '^\[([\w.-]+)\]'
[rule.then]
action = "ticket"
summary = "{device} on {appliance}"

[[rule]]
name = "tag result"
priority = 2
stop = false
[rule.if]
subject_contains = "backup"
[rule.extract]
result = '(?P<result>Failed|Succeeded)'
appliance = 'The backup of (?P<appliance>[\w-]+)'
[rule.then]
action = "note"
note = "{result} {device}"

[[rule]]
name = "decide"
priority = 3
[rule.if]
subject_contains = "failed"
[rule.except]
header = { "X-Prio" = "low" }
[rule.then]
action = "close"
note = "{device}/{result}/{appliance}"

[[rule]]
name = "never reached"
priority = 4
[rule.then]
action = "drop"
[rule.if]
subject_contains = "failed"
[rule.except]
header = { "X-Prio" = "low" }
`
	s := compileOne(t, src)
	a := testAlert()
	d := checkConsistent(t, s, Input{Alert: a})
	if d.Rule == nil || d.Rule.Name != "decide" || d.Action != ActionClose {
		t.Fatalf("decision %s", describe(d))
	}
	if got := strings.Join(ruleNames(d.Matched), ","); got != "tag device,tag result,decide" {
		t.Errorf("matched %s", got)
	}
	// appliance: the later rule's value wins.
	want := map[string]string{"device": "ACME-SRV-PAY", "result": "Failed", "appliance": "ACME-SRV-PAY"}
	for k, v := range want {
		if d.Fields[k] != v {
			t.Errorf("field %s = %q, want %q (all %v)", k, d.Fields[k], v, d.Fields)
		}
	}
	if got := d.Then.Note.Render(d.Vars(a, "acme")); got != "ACME-SRV-PAY/Failed/ACME-SRV-PAY" {
		t.Errorf("note renders %q", got)
	}
	_, tr := s.Explain(Input{Alert: a})
	if tr[2].Outcome != OutcomeMatched || !tr[2].Decided || tr[0].Decided || tr[3].Outcome != OutcomeNotReached {
		t.Errorf("trace %+v", tr)
	}

	// When the last rule is skipped, the last provisional decision stands.
	a.Header["x-prio"] = []string{"LOW"}
	d = checkConsistent(t, s, Input{Alert: a})
	if d.Rule == nil || d.Rule.Name != "tag result" || d.Action != ActionNote {
		t.Fatalf("decision %s", describe(d))
	}
	if d.Fields["device"] != "ACME-SRV-PAY" || d.Fields["result"] != "Failed" {
		t.Errorf("fields %v", d.Fields)
	}
}

func TestAuditMode(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "audit drop"
priority = 1
mode = "audit"
[rule.if]
subject_contains = "failed"
[rule.then]
action = "drop"

[[rule]]
name = "audit chain"
priority = 2
mode = "audit"
stop = false
[rule.if]
subject_contains = "failed"
[rule.extract]
secret = 'Backup: (\S+)'
[rule.then]
action = "reject"

[[rule]]
name = "ticket"
priority = 3
[rule.if]
subject_contains = "backup"
[rule.then]
action = "ticket"
`)
	a := testAlert()
	d := checkConsistent(t, s, Input{Alert: a})
	if d.Rule == nil || d.Rule.Name != "ticket" || d.Action != ActionTicket {
		t.Fatalf("decision %s", describe(d))
	}
	if got := strings.Join(ruleNames(d.Audit), ","); got != "audit drop,audit chain" {
		t.Errorf("audit %s", got)
	}
	if len(d.Fields) != 0 {
		t.Errorf("an audit rule's fields were kept: %v", d.Fields)
	}
	if got := strings.Join(ruleNames(d.Matched), ","); got != "ticket" {
		t.Errorf("matched %s", got)
	}
	_, tr := s.Explain(Input{Alert: a})
	if tr[0].Outcome != OutcomeAuditMatch || tr[1].Outcome != OutcomeAuditMatch || tr[2].Outcome != OutcomeMatched {
		t.Errorf("outcomes %s %s %s", tr[0].Outcome, tr[1].Outcome, tr[2].Outcome)
	}
	// Only audit rules match: the default applies, the audit is listed.
	a.Subject = "Failed"
	d = checkConsistent(t, s, Input{Alert: a})
	if d.Rule != nil || d.Action != ActionTicket || len(d.Audit) != 2 {
		t.Errorf("decision %s audit %v", describe(d), ruleNames(d.Audit))
	}
}

func TestDefaultAction(t *testing.T) {
	src := "[[rule]]\nname = \"r\"\n[rule.if]\nsubject_contains = \"nothing like this\"\n[rule.then]\naction = \"drop\"\n"
	s := compileOne(t, src)
	a := testAlert()
	d := checkConsistent(t, s, Input{Alert: a})
	if d.Rule != nil || d.Action != ActionTicket || d.Then == nil || d.Then.Key != nil || d.Then.Repeat != RepeatNote {
		t.Fatalf("default decision %s %+v", describe(d), d.Then)
	}
	if got := d.Then.Summary.Render(d.Vars(a, "")); got != a.Subject {
		t.Errorf("default summary %q", got)
	}
	if d.Fields == nil || len(d.Matched) != 0 {
		t.Errorf("fields %v matched %v", d.Fields, d.Matched)
	}
	for _, act := range []Action{ActionQuarantine, ActionDrop} {
		s, err := Compile([]File{{"t.toml", []byte(src)}}, Options{DefaultAction: act})
		if err != nil {
			t.Fatal(err)
		}
		if d := s.Evaluate(Input{Alert: a}); d.Action != act || d.Rule != nil || d.Then.Action != act {
			t.Errorf("default %s gave %s", act, describe(d))
		}
	}
	if s := compileOne(t, ""); s.Evaluate(Input{}).Action != ActionTicket {
		t.Error("an empty rule set with a nil alert should ticket")
	}
}

func TestExtract(t *testing.T) {
	tests := []struct {
		name, extract string
		mutate        func(*message.Alert)
		want          map[string]string
	}{
		{"named group", `device = 'Backup: (?P<device>[\w.-]+)'`, nil, map[string]string{"device": "ACME-SRV-PAY"}},
		{"several named groups", `x = '^\[(?P<appliance>[\w-]+)\] (?P<result>\w+)'`, nil, map[string]string{"appliance": "ACME-BDR1", "result": "Failed"}},
		{"first group", `appliance = '^\[([\w-]+)\]'`, nil, map[string]string{"appliance": "ACME-BDR1"}},
		{"whole match", `system = 'acme-srv-\w+'`, nil, map[string]string{"system": "ACME-SRV-PAY"}},
		{"body when subject misses", `what = 'generated (\w+) by'`, nil, map[string]string{"what": "automatically"}},
		{"subject first", `device = '(?P<device>ACME-SRV-\w+)'`, func(a *message.Alert) { a.Text = "ACME-SRV-BODY" }, map[string]string{"device": "ACME-SRV-PAY"}},
		{"no match", `device = 'Agent (?P<device>\S+)'`, nil, map[string]string{}},
		{"optional group unset", `device = 'Backup: (?P<device>X+)?'`, nil, map[string]string{}},
		{"made one line", `text = '(?s)of (.+)\.'`, nil, map[string]string{"text": "ACME-SRV-PAY failed. This alert was generated automatically by x360Recover"}},
		{"trimmed", `device = 'Backup:(?P<device>\s+\S+)'`, nil, map[string]string{"device": "ACME-SRV-PAY"}},
		{"control characters removed", `device = 'Backup: (?P<device>.+)'`, func(a *message.Alert) { a.Subject = "Backup: PC\x1b[31m-1\u202e" }, map[string]string{"device": "PC[31m-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compileOne(t, "[[rule]]\nname = \"r\"\n[rule.extract]\n"+tt.extract+"\n[rule.then]\naction = \"ticket\"\n")
			a := testAlert()
			if tt.mutate != nil {
				tt.mutate(a)
			}
			d := checkConsistent(t, s, Input{Alert: a})
			if len(d.Fields) != len(tt.want) {
				t.Fatalf("fields %v, want %v", d.Fields, tt.want)
			}
			for k, v := range tt.want {
				if d.Fields[k] != v {
					t.Errorf("%s = %q, want %q", k, d.Fields[k], v)
				}
			}
		})
	}
	if got := compileOne(t, "[[rule]]\nname = \"r\"\n[rule.extract]\nx = '(?P<b>.)(?P<a>.)'\ny = '(z)'\n[rule.then]\naction = \"ticket\"\n").Rules()[0].Fields; strings.Join(got, ",") != "a,b,y" {
		t.Errorf("Rule.Fields = %v", got)
	}
}

func TestVarsAndThenDefaults(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "x360 backup"
[rule.extract]
device = 'Backup: (?P<device>\S+)'
[rule.then]
action = "ticket"
priority = "Priority 2 - Quick Response"
[rule.then.psa]
autotask.priority = 2
autotask.company_id = 174
connectwise.board = "Vault Alerts"
`)
	a := testAlert()
	d := checkConsistent(t, s, Input{Alert: a, Client: "acme"})
	th := d.Then
	if th.Check != "x360 backup" || th.Repeat != RepeatNote || th.Text != "" || th.Description != nil || th.Note != nil {
		t.Errorf("defaults %+v", th)
	}
	wantPSA := map[string]string{"connectwise.priority": "Priority 2 - Quick Response", "autotask.priority": "2",
		"autotask.company_id": "174", "connectwise.board": "Vault Alerts"}
	if len(th.PSA) != len(wantPSA) {
		t.Errorf("psa %v", th.PSA)
	}
	for k, v := range wantPSA {
		if th.PSA[k] != v {
			t.Errorf("psa %s = %q, want %q", k, th.PSA[k], v)
		}
	}
	v := d.Vars(a, "acme")
	want := map[string]string{
		"client": "acme", "device": "ACME-SRV-PAY", "check": "x360 backup", "rule": "x360 backup",
		"subject": a.Subject, "from": "alerts@axcient.net", "from_name": "x360Recover", "to": "acme@alerts.example.net",
		"sender_ip": "10.1.2.3", "date": "2025-02-11T09:00:00+01:00", "message_id": "abc123@axcient.net",
		"size": "40000", "body": a.Text,
	}
	for _, k := range Builtins {
		if _, ok := v[k]; !ok {
			t.Errorf("Vars lacks built-in %s", k)
		}
	}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("Vars[%s] = %q, want %q", k, v[k], w)
		}
	}
	if got := th.Key.Render(v); got != "acme/ACME-SRV-PAY/x360 backup" {
		t.Errorf("default key %q", got)
	}
	if got := th.Summary.Render(v); got != a.Subject {
		t.Errorf("default summary %q", got)
	}
	// Date falls back to the time received; from to the envelope sender.
	a.Date, a.From, a.RemoteIP, a.RcptTo = time.Time{}, "", netip.Addr{}, nil
	v = d.Vars(a, "")
	for k, w := range map[string]string{"date": "2025-02-11T08:00:05Z", "from": "bounce@mailer.axcient.net", "sender_ip": "", "to": "it@acme.example", "client": ""} {
		if v[k] != w {
			t.Errorf("fallback Vars[%s] = %q, want %q", k, v[k], w)
		}
	}
}

func TestThenValues(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "open"
[rule.if]
subject_contains = "failed"
[rule.then]
action = "ticket"
key = "{client}/{device}/backup"
check = "backup"
summary = "{device}: failed"
description = "Details: {body}"
note = "Again: {subject}"
delay = "15m"
repeat = "new"
reopen = "2d"
expect = "26h"
attach = true

[[rule]]
name = "go away"
[rule.if]
from = "@spam.example"
[rule.then]
action = "reject"
text = "550 is not for you"

[[rule]]
name = "bounce default"
[rule.if]
from = "@spam2.example"
[rule.then]
action = "reject"
`)
	rs := s.Rules()
	th := rs[0].Then
	if th.Action != ActionTicket || th.Key.String() != "{client}/{device}/backup" || th.Check != "backup" ||
		th.Summary.String() != "{device}: failed" || th.Description.String() != "Details: {body}" || th.Note.String() != "Again: {subject}" ||
		th.Delay != 15*time.Minute || th.Repeat != RepeatNew || th.Reopen != 48*time.Hour || th.Expect != 26*time.Hour || !th.Attach || th.PSA != nil {
		t.Errorf("ticket then %+v", th)
	}
	if th := rs[1].Then; th.Text != "550 is not for you" || th.Repeat != "" {
		t.Errorf("reject then %+v", th)
	}
	if th := rs[2].Then; th.Text != "Rejected by rule bounce default" {
		t.Errorf("default reject text %q", th.Text)
	}
	if s.DefaultThen().Action != ActionTicket {
		t.Errorf("default then %+v", s.DefaultThen())
	}
	var nilSet *Set
	if nilSet.Rules() != nil {
		t.Error("nil set has rules")
	}
}
