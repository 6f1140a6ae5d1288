package configs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The alert unit tests must name only alerts that exist, and every alert
// should have a test or be listed here as deliberately untested.
var alertsWithoutUnitTest = []string{
	"PsagateProviderPaused", "PsagateConfigReloadFailed", "PsagateSpoolNotDraining",
	"PsagateMessageErrors", "PsagateSMTPBusy",
}

func TestAlertUnitTestsNameRealAlerts(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, "prometheus-alerts.yml"), &rules); err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, "prometheus-alerts.test.yml"), &tests); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tests.RuleFiles, []string{"prometheus-alerts.yml"}) {
		t.Errorf("prometheus-alerts.test.yml rule_files = %q, want [prometheus-alerts.yml]", tests.RuleFiles)
	}
	defined := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			defined[r.Alert] = true
		}
	}
	tested := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if !defined[a.Alertname] {
				t.Errorf("prometheus-alerts.test.yml tests %q, which prometheus-alerts.yml does not define", a.Alertname)
			}
			tested[a.Alertname] = true
		}
	}
	for name := range defined {
		if !tested[name] && !slices.Contains(alertsWithoutUnitTest, name) {
			t.Errorf("alert %s has no unit test in prometheus-alerts.test.yml", name)
		}
	}
}

// TestAlertsWithPromtool runs promtool on the rules and their unit tests
// when it is at hand (`make check-alerts` builds it into bin/); `make test`
// does not build it, to keep a fresh clone's test run short.
func TestAlertsWithPromtool(t *testing.T) {
	promtool, err := exec.LookPath(filepath.Join("..", "bin", "promtool"))
	if err != nil {
		promtool, err = exec.LookPath("promtool")
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		t.Skip("SKIPPED: promtool not found in bin/ or PATH; `make check-alerts` builds it and runs this check")
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "rules", "prometheus-alerts.yml"},
		{"test", "rules", "prometheus-alerts.test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
