package app

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"psagate/internal/route"
	"psagate/internal/store"
	"psagate/internal/testutil"
)

// expectedOpen replays the rows' decisions to the incident keys that must
// be open at the end.
func expectedOpen(client string, rows []testutil.Row) []string {
	open := map[string]bool{}
	for _, r := range rows {
		k := client + "/" + r.DeviceKey + "/" + r.Check
		switch r.Decision {
		case "ticket":
			open[k] = true
		case "close":
			delete(open, k)
		}
	}
	var out []string
	for k := range open {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tryJSONLine is the part of a `psagate try -json` line the comparison reads.
type tryJSONLine struct {
	File     string `json:"file"`
	Decision string `json:"decision"`
	Effect   string `json:"effect"`
	Key      string `json:"key"`
}

// tryPendingRe matches an incident line of the summary that `psagate try`
// prints after the last message: "  incident 3 open: KEY — summary".
// Any state counts: try lists there every incident it holds as open.
var tryPendingRe = regexp.MustCompile(`^  incident \d+ (.+?): (.*?) — `)

// runTry runs the real `psagate try` binary over files, in order, in one
// run (so each message sees the state the earlier ones left). It returns
// the -json decision lines, and the keys of the incidents that a second,
// text-mode run reports still open after the last message (-json prints
// no such summary).
func runTry(t *testing.T, cfg, rcpt string, files []string) ([]tryJSONLine, []string) {
	t.Helper()
	run := func(args ...string) string {
		t.Helper()
		args = append(append([]string{"try", "-config", cfg}, args...), files...)
		cmd := exec.Command(psagateBinary(t), args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("psagate %s: %v\n%s", strings.Join(args[:4], " "), err, stderr.String())
		}
		return string(out)
	}
	var rcptArgs []string
	if rcpt != "" {
		rcptArgs = []string{"-rcpt", rcpt}
	}
	var lines []tryJSONLine
	for _, l := range strings.Split(strings.TrimSpace(run(append([]string{"-json"}, rcptArgs...)...)), "\n") {
		var tl tryJSONLine
		if err := json.Unmarshal([]byte(l), &tl); err != nil {
			t.Fatalf("psagate try -json line %q: %v", l, err)
		}
		lines = append(lines, tl)
	}
	var open []string
	after := false
	for _, l := range strings.Split(run(rcptArgs...), "\n") {
		if l == "after the last message:" {
			after = true
			continue
		}
		if m := tryPendingRe.FindStringSubmatch(l); after && m != nil {
			open = append(open, m[2])
		}
	}
	sort.Strings(open)
	return lines, open
}

// TestSamplesServeMatchesTryAndExpected sends every sample over SMTP to a
// live `psagate serve` child process (log provider) in EXPECTED.tsv order,
// runs the same files in the same order through the real `psagate try
// -json` binary, and checks per file that serve and try made the same
// decision and that it is the expected one; then that the SET of open
// incident keys is the same in try, in the server (admin API) and in what
// EXPECTED.tsv implies, and that the log provider was asked for exactly
// the PSA calls the decisions imply.
func TestSamplesServeMatchesTryAndExpected(t *testing.T) {
	sets := []struct{ name, dir string }{
		{"testdata/samples", filepath.Join(testutil.RepoRoot(t), "testdata", "samples")},
		{"shared/samples", testutil.SharedSamples(t)},
	}
	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) {
			if set.dir == "" {
				t.Skip("SKIPPED: ../shared/samples not found")
			}
			rows := testutil.ReadExpected(t, set.dir)
			cfg := baseConfig(t, t.TempDir(), "")
			// startChild reads the "psagate started" info line.
			if err := writeFile(cfg, strings.Replace(string(readAll(t, cfg)), `level = "warn"`, `level = "info"`, 1)); err != nil {
				t.Fatal(err)
			}
			c := startChild(t, cfg)

			ids := make([]string, len(rows))
			files := make([]string, len(rows))
			rcpts := map[string]bool{}
			for i, r := range rows {
				files[i] = filepath.Join(set.dir, r.File)
				rcpts[r.RcptTo] = true
				reply := testutil.SendMail(t, c.smtp, r.MailFrom, []string{r.RcptTo}, readAll(t, files[i]))
				if !strings.HasPrefix(reply, "250") && !strings.HasPrefix(reply, "550") {
					t.Fatalf("%s: reply %q", r.File, reply)
				}
				if ids[i] = testutil.QueuedID(reply); ids[i] == "" {
					t.Fatalf("%s: no id in reply %q", r.File, reply)
				}
			}
			// Every message audited (drops are written asynchronously) and
			// every PSA call made.
			served := map[string][]store.AuditEntry{}
			waitFor(t, "every message audited and the outbox drained", 20*time.Second, func() bool {
				var q QueueView
				var audit []store.AuditEntry
				if c.getJSON("/admin/queue", &q) != nil || len(q.Outbox) > 0 || c.getJSON("/admin/audit?n=100000", &audit) != nil {
					return false
				}
				served = map[string][]store.AuditEntry{}
				for _, e := range audit {
					if e.Message != "" {
						served[e.Message] = append(served[e.Message], e)
					}
				}
				for _, id := range ids {
					if len(served[id]) == 0 {
						return false
					}
				}
				return true
			})

			// The same envelope recipient as the SMTP transactions; the
			// sender comes from each file's From header (try takes one
			// -from for all files, and the sets' senders differ).
			rcpt := ""
			if len(rcpts) == 1 {
				rcpt = rows[0].RcptTo
			}
			tried, tryOpen := runTry(t, cfg, rcpt, files)
			if len(tried) != len(rows) {
				t.Fatalf("psagate try printed %d decisions for %d files", len(tried), len(rows))
			}
			wantCounts := map[string]int{}
			for i, r := range rows {
				got := served[ids[i]]
				if len(got) != 1 {
					t.Fatalf("%s: %d audit entries for message %s, want exactly 1", r.File, len(got), ids[i])
				}
				sv, tr := got[0], tried[i]
				if tr.File != r.File {
					t.Fatalf("try line %d is for %s, want %s", i, tr.File, r.File)
				}
				if sv.Decision != tr.Decision || sv.Effect != tr.Effect {
					t.Errorf("%s: serve decided %s (%s), try decided %s (%s)", r.File, sv.Decision, sv.Effect, tr.Decision, tr.Effect)
				}
				if !r.Accepts(sv.Decision, sv.Effect) {
					t.Errorf("%s: decision %s (%s), EXPECTED.tsv wants %s or %v", r.File, sv.Decision, sv.Effect, r.Decision, r.AlsoOK)
				}
				switch {
				case sv.Decision == "ticket" && sv.Effect == "opened":
					wantCounts["create"]++
				case sv.Decision == "note" && sv.Effect == "noted":
					wantCounts["note"]++
				case sv.Decision == "close" && sv.Effect == "closed":
					wantCounts["close"]++
				}
			}

			var incs []*store.Incident
			if err := c.getJSON("/admin/incidents?open=1", &incs); err != nil {
				t.Fatal(err)
			}
			var serveOpen []string
			for _, i := range incs {
				serveOpen = append(serveOpen, i.Key)
			}
			sort.Strings(serveOpen)
			want := expectedOpen(clientFor(t, cfg, rows[0].RcptTo), rows)
			if len(want) == 0 {
				t.Fatal("EXPECTED.tsv leaves no incident open: the set comparison below would prove nothing")
			}
			t.Logf("%d files; open at the end: %q", len(rows), want)
			if !slices.Equal(serveOpen, want) {
				t.Errorf("open incidents in serve:\n got %q\nwant %q (from EXPECTED.tsv)", serveOpen, want)
			}
			if !slices.Equal(tryOpen, want) {
				t.Errorf("open incidents in try:\n got %q\nwant %q (from EXPECTED.tsv)", tryOpen, want)
			}
			if !slices.Equal(tryOpen, serveOpen) {
				t.Errorf("try leaves %q open, serve %q", tryOpen, serveOpen)
			}

			// What the log provider was asked to do matches the decisions:
			// one create per ticket, one note per note, one close per close.
			counts := map[string]int{}
			for _, l := range logLines(t, c.stdout) {
				counts[l.Op]++
			}
			for _, op := range []string{"create", "note", "close"} {
				if counts[op] != wantCounts[op] {
					t.Errorf("log provider %s calls = %d, want %d (all: %v)", op, counts[op], wantCounts[op], counts)
				}
			}
		})
	}
}

