package app

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"psagate/internal/auth/dnstest"
	"psagate/internal/store"
	"psagate/internal/testutil"
)

const dattoRules = `
[[rule]]
name = "datto backup failed"
[rule.if]
from = "@datto.com"
subject_contains = "Backup failed"
[rule.extract]
device = 'Backup failed: (?P<device>[\w-]+)'
[rule.then]
action = "ticket"
key = "{client}/{device}/backup"
summary = "{device}: backup failed"

[[rule]]
name = "datto backup succeeded"
[rule.if]
from = "@datto.com"
subject_contains = "Backup succeeded"
[rule.extract]
device = 'Backup succeeded: (?P<device>[\w-]+)'
[rule.then]
action = "close"
key = "{client}/{device}/backup"
`

func dattoMail(id, subject string) []byte {
	return []byte("From: Datto Alerts <alerts@datto.com>\r\nTo: acme@alerts.example.net\r\n" +
		"Subject: " + subject + "\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\nMessage-ID: <" + id + "@datto.com>\r\n\r\n" +
		"Datto BCDR alert.\r\n" + subject + "\r\n")
}

// TestRequireAuthQuarantinesForgedRecovery: a client pins datto.com with
// require_auth. A DKIM-signed failure from Datto opens a ticket; recoveries
// that claim Datto but whose body was changed after signing, that are
// signed by another domain, or that are unsigned are quarantined and close
// nothing; the genuine signed recovery closes the ticket. Mail goes over
// SMTP from 127.0.0.1, which Datto's SPF does not list, so only DKIM can
// pass; the DNS is an in-process stub.
func TestRequireAuthQuarantinesForgedRecovery(t *testing.T) {
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	datto := dnstest.NewSigner("datto.com", "bcdr")
	datto.Publish(dns)
	other := dnstest.NewSigner("mailer.example", "s")
	other.Publish(dns)
	dns.TXT("datto.com", "v=spf1 ip4:192.0.2.0/24 -all")
	dns.TXT("_dmarc.datto.com", "v=DMARC1; p=reject")

	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	os.Mkdir(rulesDir, 0o700)
	if err := os.WriteFile(filepath.Join(rulesDir, "datto.toml"), []byte(dattoRules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
[smtp]
listen = "127.0.0.1:0"
hostname = "psagate.test"
accept_domains = ["alerts.example.net"]
[state]
path = %q
[http]
listen = ""
[rules]
dir = %q
[log]
level = "warn"
[auth]
dns = %q
timeout = "500ms"
[psa]
provider = "log"
[[client]]
name = "acme"
recipients = ["acme@alerts.example.net"]
require_auth = ["datto.com"]
`, filepath.Join(dir, "state.db"), rulesDir, dns.Addr)
	path := filepath.Join(dir, "psagate.toml")
	os.WriteFile(path, []byte(cfg), 0o600)
	h := startApp(t, path, Options{})

	send := func(raw []byte) string {
		t.Helper()
		reply := testutil.SendMail(t, h.app.SMTPAddr(), "bounce@datto.com", []string{"acme@alerts.example.net"}, raw)
		id := testutil.QueuedID(reply)
		if id == "" {
			t.Fatalf("reply %q", reply)
		}
		waitFor(t, "the message processed", 5*time.Second, func() bool { return idle(h.app.DB) })
		return id
	}
	audit := func(id string) *store.AuditEntry {
		t.Helper()
		var got *store.AuditEntry
		h.app.DB.View(func(tx *store.Tx) error {
			return tx.Audit(func(e *store.AuditEntry) bool {
				if e.Message == id {
					got = e
					return false
				}
				return true
			})
		})
		if got == nil {
			t.Fatalf("no audit entry for %s", id)
		}
		return got
	}
	openIncidents := func() int {
		var n int
		h.app.DB.View(func(tx *store.Tx) error {
			open, err := tx.OpenIncidents()
			n = len(open)
			return err
		})
		return n
	}
	ops := func() string {
		var s []string
		for _, l := range logLines(t, h.out) {
			s = append(s, l.Op)
		}
		return strings.Join(s, ",")
	}

	id := send(datto.Sign(dattoMail("f1", "Backup failed: ACME-SRV01")))
	if e := audit(id); e.Decision != "ticket" || !strings.Contains(e.Auth, "dkim=pass header.d=datto.com") || !strings.Contains(e.Auth, "dmarc=pass") {
		t.Fatalf("signed failure: decision %q auth %q", e.Decision, e.Auth)
	}
	if openIncidents() != 1 {
		t.Fatal("the signed failure opened no incident")
	}

	recovery := dattoMail("r1", "Backup succeeded: ACME-SRV01")
	signed := datto.Sign(recovery)
	forged := []struct {
		name string
		raw  []byte
		auth string
	}{
		{"body changed", bytes.Replace(signed, []byte("Datto BCDR alert."), []byte("Datto BCDR alert!"), 1), "dkim=fail header.d=datto.com"},
		{"signed by another domain", other.Sign(dattoMail("r2", "Backup succeeded: ACME-SRV01")), "dkim=pass header.d=mailer.example"},
		{"unsigned", dattoMail("r3", "Backup succeeded: ACME-SRV01"), "dkim=none"},
	}
	for _, f := range forged {
		id := send(f.raw)
		e := audit(id)
		if e.Decision != "quarantine" || e.Rule != "(sender authentication)" || !strings.Contains(e.Auth, f.auth) || !strings.Contains(e.Auth, "spf=fail") {
			t.Errorf("%s: decision %q rule %q auth %q detail %q", f.name, e.Decision, e.Rule, e.Auth, e.Detail)
		}
		if openIncidents() != 1 {
			t.Fatalf("%s closed the incident", f.name)
		}
	}
	if got := ops(); got != "create" {
		t.Fatalf("PSA calls after the forgeries: %q, want only the create", got)
	}

	id = send(signed)
	if e := audit(id); e.Decision != "close" {
		t.Fatalf("genuine recovery: decision %q rule %q detail %q", e.Decision, e.Rule, e.Detail)
	}
	waitFor(t, "the close delivered", 5*time.Second, func() bool { return strings.Contains(ops(), "close") })
	if openIncidents() != 0 {
		t.Error("the genuine recovery left the incident open")
	}
}
