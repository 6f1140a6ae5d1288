package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"psagate/internal/psa/logpsa"
	"psagate/internal/store"
	"psagate/internal/testutil"
)

// logLines parses the log provider's JSON lines.
func logLines(t testing.TB, s *testutil.Buffer) []logpsa.Line {
	t.Helper()
	var out []logpsa.Line
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l logpsa.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log provider line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// baseConfig is a config for tests: free ports, state in dir, the shipped
// rule packs, the log provider, and the sample client.
func baseConfig(t testing.TB, dir, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`
[smtp]
listen = "127.0.0.1:0"
hostname = "psagate.test"
accept_domains = ["alerts.example.net"]
[state]
path = %q
[http]
listen = "127.0.0.1:0"
[rules]
dir = %q
watch_interval = "100ms"
[log]
level = "warn"
[psa]
provider = "log"
[[client]]
name = "pinecrest"
recipients = ["pinecrest@alerts.example.net"]
senders = ["@pinecrest-vet.example"]
devices = ["PVC-*"]
%s`, filepath.Join(dir, "state.db"), filepath.Join(testutil.RepoRoot(t), "rules"), extra)
	path := filepath.Join(dir, "psagate.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type harness struct {
	t   testing.TB
	app *App
	out *testutil.Buffer
	cfg string
}

func startApp(t testing.TB, cfgPath string, o Options) *harness {
	t.Helper()
	out := &testutil.Buffer{}
	if o.LogOutput == nil {
		o.LogOutput = out
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := Start(context.Background(), cfgPath, o)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	h := &harness{t: t, app: a, out: out, cfg: cfgPath}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.app == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.app.Shutdown(ctx); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	h.app = nil
}

// testWriter sends server logs to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes. It is used
// only for asynchronous effects that have no other signal (the spool
// worker and the delivery workers run in the background by design).
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// idle reports whether the spool and the outbox are empty.
func idle(db *store.DB) bool {
	c, err := db.Counts()
	return err == nil && c.Spool == 0 && c.Outbox == 0
}

func readAll(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o600) }
