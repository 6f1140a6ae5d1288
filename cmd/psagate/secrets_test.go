package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"psagate/internal/app"
	"psagate/internal/psa"
	atfake "psagate/internal/psa/autotask/fake"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/testutil"
)

// The known secrets of the CLI leak test (the same values as the serve
// test in internal/app). Some carry characters that URL, JSON and Go
// quoting change, so the encoded forms differ from the raw values.
const (
	leakCWPublic  = "cwPub7xQ2mZk9LrT4vNe"                 // given as file:
	leakCWPrivate = "cwPriv+8hS/3kW=pQ$Yz7Jd"              // given as env:
	leakCWClient  = "5e1c9a3b-77d2-4f0e-b8a6-c0ffee5ec7e7" // given as a literal
	leakATSecret  = "atSec#Kq9/Vb+Wx=Lm!r2Tz"              // given as env:
	leakATCode    = "ATCODE7QX2ZK9LRT4VNEPSG"              // given as file:
	leakSMTPPass1 = `smtp"Pw\4Rk/9x+Tq8=Zr%e`              // given as env:
	leakSMTPPass2 = "relayPw-Gh5Ls9Qw2Xe7Nb"               // given as a literal
	leakCWCompany = "mymsp"
)

func cwToken(company, public, private string) string {
	return base64.StdEncoding.EncodeToString([]byte(company + "+" + public + ":" + private))
}

func cliSecrets() *testutil.Secrets {
	s := &testutil.Secrets{}
	s.Add("connectwise.public_key", leakCWPublic)
	s.Add("connectwise.private_key", leakCWPrivate)
	s.Add("connectwise.client_id", leakCWClient)
	s.Add("autotask.secret", leakATSecret)
	s.Add("autotask.integration_code", leakATCode)
	s.Add("smtp.user appliance password", leakSMTPPass1)
	s.Add("smtp.user relay password", leakSMTPPass2)
	s.Derived("ConnectWise Basic token", cwToken(leakCWCompany, leakCWPublic, leakCWPrivate))
	return s
}

func TestSecretDetectorCLI(t *testing.T) {
	s := cliSecrets()
	if got := s.Find("[redacted] mymsp+[redacted] " + url.QueryEscape("[redacted]")); len(got) != 0 {
		t.Fatalf("false positives: %q", got)
	}
	for _, f := range s.All() {
		if len(s.Find("<"+f.Text+">")) == 0 {
			t.Errorf("%s is not detected", f.Name)
		}
	}
}

// cliLeak runs one command in-process and fails the test for any secret
// in its stdout or stderr.
func cliLeak(t *testing.T, s *testutil.Secrets, args ...string) (int, string, string) {
	t.Helper()
	code, out, errb := runCLI(args...)
	name := strings.Join(args[:min(2, len(args))], " ")
	s.Check(t, "`psagate "+name+"` stdout", out)
	s.Check(t, "`psagate "+name+"` stderr", errb)
	return code, out, errb
}

// leakCLIConfig writes a config: the organisation's settings org, client
// acme's overrides acme, and two SMTP users. The known secrets in org become
// file: and env: references (public key and integration code from files,
// private key and Autotask secret from the environment); the client id and
// the relay password stay literals.
func leakCLIConfig(t *testing.T, org, acme psa.Settings, extra string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return "file:" + p
	}
	org = maps.Clone(org)
	if org["connectwise.public_key"] == leakCWPublic {
		org["connectwise.public_key"] = write("cw-public.key", leakCWPublic)
	}
	if org["connectwise.private_key"] == leakCWPrivate {
		org["connectwise.private_key"] = "env:PSAGATE_LEAKTEST_CW_PRIVATE"
	}
	if org["autotask.secret"] == leakATSecret {
		org["autotask.secret"] = "env:PSAGATE_LEAKTEST_AT_SECRET"
	}
	if org["autotask.integration_code"] == leakATCode {
		org["autotask.integration_code"] = write("at-integration.code", leakATCode)
	}
	var client strings.Builder
	client.WriteString("[[client]]\nname = \"acme\"\nrecipients = [\"acme@alerts.example.net\"]\n[client.psa]\n")
	for _, k := range slices.Sorted(maps.Keys(acme)) {
		fmt.Fprintf(&client, "%s = %q\n", k, acme[k])
	}
	users := "[[smtp.user]]\nname = \"appliance\"\npassword = \"env:PSAGATE_LEAKTEST_SMTP_PASSWORD\"\n" +
		"[[smtp.user]]\nname = \"relay\"\npassword = \"" + leakSMTPPass2 + "\"\n"
	return writeConfig(t, psaSection(org), "\n"+client.String()+users+extra)
}

