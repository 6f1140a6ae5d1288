package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"psagate/internal/store"
	"psagate/internal/testutil"
)

// holdDownDelay replaces the shipped 30m hold-down of the x360Recover
// "agent connection lost" rule so the test sees it end.
const holdDownDelay = 3 * time.Second

func x360Lost(device string) []byte {
	return []byte(fmt.Sprintf("From: PVC-BDR1 backup appliance <bdr1@pinecrest-vet.example>\r\nTo: pinecrest@alerts.example.net\r\n"+
		"Subject: [PVC-BDR1] Connection: Agent connection lost - %s\r\nMessage-ID: <lost-%s@pvc-bdr1>\r\n\r\n"+
		"x360Recover alert from appliance PVC-BDR1\r\n\r\n  Protected system:  %s\r\n  Alert type:        Agent Status\r\n\r\nDetails:\r\n  Agent connection lost.\r\n", device, device, device))
}

func x360Restored(device string) []byte {
	return []byte(fmt.Sprintf("From: PVC-BDR1 backup appliance <bdr1@pinecrest-vet.example>\r\nTo: pinecrest@alerts.example.net\r\n"+
		"Subject: [PVC-BDR1] Agent %s connection restored\r\nMessage-ID: <restored-%s@pvc-bdr1>\r\n\r\n"+
		"x360Recover alert from appliance PVC-BDR1\r\n\r\n  Protected system:  %s\r\n  Alert type:        Agent Status\r\n\r\nDetails:\r\n  %s checked in again.\r\n", device, device, device, device))
}

// auditOf polls the child's admin API until message id has an audit entry.
func auditOf(t *testing.T, c *child, id string) *store.AuditEntry {
	t.Helper()
	var got *store.AuditEntry
	waitFor(t, "the audit entry of "+id, 10*time.Second, func() bool {
		var audit []*store.AuditEntry
		if err := c.getJSON("/admin/audit?n=100000", &audit); err != nil {
			return false
		}
		for _, e := range audit {
			if e.Message == id {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// TestHoldDownAcrossProcessRestart runs the shipped x360Recover rules with
// a 3s hold-down in a `psagate serve` child process, SIGKILLs it while two
// agents' "connection lost" hold-downs are pending, and restarts it on the
// same state: agent A's "restored" arrives inside the delay and cancels it
// (no PSA call, ever); agent B stays offline, so its ticket is created once
// the delay ends, by the restarted process, and its "restored" closes it.
func TestHoldDownAcrossProcessRestart(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pack := string(readAll(t, filepath.Join(testutil.RepoRoot(t), "rules", "x360recover.toml")))
	short := strings.Replace(pack, `delay = "30m"`, fmt.Sprintf("delay = %q", holdDownDelay.String()), 1)
	if short == pack {
		t.Fatal(`rules/x360recover.toml no longer has the delay = "30m" line this test shortens`)
	}
	if err := os.WriteFile(filepath.Join(rulesDir, "x360recover.toml"), []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t, dir, "")
	data := strings.Replace(string(readAll(t, cfg)), filepath.Join(testutil.RepoRoot(t), "rules"), rulesDir, 1)
	data = strings.Replace(data, `level = "warn"`, `level = "info"`, 1) // startChild reads the "psagate started" line
	if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	const devA, devB = "PVC-WS-FLAPA", "PVC-WS-GONEB"
	send := func(c *child, raw []byte) string {
		t.Helper()
		reply := testutil.SendMail(t, c.smtp, "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, raw)
		id := testutil.QueuedID(reply)
		if !strings.HasPrefix(reply, "250") || id == "" {
			t.Fatalf("reply %q", reply)
		}
		return id
	}

	c1 := startChild(t, cfg)
	lostAt := time.Now()
	lostA := send(c1, x360Lost(devA))
	lostB := send(c1, x360Lost(devB))
	for _, id := range []string{lostA, lostB} {
		if e := auditOf(t, c1, id); e.Decision != "ticket" || e.Effect != "held" {
			t.Fatalf("lost %s: %s (%s), want ticket (held)", e.Device, e.Decision, e.Effect)
		}
	}
	c1.kill()
	if s := c1.stdout.String(); s != "" {
		t.Fatalf("the first process called the PSA during the hold-down:\n%s", s)
	}

	c2 := startChild(t, cfg)
	restoredA := send(c2, x360Restored(devA))
	d := time.Since(lostAt)
	t.Logf("loss, SIGKILL, restart and restore took %s of the %s hold-down", d.Round(time.Millisecond), holdDownDelay)
	if d >= holdDownDelay {
		t.Fatalf("the restart took %s, past the %s hold-down: this run cannot test a restore inside the delay", d, holdDownDelay)
	}
	if e := auditOf(t, c2, restoredA); e.Decision != "close" || e.Effect != "cancelled" {
		t.Fatalf("restore of %s inside the delay: %s (%s), want close (cancelled)", devA, e.Decision, e.Effect)
	}

	// B's hold-down ends after A's would have (B was lost later): once
	// B's ticket exists, A's timer has certainly had its chance to fire.
	var createB logLine
	waitFor(t, "the ticket for "+devB+" after its hold-down", holdDownDelay+20*time.Second, func() bool {
		for _, l := range logLines(t, c2.stdout) {
			if l.Op == "create" && strings.Contains(l.Summary, devB) {
				createB = logLine{l.Op, l.Ticket, l.Summary}
				return true
			}
		}
		return false
	})
	if since := time.Since(lostAt); since < holdDownDelay {
		t.Fatalf("ticket for %s created %s after the loss, before the %s hold-down ended", devB, since, holdDownDelay)
	}
	restoredB := send(c2, x360Restored(devB))
	if e := auditOf(t, c2, restoredB); e.Decision != "close" || e.Effect != "closed" {
		t.Fatalf("restore of %s after the delay: %s (%s), want close (closed)", devB, e.Decision, e.Effect)
	}
	waitFor(t, "the close of "+devB, 10*time.Second, func() bool {
		for _, l := range logLines(t, c2.stdout) {
			if l.Op == "close" {
				return true
			}
		}
		return false
	})

	var ops []logLine
	for _, l := range logLines(t, c2.stdout) {
		ops = append(ops, logLine{l.Op, l.Ticket, l.Summary})
		if strings.Contains(l.Summary+l.Key+l.Text+l.Description, devA) {
			t.Errorf("%s flapped inside the hold-down yet reached the PSA: %+v", devA, l)
		}
	}
	want := []logLine{createB, {"close", createB.ticket, ""}}
	if fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Fatalf("PSA calls after the restart:\n got %+v\nwant %+v", ops, want)
	}
	var incs []*store.Incident
	if err := c2.getJSON("/admin/incidents?open=1", &incs); err != nil {
		t.Fatal(err)
	}
	if len(incs) != 0 {
		t.Fatalf("%d incidents still open or pending, want none: %+v", len(incs), incs[0])
	}
}

// logLine is the part of a log provider line the hold-down test compares.
type logLine struct{ op, ticket, summary string }
