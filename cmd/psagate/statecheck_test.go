package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/testutil"
)

// TestDamagedStateFile damages a real state file written by a real server
// (truncated, then emptied) and checks what an admin sees: `state check`
// and `serve` refuse it with exit status 1 and say what to do (never a Go
// panic, exit status 2), and `serve -fresh-state` sets it aside and starts.
func TestDamagedStateFile(t *testing.T) {
	cfgPath := writeConfig(t, "", "")
	cfg, err := config.LoadWithoutSecrets(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	quiet := app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LogOutput: io.Discard}
	a, err := app.Start(context.Background(), cfgPath, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"PVC-SRV-A1", "PVC-SRV-A2", "PVC-SRV-A3"} {
		testutil.SendMail(t, a.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"},
			[]byte("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: "+dev+
				"\r\nMessage-ID: <"+dev+"@x>\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\n"+strings.Repeat("detail line\r\n", 600)))
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI("state", "check", "-config", cfgPath); code != 0 || !strings.Contains(out, "OK: ") {
		t.Fatalf("state check of a sound file: exit %d\n%s%s", code, out, errOut)
	}
	good, err := os.ReadFile(cfg.State.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		problem string
	}{
		{"truncated", good[:len(good)/3], "truncated"},
		{"empty", nil, "empty (0 bytes)"},
	} {
		if err := os.WriteFile(cfg.State.Path, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"state", "check", "-config", cfgPath}, {"serve", "-config", cfgPath}} {
			code, _, errOut := runCLI(args...)
			if code != 1 {
				t.Errorf("%s: psagate %s: exit %d, want 1\n%s", tc.name, args[0], code, errOut)
			}
			for _, want := range []string{tc.problem, "/admin/backup", "-fresh-state"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("%s: psagate %s does not say %q:\n%s", tc.name, args[0], want, errOut)
				}
			}
		}
		if fi, err := os.Stat(cfg.State.Path); err != nil || fi.Size() != int64(len(tc.data)) {
			t.Errorf("%s: the refused file was changed: %v", tc.name, err)
		}
	}

	// -fresh-state: the damaged file is kept under another name.
	fresh := quiet
	fresh.FreshState = true
	a, err = app.Start(context.Background(), cfgPath, fresh)
	if err != nil {
		t.Fatalf("start with FreshState: %v", err)
	}
	a.Shutdown(context.Background())
	aside, _ := filepath.Glob(cfg.State.Path + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("damaged copies: %q, want one", aside)
	}
	if code, out, errOut := runCLI("state", "check", "-file", cfg.State.Path); code != 0 {
		t.Errorf("the fresh state file: exit %d\n%s%s", code, out, errOut)
	}
}
