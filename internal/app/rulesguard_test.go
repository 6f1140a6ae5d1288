package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"psagate/internal/testutil"
)

// nRules is a rule file of n rules; the first drops heartbeats.
func nRules(n int) string {
	var b strings.Builder
	for i := range n {
		subject := fmt.Sprintf("guard-%d", i)
		if i == 0 {
			subject = "heartbeat"
		}
		fmt.Fprintf(&b, "[[rule]]\nname = \"r%d\"\n[rule.if]\nsubject_contains = [%q]\n[rule.then]\naction = \"drop\"\n\n", i, subject)
	}
	return b.String()
}

// TestEmptiedRulesDirIsRefused empties the rules directory under a running
// gateway, as a non-atomic deploy does between its "rm" and its "cp": the
// reload is refused, the old rules keep deciding mail (a heartbeat sent
// over SMTP is still dropped), and the failure shows in the metrics. A set
// that shrank by more than half is refused the same way; a smaller cut is
// taken; [rules] allow_empty = true lets an empty set in; and a start with
// an empty directory is refused.
func TestEmptiedRulesDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ruleFile := filepath.Join(rulesDir, "local.toml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(ruleFile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(nRules(6))
	cfg := baseConfig(t, dir, "")
	data := strings.Replace(string(readAll(t, cfg)), filepath.Join(testutil.RepoRoot(t), "rules"), rulesDir, 1)
	if err := writeFile(cfg, data); err != nil {
		t.Fatal(err)
	}
	h := startApp(t, cfg, Options{})
	m := h.app.Metrics
	heartbeat := func() string {
		return testutil.SendMail(t, h.app.SMTPAddr(), "nas@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"},
			[]byte("From: nas@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: heartbeat\r\n\r\nalive\r\n"))
	}

	if err := os.Remove(ruleFile); err != nil {
		t.Fatal(err)
	}
	if err := h.app.Reload(); err == nil || !strings.Contains(err.Error(), "no rules loaded") || !strings.Contains(err.Error(), "allow_empty") {
		t.Errorf("reload of an emptied directory: %v, want it refused naming allow_empty", err)
	}
	if n, ok := value(m.RulesLoaded), value(m.ConfigReloadSuccess); n != 6 || ok != 0 {
		t.Errorf("after the refused reload: rules_loaded %v (want the old 6), config_reload_success %v (want 0)", n, ok)
	}
	if r := heartbeat(); !strings.Contains(r, `discarded by rule "r0"`) {
		t.Errorf("with the directory empty a heartbeat got %q; the old rules must still decide", r)
	}

	write(nRules(2))
	if err := h.app.Reload(); err == nil || !strings.Contains(err.Error(), "less than half of the 6 active") {
		t.Errorf("reload of 2 rules after 6: %v, want it refused", err)
	}
	write(nRules(3))
	if err := h.app.Reload(); err != nil {
		t.Errorf("reload of 3 rules after 6 (half): %v", err)
	}
	if n := value(m.RulesLoaded); n != 3 {
		t.Errorf("rules_loaded %v, want 3", n)
	}

	// The admin says an empty set is intended.
	if err := writeFile(cfg, strings.Replace(data, "watch_interval", "allow_empty = true\nwatch_interval", 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ruleFile); err != nil {
		t.Fatal(err)
	}
	if err := h.app.Reload(); err != nil {
		t.Errorf("reload of an empty set with allow_empty: %v", err)
	}
	if n, ok := value(m.RulesLoaded), value(m.ConfigReloadSuccess); n != 0 || ok != 1 {
		t.Errorf("with allow_empty: rules_loaded %v, config_reload_success %v; want 0 and 1", n, ok)
	}
	h.stop()

	// A start with an empty directory and without allow_empty.
	if err := writeFile(cfg, data); err != nil {
		t.Fatal(err)
	}
	if a, err := Start(context.Background(), cfg, Options{}); err == nil {
		a.Shutdown(context.Background())
		t.Fatal("a start with an empty rules directory succeeded")
	} else if !strings.Contains(err.Error(), "no rules loaded") {
		t.Errorf("start with an empty rules directory: %v", err)
	}
}
