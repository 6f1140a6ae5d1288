package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
[smtp]
listen = "127.0.0.1:2525"
accept_domains = ["Alerts.Example.NET"]
allowed_networks = ["127.0.0.0/8", "10.1.2.3"]
read_timeout = "30s"
[[smtp.user]]
name = "appliance"
password = "env:TEST_SMTP_PW"

[psa]
provider = "connectwise"
[psa.connectwise]
site = "api-na.myconnectwise.net"
company_id = "mymsp"
public_key = "env:TEST_CW_PUB"
private_key = "file:SECRETFILE"
board = "Backup Alerts"

[[client]]
name = "acme"
recipients = ["ACME@alerts.example.net"]
senders = ["@acme-bdr.example.com"]
devices = ["ACME-*"]
[client.psa]
connectwise.company = "ACME01"
connectwise.priority = "Priority 1 - Emergency Response"
[[client.device]]
name = "ACME-VAULT-01"
[client.device.psa]
connectwise.board = "Vault Alerts"

[[client]]
name = "beta"
enabled = false
[client.psa]
provider = "autotask"
autotask.queue_id = 29683482
`

func TestParseGood(t *testing.T) {
	dir := t.TempDir()
	sf := filepath.Join(dir, "pk")
	if err := os.WriteFile(sf, []byte("private-secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_SMTP_PW", "smtp-secret-value")
	t.Setenv("TEST_CW_PUB", "public-secret-value")
	cfg, err := Parse("test.toml", []byte(strings.ReplaceAll(good, "SECRETFILE", sf)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := cfg.SMTP.AcceptDomains[0]; got != "alerts.example.net" {
		t.Errorf("accept domain = %q", got)
	}
	if cfg.SMTP.ReadTimeout.D() != 30*time.Second || cfg.SMTP.WriteTimeout.D() != 60*time.Second {
		t.Errorf("timeouts = %v / %v", cfg.SMTP.ReadTimeout.D(), cfg.SMTP.WriteTimeout.D())
	}
	if len(cfg.SMTP.AllowedPrefixes) != 2 || cfg.SMTP.AllowedPrefixes[1].String() != "10.1.2.3/32" {
		t.Errorf("prefixes = %v", cfg.SMTP.AllowedPrefixes)
	}
	if cfg.SMTP.Users[0].Password.Value() != "smtp-secret-value" {
		t.Errorf("smtp password not resolved")
	}
	if got := cfg.PSA.Get("connectwise.private_key"); got != "private-secret-value" {
		t.Errorf("file secret = %q", got)
	}
	if got := cfg.PSA.Get("auto_close"); got != "true" {
		t.Errorf("auto_close default = %q", got)
	}
	acme := cfg.Client("ACME")
	if acme == nil || !acme.Enabled || acme.PSA.Get("connectwise.company") != "ACME01" {
		t.Fatalf("acme = %+v", acme)
	}
	if acme.Recipients[0] != "acme@alerts.example.net" {
		t.Errorf("recipient not lower-cased: %q", acme.Recipients[0])
	}
	if d := acme.Device[0]; d.Name != "ACME-VAULT-01" || d.PSA.Get("connectwise.board") != "Vault Alerts" {
		t.Errorf("device = %+v", d)
	}
	beta := cfg.Client("beta")
	if beta.Enabled || beta.PSA.Get("autotask.queue_id") != "29683482" || beta.PSA.Provider() != "autotask" {
		t.Errorf("beta = %+v", beta)
	}
	// Printing the config or its settings never shows a secret.
	for _, s := range []string{cfg.PSA.String(), strings.Join(cfg.Secrets(), ","), fmtAll(cfg)} {
		_ = s
	}
	out := fmtAll(cfg)
	for _, secret := range []string{"smtp-secret-value", "public-secret-value", "private-secret-value"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q printed by %%+v", secret)
		}
	}
	all := strings.Join(cfg.Secrets(), "\n")
	for _, secret := range []string{"smtp-secret-value", "public-secret-value", "private-secret-value", "c210cC1zZWNyZXQtdmFsdWU="} {
		if !strings.Contains(all, secret) {
			t.Errorf("Secrets() lacks %q (raw values and their encodings)", secret)
		}
	}
}

func fmtAll(cfg *Config) string {
	var b strings.Builder
	b.WriteString(cfg.PSA.String())
	for _, u := range cfg.SMTP.Users {
		b.WriteString(u.Password.String())
		b.WriteString(u.Password.GoString())
	}
	return b.String()
}

func TestParseErrorsNameFileLineKey(t *testing.T) {
	bad := `[smtp]
