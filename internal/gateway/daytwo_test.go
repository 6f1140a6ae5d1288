package gateway

import (
	"testing"

	"psagate/internal/config"
	"psagate/internal/message"
	"psagate/internal/rules"
)

// TestAfterManualClosePrecedence: a rule's after_manual_close wins over the
// client's, which wins over [incidents]; it travels with the rule's PSA
// settings so the engine resolves it like auto_close.
func TestAfterManualClosePrecedence(t *testing.T) {
	cfg, err := config.Parse("t.toml", []byte(`[smtp]
accept_domains = ["alerts.example.net"]
[incidents]
after_manual_close = "reopen"
[[client]]
name = "acme"
recipients = ["acme@alerts.example.net"]
[client.psa]
after_manual_close = "new"
[[client]]
name = "beta"
recipients = ["beta@alerts.example.net"]
`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile([]rules.File{{Name: "t.toml", Data: []byte(`
[[rule]]
name = "vault"
[rule.if]
subject_contains = ["Vault"]
[rule.then]
action = "ticket"
after_manual_close = "reopen"

[[rule]]
name = "other"
[rule.if]
subject_contains = ["Other"]
[rule.then]
action = "ticket"
`)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSnapshot(cfg, rs)
	for _, tc := range []struct{ rcpt, subject, want string }{
		{"acme@alerts.example.net", "Vault down", "reopen"}, // the rule over the client
		{"acme@alerts.example.net", "Other down", "new"},    // the client over [incidents]
		{"beta@alerts.example.net", "Other down", "reopen"}, // [incidents]
	} {
		raw := []byte("From: x@y.example\r\nTo: " + tc.rcpt + "\r\nSubject: " + tc.subject + "\r\n\r\nbody\r\n")
		v, _, _ := s.Decide("id", raw, message.Envelope{MailFrom: "x@y.example", RcptTo: []string{tc.rcpt}})
		if got := s.Router.Effective(v.Client, v.Device, v.Overrides).Get("after_manual_close"); got != tc.want {
			t.Errorf("%s / %q: after_manual_close = %q, want %q", tc.rcpt, tc.subject, got, tc.want)
		}
	}
}