// clientFor names the client the config routes rcpt to.
func clientFor(t *testing.T, cfg, rcpt string) string {
	t.Helper()
	snap, err := LoadSnapshot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return route.ClientName(snap.Router.ByEnvelope([]string{rcpt}))
}

func TestSharedSamplesAttachmentReachesProvider(t *testing.T) {
	set := testutil.SharedSamples(t)
	if set == "" {
		t.Skip("SKIPPED: ../shared/samples is absent (a fresh clone); testdata/samples covers attachments in TestSamplesServeMatchesTryAndExpected")
	}
	h := startApp(t, baseConfig(t, t.TempDir(), ""), Options{})
	raw := readAll(t, filepath.Join(set, "x360_failure_PVC-SRV-XRAY_01.eml"))
	reply := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, raw)
	if !strings.HasPrefix(reply, "250") {
		t.Fatal(reply)
	}
	waitFor(t, "delivery", 10*time.Second, func() bool { return idle(h.app.DB) })
	var attach, create bool
	for _, l := range logLines(t, h.out) {
		if l.Op == "attach" && l.File == "PVC-SRV-XRAY_bootvm_2025-02-12.png" && l.ContentType == "image/png" && l.Bytes > 100 {
			attach = true
		}
		if l.Op == "create" && strings.Contains(l.Summary, "PVC-SRV-XRAY") {
			create = true
		}
	}
	if !attach || !create {
		t.Fatalf("create=%v attach=%v; provider saw:\n%s", create, attach, h.out.String())
	}
}