// leakOrg is the organisation's settings: ConnectWise at cw with the known
// keys, and the Autotask credentials for client acme.
func leakOrg(cw *cwfake.Server, at *atfake.Server) psa.Settings {
	s := cw.Settings()
	s["connectwise.company"] = "PVC01"
	s["connectwise.timeout"] = "2s"
	s["connectwise.public_key"], s["connectwise.private_key"], s["connectwise.client_id"] = leakCWPublic, leakCWPrivate, leakCWClient
	for k, v := range at.Settings() {
		if k != "provider" {
			s[k] = v
		}
	}
	s["autotask.secret"], s["autotask.integration_code"] = leakATSecret, leakATCode
	s["autotask.timeout"] = "2s"
	return s
}

var leakAcme = psa.Settings{"provider": "autotask", "autotask.company_id": "501"}

func leakCWFake() *cwfake.Server {
	c := cwfake.DefaultConfig()
	c.CompanyID, c.PublicKey, c.PrivateKey, c.ClientID = leakCWCompany, leakCWPublic, leakCWPrivate, leakCWClient
	return cwfake.Start(c)
}

func leakATFake() *atfake.Server {
	c := atfake.DefaultConfig()
	c.Secret, c.IntegrationCode = leakATSecret, leakATCode
	return atfake.Start(c)
}

func cwEchoText(what string) string {
	return fmt.Sprintf("%s; request had Authorization: Basic %s, client_id %s, key %s+%s:%s",
		what, cwToken(leakCWCompany, leakCWPublic, leakCWPrivate), leakCWClient, leakCWCompany, leakCWPublic, leakCWPrivate)
}

func atEchoText(what string) string {
	return fmt.Sprintf("%s; request had UserName: %s, Secret: %s, ApiIntegrationCode: %s", what, atfake.DefaultUsername, leakATSecret, leakATCode)
}

func setLeakEnv(t *testing.T) {
	t.Setenv("PSAGATE_LEAKTEST_CW_PRIVATE", leakCWPrivate)
	t.Setenv("PSAGATE_LEAKTEST_AT_SECRET", leakATSecret)
	t.Setenv("PSAGATE_LEAKTEST_SMTP_PASSWORD", leakSMTPPass1)
}

