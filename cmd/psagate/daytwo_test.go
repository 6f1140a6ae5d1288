package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"psagate/internal/app"
	"psagate/internal/gateway"
	"psagate/internal/store"
	"psagate/internal/testutil"
)

// startServer runs the gateway in-process on cfg: the CLI then finds the
// database locked and goes through the admin socket.
func startServer(t *testing.T, cfg string) *app.App {
	t.Helper()
	a, err := app.Start(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Shutdown(ctx)
	})
	return a
}

// cli runs a command that must succeed and returns its output.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(args...)
	if code != 0 {
		t.Fatalf("psagate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// settle waits until the server has processed its spool and outbox.
func settle(t *testing.T, a *app.App) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := a.DB.Counts()
		if err == nil && c.Spool == 0 && c.Outbox == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not settle: %+v %v", c, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fresh empties *dst before out is decoded into it: json.Unmarshal into a
// slice of pointers would reuse the structs of an earlier decode, keeping
// the fields (omitempty) the new JSON leaves out.
func fresh(dst *[]*store.AuditEntry, out string) []byte {
	*dst = nil
	return []byte(out)
}

func failMail(dev string, n int) string {
	return fmt.Sprintf("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: %s\r\n"+
		"Message-ID: <%s-%d@x>\r\n\r\nx360Recover alert from appliance PVC-BDR1, %d\r\n", dev, dev, n, n)
}

// TestDayTwoVerbs runs every incidents, silence, quarantine and audit verb
// against a running server with a real bbolt file, through the admin socket.
func TestDayTwoVerbs(t *testing.T) {
	cfg := writeConfig(t, "", "")
	a := startServer(t, cfg)
	send := func(raw string) string {
		t.Helper()
		r := testutil.SendMail(t, a.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, []byte(raw))
		settle(t, a)
		return r
	}

	// audit -id finds a mail from the id in its SMTP reply.
	reply := send(failMail("PVC-SRV-A", 1))
	qid := testutil.QueuedID(reply)
	out := cli(t, "audit", "-config", cfg, "-id", qid, "-json")
	var entries []*store.AuditEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil || len(entries) != 1 || entries[0].Message != qid || entries[0].Decision != "ticket" {
		t.Fatalf("audit -id %s: %v\n%s", qid, err, out)
	}
	incID := entries[0].Incident

	// incidents show / close -psa / forget.
	out = cli(t, "incidents", "-config", cfg, "show", fmt.Sprint(incID))
	if !strings.Contains(out, "pinecrest/PVC-SRV-A/backup") || !strings.Contains(out, qid) {
		t.Fatalf("incidents show:\n%s", out)
	}
	out = cli(t, "incidents", "-config", cfg, "close", fmt.Sprint(incID), "-note", "device decommissioned", "-psa")
	if !strings.Contains(out, "is closed") || !strings.Contains(out, "admin API") {
		t.Fatalf("incidents close:\n%s", out)
	}
	settle(t, a)
	var h gateway.IncidentHistory
	if err := json.Unmarshal([]byte(cli(t, "incidents", "-config", cfg, "show", fmt.Sprint(incID), "-json")), &h); err != nil {
		t.Fatal(err)
	}
	last := h.Events[len(h.Events)-1]
	if h.Incident.State != store.StateClosed || last.Effect != "closed" || !strings.Contains(last.Detail, "uid ") ||
		!strings.Contains(last.Detail, "device decommissioned") || len(h.Outbox) != 0 {
		t.Fatalf("after close: %+v, last event %+v", h.Incident, last)
	}
	if code, _, errOut := runCLI("incidents", "-config", cfg, "close", fmt.Sprint(incID)); code != 1 || !strings.Contains(errOut, "not open") {
		t.Fatalf("closing a closed incident: %d %q", code, errOut)
	}
	out = cli(t, "incidents", "-config", cfg, "forget", fmt.Sprint(incID))
	if !strings.Contains(out, "forgotten") {
		t.Fatalf("incidents forget:\n%s", out)
	}
	if code, _, errOut := runCLI("incidents", "-config", cfg, "show", fmt.Sprint(incID)); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("show of a forgotten incident: %d %q", code, errOut)
	}

	// Queue actions are audited with who ran them.
	cli(t, "queue", "-config", cfg, "retry-dead")
	if err := json.Unmarshal(fresh(&entries, cli(t, "audit", "-config", cfg, "-decision", "admin", "-n", "1", "-json")), &entries); err != nil ||
		len(entries) != 1 || entries[0].Effect != "retried" || !strings.Contains(entries[0].Detail, "uid ") {
		t.Fatalf("audit of queue retry-dead: %+v %v", entries, err)
	}

	// Stray and unknown arguments are refused (exit 2), not ignored.
	for _, args := range [][]string{
		{"incidents", "-config", cfg, "close"},
		{"incidents", "-config", cfg, "close", "3", "4"},
		{"incidents", "-config", cfg, "frobnicate", "3"},
		{"incidents", "-config", cfg, "show", "3", "-psa"},
		{"incidents", "-config", cfg, "list", "3"},
		{"audit", "-config", cfg, "stray"},
		{"queue", "-config", cfg, "list", "stray"},
		{"silence", "-config", cfg, "expire"},
		{"silence", "-config", cfg, "list", "-for", "1h"},
		{"quarantine", "-config", cfg, "delete"},
		{"quarantine", "-config", cfg, "show", "x", "-as", "ticket"},
	} {
		if code, _, _ := runCLI(args...); code != 2 {
			t.Errorf("psagate %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}

	// silence add / list / expire: held back while active, caught up when expired.
	out = cli(t, "silence", "-config", cfg, "add", "-client", "pinecrest", "-device", "PVC-SRV-S*", "-for", "4h", "-comment", "vault migration")
	if !strings.HasPrefix(out, "silence 1: client pinecrest") {
		t.Fatalf("silence add:\n%s", out)
	}
	sq := testutil.QueuedID(send(failMail("PVC-SRV-S1", 1)))
	if err := json.Unmarshal(fresh(&entries, cli(t, "audit", "-config", cfg, "-id", sq, "-json")), &entries); err != nil || len(entries) != 1 ||
		entries[0].Effect != "silenced" || !strings.Contains(entries[0].Detail, "silence 1 (vault migration)") {
		t.Fatalf("audit of a silenced mail: %+v %v", entries, err)
	}
	if out := cli(t, "incidents", "-config", cfg, "-open"); strings.Contains(out, "PVC-SRV-S1") {
		t.Fatalf("a silenced failure opened an incident:\n%s", out)
	}
	out = cli(t, "silence", "-config", cfg, "list")
	if !strings.Contains(out, "active") || !strings.Contains(out, "vault migration") || !strings.Contains(out, "PVC-SRV-S*") {
		t.Fatalf("silence list:\n%s", out)
	}
	out = cli(t, "silence", "-config", cfg, "expire", "1")
	if !strings.Contains(out, "silence 1 expired") {
		t.Fatalf("silence expire:\n%s", out)
	}
	settle(t, a)
	if out := cli(t, "incidents", "-config", cfg, "-open"); !strings.Contains(out, "pinecrest/PVC-SRV-S1/backup") {
		t.Fatalf("the failure held by the silence was not caught up:\n%s", out)
	}
	if out := cli(t, "silence", "-config", cfg, "list"); !strings.Contains(out, "expired by ") {
		t.Fatalf("silence list after expire:\n%s", out)
	}

	// quarantine list / show / release / release -as ticket / delete.
	inj := func(n int) string {
		return testutil.QueuedID(send(fmt.Sprintf("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\n"+
			"Subject: =?UTF-8?Q?Failed_Backup=0D=0ABcc:_a@b.example_%d?=\r\nMessage-ID: <inj-%d@x>\r\n\r\nbody %d\r\n", n, n, n)))
	}
	q1, q2 := inj(1), inj(2)
	out = cli(t, "quarantine", "-config", cfg, "list")
	if !strings.Contains(out, "quarantine: 2 message(s)") || !strings.Contains(out, q1) || !strings.Contains(out, "header injection") {
		t.Fatalf("quarantine list:\n%s", out)
	}
	out = cli(t, "quarantine", "-config", cfg, "show", q1)
	if !strings.Contains(out, "reason: header injection") || !strings.Contains(out, "Message-ID: <inj-1@x>") {
		t.Fatalf("quarantine show:\n%s", out)
	}
	if code, _, errOut := runCLI("quarantine", "-config", cfg, "release", q1); code != 1 || !strings.Contains(errOut, "still quarantine") {
		t.Fatalf("release of a mail the rules still quarantine: %d %q", code, errOut)
	}
	out = cli(t, "quarantine", "-config", cfg, "release", q1, "-as", "ticket")
	if !strings.Contains(out, "released "+q1+": ticket") {
		t.Fatalf("release -as ticket:\n%s", out)
	}
	settle(t, a)
	if err := json.Unmarshal(fresh(&entries, cli(t, "audit", "-config", cfg, "-id", q1, "-json")), &entries); err != nil || len(entries) < 3 ||
		entries[0].Decision != "ticket" || entries[1].Effect != "released" {
		for _, e := range entries {
			t.Logf("%+v", *e)
		}
		t.Fatalf("audit of the released mail (newest first): %v", err)
	}
	cli(t, "quarantine", "-config", cfg, "delete", q2)
	if out := cli(t, "quarantine", "-config", cfg, "list"); !strings.Contains(out, "quarantine: 0 message(s)") {
		t.Fatalf("quarantine after release and delete:\n%s", out)
	}
}

func TestStrayArgumentsRefused(t *testing.T) {
	cfg := writeConfig(t, "", "")
	for _, args := range [][]string{
		{"check", "-config", cfg, "extra"},
		{"serve", "-config", cfg, "extra"},
		{"clients", "-config", cfg, "pinecrest", "extra"},
	} {
		if code, _, errOut := runCLI(args...); code != 2 || !strings.Contains(errOut, `unexpected argument "extra"`) {
			t.Errorf("psagate %s: exit %d, %q", strings.Join(args, " "), code, errOut)
		}
	}
}