// TestRulesHotReload edits a rule file under a running server: a valid edit
// takes effect without a restart; an invalid one leaves the old rules
// working and is reported in the metrics and in the log, which names the
// rule file and line of the error.
func TestRulesHotReload(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	os.MkdirAll(rulesDir, 0o755)
	ruleFile := filepath.Join(rulesDir, "local.toml")
	write := func(s string) {
		if err := os.WriteFile(ruleFile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`[[rule]]
name = "heartbeat"
[rule.if]
subject_contains = ["heartbeat"]
[rule.then]
action = "ticket"
`)
	cfg := strings.Replace(baseConfig(t, dir, ""), "", "", 1)
	data := strings.Replace(string(readAll(t, cfg)), filepath.Join(testutil.RepoRoot(t), "rules"), rulesDir, 1)
	os.WriteFile(cfg, []byte(data), 0o600)
	// The server's log, kept so the test can read what an admin would.
	logs := &testutil.Buffer{}
	h := startApp(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	m := h.app.Metrics

	msg := func(n int) []byte {
		return []byte(fmt.Sprintf("From: nas@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: heartbeat %d\r\nMessage-ID: <hb%d@test>\r\n\r\nalive\r\n", n, n))
	}
	sendOne := func(n int) string {
		return testutil.SendMail(t, h.app.SMTPAddr(), "nas@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, msg(n))
	}
	if r := sendOne(1); !strings.Contains(r, "Queued as") {
		t.Fatalf("before the edit: %q", r)
	}
	reloads := value(m.ConfigReloadTimestamp)
	write(`[[rule]]
name = "heartbeat"
[rule.if]
subject_contains = ["heartbeat"]
[rule.then]
action = "drop"
`)
	waitFor(t, "the valid edit to load", 10*time.Second, func() bool {
		return value(m.ConfigReloadTimestamp) != reloads || strings.Contains(sendProbe(t, h), "discarded")
	})
	if r := sendOne(2); !strings.Contains(r, `discarded by rule "heartbeat"`) {
		t.Fatalf("after the valid edit: %q", r)
	}
	// Line 4 holds the regular expression that does not compile.
	write("[[rule]]\nname = \"heartbeat\"\n[rule.if]\nsubject_matches = ['(unclosed']\n[rule.then]\naction = \"ticket\"\n")
	waitFor(t, "the invalid edit to be reported", 10*time.Second, func() bool {
		return value(m.ConfigReloadSuccess) == 0
	})
	// The log names the file and the line of the error, so an admin can
	// find it without running `psagate check`.
	waitFor(t, "the failed reload to be logged", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "previous rules stay active")
	})
	var reported string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "previous rules stay active") {
			reported = l
		}
	}
	if !strings.Contains(reported, "level=ERROR") || !strings.Contains(reported, ruleFile+":4:") {
		t.Fatalf("the failed reload's log line does not name %s:4 (the bad regular expression):\n%s", ruleFile, reported)
	}
	if r := sendOne(3); !strings.Contains(r, `discarded by rule "heartbeat"`) {
		t.Fatalf("after the invalid edit the old rules must still decide: %q", r)
	}
	body := get(t, "http://"+h.app.HTTPAddr()+"/metrics")
	if !strings.Contains(body, "psagate_config_last_reload_successful 0") {
		t.Fatalf("metrics do not show the failed reload")
	}
}

