package configs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"psagate/internal/config"
	"psagate/internal/metrics"
)

// metricRef finds the names of metrics that psagate's own /metrics serves
// (its collectors plus the Go and process collectors) inside a PromQL
// expression, with the label selector that follows, if any.
var metricRef = regexp.MustCompile(`\b((?:psagate|process|go)_[a-z0-9_]+)\b(\{[^}]*\})?`)

// knownMetrics is every series name psagate's registry exposes, with the
// _bucket/_sum/_count names of histograms and summaries, and the families
// (without suffixes) that psagate itself defines.
func knownMetrics(t *testing.T) (names map[string]bool, own []string) {
	t.Helper()
	m := metrics.New(func() (metrics.StateCounts, error) { return metrics.StateCounts{}, nil })
	touchVecs(t, m)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gathering the metrics registry: %v", err)
	}
	names = map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		switch mf.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		case "SUMMARY":
			names[n+"_sum"], names[n+"_count"] = true, true
		}
		if strings.HasPrefix(n, "psagate_") {
			own = append(own, n)
		}
	}
	return names, own
}

// touchVecs creates one child of every labelled collector in Metrics:
// a vector with no children is absent from Gather, and so would look
// unknown. It finds the label count by trying, so that a collector added to
// Metrics later is covered without editing this test.
func touchVecs(t *testing.T, m *metrics.Metrics) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanInterface() || f.Kind() != reflect.Pointer || f.IsNil() {
			continue
		}
		get := f.MethodByName("GetMetricWithLabelValues")
		if !get.IsValid() {
			continue
		}
		ok := false
		for n := 0; n <= 10 && !ok; n++ {
			args := make([]reflect.Value, n)
			for j := range args {
				args[j] = reflect.ValueOf("x")
			}
			out := get.Call(args)
			ok = out[len(out)-1].IsNil()
		}
		if !ok {
			t.Fatalf("could not create a child of metrics.Metrics.%s", v.Type().Field(i).Name)
		}
	}
}

// checkRefs reports every metric named in expr that the registry does not
// have, and every selector of one that lacks wantMatcher (the job label
// that ties the query to psagate's scrape job).
func checkRefs(where, expr string, known map[string]bool, wantMatcher string, used map[string]bool) []string {
	var problems []string
	for _, m := range metricRef.FindAllStringSubmatch(expr, -1) {
		name, sel := m[1], m[2]
		if !known[name] {
			problems = append(problems, fmt.Sprintf("%s: metric %s is not exported by psagate (internal/metrics)", where, name))
			continue
		}
		if used != nil {
			used[name] = true
		}
		if wantMatcher != "" && !strings.Contains(sel, wantMatcher) {
			problems = append(problems, fmt.Sprintf("%s: %s%s does not select %s", where, name, sel, wantMatcher))
		}
	}
	return problems
}

