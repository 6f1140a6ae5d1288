package config

import (
	"strings"
	"sync"
	"testing"

	"psagate/internal/psa"
)

// A provider that registers itself is configurable with no change to the
// config package: its [psa.NAME] keys, secrets and [deliver.NAME] limits
// come from its descriptor.
var registerOnce sync.Once // -count=N runs the test again in one process

func TestRegisteredProviderNeedsNoConfigCode(t *testing.T) {
	registerOnce.Do(func() {
		psa.Register(psa.Descriptor{
			Name:    "testpsa",
			Keys:    []string{"board", "token", "url"},
			Secrets: []string{"token"},
			Limits:  psa.Limits{Concurrency: 2, RatePerMinute: 10, MaxConcurrency: 6, MaxConcurrencyWhy: "testpsa allows 6"},
			New:     func(psa.Env) psa.Provider { return nil },
		})
	})
	t.Setenv("TESTPSA_TOKEN", "tok-123456")
	cfg, err := Parse("t.toml", []byte(`[smtp]
accept_domains = ["alerts.example.net"]
[psa]
provider = "testpsa"
[psa.testpsa]
board = "Alerts"
token = "env:TESTPSA_TOKEN"
[deliver.testpsa]
concurrency = 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.PSA["testpsa.board"]; got != "Alerts" {
		t.Errorf("testpsa.board = %q", got)
	}
	if got := cfg.PSA["testpsa.token"]; got != "tok-123456" {
		t.Errorf("the secret was not resolved: %q", got)
	}
	if got := cfg.PSA.Redacted()["testpsa.token"]; got != "[redacted]" {
		t.Errorf("secret not redacted: %q", got)
	}
	if l := cfg.Deliver.Providers["testpsa"]; l.Concurrency != 5 || l.RatePerMinute != 10 {
		t.Errorf("limits = %+v, want concurrency 5 from the file and rate 10 from the descriptor", l)
	}

	_, err = Parse("t.toml", []byte("[smtp]\naccept_domains = [\"a.example\"]\n[psa.testpsa]\nbaord = \"x\"\n[deliver.testpsa]\nconcurrency = 7\nsped = 1\n"))
	for _, want := range []string{
		`t.toml:4: psa.testpsa.baord: unknown PSA setting (did you mean "testpsa.board"?)`,
		`t.toml:6: deliver.testpsa.concurrency: testpsa allows 6; 7 would be throttled`,
		`t.toml:7: deliver.testpsa.sped: unknown key`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
