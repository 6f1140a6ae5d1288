package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"psagate/internal/message"
)

// benchRules writes 1,000 rules in 10 files: 100 vendors with 10 rules
// each, in the mix real packs have: sender + subject words, subject
// expressions, body words, body expressions, globs, headers, networks,
// sizes and exceptions. Vendor n's rules run at priority 100+n.
func benchRules() []File {
	var files []File
	for f := range 10 {
		var b strings.Builder
		for v := f * 10; v < f*10+10; v++ {
			p := 100 + v
			fmt.Fprintf(&b, `
[[rule]]
name = "v%02[1]d backup failed"
priority = %[2]d
[rule.if]
from = ["@vend%02[1]d.example", "alerts@vend%02[1]d-cloud.example"]
subject_contains = ["Backup failed", "Failed Backup"]
[rule.extract]
device = '(?:Failed Backup|Backup failed):\s*(?P<device>[\w.-]+)'
appliance = '^\[(?P<appliance>[\w.-]+)\]'
[rule.then]
action = "ticket"
check = "backup"
summary = "{device}: backup failed on {appliance}"
reopen = "24h"

[[rule]]
name = "v%02[1]d backup succeeded"
priority = %[2]d
[rule.if]
from = "@vend%02[1]d.example"
subject_contains = ["Backup succeeded", "Successful Backup"]
[rule.extract]
device = 'Backup:\s*(?P<device>[\w.-]+)'
[rule.then]
action = "close"
check = "backup"

[[rule]]
name = "v%02[1]d job result"
priority = %[2]d
[rule.if]
subject_matches = ['^\[(Failed|Warning|Error)\]\s+Prod%02[1]d job .+\(\d+\s+(VMs?|objects?)\)']
[rule.then]
action = "ticket"

[[rule]]
name = "v%02[1]d agent offline"
priority = %[2]d
[rule.if]
subject_contains = ["Connection:", "connection lost"]
body_contains = ["Prod%02[1]d agent"]
[rule.except]
subject_contains = ["restored", "re-established"]
[rule.then]
action = "ticket"
delay = "30m"
repeat = "ignore"

[[rule]]
name = "v%02[1]d job failed in body"
priority = %[2]d
[rule.if]
from = "*@*.vend%02[1]d.example"
body_matches = ['Prod%02[1]d .* job (\w+) failed']
[rule.then]
action = "ticket"

[[rule]]
name = "v%02[1]d mailer"
priority = %[2]d
[rule.if]
from = "@vend%02[1]d.example"
header = { "X-Mailer" = ["Prod%02[1]d Notifier"] }
[rule.then]
action = "note"

[[rule]]
name = "v%02[1]d disk space"
priority = %[2]d
[rule.if]
sender_ip = ["10.%[1]d.0.0/16", "2001:db8:%[1]x::/48"]
subject_contains = ["disk space", "low space"]
[rule.then]
action = "ticket"

[[rule]]
name = "v%02[1]d storage"
priority = %[2]d
[rule.if]
subject_contains = ["storage", "volume"]
body_contains = ["Prod%02[1]d"]
[rule.except]
body_contains = ["test message"]
[rule.then]
action = "ticket"

[[rule]]
name = "v%02[1]d big reports"
priority = %[2]d
[rule.if]
from = "reports@vend%02[1]d.example"
size_over = "5MB"
[rule.then]
action = "drop"

[[rule]]
name = "v%02[1]d appliance status"
priority = %[2]d
[rule.if]
body_contains = ["Prod%02[1]d appliance"]
body_matches = ['(?m)^Status:\s+(Failed|Error)\s+on\s+Prod%02[1]d']
[rule.then]
action = "ticket"
`, v, p)
		}
		files = append(files, File{Name: fmt.Sprintf("rules/%02d.toml", f), Data: []byte(b.String())})
	}
	return files
}

// benchAlert is a typical decoded alert of vendor 90 (so 900 rules run
// before the one that matches), with a 3 KB body.
func benchAlert() *message.Alert {
	var body strings.Builder
	body.WriteString("Prod90 appliance ACME-BDR1 reports a problem.\n\nStatus:   Failed\nProtected system: ACME-SRV-PAY\n")
	for i := range 30 {
		fmt.Fprintf(&body, "2025-02-11 08:%02d:00 Volume C: snapshot %d of the incremental chain transferred (%d MB)\n", i, i, 100+i)
	}
	body.WriteString("\nThis alert was generated automatically. Do not reply to this message.\n")
	return &message.Alert{
		Envelope: message.Envelope{
			MailFrom: "bounce-123@mailer.vend90.example",
			RcptTo:   []string{"acme@alerts.example.net"},
			RemoteIP: netip.MustParseAddr("192.0.2.44"),
			Received: time.Date(2025, 2, 11, 8, 31, 0, 0, time.UTC),
		},
		From:      "alerts@vend90.example",
		FromName:  "Prod90 Notifier",
		To:        []string{"acme@alerts.example.net"},
		Subject:   "[ACME-BDR1] Failed Backup: ACME-SRV-PAY",
		MessageID: "20250211083100.1234@vend90.example",
		Header:    map[string][]string{"x-mailer": {"Prod90 Notifier 7.2"}, "content-type": {"text/plain; charset=utf-8"}},
		Text:      body.String(),
		Size:      5210,
	}
}

func benchEvaluate(b *testing.B, a *message.Alert, want string) {
	s, err := Compile(benchRules(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	if n := len(s.Rules()); n != 1000 {
		b.Fatalf("%d rules", n)
	}
	// Only the body-only rules lack a gate (index.go); fewer gated rules
	// would mean the index stopped working.
	if s.gated != 900 {
		b.Fatalf("%d of 1000 rules gated, want 900", s.gated)
	}
	in := Input{Alert: a, Client: "acme"}
	d := checkConsistent(b, s, in)
	got := "(default)"
	if d.Rule != nil {
		got = d.Rule.Name
	}
	if got != want {
		b.Fatalf("decided by %s, want %s", describe(d), want)
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		s.Evaluate(in)
	}
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "alerts/cpu-s")
	}
}

// BenchmarkEvaluate1000Rules: a typical alert against 1,000 rules, decided
// by a rule at position ~900. Run with -cpu 1; the target is ≤ 50 µs/op.
func BenchmarkEvaluate1000Rules(b *testing.B) {
	benchEvaluate(b, benchAlert(), "v90 backup failed")
}

// BenchmarkEvaluate1000RulesNoMatch: an alert of an unknown vendor runs
// through all 1,000 rules and gets the default action.
func BenchmarkEvaluate1000RulesNoMatch(b *testing.B) {
	a := benchAlert()
	a.From, a.MailFrom = "noreply@unknown.example", ""
	a.Text = strings.ReplaceAll(a.Text, "Prod90", "Other")
	benchEvaluate(b, a, "(default)")
}

// BenchmarkEvaluate1000RulesUnicode: the same with a non-ASCII subject and
// body, which must be case-folded before the scan.
func BenchmarkEvaluate1000RulesUnicode(b *testing.B) {
	a := benchAlert()
	a.Subject = "[BÜRO-BDR1] Failed Backup: DATEISERVER-GRÜN"
	a.Text = "Grüße aus dem Büro.\n" + a.Text
	benchEvaluate(b, a, "v90 backup failed")
}