// ruleFile mirrors a Prometheus rule file.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name        string            `yaml:"name"`
	Interval    string            `yaml:"interval"`
	QueryOffset string            `yaml:"query_offset"`
	Limit       int               `yaml:"limit"`
	Labels      map[string]string `yaml:"labels"`
	Rules       []rule            `yaml:"rules"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// promTemplateFuncs stands in for the functions Prometheus offers in alert
// templates, so that a typo in an annotation fails to parse here as it
// would in Prometheus.
var promTemplateFuncs = func() template.FuncMap {
	fm := template.FuncMap{}
	for _, n := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage",
		"humanizeTimestamp", "toTime", "title", "toUpper", "toLower", "first", "label", "value", "query",
		"reReplaceAll", "match", "args", "safeHtml", "pathPrefix", "externalURL", "stripPort",
		"stripDomain", "graphLink", "tableLink", "sortByLabel", "strvalue", "parseDuration", "now"} {
		fm[n] = func(...any) any { return nil }
	}
	return fm
}()

// The alert names the runbook in docs/operations.md and the brief rely on,
// found by the metric each one must query.
var requiredAlertMetrics = []string{
	"psagate_outbox_jobs",
	"psagate_dead_jobs",
	"psagate_provider_paused",
	"psagate_config_last_reload_successful",
	"psagate_last_message_received_timestamp_seconds",
	"psagate_psa_operations_total",
	"psagate_spool_messages",
	"up",
}

const alertJob = `job="psagate"`

// checkAlerts validates a Prometheus rule file.
func checkAlerts(data []byte, known map[string]bool) []string {
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // "annotation:" instead of "annotations:" must not pass
	if err := dec.Decode(&rf); err != nil {
		return []string{"parsing: " + err.Error()}
	}
	var problems []string
	if len(rf.Groups) == 0 {
		problems = append(problems, "no rule groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	usedBy := map[string]bool{}
	upRef := regexp.MustCompile(`\bup\{[^}]*` + regexp.QuoteMeta(alertJob))
	for gi, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			problems = append(problems, fmt.Sprintf("group %d: name %q is empty or repeated", gi, g.Name))
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			problems = append(problems, fmt.Sprintf("group %q has no rules", g.Name))
		}
		for ri, r := range g.Rules {
			where := fmt.Sprintf("group %q rule %d (%s)", g.Name, ri, r.Alert)
			if r.Alert == "" {
				problems = append(problems, where+": no alert name")
			} else if alerts[r.Alert] {
				problems = append(problems, where+": alert name repeated")
			}
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				problems = append(problems, where+": no expr")
			}
			for _, d := range []struct{ key, v string }{{"for", r.For}, {"keep_firing_for", r.KeepFiringFor}} {
				if d.v == "" {
					continue
				}
				if _, err := model.ParseDuration(d.v); err != nil {
					problems = append(problems, fmt.Sprintf("%s: %s %q is not a Prometheus duration: %v", where, d.key, d.v, err))
				}
			}
			if strings.TrimSpace(r.Annotations["summary"]) == "" {
				problems = append(problems, where+": no annotations.summary")
			}
			if strings.TrimSpace(r.Annotations["description"]) == "" {
				problems = append(problems, where+": no annotations.description")
			}
			if r.Labels["severity"] == "" {
				problems = append(problems, where+": no labels.severity")
			}
			for k, text := range r.Annotations {
				// Prometheus defines $labels and $value before expanding.
				src := "{{$labels := .Labels}}{{$value := .Value}}" + text
				if _, err := template.New(k).Funcs(promTemplateFuncs).Parse(src); err != nil {
					problems = append(problems, fmt.Sprintf("%s: annotations.%s: %v", where, k, err))
				}
			}
			problems = append(problems, checkRefs(where, r.Expr, known, alertJob, usedBy)...)
			if upRef.MatchString(r.Expr) {
				usedBy["up"] = true
			}
		}
	}
	for _, m := range requiredAlertMetrics {
		if !usedBy[m] {
			problems = append(problems, "no alert uses "+m)
		}
	}
	return problems
}

func TestPrometheusAlerts(t *testing.T) {
	known, _ := knownMetrics(t)
	data := readFile(t, "prometheus-alerts.yml")
	if problems := checkAlerts(data, known); len(problems) > 0 {
		t.Errorf("prometheus-alerts.yml:\n  %s", strings.Join(problems, "\n  "))
	}
}

// TestPrometheusAlertsCheckerCatches breaks the real file in the ways that
// matter and expects checkAlerts to notice each one.
func TestPrometheusAlertsCheckerCatches(t *testing.T) {
	known, _ := knownMetrics(t)
	orig := string(readFile(t, "prometheus-alerts.yml"))
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"misspelled metric", "psagate_dead_jobs{", "psagate_dead_job{", "psagate_dead_job is not exported"},
		{"missing required alert", "expr: psagate_provider_paused{job=\"psagate\"} == 1", "expr: vector(0) > 1", "no alert uses psagate_provider_paused"},
		{"bad for", "for: 15m\n", "for: 15 minutes\n", "not a Prometheus duration"},
		{"duplicate name", "alert: PsagateDeadLetters", "alert: PsagateDown", "alert name repeated"},
		{"no summary", "summary: \"psagate on {{ $labels.instance }} rejected", "summry: \"x", "no annotations.summary"},
		{"other job", "psagate_spool_messages{job=\"psagate\"}", "psagate_spool_messages{job=\"other\"}", "does not select job=\"psagate\""},
		{"unknown key", "    rules:\n", "    rulez:\n", "field rulez not found"},
		{"broken template", "{{ $labels.provider }} on", "{{ $labels.provider on", "annotations.summary"},
		{"no groups", orig, "groups: []\n", "no rule groups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(orig, tc.old, tc.new, 1)
			if broken == orig {
				t.Fatalf("mutation %q not applied: the file changed, update this test", tc.old)
			}
			problems := checkAlerts([]byte(broken), known)
			if !containsProblem(problems, tc.want) {
				t.Errorf("want a problem containing %q, got %q", tc.want, problems)
			}
		})
	}
}

// dashboard mirrors the parts of a Grafana dashboard the checks read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // panels of a collapsed row
}

const (
	dsVar        = "${DS_PROMETHEUS}"
	dashboardJob = `job="$job"`
)

// grafanaVar finds template variables used in an expression.
var grafanaVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// checkDashboard validates a Grafana dashboard; every psagate_* family in
// own must be shown by some panel.
func checkDashboard(data []byte, known map[string]bool, own []string) []string {
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return []string{"parsing: " + err.Error()}
	}
	var problems []string
	if d.UID == "" || d.Title != "psagate" {
		problems = append(problems, fmt.Sprintf("uid %q / title %q: want a uid and the title psagate", d.UID, d.Title))
	}
	if d.SchemaVersion < 36 {
		problems = append(problems, fmt.Sprintf("schemaVersion %d is too old", d.SchemaVersion))
	}
	vars := map[string]bool{"__rate_interval": true, "__range": true, "__interval": true, "__range_s": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Name == "DS_PROMETHEUS" && (v.Type != "datasource" || string(v.Query) != `"prometheus"`) {
			problems = append(problems, fmt.Sprintf("variable DS_PROMETHEUS is type %q query %s, want a prometheus datasource variable", v.Type, v.Query))
		}
		if v.Type == "query" {
			// Grafana stores a variable query as a string or, in newer
			// versions, as an object with a "query" field.
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				if err := json.Unmarshal(v.Query, &q); err != nil {
					problems = append(problems, fmt.Sprintf("variable %s: query %s: %v", v.Name, v.Query, err))
				}
			}
			if q.Query == "" {
				problems = append(problems, "variable "+v.Name+": empty query")
			}
			problems = append(problems, checkRefs("variable "+v.Name, q.Query, known, "", nil)...)
			if v.Datasource == nil || v.Datasource.UID != dsVar {
				problems = append(problems, "variable "+v.Name+": datasource is not "+dsVar)
			}
		}
	}
	if !vars["DS_PROMETHEUS"] {
		problems = append(problems, "no DS_PROMETHEUS datasource variable")
	}
	ids := map[int]string{}
	used := map[string]bool{}
	type rect struct {
		title      string
		x, y, w, h int
	}
	var placed []rect
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if p.Title == "" {
				problems = append(problems, where+": no title")
			}
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				problems = append(problems, fmt.Sprintf("%s: id is 0 or also used by %q", where, prev))
			}
			ids[p.ID] = p.Title
			if g := p.GridPos; g == nil {
				problems = append(problems, where+": no gridPos")
			} else {
				if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
					problems = append(problems, fmt.Sprintf("%s: gridPos %+v is outside the 24-column grid", where, *g))
				}
				for _, o := range placed {
					if g.X < o.x+o.w && o.x < g.X+g.W && g.Y < o.y+o.h && o.y < g.Y+g.H {
						problems = append(problems, fmt.Sprintf("%s overlaps panel %q", where, o.title))
					}
				}
				placed = append(placed, rect{p.Title, g.X, g.Y, g.W, g.H})
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsVar {
				problems = append(problems, where+": datasource is not "+dsVar)
			}
			if len(p.Targets) == 0 {
				problems = append(problems, where+": no targets")
			}
			for _, tg := range p.Targets {
				tw := where + " target " + tg.RefID
				if strings.TrimSpace(tg.Expr) == "" {
					problems = append(problems, tw+": empty expr")
				}
				if tg.Datasource != nil && tg.Datasource.UID != dsVar {
					problems = append(problems, tw+": datasource is not "+dsVar)
				}
				problems = append(problems, checkRefs(tw, tg.Expr, known, dashboardJob, used)...)
				for _, m := range grafanaVar.FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[m[1]] {
						problems = append(problems, fmt.Sprintf("%s: variable $%s is not defined", tw, m[1]))
					}
				}
			}
		}
	}
	walk(d.Panels)
	if len(ids) == 0 {
		problems = append(problems, "no panels")
	}
	for _, name := range own {
		if !used[name] && !used[name+"_bucket"] && !used[name+"_sum"] && !used[name+"_count"] {
			problems = append(problems, fmt.Sprintf("metric %s is on no panel: add one", name))
		}
	}
	return problems
}

func TestGrafanaDashboard(t *testing.T) {
	known, own := knownMetrics(t)
	if len(own) < 15 {
		t.Fatalf("only %d psagate_* families gathered (%v): touchVecs or the registry changed", len(own), own)
	}
	data := readFile(t, "grafana-dashboard.json")
	if problems := checkDashboard(data, known, own); len(problems) > 0 {
		t.Errorf("grafana-dashboard.json:\n  %s", strings.Join(problems, "\n  "))
	}
}

func TestGrafanaDashboardCheckerCatches(t *testing.T) {
	known, own := knownMetrics(t)
	orig := string(readFile(t, "grafana-dashboard.json"))
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"misspelled metric", "psagate_smtp_refused_total{", "psagate_smtp_refusals_total{", "psagate_smtp_refusals_total is not exported"},
		{"missing histogram suffix", "psagate_psa_operation_duration_seconds_bucket{", "psagate_psa_operation_duration_seconds_buckets{", "is not exported"},
		{"duplicate id", `"id": 2,`, `"id": 1,`, "also used by"},
		{"no title", `"title": "Dead letters"`, `"title": ""`, "no title"},
		{"no targets", `"targets": [`, `"targetz": [`, "no targets"},
		{"no gridPos", `"gridPos": {`, `"gridPoz": {`, "no gridPos"},
		{"overlap", `"x": 4,`, `"x": 2,`, "overlaps"},
		{"unknown variable", `[$__rate_interval]`, `[$interval]`, "variable $interval is not defined"},
		{"hard-coded datasource", `"uid": "${DS_PROMETHEUS}"`, `"uid": "P1809F7CD0C75ACF3"`, "datasource is not"},
		{"wrong job", `job=\"$job\"`, `job=\"psagate\"`, `does not select job="$job"`},
		{"uncovered metric", "psagate_rules_loaded{job", "psagate_incidents_open{job", "psagate_rules_loaded is on no panel"},
		{"invalid JSON", `"panels": [`, `"panels": [,`, "parsing"},
		{"variable metric", `"query": "label_values(psagate_rules_loaded, job)"`, `"query": "label_values(psagate_rule_loaded, job)"`, "variable job: metric psagate_rule_loaded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(orig, tc.old, tc.new, 1)
			if broken == orig {
				t.Fatalf("mutation %q not applied: the file changed, update this test", tc.old)
			}
			problems := checkDashboard([]byte(broken), known, own)
			if !containsProblem(problems, tc.want) {
				t.Errorf("want a problem containing %q, got %q", tc.want, problems)
			}
		})
	}
}

// unit is a parsed systemd unit file: section → key → every assignment in
// order (list settings accumulate; an empty assignment resets them).
type unit map[string]map[string][]string

func parseUnit(data []byte) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	n, pending := 0, ""
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, `\`) { // continuation
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			if _, dup := u[section]; dup {
				return nil, fmt.Errorf("line %d: section [%s] repeated", n, section)
			}
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: %q is not key=value inside a section", n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	return u, sc.Err()
}

// last is the effective value of a single-valued setting.
func (u unit) last(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// list is the effective value of a list setting.
func (u unit) list(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		if v == "" {
			out = nil
			continue
		}
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// secretEnvName matches the names of the env: secrets psagate documents
// (CW_PRIVATE_KEY, AT_SECRET, PSAGATE_SMTP_PASSWORD, ...).
var secretEnvName = regexp.MustCompile(`(?i)(KEY|SECRET|PASSWORD|TOKEN|CLIENT_ID|INTEGRATION_CODE)`)

func isYes(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "true", "on", "1":
		return true
	}
	return false
}

// checkUnit validates the systemd unit; shutdown is psagate's default
// [smtp] shutdown_timeout, which TimeoutStopSec must exceed.
func checkUnit(data []byte, shutdown time.Duration) []string {
	u, err := parseUnit(data)
	if err != nil {
		return []string{"parsing: " + err.Error()}
	}
	var problems []string
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			problems = append(problems, "no ["+s+"] section")
		}
	}
	const svc = "Service"
	exec := strings.Fields(u.last(svc, "ExecStart"))
	if len(exec) < 4 || !strings.HasPrefix(exec[0], "/") || !strings.HasSuffix(exec[0], "/psagate") ||
		exec[1] != "serve" || exec[2] != "-config" || !strings.HasPrefix(exec[3], "/etc/psagate/") {
		problems = append(problems, fmt.Sprintf("ExecStart %q is not `/…/psagate serve -config /etc/psagate/…`", u.last(svc, "ExecStart")))
	}
	// A reload must be able to fail: `psagate reload` waits for the
	// gateway's verdict (a bare kill -HUP always succeeds), and Type=notify
	// lets systemd follow READY/RELOADING.
	reload := strings.Fields(u.last(svc, "ExecReload"))
	if len(reload) < 6 || !strings.HasSuffix(reload[0], "/psagate") || reload[1] != "reload" ||
		!slices.Contains(reload, "-config") || !slices.Contains(reload, "$MAINPID") {
		problems = append(problems, fmt.Sprintf("ExecReload %q is not `/…/psagate reload -config … -pid $MAINPID`", u.last(svc, "ExecReload")))
	}
	if got := u.last(svc, "Type"); got != "notify" {
		problems = append(problems, fmt.Sprintf("Type=%q, want notify (psagate sends READY=1)", got))
	}
	for _, k := range []string{"PrivateTmp", "PrivateDevices", "ProtectHome", "NoNewPrivileges",
		"MemoryDenyWriteExecute", "LockPersonality", "ProtectKernelTunables", "ProtectKernelModules",
		"ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces", "RestrictSUIDSGID"} {
		if !isYes(u.last(svc, k)) {
			problems = append(problems, fmt.Sprintf("%s=%q, want yes", k, u.last(svc, k)))
		}
	}
	want := map[string]string{
		"ProtectSystem":          "strict",
		"StateDirectory":         "psagate",
		"ConfigurationDirectory": "psagate",
		"Restart":                "on-failure",
	}
	for k, v := range want {
		if got := u.last(svc, k); got != v {
			problems = append(problems, fmt.Sprintf("%s=%q, want %q", k, got, v))
		}
	}
	if got := u.list(svc, "CapabilityBoundingSet"); !slices.Equal(got, []string{"CAP_NET_BIND_SERVICE"}) {
		problems = append(problems, fmt.Sprintf("CapabilityBoundingSet=%q, want only CAP_NET_BIND_SERVICE", got))
	}
	if got := u.list(svc, "AmbientCapabilities"); !slices.Equal(got, []string{"CAP_NET_BIND_SERVICE"}) {
		problems = append(problems, fmt.Sprintf("AmbientCapabilities=%q, want CAP_NET_BIND_SERVICE (port 25)", got))
	}
	fams := u.list(svc, "RestrictAddressFamilies")
	slices.Sort(fams)
	if !slices.Equal(fams, []string{"AF_INET", "AF_INET6", "AF_UNIX"}) {
		problems = append(problems, fmt.Sprintf("RestrictAddressFamilies=%q, want AF_INET AF_INET6 AF_UNIX", fams))
	}
	if !slices.Contains(u.list(svc, "SystemCallFilter"), "@system-service") {
		problems = append(problems, "SystemCallFilter does not allow-list @system-service")
	}
	if um, err := strconv.ParseUint(u.last(svc, "UMask"), 8, 32); err != nil || um&0o007 != 0o007 {
		problems = append(problems, fmt.Sprintf("UMask=%q must deny everything to others (e.g. 0077)", u.last(svc, "UMask")))
	}
	user, dyn := u.last(svc, "User"), isYes(u.last(svc, "DynamicUser"))
	if !dyn && (user == "" || user == "root" || user == "0") {
		problems = append(problems, fmt.Sprintf("runs as %q: want a dedicated User= or DynamicUser=yes", user))
	}
	if !slices.ContainsFunc(u[svc]["EnvironmentFile"], func(v string) bool {
		return strings.TrimPrefix(v, "-") == "/etc/psagate/secrets.env"
	}) {
		problems = append(problems, "no EnvironmentFile=/etc/psagate/secrets.env for the env: secrets")
	}
	if d, err := time.ParseDuration(u.last(svc, "TimeoutStopSec")); err != nil || d <= shutdown {
		problems = append(problems, fmt.Sprintf("TimeoutStopSec=%q must be a duration above smtp.shutdown_timeout (%s)", u.last(svc, "TimeoutStopSec"), shutdown))
	}
	if n, err := strconv.Atoi(u.last(svc, "LimitNOFILE")); err != nil || n < 4096 {
		problems = append(problems, fmt.Sprintf("LimitNOFILE=%q, want at least 4096", u.last(svc, "LimitNOFILE")))
	}
	// Environment= values are readable by any local user (systemctl show),
	// so secrets must come from the root-only EnvironmentFile.
	for _, v := range u[svc]["Environment"] {
		for _, assign := range strings.Fields(v) {
			name, _, _ := strings.Cut(strings.Trim(assign, `"'`), "=")
			if secretEnvName.MatchString(name) {
				problems = append(problems, fmt.Sprintf("Environment= sets %s: put secrets in /etc/psagate/secrets.env", name))
			}
		}
	}
	if u.last("Install", "WantedBy") == "" {
		problems = append(problems, "[Install] has no WantedBy")
	}
	return problems
}

