package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"psagate/internal/testutil"
)

// A reload reaches the SMTP server: a domain added to accept_domains is
// taken without a restart, and one removed is refused.
func TestReloadAppliesSMTPSettings(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig(t, dir, "")
	h := startApp(t, cfg, Options{})
	defer h.stop()

	rcpt := func(addr string) string {
		c, greet := testutil.Dial(t, h.app.SMTPAddr())
		defer c.Cmd("QUIT")
		if !strings.HasPrefix(greet, "220") {
			t.Fatalf("greeting %q", greet)
		}
		c.Cmd("EHLO reload.test")
		c.Cmd("MAIL FROM:<bdr1@pinecrest-vet.example>")
		return c.Cmd("RCPT TO:<%s>", addr)
	}
	if r := rcpt("pinecrest@new.example.net"); !strings.HasPrefix(r, "550") {
		t.Fatalf("before the reload: %q", r)
	}

	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), `accept_domains = ["alerts.example.net"]`, `accept_domains = ["new.example.net"]`, 1)
	if edited == string(data) {
		t.Fatal("the test config has no accept_domains line to edit")
	}
	if err := os.WriteFile(filepath.Clean(cfg), []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.app.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := rcpt("pinecrest@new.example.net"); !strings.HasPrefix(r, "250") {
		t.Fatalf("after the reload the new domain got %q", r)
	}
	if r := rcpt("pinecrest@alerts.example.net"); !strings.HasPrefix(r, "550") {
		t.Fatalf("after the reload the removed domain got %q", r)
	}
}
