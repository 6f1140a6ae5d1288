package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"psagate/internal/incident"
	atfake "psagate/internal/psa/autotask/fake"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/store"
	"psagate/internal/testutil"
)

// bdrFailure is an x360Recover backup failure for device dev; n makes
// each copy a distinct message (not an SMTP retry).
func bdrFailure(dev string, n int) []byte {
	return []byte(fmt.Sprintf("From: bdr@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [BDR] Failed Backup: %s\r\n"+
		"Message-ID: <%s-%d@x>\r\n\r\nx360Recover alert from appliance BDR, attempt %d\r\n", dev, dev, n, n))
}

func sendFailure(t *testing.T, h *harness, dev string, n int) {
	t.Helper()
	if r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, bdrFailure(dev, n)); !strings.HasPrefix(r, "250") {
		t.Fatal(r)
	}
	waitFor(t, "delivery", 20*time.Second, func() bool { return idle(h.app.DB) })
	q, err := ReadQueue(h.app.DB)
	if err != nil || len(q.Dead) > 0 {
		t.Fatalf("dead letters: %+v (%v)", q.Dead, err)
	}
}

func auditHas(t *testing.T, h *harness, effect incident.Effect) *store.AuditEntry {
	t.Helper()
	es, err := ReadAudit(h.app.DB, AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Effect == string(effect) {
			return e
		}
	}
	t.Fatalf("no audit entry with effect %q", effect)
	return nil
}

// psaUnderTest is one fake PSA as the closed-by-a-technician test needs it.
type psaUnderTest struct {
	name    string
	start   func(t *testing.T) (section string, tickets func() []ticket, closeFirst func())
	notesOf func(ticket) int
}

var bothPSAs = []psaUnderTest{
	{name: "connectwise", start: func(t *testing.T) (string, func() []ticket, func()) {
		fk := cwfake.Start(cwfake.DefaultConfig())
		t.Cleanup(fk.Close)
		s := fk.Settings()
		s["connectwise.company"] = "PVC01"
		return psaTOML("psa", s), func() []ticket { return cwTickets(fk) }, func() {
			if !fk.CloseAsTechnician(fk.Tickets()[0].ID, "jsmith") {
				t.Fatal("no ticket to close")
			}
		}
	}},
	{name: "autotask", start: func(t *testing.T) (string, func() []ticket, func()) {
		fk := atfake.Start(atfake.DefaultConfig())
		t.Cleanup(fk.Close)
		return psaTOML("psa", fk.Settings()) + "[deliver.autotask]\nrate_per_minute = 100000\n", func() []ticket { return atTickets(fk) }, func() {
			if !fk.CompleteAsTechnician(fk.Tickets()[0].ID) {
				t.Fatal("no ticket to complete")
			}
		}
	}},
}

// TestTicketClosedByTechnician: a ticket closed in the PSA by a technician
// is never written to again; the next failure opens a new ticket
// (after_manual_close = "new") or reopens it ("reopen"), found either
// before the repeat's note or by the periodic reconciliation.
func TestTicketClosedByTechnician(t *testing.T) {
	for _, p := range bothPSAs {
		for _, policy := range []string{"new", "reopen"} {
			for _, found := range []string{"note", "reconcile"} {
				t.Run(p.name+"/"+policy+"/"+found, func(t *testing.T) {
					section, tickets, closeFirst := p.start(t)
					cfg := withPSA(t, t.TempDir(), section, "[incidents]\nafter_manual_close = \""+policy+"\"\n")
					h := startApp(t, cfg, Options{})
					sendFailure(t, h, "PVC-SRV-1", 1)
					before := tickets()
					if len(before) != 1 || before[0].Closed {
						t.Fatalf("after the first failure: %+v", before)
					}
					closeFirst()
					if found == "reconcile" {
						checked, ended, err := h.app.Deliverer.Reconcile(context.Background(), 0, 10)
						if err != nil || checked != 1 || ended != 1 {
							t.Fatalf("Reconcile = %d checked, %d ended, %v", checked, ended, err)
						}
						incs, _ := ReadIncidents(h.app.DB, false, 10)
						if len(incs) != 1 || incs[0].State != store.StateClosedInPSA {
							t.Fatalf("incident after reconcile: %+v", incs[0])
						}
					}
					sendFailure(t, h, "PVC-SRV-1", 2)
					auditHas(t, h, incident.EffectClosedInPSA)
					got := tickets()
					switch policy {
					case "new":
						if len(got) != 2 {
							t.Fatalf("%d tickets, want the closed one and a new one: %+v", len(got), got)
						}
						if !got[0].Closed || got[0].Notes != before[0].Notes {
							t.Errorf("the closed ticket was written to: %+v (before %+v)", got[0], before[0])
						}
						if got[1].Closed || !strings.Contains(got[1].Summary, "PVC-SRV-1") {
							t.Errorf("new ticket: %+v", got[1])
						}
					case "reopen":
						if len(got) != 1 || got[0].Closed || got[0].Notes != before[0].Notes+1 {
							t.Fatalf("want the ticket reopened with one note: %+v (before %+v)", got, before)
						}
					}
					// The incident now follows the live ticket: a further
					// repeat is a note on it.
					sendFailure(t, h, "PVC-SRV-1", 3)
					last := tickets()[len(tickets())-1]
					if last.Closed {
						t.Fatalf("live ticket closed: %+v", last)
					}
				})
			}
		}
	}
}

