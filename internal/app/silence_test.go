package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"psagate/internal/incident"
	"psagate/internal/store"
	"psagate/internal/testutil"
)

// lagClock is the app's injected clock: real time minus a lag that the test
// shrinks with Advance. It never runs ahead of real time, because the
// delivery workers turn its times into real timers.
type lagClock struct {
	mu  sync.Mutex
	lag time.Duration
}

func (c *lagClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(-c.lag)
}

func (c *lagClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > c.lag {
		panic("lagClock: cannot run ahead of real time")
	}
	c.lag -= d
}

func pvcMail(subject string, n int) []byte {
	return []byte(fmt.Sprintf("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] %s\r\n"+
		"Message-ID: <s-%d@x>\r\n\r\nx360Recover alert from appliance PVC-BDR1 (%d)\r\n", subject, n, n))
}

func (h *harness) send(t *testing.T, raw []byte) string {
	t.Helper()
	r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, raw)
	if !strings.HasPrefix(r, "250") {
		t.Fatal(r)
	}
	waitFor(t, "the spool and outbox to drain", 20*time.Second, func() bool { return idle(h.app.DB) })
	return testutil.QueuedID(r)
}

func (h *harness) psaOps(op, summaryPart string) int {
	n := 0
	for _, l := range logLines(h.t, h.out) {
		if l.Op == op && (summaryPart == "" || strings.Contains(l.Summary+l.Key, summaryPart)) {
			n++
		}
	}
	return n
}

