package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"psagate/internal/app"
	"psagate/internal/testutil"
)

// TestAuditAndIncidents answers "why was this mail dropped?" from the
// command line, first through a running server's admin API, then directly
// from the database once the server has stopped.
func TestAuditAndIncidents(t *testing.T) {
	cfg := writeConfig(t, "", "")
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "[http]\nlisten = \"\"", "[http]\nlisten = \"127.0.0.1:0\"", 1)), 0o600)
	a, err := app.Start(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "[http]\nlisten = \"127.0.0.1:0\"", "[http]\nlisten = \""+a.HTTPAddr()+"\"", 1)), 0o600)

	send := func(raw string) string {
		return testutil.SendMail(t, a.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, []byte(raw))
	}
	ooo := send("From: frontdesk@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: Automatic reply: Backup report\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <ooo@x>\r\n\r\nAway.\r\n")
	fail := send("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: PVC-SRV-Q1\r\nMessage-ID: <q1@x>\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\n")
	if !strings.Contains(ooo, "discarded") || !strings.Contains(fail, "Queued as") {
		t.Fatalf("replies %q / %q", ooo, fail)
	}
	dropID := testutil.QueuedID(ooo)
	deadline := time.Now().Add(10 * time.Second)
	var out string
	for time.Now().Before(deadline) {
		_, out, _ = runCLI("audit", "-config", cfg, "-decision", "drop", "-from", "frontdesk")
		if strings.Contains(out, dropID) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, dropID) || !strings.Contains(out, "Automatic reply: Backup report") || strings.Contains(out, "PVC-SRV-Q1") {
		t.Fatalf("audit through the admin API:\n%s", out)
	}
	for time.Now().Before(deadline) {
		_, out, _ = runCLI("incidents", "-config", cfg, "-open")
		if strings.Contains(out, "pinecrest/PVC-SRV-Q1/backup") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "pinecrest/PVC-SRV-Q1/backup") || !strings.Contains(out, "open") {
		t.Fatalf("incidents -open:\n%s", out)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// With the server stopped the CLI reads the database itself.
	code, out, stderr := runCLI("audit", "-config", cfg, "-subject", "failed backup")
	if code != 0 || !strings.Contains(out, "PVC-SRV-Q1") || !strings.Contains(out, "ticket (opened)") || strings.Contains(out, "Automatic reply") {
		t.Fatalf("audit from the database: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runCLI("incidents", "-config", cfg, "-json")
	if code != 0 || !strings.Contains(out, `"key":"pinecrest/PVC-SRV-Q1/backup"`) {
		t.Fatalf("incidents -json: %s", out)
	}
}
