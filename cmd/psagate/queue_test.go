package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"psagate/internal/app"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/testutil"
)

// TestDeadLetterRetryAfterConfigFix: a permanent PSA failure lands in the
// dead letters with the PSA's message, `psagate queue list` shows it while
// the server runs (through its admin API), and `queue retry` sends it again
// once the config is fixed.
func TestDeadLetterRetryAfterConfigFix(t *testing.T) {
	fk := cwfake.Start(cwfake.DefaultConfig())
	defer fk.Close()
	s := fk.Settings()
	s["connectwise.company"] = "PVC01"
	s["connectwise.board"] = "Backup Alerts"
	good := psaSection(s)
	s["connectwise.board"] = "Backup Alrets" // the typo an admin makes
	cfg := writeConfig(t, psaSection(s)+"[deliver]\nbackoff_min = \"20ms\"\n", "")
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "[http]\nlisten = \"\"", "[http]\nlisten = \"127.0.0.1:0\"", 1)), 0o600)

	a, err := app.Start(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	// The CLI finds the running server's admin API from the config.
	data, _ = os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), "[http]\nlisten = \"127.0.0.1:0\"", "[http]\nlisten = \""+a.HTTPAddr()+"\"", 1)), 0o600)

	mail := []byte("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: PVC-SRV-D1\r\nMessage-ID: <d1@x>\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\n")
	if r := testutil.SendMail(t, a.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, mail); !strings.HasPrefix(r, "250") {
		t.Fatal(r)
	}
	var out string
	deadline := time.Now().Add(15 * time.Second)
	for {
		var stderr string
		_, out, stderr = runCLI("queue", "-config", cfg, "list")
		if strings.Contains(out, "dead letters: 1 job(s)") || time.Now().After(deadline) {
			out += stderr
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "dead letters: 1 job(s)") || !strings.Contains(out, "Backup Alrets") || !strings.Contains(out, "Backup Alerts") {
		t.Fatalf("queue list does not show the dead job with the PSA's message:\n%s", out)
	}
	id := regexp.MustCompile(`(?m)^(\d+)\s+create`).FindStringSubmatch(out[strings.Index(out, "dead letters"):])
	if id == nil {
		t.Fatalf("no dead create job id in:\n%s", out)
	}
	if len(fk.Tickets()) != 0 {
		t.Fatal("a ticket was made with a bad board")
	}

	// Fix the config, reload, retry.
	data, _ = os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), psaSection(s), good, 1)), 0o600)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI("queue", "-config", cfg, "retry", id[1])
	if code != 0 || !strings.Contains(out, "back in the outbox") || !strings.Contains(out, "admin API") {
		t.Fatalf("retry: exit %d\n%s%s", code, out, stderr)
	}
	deadline = time.Now().Add(15 * time.Second)
	for len(fk.Tickets()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(fk.Tickets()); n != 1 {
		t.Fatalf("after the retry the fake holds %d tickets, want 1", n)
	}
	_, out, _ = runCLI("queue", "-config", cfg, "list")
	if !strings.Contains(out, "dead letters: 0 job(s)") {
		t.Fatalf("dead letter still listed:\n%s", out)
	}
}
