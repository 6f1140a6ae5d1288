package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"psagate/internal/psa"
	"psagate/internal/store"
)

// series returns the value of every sample of family name, keyed by its
// labels as "k=v,k=v" in the order Prometheus sorts them.
func series(t *testing.T, m *Metrics, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			var kv []string
			for _, l := range s.GetLabel() {
				kv = append(kv, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(kv, ",")] = value(s)
		}
	}
	return out
}

func value(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.Counter.GetValue()
	case s.Gauge != nil:
		return s.Gauge.GetValue()
	case s.Histogram != nil:
		return float64(s.Histogram.GetSampleCount())
	}
	return -1
}

// Every series whose labels are known before traffic exists at 0, so the
// first event is an increase from 0 rather than a new series at 1.
func TestSeriesExistBeforeTheFirstEvent(t *testing.T) {
	m := New(nil)
	m.InitProviders([]string{"connectwise"})
	m.InitRules([]RuleAction{
		{Name: "veeam success", Action: "drop"},
		{Name: "x360 failure", Action: "ticket"},
		{Name: "trial", Action: "ticket", Audit: true},
	})
	for _, tc := range []struct {
		family, labels string
	}{
		{"psagate_psa_operations_total", "op=create,provider=connectwise,result=success"},
		{"psagate_psa_operations_total", "op=close,provider=connectwise,result=auth_error"},
		{"psagate_psa_operation_duration_seconds", "op=note,provider=connectwise"},
		{"psagate_provider_paused", "provider=connectwise"},
		{"psagate_smtp_refused_total", "reason=bare_lf"},
		{"psagate_messages_received_total", "outcome=queued"},
		{"psagate_decisions_total", "decision=close,effect=cancelled"},
		{"psagate_rule_matches_total", "action=drop,rule=veeam success"},
		{"psagate_rule_matches_total", "action=audit,rule=trial"},
		{"psagate_messages_dropped_total", "rule=veeam success"},
	} {
		got := series(t, m, tc.family)
		if v, ok := got[tc.labels]; !ok || v != 0 {
			t.Errorf("%s{%s}: present %v, value %v; want present at 0", tc.family, tc.labels, ok, v)
		}
	}
	if _, ok := series(t, m, "psagate_messages_dropped_total")["rule=x360 failure"]; ok {
		t.Error("a ticket rule got a dropped series")
	}
	if n := len(series(t, m, "psagate_psa_operations_total")); n != len(PSAOps)*len(PSAResults) {
		t.Errorf("%d operation series for one provider, want %d", n, len(PSAOps)*len(PSAResults))
	}
}

func TestBuildInfo(t *testing.T) {
	got := series(t, New(nil), "psagate_build_info")
	if len(got) != 1 {
		t.Fatalf("psagate_build_info has %d series: %v", len(got), got)
	}
	for labels, v := range got {
		if v != 1 || !strings.Contains(labels, "goversion=go") || strings.Contains(labels, "version=,") {
			t.Errorf("psagate_build_info{%s} = %v", labels, v)
		}
	}
}

// The label words the callers use are the ones initialised above: a new
// refusal reason, job op or effect added elsewhere must be added here too,
// or its first event would be invisible to increase().
func TestCallersUseListedWords(t *testing.T) {
	for _, op := range []string{store.OpCreate, store.OpNote, store.OpAttach, store.OpClose, store.OpReopen} {
		if !slices.Contains(PSAOps, op) {
			t.Errorf("job op %q is not in PSAOps", op)
		}
	}
	for _, k := range []psa.Kind{psa.Transient, psa.Permanent, psa.Auth} {
		if !slices.Contains(PSAResults, k.String()+"_error") {
			t.Errorf("result %q is not in PSAResults", k.String()+"_error")
		}
	}

	smtpd := readPackage(t, "../smtpd")
	refusals := regexp.MustCompile(`refuse\("(\w+)"\)|return \d+, .*, "(\w+)"\n`).FindAllStringSubmatch(smtpd, -1)
	if len(refusals) < 5 {
		t.Fatalf("found only %d refusal reasons in package smtpd: the pattern no longer fits the code", len(refusals))
	}
	for _, r := range refusals {
		w := r[1] + r[2]
		if !slices.Contains(RefusalReasons, w) {
			t.Errorf("smtpd refuses with reason %q, which is not in RefusalReasons", w)
		}
	}

	inc := readPackage(t, "../incident")
	consts := map[string]string{}
	// The decision words are rules.Action's, the effects incident.Effect's.
	for _, c := range regexp.MustCompile(`\b(Action\w+)\s+Action\s*=\s*"([^"]+)"`).FindAllStringSubmatch(readSource(t, "../rules/rules.go"), -1) {
		consts[c[1]] = c[2]
	}
	for _, c := range regexp.MustCompile(`\b(Effect\w+)\s+(?:Effect\s*)?=\s*"([^"]+)"`).FindAllStringSubmatch(inc, -1) {
		consts[c[1]] = c[2]
	}
	pairs := regexp.MustCompile(`Decision: rules\.(Action\w+), Effect: (Effect\w+)`).FindAllStringSubmatch(inc, -1)
	if len(pairs) < 8 {
		t.Fatalf("found only %d outcomes in package incident: the pattern no longer fits the code", len(pairs))
	}
	// open() followed by a changed effect: a ticket decision.
	for _, e := range regexp.MustCompile(`out\.Effect = (Effect\w+)`).FindAllStringSubmatch(inc, -1) {
		pairs = append(pairs, []string{"", "ActionTicket", e[1]})
	}
	for _, p := range pairs {
		want := [2]string{consts[p[1]], consts[p[2]]}
		if !slices.Contains(DecisionEffects, want) {
			t.Errorf("incident produces decision %q effect %q, which is not in DecisionEffects", want[0], want[1])
		}
	}
}

// readPackage is the non-test Go source of the package in dir, as one text.
func readPackage(t *testing.T, dir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			b.WriteString(readSource(t, f))
		}
	}
	return b.String()
}

func readSource(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