// sendProbe sends a throwaway heartbeat and returns the reply.
func sendProbe(t *testing.T, h *harness) string {
	return testutil.SendMail(t, h.app.SMTPAddr(), "nas@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"},
		[]byte(fmt.Sprintf("Subject: heartbeat probe\r\nMessage-ID: <probe-%d@test>\r\n\r\nx\r\n", time.Now().UnixNano())))
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestMetricsAndHealth checks that the core metrics (docs/design.md, "Metrics") are exported
// and that the counters move with traffic.
func TestMetricsAndHealth(t *testing.T) {
	h := startApp(t, baseConfig(t, t.TempDir(), ""), Options{})
	base := "http://" + h.app.HTTPAddr()
	if b := get(t, base+"/healthz"); strings.TrimSpace(b) != "ok" {
		t.Fatalf("healthz = %q", b)
	}
	if b := get(t, base+"/readyz"); strings.TrimSpace(b) != "ready" {
		t.Fatalf("readyz = %q", b)
	}
	fail := []byte("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: PVC-SRV-M1\r\nMessage-ID: <m1@test>\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\n")
	noise := []byte("From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Agent PVC-WS-9 connection restored\r\nMessage-ID: <m2@test>\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\n")
	testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, fail)
	testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, noise)
	testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"someone@elsewhere.example"}, noise)
	ooo := []byte("From: office@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: Automatic reply: Backup report\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <m3@test>\r\n\r\nI am out of the office.\r\n")
	if r := testutil.SendMail(t, h.app.SMTPAddr(), "office@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, ooo); !strings.Contains(r, "discarded") {
		t.Fatalf("out-of-office reply: %q", r)
	}
	// The outbox empties when the job's deletion commits; the worker counts
	// the call right after, so wait for both before reading the counters.
	waitFor(t, "delivery", 10*time.Second, func() bool {
		return idle(h.app.DB) && value(h.app.Metrics.PSAOperations.WithLabelValues("log", "create", "success")) >= 1
	})
	body := get(t, base+"/metrics")
	for _, name := range []string{
		"psagate_smtp_sessions_active", "psagate_messages_received_total", "psagate_messages_dropped_total",
		"psagate_rule_matches_total", "psagate_psa_operations_total", "psagate_psa_operation_duration_seconds",
		"psagate_outbox_jobs", "psagate_dead_jobs", "psagate_incidents_open", "psagate_rules_loaded",
		"psagate_config_last_reload_successful", "psagate_config_last_reload_success_timestamp_seconds",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("metric %s missing from /metrics", name)
		}
	}
	m := h.app.Metrics
	if v := value(m.MessagesReceived.WithLabelValues("queued")); v != 2 {
		t.Errorf("queued = %v, want 2", v)
	}
	if v := value(m.MessagesReceived.WithLabelValues("dropped")); v != 1 {
		t.Errorf("dropped = %v, want 1 (the out-of-office reply)", v)
	}
	if v := value(m.Decisions.WithLabelValues("close", "no-op")); v != 1 {
		t.Errorf("close no-op decisions = %v, want 1 (a restore with nothing open)", v)
	}
	if v := value(m.PSAOperations.WithLabelValues("log", "create", "success")); v != 1 {
		t.Errorf("tickets create success = %v, want 1", v)
	}
	if v := value(m.SMTPRefused.WithLabelValues("relay")); v != 1 {
		t.Errorf("refused relay = %v, want 1", v)
	}
	if !strings.Contains(body, "psagate_incidents_open 1") {
		t.Errorf("incidents_open is not 1")
	}
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