// TestSecretsNeverLeakFromCheck: `check` over configs whose settings are
// wrong in ways that make a message quote them.
func TestSecretsNeverLeakFromCheck(t *testing.T) {
	setLeakEnv(t)
	s := cliSecrets()
	cw, at := leakCWFake(), leakATFake()
	defer cw.Close()
	defer at.Close()
	org := leakOrg(cw, at)

	code, out, errb := cliLeak(t, s, "check", "-config", leakCLIConfig(t, org, leakAcme, ""))
	if code != 0 || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("the valid config: exit %d\n%s%s", code, out, errb)
	}
	userinfo := url.UserPassword(leakCWCompany+"+"+leakCWPublic, leakCWPrivate).String()
	for _, tc := range []struct {
		name    string
		org     map[string]string // changes; "" deletes
		acme    map[string]string
		message string // what the output must say, so the bad setting was looked at
	}{
		{"site with the credentials in clear", map[string]string{"connectwise.endpoint": "",
			"connectwise.site": "https://" + leakCWCompany + "+" + leakCWPublic + ":" + leakCWPrivate + "@na.myconnectwise.net/v4_6_release"}, nil, "connectwise.site"},
		{"site with URL-encoded credentials", map[string]string{"connectwise.endpoint": "",
			"connectwise.site": "https://" + userinfo + "@na.myconnectwise.net/v4_6_release"}, nil, "connectwise.site"},
		{"endpoint with URL-encoded credentials", map[string]string{
			"connectwise.endpoint": "https://" + userinfo + "@cw.example.com/v4_6_release/apis/3.0"}, nil, "connectwise.endpoint"},
		{"bad api_version and company_id with the keys", map[string]string{"connectwise.api_version": "v" + leakCWPublic,
			"connectwise.company_id": leakCWCompany + "+" + leakCWPublic}, nil, "connectwise.api_version"},
		{"zone_url with URL-encoded credentials", nil, map[string]string{
			"autotask.zone_url": "https://" + url.UserPassword(atfake.DefaultUsername, leakATSecret).String() + "@webservices.autotask.net/atservicesrest/v1.0/"}, "autotask.zone_url"},
		{"missing Autotask username", map[string]string{"autotask.username": ""}, nil, "autotask.username"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, a := maps.Clone(org), maps.Clone(leakAcme)
			for k, v := range tc.org {
				if v == "" {
					delete(o, k)
				} else {
					o[k] = v
				}
			}
			maps.Copy(a, tc.acme)
			code, out, errb := cliLeak(t, s, "check", "-config", leakCLIConfig(t, o, a, ""))
			if code != 1 || !strings.Contains(out+errb, tc.message) {
				t.Fatalf("exit %d, output lacks %q:\n%s%s", code, tc.message, out, errb)
			}
		})
	}
	// Secret references that cannot be resolved, and a misspelt secret key
	// holding a literal.
	for _, tc := range []struct{ name, org, want string }{
		{"unset variable", "env:PSAGATE_LEAKTEST_UNSET", "PSAGATE_LEAKTEST_UNSET"},
		{"missing file", "file:/nonexistent/" + "psagate-leaktest.key", "psagate-leaktest.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := maps.Clone(org)
			o["connectwise.private_key"] = tc.org
			code, out, errb := cliLeak(t, s, "check", "-config", leakCLIConfig(t, o, leakAcme, ""))
			if code != 1 || !strings.Contains(out+errb, tc.want) {
				t.Fatalf("exit %d, output lacks %q:\n%s%s", code, tc.want, out, errb)
			}
		})
	}
	// TOML syntax errors on the lines of literal secrets.
	for _, tc := range []struct{ name, from, to string }{
		{"unterminated literal", fmt.Sprintf("%q", leakCWClient), `"` + leakCWClient},
		{"unquoted literal", `"` + leakSMTPPass2 + `"`, leakSMTPPass2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := leakCLIConfig(t, org, leakAcme, "")
			data := string(readFileT(t, cfg))
			if !strings.Contains(data, tc.from) {
				t.Fatalf("config lacks %s", tc.from)
			}
			writeFileT(t, cfg, strings.Replace(data, tc.from, tc.to, 1))
			if code, out, errb := cliLeak(t, s, "check", "-config", cfg); code != 1 || !strings.Contains(out, cfg+":") {
				t.Fatalf("exit %d:\n%s%s", code, out, errb)
			}
		})
	}
	t.Run("misspelt secret key", func(t *testing.T) {
		o := maps.Clone(org)
		o["connectwise.privat_key"] = leakCWPrivate
		code, out, errb := cliLeak(t, s, "check", "-config", leakCLIConfig(t, o, leakAcme, ""))
		if code != 1 || !strings.Contains(out, "connectwise.private_key") {
			t.Fatalf("exit %d:\n%s%s", code, out, errb)
		}
	})
}