listn = "x"
accept_domains = ["a.example"]
read_timeout = "60 seconds"

[psa]
provider = "conectwise"
[psa.connectwise]
bord = "X"

[[client]]
name = "a"
[client.psa]
connectwise.priorty = "P1"
[[client]]
name = "A"
`
	_, err := Parse("bad.toml", []byte(bad))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want Errors", err)
	}
	// A bad duration must not hide the rest: every problem comes at once.
	want := []string{
		"bad.toml:2: smtp.listn: unknown key",
		`bad.toml:4: smtp.read_timeout: "60 seconds" is not a duration`,
		`bad.toml:7: psa.provider: provider must be one of autotask, connectwise, log, not "conectwise" (did you mean "connectwise"?)`,
		`bad.toml:9: psa.connectwise.bord: unknown PSA setting (did you mean "connectwise.board"?)`,
		`bad.toml:14: client[0].psa.connectwise.priorty: unknown PSA setting (did you mean "connectwise.priority"?)`,
		`bad.toml:16: client[1].name: client "A" is defined twice (first at line 11)`,
	}
	if len(es) != len(want) {
		t.Errorf("%d errors, want %d:\n%v", len(es), len(want), err)
	}
	got := err.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

func TestMissingSecretEnv(t *testing.T) {
	os.Unsetenv("PSAGATE_TEST_UNSET")
	doc := `[smtp]
accept_domains = ["a.example"]
[psa]
provider = "PROVIDER"
[psa.connectwise]
private_key = "env:PSAGATE_TEST_UNSET"
`
	_, err := Parse("c.toml", []byte(strings.Replace(doc, "PROVIDER", "connectwise", 1)))
	if err == nil || !strings.Contains(err.Error(), "c.toml:6: psa.connectwise.private_key: environment variable PSAGATE_TEST_UNSET is not set") {
		t.Fatalf("err = %v", err)
	}
	// A section for a provider nobody uses may lack its secrets: the
	// example config runs on the log provider without credentials.
	if _, err := Parse("c.toml", []byte(strings.Replace(doc, "PROVIDER", "log", 1))); err != nil {
		t.Fatalf("unused provider's missing secret: %v", err)
	}
}

func TestDefaultsAreSafe(t *testing.T) {
	cfg, err := Parse("c.toml", []byte("[smtp]\naccept_domains = [\"a.example\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP.Listen != "127.0.0.1:2525" {
		t.Errorf("default listen = %q, want loopback", cfg.SMTP.Listen)
	}
	for _, p := range cfg.SMTP.AllowedPrefixes {
		if !p.Addr().IsLoopback() {
			t.Errorf("default allowed network %v is not loopback", p)
		}
	}
	if cfg.PSA.Provider() != "log" {
		t.Errorf("default provider = %q, want log", cfg.PSA.Provider())
	}
	if cfg.Rules.DefaultAction != "ticket" {
		t.Errorf("default action = %q", cfg.Rules.DefaultAction)
	}
	if cfg.SMTP.BareLF != "normalize" || cfg.Rules.OnHeaderInjection != "quarantine" {
		t.Errorf("bare_lf=%q on_header_injection=%q", cfg.SMTP.BareLF, cfg.Rules.OnHeaderInjection)
	}
	// queue, incidents and audit reach a running server through the admin
	// API, so it is on by default, and on loopback only.
	if cfg.HTTP.Listen != "127.0.0.1:9725" {
		t.Errorf("default http.listen = %q, want 127.0.0.1:9725", cfg.HTTP.Listen)
	}
	const smtp = "[smtp]\naccept_domains = [\"a.example\"]\n"
	for _, c := range []struct{ doc, want string }{
		{smtp + "[http]\n", "127.0.0.1:9725"},  // the section alone does not set the key
		{smtp + "[http]\nlisten = \"\"\n", ""}, // the way to turn HTTP off
		{smtp + "[http]\nlisten = \"127.0.0.1:0\"\n", "127.0.0.1:0"},
		{"http.listen = \"[::1]:9000\"\n" + smtp, "[::1]:9000"},
	} {
		cfg, err := Parse("c.toml", []byte(c.doc))
		if err != nil {
			t.Fatalf("%q: %v", c.doc, err)
		}
		if cfg.HTTP.Listen != c.want {
			t.Errorf("%q: http.listen = %q, want %q", c.doc, cfg.HTTP.Listen, c.want)
		}
	}
}

func TestAcceptDomainsRequired(t *testing.T) {
	_, err := Parse("c.toml", []byte("[smtp]\nlisten = \"127.0.0.1:25\"\n"))
	if err == nil || !strings.Contains(err.Error(), "accept_domains is empty") {
		t.Fatalf("err = %v", err)
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	_, err := Parse("s.toml", []byte("[smtp]\nlisten = \n"))
	if err == nil || !strings.HasPrefix(err.Error(), "s.toml:2:") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[smtp]\naccept_domains=[\"a\"]\n[[client]]\n[client.psa]\nx.y.z=1\n"))
	f.Add([]byte("[smtp]\naccept_domains=\"a\"\nmax_sessions=\"1\"\nread_timeout=5\n[[smtp.user]]\npassword=[1]\n[deliver.log]\nrate_per_minute=nan\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		var es Errors
		if err != nil && errors.As(err, &es) {
			for _, e := range es {
				if e.File != "fuzz.toml" || e.Line < 0 {
					t.Fatalf("bad error position: %+v", e)
				}
				// The decoder's own errors ("toml: line 3 (last key ...)")
				// mean checkValues let a bad value through.
				if strings.HasPrefix(e.Msg, "toml:") {
					t.Fatalf("value error left to the decoder: %+v", e)
				}
			}
		}
	})
}

func TestLoadWithoutSecretsNeedsNoEnvironment(t *testing.T) {
	os.Unsetenv("PSAGATE_TEST_UNSET")
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte(`[smtp]
accept_domains = ["a.example"]
[[smtp.user]]
name = "u"
password = "env:PSAGATE_TEST_UNSET"
[psa]
provider = "connectwise"
[psa.connectwise]
private_key = "env:PSAGATE_TEST_UNSET"
board = "B"
`), 0o600)
	if _, err := Load(path); err == nil {
		t.Fatal("Load resolved nothing and did not complain")
	}
	cfg, err := LoadWithoutSecrets(path)
	if err != nil {
		t.Fatalf("LoadWithoutSecrets: %v", err)
	}
	if cfg.PSA.Get("connectwise.private_key") != "" || cfg.PSA.Get("connectwise.board") != "B" {
		t.Fatalf("settings = %v", cfg.PSA)
	}
}

func TestSyntaxErrorInSecretDoesNotShowIt(t *testing.T) {
	_, err := Parse("s.toml", []byte("[smtp]\naccept_domains = [\"a\"]\n[psa.connectwise]\nprivate_key = hunter2secretvalue\n"))
	if err == nil || strings.Contains(err.Error(), "hunter") || !strings.Contains(err.Error(), "s.toml:4:") {
		t.Fatalf("err = %v", err)
	}
}

func TestIncidentsSectionAndDisabledUntil(t *testing.T) {
	cfg, err := Parse("c.toml", []byte(`[smtp]