// TestSilence: a failure during a silence makes no PSA call and is audited
// silenced with the silence's id; the silence expires by itself at its end
// (a timer on the injected clock), the failure still failing then gets its
// ticket, and a recovery held back by it closes its ticket.
func TestSilence(t *testing.T) {
	clock := &lagClock{lag: 24 * time.Hour}
	h := startApp(t, baseConfig(t, t.TempDir(), ""), Options{Now: clock.Now})
	ops := h.app.ops()

	// PVC-SRV-2 has a ticket before the silence; its recovery comes during it.
	h.send(t, pvcMail("Failed Backup: PVC-SRV-2", 1))
	if h.psaOps("create", "PVC-SRV-2") != 1 {
		t.Fatal("no ticket before the silence")
	}
	s, err := ops.AddSilence(SilenceRequest{Client: "pinecrest", For: 4 * time.Hour, Comment: "vault migration"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	id := h.send(t, pvcMail("Failed Backup: PVC-SRV-1", 2))
	h.send(t, pvcMail("Successful Backup: PVC-SRV-2", 3))
	// The log provider's close line names the ticket only: the one close is PVC-SRV-2's.
	if n := h.psaOps("create", "PVC-SRV-1") + h.psaOps("close", ""); n != 0 {
		t.Fatalf("%d PSA calls during the silence", n)
	}
	es, err := ReadAudit(h.app.DB, AuditFilter{ID: id})
	if err != nil || len(es) != 1 || es[0].Effect != string(incident.EffectSilenced) || !strings.Contains(es[0].Detail, fmt.Sprintf("silence %d", s.ID)) {
		t.Fatalf("audit of the silenced failure: %+v %v", es, err)
	}

	clock.Advance(4*time.Hour + time.Minute)
	if _, err := h.app.Gateway.FireTimers(clock.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the catch-up calls", 20*time.Second, func() bool { return idle(h.app.DB) })
	if h.psaOps("create", "PVC-SRV-1") != 1 || h.psaOps("close", "") != 1 {
		t.Fatalf("after the silence: %d creates for PVC-SRV-1, %d closes; want 1 and 1\n%s",
			h.psaOps("create", "PVC-SRV-1"), h.psaOps("close", ""), h.out.String())
	}
	list, _ := ops.Silences()
	if len(list) != 1 || list[0].ActiveAt(clock.Now()) || !list[0].Expired.IsZero() || list[0].Matched != 2 {
		t.Fatalf("silence after its end: %+v", list[0])
	}
	// Still failing after the silence: a note on the ticket it got, not another ticket.
	h.send(t, pvcMail("Failed Backup: PVC-SRV-1", 4))
	if h.psaOps("create", "PVC-SRV-1") != 1 || h.psaOps("note", "") != 1 {
		t.Fatalf("failure after the silence: %d creates, %d notes", h.psaOps("create", "PVC-SRV-1"), h.psaOps("note", ""))
	}
}

// TestQuarantineReleaseAndCap: releasing a quarantined mail runs it through
// the rules as they are now (here: a rule changed from quarantine to
// ticket), and max_messages prunes the oldest quarantined mail, audited.
func TestQuarantineReleaseAndCap(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o750); err != nil {
		t.Fatal(err)
	}
	rule := func(action string) {
		t.Helper()
		r := fmt.Sprintf("[[rule]]\nname = \"vendor x\"\n[rule.if]\nsubject_contains = [\"VENDORX\"]\n[rule.then]\naction = %q\n", action)
		if action == "ticket" {
			r += "key = \"{client}/vendorx\"\n"
		}
		if err := os.WriteFile(filepath.Join(rulesDir, "x.toml"), []byte(r), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rule("quarantine")
	cfg := baseConfig(t, dir, "[quarantine]\nmax_messages = 2\n")
	data := strings.Replace(string(readAll(t, cfg)), filepath.Join(testutil.RepoRoot(t), "rules"), rulesDir, 1)
	if err := writeFile(cfg, data); err != nil {
		t.Fatal(err)
	}
	h := startApp(t, cfg, Options{})
	mail := func(n int) []byte {
		return []byte(fmt.Sprintf("From: x@vendor.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: VENDORX alert %d\r\nMessage-ID: <q-%d@x>\r\n\r\nbody\r\n", n, n))
	}
	ids := []string{h.send(t, mail(1)), h.send(t, mail(2)), h.send(t, mail(3))}
	ops := h.app.ops()
	list, err := ops.Quarantine()
	if err != nil || len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[2] {
		t.Fatalf("quarantine with max_messages = 2 after 3 mails: %v %v", list, err)
	}
	if list[0].Reason != "rule vendor x" {
		t.Errorf("reason = %q", list[0].Reason)
	}
	es, _ := ReadAudit(h.app.DB, AuditFilter{ID: ids[0]})
	if len(es) == 0 || es[0].Effect != "pruned" {
		t.Fatalf("the pruned mail's audit: %+v", es)
	}
	if _, err := ops.Release(ids[1], "", "test"); err == nil || !strings.Contains(err.Error(), "still quarantine") {
		t.Fatalf("release under the quarantining rule: %v", err)
	}
	rule("ticket")
	if err := h.app.Reload(); err != nil {
		t.Fatal(err)
	}
	v, err := ops.Release(ids[1], "", "test")
	if err != nil || v.Action != "ticket" || v.Key != "pinecrest/vendorx" {
		t.Fatalf("release after the rule changed: %+v %v", v, err)
	}
	waitFor(t, "the released mail to be ticketed", 20*time.Second, func() bool { return idle(h.app.DB) })
	if h.psaOps("create", "VENDORX alert 2") != 1 {
		t.Fatalf("the released mail made no ticket: %s", h.out.String())
	}
	if list, _ := ops.Quarantine(); len(list) != 1 || list[0].ID != ids[2] {
		t.Fatalf("quarantine after the release: %v", list)
	}
	incs, _ := ReadIncidents(h.app.DB, true, 10)
	if len(incs) != 1 || incs[0].State != store.StateOpen {
		t.Fatalf("incidents: %+v", incs)
	}
}

// TestRefusedMailIsAudited: mail refused at the SMTP level (relay, size,
// hop limit, a network not allowed) is in the audit trail with the reason
// and the reply the sender got, not only counted.
func TestRefusedMailIsAudited(t *testing.T) {
	cfg0 := baseConfig(t, t.TempDir(), "")
	if err := writeFile(cfg0, strings.Replace(string(readAll(t, cfg0)), "[smtp]\n", "[smtp]\nmax_message_bytes = 8192\n", 1)); err != nil {
		t.Fatal(err)
	}
	h := startApp(t, cfg0, Options{})
	addr := h.app.SMTPAddr()
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 600)
	if r := testutil.SendMail(t, addr, "bdr@x.example", []string{"pinecrest@alerts.example.net"}, []byte(big)); !strings.HasPrefix(r, "552") {
		t.Fatalf("size: %q", r)
	}
	if r := testutil.SendMail(t, addr, "bdr@x.example", []string{"someone@elsewhere.example"}, []byte("Subject: x\r\n\r\nx\r\n")); !strings.HasPrefix(r, "550") {
		t.Fatalf("relay: %q", r)
	}
	loop := strings.Repeat("Received: from a by b; Tue, 11 Feb 2025 13:00:00 +0000\r\n", 60) + "Subject: loop\r\n\r\nx\r\n"
	if r := testutil.SendMail(t, addr, "bdr@x.example", []string{"pinecrest@alerts.example.net"}, []byte(loop)); !strings.HasPrefix(r, "554") {
		t.Fatalf("loop: %q", r)
	}
	want := map[string]string{"relay": "someone@elsewhere.example", "loop": "pinecrest@alerts.example.net", "size": "pinecrest@alerts.example.net"}
	waitFor(t, "the refusals in the audit trail", 10*time.Second, func() bool {
		es, _ := ReadAudit(h.app.DB, AuditFilter{Decision: "reject"})
		n := 0
		for _, e := range es {
			if rcpt, ok := want[e.Effect]; ok && e.Rcpt == rcpt && e.From == "bdr@x.example" && e.RemoteIP == "127.0.0.1" && e.Detail != "" {
				n++
			}
		}
		return n == len(want)
	})

	// A network psagate does not take mail from.
	dir := t.TempDir()
	cfg := baseConfig(t, dir, "")
	data := strings.Replace(string(readAll(t, cfg)), "[smtp]\n", "[smtp]\nallowed_networks = [\"10.9.9.0/24\"]\n", 1)
	if err := writeFile(cfg, data); err != nil {
		t.Fatal(err)
	}
	h2 := startApp(t, cfg, Options{})
	c, greet := testutil.Dial(t, h2.app.SMTPAddr())
	c.C.Close()
	if !strings.HasPrefix(greet, "554") {
		t.Fatalf("greeting from a refused network: %q", greet)
	}
	waitFor(t, "the network refusal in the audit trail", 10*time.Second, func() bool {
		es, _ := ReadAudit(h2.app.DB, AuditFilter{Decision: "reject"})
		return len(es) == 1 && es[0].Effect == "network" && es[0].RemoteIP == "127.0.0.1" && strings.HasPrefix(es[0].Detail, "554")
	})
}

// TestStormE2E: 100 repeats of one failure within an hour, over SMTP, give
// the ticket at most max_notes_per_hour notes, and one summary note when
// the hour ends (a timer on the injected clock).
func TestStormE2E(t *testing.T) {
	clock := &lagClock{lag: 24 * time.Hour}
	h := startApp(t, baseConfig(t, t.TempDir(), "[incidents]\nmax_notes_per_hour = 3\n"), Options{Now: clock.Now})
	for i := range 101 {
		r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, pvcMail("Failed Backup: PVC-SRV-9", i))
		if !strings.HasPrefix(r, "250") {
			t.Fatal(r)
		}
	}
	waitFor(t, "the spool and outbox to drain", 30*time.Second, func() bool { return idle(h.app.DB) })
	if c, n := h.psaOps("create", ""), h.psaOps("note", ""); c != 1 || n != 3 {
		t.Fatalf("during the storm: %d creates, %d notes; want 1 and 3 (max_notes_per_hour)", c, n)
	}
	throttled, _ := ReadAudit(h.app.DB, AuditFilter{Limit: 1000})
	nt := 0
	for _, e := range throttled {
		if e.Effect == string(incident.EffectThrottled) {
			nt++
		}
	}
	if nt != 97 {
		t.Fatalf("%d repeats audited as throttled, want 97", nt)
	}
	clock.Advance(time.Hour + time.Minute)
	if _, err := h.app.Gateway.FireTimers(clock.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the summary note", 20*time.Second, func() bool { return idle(h.app.DB) })
	var summary []string
	for _, l := range logLines(t, h.out) {
		if l.Op == "note" && strings.Contains(l.Text, "more failures between") {
			summary = append(summary, l.Text)
		}
	}
	if h.psaOps("note", "") != 4 || len(summary) != 1 || !strings.HasPrefix(summary[0], "97 more failures between ") {
		t.Fatalf("after the hour: %d notes, summaries %q", h.psaOps("note", ""), summary)
	}
}