// TestSecretsNeverLeakFromPSATest: `psa test` and `psa lookup` against
// fakes that refuse the keys, or answer 401, 403, 429 and 500 with bodies
// that echo every credential back, or drop the connection.
func TestSecretsNeverLeakFromPSATest(t *testing.T) {
	setLeakEnv(t)
	s := cliSecrets()
	token := "Basic " + cwToken(leakCWCompany, leakCWPublic, leakCWPrivate)

	cwCases := []struct {
		name   string
		faults []cwfake.Fault
		keys   bool // the fake has other keys than the config
		ok     bool
		echo   bool // the fake's answers echo the credentials
	}{
		{name: "good", ok: true},
		{name: "wrong keys", keys: true},
		{name: "401 echo", echo: true, faults: []cwfake.Fault{{Status: 401, Times: 100, Body: `{"code":"Unauthorized","message":"` + cwEchoText("Bad key") + `"}`}}},
		{name: "403 echo", echo: true, faults: []cwfake.Fault{{Status: 403, Times: 100, Body: `{"code":"Security","message":"` + cwEchoText("No permission") + `"}`}}},
		{name: "429 echo", echo: true, faults: []cwfake.Fault{{Status: 429, Times: 100, Body: `{"error":"ConnectWiseAPI","message":"` + cwEchoText("Too many requests") + `"}`}}},
		{name: "500 echo", echo: true, faults: []cwfake.Fault{{Status: 500, Times: 100, Body: cwEchoText("Internal error")}}},
		{name: "400 echo on boards", echo: true, faults: []cwfake.Fault{{Path: "/service/boards", Status: 400, Times: 100,
			Body: `{"code":"InvalidObject","message":"` + cwEchoText("Bad condition") + `"}`}}},
		{name: "dropped connection", faults: []cwfake.Fault{{Drop: true, Times: 100}}},
	}
	for _, tc := range cwCases {
		t.Run("connectwise "+tc.name, func(t *testing.T) {
			c := cwfake.DefaultConfig()
			c.CompanyID, c.PublicKey, c.PrivateKey, c.ClientID = leakCWCompany, leakCWPublic, leakCWPrivate, leakCWClient
			if tc.keys {
				c.PublicKey, c.PrivateKey = "OtherPublicKey00", "OtherPrivateKey0"
			}
			cw := cwfake.Start(c)
			defer cw.Close()
			at := leakATFake()
			defer at.Close()
			for _, f := range tc.faults {
				cw.Inject(f)
			}
			cfg := leakCLIConfig(t, leakOrg(cw, at), leakAcme, "")
			code, out, errb := cliLeak(t, s, "psa", "test", "-config", cfg)
			if tc.ok != (code == 0) || (tc.ok && !strings.Contains(out, "Connection Succeeded")) { // other scopes may succeed
				t.Errorf("psa test: exit %d\n%s%s", code, out, errb)
			}
			shown := out + errb
			code, out, errb = cliLeak(t, s, "psa", "lookup", "-config", cfg, "boards")
			if tc.ok != (code == 0) {
				t.Errorf("psa lookup boards: exit %d\n%s%s", code, out, errb)
			}
			// The echo reached the output, scrubbed: the check above had
			// something to find.
			if shown += out + errb; tc.echo && !strings.Contains(shown, "[redacted]") {
				t.Errorf("no scrubbed echo in the output; the faults were not met:\n%s", shown)
			}
			sent := 0
			for _, r := range cw.Requests() {
				if r.Header.Get("Authorization") == token && r.Header.Get("clientId") == leakCWClient {
					sent++
				}
			}
			if sent == 0 {
				t.Errorf("the fake never received the configured credentials")
			}
		})
	}

	atCases := []struct {
		name   string
		faults []atfake.Fault
		secret string // the fake's secret, when not the configured one
		code   string // the fake's integration code, when not the configured one
		ok     bool
		echo   bool
	}{
		{name: "good", ok: true},
		{name: "wrong secret", secret: "OtherSecret-00"},
		{name: "wrong integration code", code: "OTHERCODE00"},
		{name: "403 echo", echo: true, faults: []atfake.Fault{{Kind: atfake.Fault403, Path: "Version", Count: 100, Message: atEchoText("Denied")},
			{Kind: atfake.Fault403, Path: "*/entityInformation/fields", Count: 100, Message: atEchoText("Denied")}}},
		{name: "500 envelope echo", echo: true, faults: []atfake.Fault{{Kind: atfake.Fault500Envelope, Path: "Version", Count: 100, Message: atEchoText("Failed")},
			{Kind: atfake.Fault500Envelope, Path: "*/entityInformation/fields", Count: 100, Message: atEchoText("Failed")}}},
		{name: "429 echo", echo: true, faults: []atfake.Fault{{Kind: atfake.Fault429, Path: "Version", Count: 100, Message: atEchoText("Thread Threshold Exceeded")},
			{Kind: atfake.Fault429, Path: "*/entityInformation/fields", Count: 100, Message: atEchoText("Thread Threshold Exceeded")}}},
		{name: "discovery 403 echo", echo: true, faults: []atfake.Fault{{Kind: atfake.Fault403, Path: "zoneInformation", Count: 100, Message: atEchoText("Denied")}}},
		{name: "reset", faults: []atfake.Fault{{Kind: atfake.FaultReset, Path: "Version", Count: 100}, {Kind: atfake.FaultReset, Path: "*/entityInformation/fields", Count: 100}}},
	}
	for _, tc := range atCases {
		t.Run("autotask "+tc.name, func(t *testing.T) {
			c := atfake.DefaultConfig()
			c.Secret, c.IntegrationCode = leakATSecret, leakATCode
			if tc.secret != "" {
				c.Secret = tc.secret
			}
			if tc.code != "" {
				c.IntegrationCode = tc.code
			}
			at := atfake.Start(c)
			defer at.Close()
			cw := leakCWFake()
			defer cw.Close()
			for _, f := range tc.faults {
				at.Inject(f)
			}
			cfg := leakCLIConfig(t, leakOrg(cw, at), leakAcme, "")
			code, out, errb := cliLeak(t, s, "psa", "test", "-config", cfg, "-client", "acme")
			if tc.ok != (code == 0) || (tc.ok && !strings.Contains(out, "Connection Succeeded")) { // other scopes may succeed
				t.Errorf("psa test: exit %d\n%s%s", code, out, errb)
			}
			shown := out + errb
			code, out, errb = cliLeak(t, s, "psa", "lookup", "-config", cfg, "-client", "acme", "queues")
			if tc.ok != (code == 0) {
				t.Errorf("psa lookup queues: exit %d\n%s%s", code, out, errb)
			}
			if shown += out + errb; tc.echo && !strings.Contains(shown, "[redacted]") {
				t.Errorf("no scrubbed echo in the output; the faults were not met:\n%s", shown)
			}
			sent := 0
			for _, r := range at.Requests() {
				if r.Header.Get("Secret") == leakATSecret && r.Header.Get("ApiIntegrationCode") == leakATCode {
					sent++
				}
			}
			if sent == 0 && tc.name != "discovery 403 echo" {
				t.Errorf("the fake never received the configured credentials")
			}
		})
	}
}