accept_domains = ["a.example"]
[incidents]
after_manual_close = "reopen"
[[client]]
name = "acme"
disabled_until = "2026-12-08T06:00:00Z"
[[client]]
name = "beta"
[client.psa]
after_manual_close = "new"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Incidents.ReconcileEvery.D() != 10*time.Minute || cfg.Incidents.MaxNotesPerHour != 4 || cfg.Incidents.ReconcilePerMinute != 30 {
		t.Errorf("defaults: %+v", cfg.Incidents)
	}
	if cfg.PSA["after_manual_close"] != "reopen" || cfg.Clients[1].PSA["after_manual_close"] != "new" {
		t.Errorf("after_manual_close: org %q, beta %q", cfg.PSA["after_manual_close"], cfg.Clients[1].PSA["after_manual_close"])
	}
	acme := cfg.Clients[0]
	until := time.Date(2026, 12, 8, 6, 0, 0, 0, time.UTC)
	if acme.EnabledAt(until.Add(-time.Second)) || !acme.EnabledAt(until) {
		t.Errorf("acme disabled until %s: EnabledAt wrong", acme.DisabledUntil)
	}
	for _, bad := range []struct{ doc, want string }{
		{"[incidents]\nafter_manual_close = \"close\"\n", `c.toml:4: incidents.after_manual_close: must be "new" or "reopen", not "close"`},
		{"[psa]\nafter_manual_close = \"ignore\"\n", `c.toml:4: psa.after_manual_close: after_manual_close must be "new" or "reopen", not "ignore"`},
		{"[[client]]\nname = \"x\"\nenabled = true\ndisabled_until = \"2026-12-08\"\n", "disabled_until turns a disabled client back on"},
		{"[[client]]\nname = \"x\"\ndisabled_until = \"tomorrow\"\n", `"tomorrow" is not a time`},
	} {
		_, err := Parse("c.toml", []byte("[smtp]\naccept_domains = [\"a.example\"]\n"+bad.doc))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: err = %v, want %q", bad.doc, err, bad.want)
		}
	}
}
