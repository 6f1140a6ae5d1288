package main

import (
	"strings"
	"testing"

	"psagate/internal/config"
)

// A reload changes the log level and adds the new config's secrets to the
// scrubber, keeping the old ones: a rotated-out key must stay hidden too.
func TestLoggerFollowsReload(t *testing.T) {
	var out strings.Builder
	log, lc := newLogger(config.Log{Level: "info"}, &out, []string{"old-secret-1234"})
	log.Debug("hidden at info")
	log.Info("k", "v", "old-secret-1234 and new-secret-5678")
	if s := out.String(); strings.Contains(s, "hidden at info") || strings.Contains(s, "old-secret-1234") ||
		!strings.Contains(s, "new-secret-5678") {
		t.Fatalf("before the reload: %s", s)
	}

	t.Setenv("PSAGATE_TEST_KEY", "new-secret-5678")
	cfg, err := config.Parse("r.toml", []byte(`
[smtp]
accept_domains = ["alerts.example.net"]
[log]
level = "debug"
[[smtp.user]]
name = "u"
password = "env:PSAGATE_TEST_KEY"
`))
	if err != nil {
		t.Fatal(err)
	}
	lc.update(cfg)
	out.Reset()
	log.Debug("shown at debug", "v", "old-secret-1234 new-secret-5678")
	s := out.String()
	if !strings.Contains(s, "shown at debug") {
		t.Fatalf("level not applied: %q", s)
	}
	if strings.Contains(s, "old-secret-1234") || strings.Contains(s, "new-secret-5678") {
		t.Fatalf("secret in the log after the reload: %s", s)
	}
}