// TestSecretsNeverLeakFromTryAndState: `try` (plain, -json, -explain,
// -state), `clients`, and `queue list`, `incidents` and `audit` over dead
// letters whose reasons came from PSA errors that echoed the credentials,
// both through a running server's admin API and from the database file.
func TestSecretsNeverLeakFromTryAndState(t *testing.T) {
	setLeakEnv(t)
	s := cliSecrets()
	cw, at := leakCWFake(), leakATFake()
	defer cw.Close()
	defer at.Close()
	cfg := leakCLIConfig(t, leakOrg(cw, at), leakAcme,
		"[deliver]\nbackoff_min = \"20ms\"\nbackoff_max = \"100ms\"\nprobe_interval = \"100ms\"\n[deliver.autotask]\nrate_per_minute = 100000\n")
	data := strings.Replace(string(readFileT(t, cfg)), "[http]\nlisten = \"\"", "[http]\nlisten = \"127.0.0.1:0\"", 1)
	data = strings.Replace(data, "accept_domains = ", "require_auth = false\naccept_domains = ", 1)
	writeFileT(t, cfg, data)

	dir := t.TempDir()
	mail := func(name, to, device, kind string, n int) string {
		subject := "[BDR1] Failed Backup: " + device
		if kind == "ok" {
			subject = "[BDR1] Successful Backup: " + device
		}
		p := filepath.Join(dir, name)
		writeFileT(t, p, fmt.Sprintf("From: BDR1 <bdr1@appliance.example>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s-%s-%d@bdr1>\r\n\r\n"+
			"x360Recover alert from appliance BDR1\r\n\r\n  Protected system:  %s\r\n", to, subject, device, kind, n, device))
		return p
	}
	m1 := mail("1.eml", "pinecrest@alerts.example.net", "PVC-SRV-T1", "fail", 1)
	m2 := mail("2.eml", "pinecrest@alerts.example.net", "PVC-SRV-T1", "fail", 2)
	m3 := mail("3.eml", "acme@alerts.example.net", "ACME-SRV-T2", "fail", 1)
	m4 := mail("4.eml", "pinecrest@alerts.example.net", "PVC-SRV-T1", "ok", 3)

	t.Run("try", func(t *testing.T) {
		for _, flags := range [][]string{nil, {"-json"}, {"-explain"}, {"-json", "-explain"}} {
			args := append(append([]string{"try", "-config", cfg}, flags...), m1, m2, m3, m4)
			code, out, errb := cliLeak(t, s, args...)
			if code != 0 || !strings.Contains(out, "PVC-SRV-T1") || !strings.Contains(out, "ACME-SRV-T2") {
				t.Fatalf("try %v: exit %d\n%s%s", flags, code, out, errb)
			}
		}
	})
	t.Run("clients", func(t *testing.T) {
		for _, args := range [][]string{{"clients", "-config", cfg}, {"clients", "-config", cfg, "acme"}} {
			code, out, errb := cliLeak(t, s, args...)
			if code != 0 || !strings.Contains(out, "autotask.username") {
				t.Fatalf("%v: exit %d\n%s%s", args, code, out, errb)
			}
		}
	})

	// Dead letters from echoing errors: a ConnectWise 400 and an Autotask
	// 500 envelope, after a 401 that paused ConnectWise.
	cw.Inject(cwfake.Fault{Method: "POST", Path: "/service/tickets", Status: 401,
		Body: `{"code":"Unauthorized","message":"` + cwEchoText("Bad key") + `"}`})
	cw.Inject(cwfake.Fault{Method: "POST", Path: "/service/tickets", Status: 400,
		Body: `{"code":"InvalidObject","message":"Ticket object is invalid","errors":[{"code":"InvalidField","message":"` + cwEchoText("company is not valid") + `","resource":"ticket","field":"company"}]}`})
	at.Inject(atfake.Fault{Kind: atfake.Fault500Envelope, Method: "POST", Path: "Tickets", Message: atEchoText("Ticket could not be saved: a required field is missing")})
	logs := &testutil.Buffer{}
	a, err := app.Start(context.Background(), cfg, app.Options{
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			a.Shutdown(context.Background())
		}
	}
	defer stop()
	data = strings.Replace(string(readFileT(t, cfg)), "[http]\nlisten = \"127.0.0.1:0\"", "[http]\nlisten = \""+a.HTTPAddr()+"\"", 1)
	writeFileT(t, cfg, data)
	for _, m := range []struct{ to, file string }{{"pinecrest@alerts.example.net", m1}, {"acme@alerts.example.net", m3}} {
		if r := testutil.SendMail(t, a.SMTPAddr(), "bdr1@appliance.example", []string{m.to}, readFileT(t, m.file)); !strings.HasPrefix(r, "250") {
			t.Fatalf("%s: %q", m.to, r)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		q, err := app.ReadQueue(a.DB)
		if err == nil && len(q.Dead) == 2 && len(q.Outbox) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two dead letters did not appear: %v %+v", err, q)
		}
		time.Sleep(20 * time.Millisecond)
	}
	state := func(t *testing.T) {
		code, out, errb := cliLeak(t, s, "queue", "-config", cfg, "list")
		if code != 0 || !strings.Contains(out, "dead letters: 2 job(s)") || !strings.Contains(out, "[redacted]") {
			t.Fatalf("queue list: exit %d; want two dead letters with scrubbed echoes:\n%s%s", code, out, errb)
		}
		for _, args := range [][]string{
			{"incidents", "-config", cfg}, {"incidents", "-config", cfg, "-json"},
			{"audit", "-config", cfg}, {"audit", "-config", cfg, "-json"},
		} {
			code, out, errb := cliLeak(t, s, args...)
			if code != 0 || !strings.Contains(out, "PVC-SRV-T1") {
				t.Fatalf("%v: exit %d\n%s%s", args, code, out, errb)
			}
		}
		code, out, errb = cliLeak(t, s, "try", "-config", cfg, "-state", filepath.Join(filepath.Dir(cfg), "state.db"), m2, m4)
		if code != 0 || !strings.Contains(out, "PVC-SRV-T1") {
			t.Fatalf("try -state: exit %d\n%s%s", code, out, errb)
		}
	}
	t.Run("through the admin API", func(t *testing.T) { state(t) })
	stop()
	t.Run("from the database", func(t *testing.T) { state(t) })
	s.Check(t, "the in-process server's log", logs.String())
	if !strings.Contains(logs.String(), "[redacted]") {
		t.Errorf("the server's log shows no scrubbed echo; the faults were not met:\n%s", logs.String())
	}
}

func readFileT(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFileT(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