// defaultShutdown is psagate's default [smtp] shutdown_timeout, read through
// the config loader so that the unit follows if the default changes.
func defaultShutdown(t *testing.T) time.Duration {
	t.Helper()
	cfg, err := config.Load("example.toml")
	if err != nil {
		t.Fatalf("loading example.toml: %v", err)
	}
	d := cfg.SMTP.ShutdownTimeout.D()
	if d <= 0 {
		t.Fatalf("smtp.shutdown_timeout of example.toml is %s", d)
	}
	return d
}

func TestSystemdUnit(t *testing.T) {
	data := readFile(t, "psagate.service")
	if problems := checkUnit(data, defaultShutdown(t)); len(problems) > 0 {
		t.Errorf("psagate.service:\n  %s", strings.Join(problems, "\n  "))
	}
}

func TestSystemdUnitCheckerCatches(t *testing.T) {
	shutdown := defaultShutdown(t)
	orig := string(readFile(t, "psagate.service"))
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"commented out", "\nProtectSystem=strict", "\n#ProtectSystem=strict", "ProtectSystem"},
		{"weaker", "\nProtectSystem=strict", "\nProtectSystem=full", "ProtectSystem"},
		{"no capability", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "AmbientCapabilities=", "AmbientCapabilities"},
		{"extra capability", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SYS_ADMIN", "CapabilityBoundingSet"},
		{"reload cannot fail", "ExecReload=/usr/local/bin/psagate reload -config /etc/psagate/psagate.toml -pid $MAINPID", "ExecReload=/bin/kill -HUP $MAINPID", "psagate reload"},
		{"not notify", "Type=notify", "Type=exec", "want notify"},
		{"wrong command", "psagate serve -config", "psagate check -config", "ExecStart"},
		{"no install", "[Install]", "[Installation]", "no [Install] section"},
		{"short stop timeout", "TimeoutStopSec=45s", "TimeoutStopSec=30s", "TimeoutStopSec"},
		{"netlink allowed", "AF_INET AF_INET6 AF_UNIX", "AF_INET AF_INET6 AF_UNIX AF_NETLINK", "RestrictAddressFamilies"},
		{"reset filter", "SystemCallFilter=~@privileged", "SystemCallFilter=\nSystemCallFilter=~@privileged", "@system-service"},
		{"root", "User=psagate", "User=root", "runs as"},
		{"world-readable", "UMask=0077", "UMask=0022", "UMask"},
		{"no secrets file", "EnvironmentFile=-/etc/psagate/secrets.env", "Environment=X=1", "EnvironmentFile"},
		{"no W^X", "MemoryDenyWriteExecute=yes", "MemoryDenyWriteExecute=no", "MemoryDenyWriteExecute"},
		{"inline secret", "\nUMask=0077", "\nUMask=0077\nEnvironment=\"CW_PRIVATE_KEY=abc\" LANG=C", "Environment= sets CW_PRIVATE_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			broken := strings.Replace(orig, tc.old, tc.new, 1)
			if broken == orig {
				t.Fatalf("mutation %q not applied: the file changed, update this test", tc.old)
			}
			problems := checkUnit([]byte(broken), shutdown)
			if !containsProblem(problems, tc.want) {
				t.Errorf("want a problem containing %q, got %q", tc.want, problems)
			}
		})
	}
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit([]byte("# c\n[Service]\n; c\nSystemCallFilter=@a \\\n  @b\nSystemCallFilter=\nSystemCallFilter=@c\nUser=x\nUser=y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.list("Service", "SystemCallFilter"); !slices.Equal(got, []string{"@c"}) {
		t.Errorf("list after reset = %q, want [@c]", got)
	}
	if got := u.last("Service", "User"); got != "y" {
		t.Errorf("last User = %q, want y", got)
	}
	for _, bad := range []string{"Key=v\n", "[Unit\n", "[Unit]\nnot a setting\n", "[Unit]\n[Unit]\n"} {
		if _, err := parseUnit([]byte(bad)); err == nil {
			t.Errorf("parseUnit(%q) accepted it", bad)
		}
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func containsProblem(problems []string, sub string) bool {
	return slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, sub) })
}