// TestReenabledClientE2E: a failure while the client is disabled makes no
// PSA call; after the client is enabled again (config reload), the next
// failure opens the ticket.
func TestReenabledClientE2E(t *testing.T) {
	fk := cwfake.Start(cwfake.DefaultConfig())
	defer fk.Close()
	s := fk.Settings()
	s["connectwise.company"] = "PVC01"
	cfg := withPSA(t, t.TempDir(), psaTOML("psa", s), "")
	data := strings.Replace(string(readAll(t, cfg)), "name = \"pinecrest\"\n", "name = \"pinecrest\"\nenabled = false\n", 1)
	if err := writeFile(cfg, data); err != nil {
		t.Fatal(err)
	}
	h := startApp(t, cfg, Options{})
	sendFailure(t, h, "PVC-SRV-2", 1)
	sendFailure(t, h, "PVC-SRV-2", 2)
	if n := len(fk.Tickets()); n != 0 {
		t.Fatalf("%d tickets while the client is disabled", n)
	}
	if err := writeFile(cfg, strings.Replace(data, "enabled = false\n", "", 1)); err != nil {
		t.Fatal(err)
	}
	if err := h.app.Reload(); err != nil {
		t.Fatal(err)
	}
	sendFailure(t, h, "PVC-SRV-2", 3)
	tk := fk.Tickets()
	if len(tk) != 1 || !strings.Contains(tk[0].Summary, "PVC-SRV-2") {
		t.Fatalf("after re-enabling: %+v", tk)
	}
}

// TestEscalationE2E: a failure repeating a warning's open ticket raises
// the ticket's priority in the PSA, once, with a note saying why.
func TestEscalationE2E(t *testing.T) {
	const rulesTOML = `
[[rule]]
name = "backup warning"
[rule.if]
subject_contains = ["Backup warning"]
[rule.extract]
device = 'warning: (?P<device>[\w.-]+)'
[rule.then]
action = "ticket"
check = "backup"
severity = "warning"

[[rule]]
name = "backup failed"
[rule.if]
subject_contains = ["Backup failed"]
[rule.extract]
device = 'failed: (?P<device>[\w.-]+)'
[rule.then]
action = "ticket"
check = "backup"
severity = "failure"
escalate_priority = true
[rule.then.psa]
connectwise.priority = "Priority 1 - Emergency Response"
autotask.priority = "Critical"
`
	type view struct {
		priority int
		notes    int
	}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (string, func() view)
		want  int
	}{
		{"connectwise", func(t *testing.T) (string, func() view) {
			fk := cwfake.Start(cwfake.DefaultConfig())
			t.Cleanup(fk.Close)
			s := fk.Settings()
			s["connectwise.company"] = "PVC01"
			return psaTOML("psa", s), func() view {
				tk := fk.Tickets()
				if len(tk) != 1 {
					t.Fatalf("%d tickets", len(tk))
				}
				return view{tk[0].PriorityID, len(tk[0].Notes) - 1}
			}
		}, 1},
		{"autotask", func(t *testing.T) (string, func() view) {
			fk := atfake.Start(atfake.DefaultConfig())
			t.Cleanup(fk.Close)
			return psaTOML("psa", fk.Settings()) + "[deliver.autotask]\nrate_per_minute = 100000\n", func() view {
				tk := fk.Tickets()
				if len(tk) != 1 {
					t.Fatalf("%d tickets", len(tk))
				}
				return view{tk[0].Priority, len(tk[0].Notes)}
			}
		}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			section, read := tc.start(t)
			dir := t.TempDir()
			rulesDir := filepath.Join(dir, "rules")
			if err := os.MkdirAll(rulesDir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(rulesDir, "r.toml"), []byte(rulesTOML), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := withPSA(t, dir, section, "")
			if err := writeFile(cfg, strings.Replace(string(readAll(t, cfg)), filepath.Join(testutil.RepoRoot(t), "rules"), rulesDir, 1)); err != nil {
				t.Fatal(err)
			}
			h := startApp(t, cfg, Options{})
			mail := func(subject string, n int) {
				raw := fmt.Sprintf("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: %s\r\nMessage-ID: <e-%d@x>\r\n\r\nx\r\n", subject, n)
				if r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, []byte(raw)); !strings.HasPrefix(r, "250") {
					t.Fatal(r)
				}
				waitFor(t, "delivery", 20*time.Second, func() bool { return idle(h.app.DB) })
				if q, _ := ReadQueue(h.app.DB); len(q.Dead) > 0 {
					t.Fatalf("dead: %s", q.Dead[0].Reason)
				}
			}
			mail("Backup warning: PVC-SRV-E", 1)
			before := read()
			mail("Backup failed: PVC-SRV-E", 2)
			after := read()
			if after.priority != tc.want || before.priority == tc.want || after.notes != before.notes+1 {
				t.Fatalf("priority %d -> %d (want %d), notes %d -> %d", before.priority, after.priority, tc.want, before.notes, after.notes)
			}
			auditHas(t, h, incident.EffectEscalated)
			mail("Backup failed: PVC-SRV-E", 3) // already a failure: an ordinary note
			if again := read(); again.priority != tc.want || again.notes != after.notes+1 {
				t.Fatalf("after a second failure: %+v", again)
			}
		})
	}
}
