package connectwise

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"psagate/internal/psa"
	"psagate/internal/psa/connectwise/fake"
	"psagate/internal/testutil"
)

// authHeader is the exact Authorization value for fake.DefaultConfig's
// credentials: Basic base64("mymsp+k3Y8pUbL1cQx7WmZ:Pr1v8tEk3yN0t4U2"),
// computed outside Go so the test does not share the client's encoding.
const authHeader = "Basic bXltc3ArazNZOHBVYkwxY1F4N1dtWjpQcjF2OHRFazN5TjB0NFUy"

// secrets are the strings no error, log line or Test output may contain.
var secrets = []string{fake.DefaultPublicKey, fake.DefaultPrivateKey, fake.DefaultClientID,
	strings.TrimPrefix(authHeader, "Basic ")}

func assertNoSecrets(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s contains the secret %q:\n%s", what, s, text)
		}
	}
}

type env struct {
	srv  *fake.Server
	p    *Provider
	logs *testutil.Buffer
	st   psa.Settings
}

// newEnv starts a fake (modified by mod) and a provider that logs at debug
// level into a buffer checked for secrets at the end of the test.
func newEnv(t *testing.T, mod func(*fake.Config)) *env {
	t.Helper()
	cfg := fake.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	srv := fake.Start(cfg)
	t.Cleanup(srv.Close)
	return newEnvFor(t, srv)
}

func newEnvFor(t *testing.T, srv *fake.Server) *env {
	logs := &testutil.Buffer{}
	p := New(Options{HTTPClient: srv.Client(),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	st := srv.Settings()
	st["connectwise.status"] = "New"
	st["connectwise.type"] = "Backup"
	st["connectwise.subtype"] = "Failure"
	st["connectwise.priority"] = "Priority 3 - Normal Response"
	t.Cleanup(func() { assertNoSecrets(t, "the log", logs.String()) })
	return &env{srv: srv, p: p, logs: logs, st: st}
}

func (e *env) call(retry bool) psa.Call { return psa.Call{Settings: e.st, Retry: retry} }

// requests returns the recorded requests of one method and API path.
func (e *env) requests(method, apiPath string) []fake.Request {
	var out []fake.Request
	for _, r := range e.srv.Requests() {
		if r.Method == method && r.APIPath == apiPath {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) create(t *testing.T) psa.TicketRef {
	t.Helper()
	ref, err := e.p.Create(context.Background(), e.call(false), psa.Ticket{
		Summary: "Backup failed", Description: "details", ExternalRef: "psagate:" + t.Name(), Key: "k"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return ref
}

func asPSAError(t *testing.T, err error) *psa.Error {
	t.Helper()
	var pe *psa.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *psa.Error", err, err)
	}
	assertNoSecrets(t, "the error", err.Error())
	return pe
}
