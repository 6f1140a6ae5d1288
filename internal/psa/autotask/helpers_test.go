package autotask_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"psagate/internal/psa"
	"psagate/internal/psa/autotask"
	"psagate/internal/psa/autotask/fake"
	"psagate/internal/testutil"
)

// clock is a settable clock shared by the fake and the provider.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	fk    *fake.Server
	p     *autotask.Provider
	s     psa.Settings
	clock *clock
	log   *testutil.Buffer

	mu     sync.Mutex
	sleeps []time.Duration
}

// newEnv starts a fake with DefaultConfig changed by mut and a provider
// with a fake clock and a recording sleeper, changed by opt.
func newEnv(t *testing.T, mut func(*fake.Config), opt func(*autotask.Options)) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: time.Date(2026, 2, 11, 9, 30, 0, 0, time.UTC)}, log: &testutil.Buffer{}}
	cfg := fake.DefaultConfig()
	cfg.Now = e.clock.Now
	if mut != nil {
		mut(&cfg)
	}
	e.fk = fake.Start(cfg)
	t.Cleanup(e.fk.Close)
	opts := autotask.Options{
		Logger: slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    e.clock.Now,
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.mu.Lock()
			e.sleeps = append(e.sleeps, d)
			e.mu.Unlock()
			return ctx.Err()
		},
	}
	if opt != nil {
		opt(&opts)
	}
	e.p = autotask.New(opts)
	e.s = e.fk.Settings()
	t.Cleanup(func() {
		// Whatever a test did, no secret may have reached the log.
		e.noSecrets("log", e.log.String())
	})
	return e
}

func (e *env) Sleeps() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]time.Duration(nil), e.sleeps...)
}

// with returns the env's settings with changes ("" deletes a key).
func (e *env) with(kv ...string) psa.Settings {
	s := psa.Settings{}
	for k, v := range e.s {
		s[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(s, kv[i])
		} else {
			s[kv[i]] = kv[i+1]
		}
	}
	return s
}

func (e *env) noSecrets(what, text string) {
	e.t.Helper()
	for _, sec := range []string{fake.DefaultSecret, fake.DefaultIntegrationCode, "wrong-secret-value", "WRONGCODE1234567890"} {
		if strings.Contains(text, sec) {
			e.t.Errorf("%s contains a secret (%q): %s", what, sec, text)
		}
	}
}

func (e *env) create(s psa.Settings, retry bool, t psa.Ticket) (psa.TicketRef, error) {
	return e.p.Create(context.Background(), psa.Call{Settings: s, Retry: retry}, t)
}

func (e *env) mustCreate(s psa.Settings, t psa.Ticket) psa.TicketRef {
	e.t.Helper()
	ref, err := e.create(s, false, t)
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return ref
}

func (e *env) ticket(ref psa.TicketRef) fake.Ticket {
	e.t.Helper()
	for _, tk := range e.fk.Tickets() {
		if ref.ID == itoa(tk.ID) {
			return tk
		}
	}
	e.t.Fatalf("ticket %s not in the fake", ref)
	return fake.Ticket{}
}

// reqs returns the recorded requests matching method and a path suffix
// (case-insensitive); "" matches any.
func (e *env) reqs(method, suffix string) []fake.Request {
	var out []fake.Request
	for _, r := range e.fk.Requests() {
		if method != "" && r.Method != method {
			continue
		}
		if suffix != "" && !strings.HasSuffix(strings.ToLower(r.Path), strings.ToLower(suffix)) {
			continue
		}
		out = append(out, r)
	}
	return out
}

func bodyMap(t *testing.T, r fake.Request) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body of %s %s is not JSON: %v: %s", r.Method, r.Path, err, r.Body)
	}
	return m
}

func asPSA(t *testing.T, err error) *psa.Error {
	t.Helper()
	var pe *psa.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *psa.Error", err, err)
	}
	return pe
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

var sample = psa.Ticket{
	Summary:     "[PVC-BDR1] Failed Backup: PVC-SRV-DB2",
	Description: "The backup of PVC-SRV-DB2 failed.\nError: VSS writer timed out.",
	ExternalRef: "psagate:pinecrest/PVC-SRV-DB2/backup:01JKZ",
	Key:         "pinecrest/PVC-SRV-DB2/backup",
	Client:      "pinecrest",
	Device:      "PVC-SRV-DB2",
}
