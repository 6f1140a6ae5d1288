package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"psagate/internal/psa"
	atfake "psagate/internal/psa/autotask/fake"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/psa/logpsa"
	"psagate/internal/testutil"
)

// The known secrets of the secret-leak tests. They are long and
// random-looking so that finding one (or a 12-character piece of one) in
// output can only mean it leaked. Some carry characters that URL, JSON and
// Go quoting change, so that the encoded forms differ from the raw value.
const (
	leakCWPublic  = "cwPub7xQ2mZk9LrT4vNe"                 // given as file:
	leakCWPrivate = "cwPriv+8hS/3kW=pQ$Yz7Jd"              // given as env:
	leakCWClient  = "5e1c9a3b-77d2-4f0e-b8a6-c0ffee5ec7e7" // given as a literal
	leakATSecret  = "atSec#Kq9/Vb+Wx=Lm!r2Tz"              // given as env:
	leakATCode    = "ATCODE7QX2ZK9LRT4VNEPSG"              // given as file:
	leakATBadCode = "ATWRONG3HJ8KD2MZ5QPLX6V"              // a wrong code, given as a literal
	leakSMTPPass1 = `smtp"Pw\4Rk/9x+Tq8=Zr%e`              // user "appliance", given as env:
	leakSMTPPass2 = "relayPw-Gh5Ls9Qw2Xe7Nb"               // user "relay", given as a literal
	leakCWCompany = "mymsp"
)

func basicToken(company, public, private string) string {
	return base64.StdEncoding.EncodeToString([]byte(company + "+" + public + ":" + private))
}

func plainResponse(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// leakSecrets is the set every secret test looks for.
func leakSecrets() *testutil.Secrets {
	s := &testutil.Secrets{}
	s.Add("connectwise.public_key", leakCWPublic)
	s.Add("connectwise.private_key", leakCWPrivate)
	s.Add("connectwise.client_id", leakCWClient)
	s.Add("autotask.secret", leakATSecret)
	s.Add("autotask.integration_code", leakATCode)
	s.Add("client bolt autotask.integration_code", leakATBadCode)
	s.Add("smtp.user appliance password", leakSMTPPass1)
	s.Add("smtp.user relay password", leakSMTPPass2)
	s.Derived("ConnectWise Basic token", basicToken(leakCWCompany, leakCWPublic, leakCWPrivate))
	s.Derived("AUTH PLAIN response of appliance", plainResponse("appliance", leakSMTPPass1))
	s.Derived("AUTH PLAIN response of relay", plainResponse("relay", leakSMTPPass2))
	return s
}

// TestSecretDetectorFindsEveryForm makes sure the detector the leak tests
// rely on would see a leak in each form it claims to look for.
func TestSecretDetectorFindsEveryForm(t *testing.T) {
	s := leakSecrets()
	if got := s.Find("nothing to see: [redacted] mymsp+[redacted]"); len(got) != 0 {
		t.Fatalf("false positives: %q", got)
	}
	for _, f := range s.All() {
		if got := s.Find("x " + f.Text + " y"); len(got) == 0 {
			t.Errorf("%s is not detected", f.Name)
		}
	}
	if got := s.Find("cut: " + leakCWPrivate[:14] + "…"); len(got) == 0 {
		t.Error("a secret cut short is not detected")
	}
	if got := s.Find(`{"user":` + strconv.Quote(leakSMTPPass1) + `}`); len(got) == 0 {
		t.Error("a quoted password is not detected")
	}
}

// secretChild is a `psagate serve` process whose every output byte is kept.
type secretChild struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdout  *testutil.Buffer
	stderr  *testutil.Buffer
	smtp    string
	http    string
	admin   string
	done    chan struct{} // closed when the process has exited and its output is read
	exitErr error
}

// startSecretChild runs `psagate serve` with extra environment variables and
// waits for its "psagate started" line (text or JSON).
func startSecretChild(t *testing.T, cfg string, env []string) *secretChild {
	t.Helper()
	c := &secretChild{t: t, stdout: &testutil.Buffer{}, stderr: &testutil.Buffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(psagateBinary(t), "serve", "-config", cfg)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout = c.stdout
	pipe, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan [3]string, 1)
	go func() {
		rd := bufio.NewReader(pipe)
		for {
			line, err := rd.ReadString('\n')
			c.stderr.Write([]byte(line))
			if smtp, http, admin, ok := startedLine(line); ok {
				started <- [3]string{smtp, http, admin}
			}
			if err != nil {
				break
			}
		}
		c.exitErr = c.cmd.Wait()
		close(c.done)
	}()
	select {
	case a := <-started:
		c.smtp, c.http, c.admin = a[0], a[1], a[2]
	case <-c.done:
		t.Fatalf("psagate serve exited at start: %v\n%s", c.exitErr, c.stderr.String())
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		t.Fatal("psagate serve did not start within 30s")
	}
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

// startedLine finds the listen addresses in the start line of either format.
func startedLine(line string) (smtp, http, admin string, ok bool) {
	if m := startedRe.FindStringSubmatch(line); m != nil {
		return m[1], m[2], m[3], true
	}
	var j struct{ Msg, SMTP, HTTP, Admin string }
	if json.Unmarshal([]byte(line), &j) == nil && j.Msg == "psagate started" {
		return j.SMTP, j.HTTP, j.Admin, true
	}
	return "", "", "", false
}

func (c *secretChild) signal(sig os.Signal) {
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatal(err)
	}
}

// stop ends the process with SIGTERM and requires a clean exit.
func (c *secretChild) stop() {
	c.t.Helper()
	c.signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.t.Fatal("no exit within 30s of SIGTERM")
	}
	if c.exitErr != nil {
		c.t.Fatalf("exit after SIGTERM: %v\n%s", c.exitErr, c.stderr.String())
	}
}

func (c *secretChild) logLines(substr string) int {
	return strings.Count(c.stderr.String(), substr)
}

// smtpSession is a minimal SMTP client that records every reply it reads.
type smtpSession struct {
	t       *testing.T
	c       net.Conn
	r       *bufio.Reader
	replies *testutil.Buffer
}

// dialSMTP connects from the local address (a loopback IP, "" for any) and
// returns the session and the greeting.
func dialSMTP(t *testing.T, addr, local string, replies *testutil.Buffer) (*smtpSession, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	s := &smtpSession{t: t, c: c, r: bufio.NewReader(c), replies: replies}
	return s, s.reply()
}

func (s *smtpSession) reply() string {
	var b strings.Builder
	for {
		line, err := s.r.ReadString('\n')
		b.WriteString(line)
		if err != nil || len(line) < 4 || line[3] != '-' {
			break
		}
	}
	s.replies.Write([]byte(b.String()))
	return b.String()
}

func (s *smtpSession) cmd(line string) string {
	s.t.Helper()
	if _, err := io.WriteString(s.c, line+"\r\n"); err != nil {
		s.t.Fatalf("write %q: %v", strings.Fields(line)[0], err)
	}
	return s.reply()
}

// expect sends a command and requires the reply code.
func (s *smtpSession) expect(line, code string) string {
	s.t.Helper()
	r := s.cmd(line)
	if !strings.HasPrefix(r, code) {
		s.t.Fatalf("%s: reply %q, want %s", strings.Fields(line)[0], r, code)
	}
	return r
}

// mail runs one transaction and requires 250 at the end of DATA.
func (s *smtpSession) mail(from, to string, raw []byte) {
	s.t.Helper()
	s.expect("MAIL FROM:<"+from+">", "250")
	s.expect("RCPT TO:<"+to+">", "250")
	s.expect("DATA", "354")
	if _, err := s.c.Write(append(raw, []byte("\r\n.\r\n")...)); err != nil {
		s.t.Fatal(err)
	}
	if r := s.reply(); !strings.HasPrefix(r, "250") {
		s.t.Fatalf("end of DATA for %s: %q", to, r)
	}
}

func alertMail(to, device, kind string, n int) []byte {
	subject := "[BDR1] Failed Backup: " + device
	if kind == "ok" {
		subject = "[BDR1] Successful Backup: " + device
	}
	return []byte(fmt.Sprintf("From: BDR1 <bdr1@pinecrest-vet.example>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s-%s-%d@bdr1>\r\n\r\n"+
		"x360Recover alert from appliance BDR1\r\n\r\n  Protected system:  %s\r\n", to, subject, device, kind, n, device))
}

// cwEcho is an error text that repeats every credential of a request back, as
// a misbehaving PSA or proxy might.
func cwEcho(what string) string {
	// No "clientId" in the text: ConnectWise's 400 naming the clientId is
	// an authentication failure, and the 400 below must be a permanent one.
	return fmt.Sprintf("%s; request had Authorization: Basic %s, client_id %s, key %s+%s:%s",
		what, basicToken(leakCWCompany, leakCWPublic, leakCWPrivate), leakCWClient, leakCWCompany, leakCWPublic, leakCWPrivate)
}

func cwEchoJSON(code, what string) string {
	b, _ := json.Marshal(map[string]string{"code": code, "message": cwEcho(what)})
	return string(b)
}

func atEcho(what string) string {
	return fmt.Sprintf("%s; request had UserName: %s, Secret: %s, ApiIntegrationCode: %s",
		what, atfake.DefaultUsername, leakATSecret, leakATCode)
}

// secretEnv is the environment the env: references read.
var secretEnv = []string{
	"PSAGATE_LEAKTEST_CW_PRIVATE=" + leakCWPrivate,
	"PSAGATE_LEAKTEST_AT_SECRET=" + leakATSecret,
	"PSAGATE_LEAKTEST_SMTP_PASSWORD=" + leakSMTPPass1,
}

// leakConfig writes a config with ConnectWise for the organisation (client
// pinecrest), Autotask for client acme, Autotask with a wrong integration
// code for client bolt, two SMTP users, and the given log format at debug.
// Secrets are given in all three forms.
func leakConfig(t *testing.T, dir string, cw *cwfake.Server, at *atfake.Server, format string) string {
	t.Helper()
	writeSecret := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return "file:" + p
	}
	org := cw.Settings()
	org["connectwise.company"] = "PVC01"
	org["connectwise.timeout"] = "2s"
	org["connectwise.public_key"] = writeSecret("cw-public.key", leakCWPublic)
	org["connectwise.private_key"] = "env:PSAGATE_LEAKTEST_CW_PRIVATE"
	org["connectwise.client_id"] = leakCWClient
	for k, v := range at.Settings() {
		if k != "provider" {
			org[k] = v
		}
	}
	org["autotask.secret"] = "env:PSAGATE_LEAKTEST_AT_SECRET"
	org["autotask.integration_code"] = writeSecret("at-integration.code", leakATCode)
	section := psaTOML("psa", org) + `[deliver]
backoff_min = "20ms"
backoff_max = "200ms"
probe_interval = "200ms"
[deliver.connectwise]
rate_per_minute = 100000
[deliver.autotask]
rate_per_minute = 100000
`
	clients := fmt.Sprintf(`
[[client]]
name = "acme"
recipients = ["acme@alerts.example.net"]
[client.psa]
provider = "autotask"
autotask.company_id = 501
[[client]]
name = "bolt"
recipients = ["bolt@alerts.example.net"]
[client.psa]
provider = "autotask"
autotask.integration_code = %q
`, leakATBadCode)
	path := withPSA(t, dir, section, clients)
	data := string(readAll(t, path))
	data = strings.Replace(data, "[state]\n", `max_auth_failures = 3
[[smtp.user]]
name = "appliance"
password = "env:PSAGATE_LEAKTEST_SMTP_PASSWORD"
[[smtp.user]]
name = "relay"
password = "`+leakSMTPPass2+`"
[state]
`, 1)
	data = strings.Replace(data, "[log]\nlevel = \"warn\"\n", "[log]\nlevel = \"debug\"\nformat = \""+format+"\"\n", 1)
	if !strings.Contains(data, `format = "`+format+`"`) || !strings.Contains(data, "[[smtp.user]]") {
		t.Fatalf("config template changed; cannot place [log] and [[smtp.user]]:\n%s", data)
	}
	if err := writeFile(path, data); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSecretsNeverLeakFromServe runs `psagate serve` at debug level, in
// both log formats, with known secrets given as env:, file: and literal,
// drives every error path (SMTP AUTH failures up to the lockout, PSA 401,
// 403, 429, 500, 400 and dropped connections whose bodies echo the
// credentials, a dead letter, Autotask's "IntegrationCode is invalid.",
// provider pauses and probes, a reload), and then looks for the secrets in
// every byte it can see: stdout, stderr, SMTP replies, every HTTP endpoint,
// the database backup and every file the gateway wrote.
func TestSecretsNeverLeakFromServe(t *testing.T) {
	psagateBinary(t) // build once, before the parallel subtests
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			leakServeRun(t, format)
		})
	}
}

func leakServeRun(t *testing.T, format string) {
	secrets := leakSecrets()
	cwCfg := cwfake.DefaultConfig()
	cwCfg.CompanyID, cwCfg.PublicKey, cwCfg.PrivateKey, cwCfg.ClientID = leakCWCompany, leakCWPublic, leakCWPrivate, leakCWClient
	cw := cwfake.Start(cwCfg)
	defer cw.Close()
	atCfg := atfake.DefaultConfig()
	atCfg.Secret, atCfg.IntegrationCode = leakATSecret, leakATCode
	at := atfake.Start(atCfg)
	defer at.Close()

	dir := t.TempDir()
	cfg := leakConfig(t, dir, cw, at, format)
	c := startSecretChild(t, cfg, secretEnv)
	replies := &testutil.Buffer{}

	// SMTP AUTH failures from 127.0.0.2 until it is locked out: a wrong
	// password that contains the right one, a password typed into the user
	// name (PLAIN and LOGIN), then the lockout at connect.
	s, greet := dialSMTP(t, c.smtp, "127.0.0.2", replies)
	if !strings.HasPrefix(greet, "220") {
		t.Fatalf("greeting: %q", greet)
	}
	if r := s.expect("EHLO bdr1.example", "250"); !strings.Contains(r, "AUTH") {
		t.Fatalf("AUTH not offered over loopback: %q", r)
	}
	s.expect("AUTH PLAIN "+plainResponse("appliance", leakSMTPPass1+"x"), "535")
	s.expect("AUTH PLAIN "+plainResponse(leakSMTPPass1, "wrong"), "535")
	s.expect("AUTH LOGIN", "334")
	s.expect(base64.StdEncoding.EncodeToString([]byte(leakSMTPPass2)), "334")
	s.expect(base64.StdEncoding.EncodeToString([]byte("not-it")), "421")
	if _, greet := dialSMTP(t, c.smtp, "127.0.0.2", replies); !strings.HasPrefix(greet, "421") {
		t.Fatalf("after 3 failed logins the address must be refused at connect, got %q", greet)
	}

	// Faults whose bodies echo the credentials. ConnectWise: creates meet
	// 500, 429, a dropped connection, 403 and 401 (each pausing delivery
	// until a probe works; two probes meet a 401 too), a 400 that kills the
	// job, and a 400 whose long message has the private key where the
	// error text is cut at 1000 characters.
	long := "Ticket object is invalid. Rejected request dump: " + strings.Repeat("summary=PVC-SRV backup failed; ", 40)
	long = long[:985] + leakCWPrivate + " (end of dump)"
	for _, f := range []cwfake.Fault{
		{Method: "POST", Path: "/service/tickets", Status: 500, Body: cwEcho("Internal error")},
		{Method: "POST", Path: "/service/tickets", Status: 429, Body: `{"error":"ConnectWiseAPI","message":"` + cwEcho("Too many requests") + `"}`},
		{Method: "POST", Path: "/service/tickets", Drop: true},
		{Method: "POST", Path: "/service/tickets", Status: 403, Body: cwEchoJSON("Security", "You do not have security permission")},
		{Method: "POST", Path: "/service/tickets", Status: 401, Body: cwEchoJSON("Unauthorized", "The supplied authentication is incorrect")},
		{Method: "POST", Path: "/service/tickets", Status: 400, Body: `{"code":"InvalidObject","message":"Ticket object is invalid","errors":[{"code":"InvalidField","message":"` +
			cwEcho("company is not valid for this member") + `","resource":"ticket","field":"company"}]}`},
		{Method: "POST", Path: "/service/tickets", Status: 400, Body: `{"code":"InvalidObject","message":"` + long + `"}`},
		{Method: "GET", Path: "/system/info", Status: 401, Times: 2, Body: cwEchoJSON("Unauthorized", "Probe refused")},
	} {
		cw.Inject(f)
	}
	// Autotask (client acme): 403 (pause; one probe meets a 403 too), 429,
	// a 500 with an errors envelope (dead letter), a reset, an HTML 500 and
	// a 401.
	for _, f := range []atfake.Fault{
		{Kind: atfake.Fault403, Method: "POST", Path: "Tickets", Message: atEcho("Access denied")},
		{Kind: atfake.Fault403, Method: "GET", Path: "Version", Message: atEcho("Probe denied")},
		// The thread-limit 429: the hourly-threshold one holds every call
		// for a minute.
		{Kind: atfake.Fault429, Method: "POST", Path: "Tickets", Message: atEcho("Thread Threshold Exceeded"), RetryAfter: "1"},
		{Kind: atfake.Fault500Envelope, Method: "POST", Path: "Tickets", Message: atEcho("Ticket could not be saved: a required field is missing")},
		{Kind: atfake.FaultReset, Method: "POST", Path: "Tickets"},
		{Kind: atfake.Fault500HTML, Method: "POST", Path: "Tickets"},
		{Kind: atfake.Fault401, Method: "POST", Path: "Tickets"},
	} {
		at.Inject(f)
	}

	// The right passwords over loopback, AUTH PLAIN and AUTH LOGIN, and the
	// alerts that become tickets.
	const cwDevices, atDevices = 7, 5
	s, _ = dialSMTP(t, c.smtp, "127.0.0.1", replies)
	s.expect("EHLO bdr1.example", "250")
	s.expect("MAIL FROM:<bdr1@appliance.example>", "530") // AUTH is required
	s.expect("AUTH PLAIN "+plainResponse("appliance", leakSMTPPass1), "235")
	for i := range cwDevices {
		s.mail("bdr1@appliance.example", "pinecrest@alerts.example.net", alertMail("pinecrest@alerts.example.net", fmt.Sprintf("PVC-SRV-S%d", i), "fail", 1))
	}
	s.expect("QUIT", "221")
	s, _ = dialSMTP(t, c.smtp, "127.0.0.1", replies)
	s.expect("EHLO bdr2.example", "250")
	s.expect("AUTH LOGIN", "334")
	s.expect(base64.StdEncoding.EncodeToString([]byte("relay")), "334")
	s.expect(base64.StdEncoding.EncodeToString([]byte(leakSMTPPass2)), "235")
	for i := range atDevices {
		s.mail("bdr2@appliance.example", "acme@alerts.example.net", alertMail("acme@alerts.example.net", fmt.Sprintf("ACME-SRV-%d", i), "fail", 1))
	}
	s.expect("QUIT", "221")

	queue := func() QueueView {
		var q QueueView
		if err := getJSONFrom(c.admin, "/admin/queue", &q); err != nil {
			t.Fatal(err)
		}
		return q
	}
	waitFor(t, "every injected fault to be met and the outbox to drain", 20*time.Second, func() bool {
		return cw.PendingFaults() == 0 && at.PendingFaults() == 0 && len(queue().Outbox) == 0
	})
	if n := len(cw.Tickets()); n != cwDevices-2 {
		t.Errorf("ConnectWise holds %d tickets, want %d (two creates died)", n, cwDevices-2)
	}
	if n := len(at.Tickets()); n != atDevices-1 {
		t.Errorf("Autotask holds %d tickets, want %d (one create died)", n, atDevices-1)
	}

	// A note and a close on a ConnectWise ticket, meeting a 500 and a 403.
	tk := cw.Tickets()[0]
	dev, _, _ := strings.Cut(tk.Summary, ":")
	cw.Inject(cwfake.Fault{Method: "POST", Path: "/service/tickets/*/notes", Status: 500, Body: cwEchoJSON("InternalServerError", "Note failed")})
	cw.Inject(cwfake.Fault{Method: "PATCH", Path: "/service/tickets/*", Status: 403, Body: cwEchoJSON("Security", "Cannot close")})
	s, _ = dialSMTP(t, c.smtp, "127.0.0.1", replies)
	s.expect("EHLO bdr1.example", "250")
	s.expect("AUTH PLAIN "+plainResponse("appliance", leakSMTPPass1), "235")
	s.mail("bdr1@appliance.example", "pinecrest@alerts.example.net", alertMail("pinecrest@alerts.example.net", dev, "fail", 2))
	s.mail("bdr1@appliance.example", "pinecrest@alerts.example.net", alertMail("pinecrest@alerts.example.net", dev, "ok", 3))
	waitFor(t, "the note and the close through their faults", 20*time.Second, func() bool {
		cur, _ := cw.Ticket(tk.ID)
		return cw.PendingFaults() == 0 && cur.ClosedFlag && len(queue().Outbox) == 0
	})

	// Client bolt's wrong integration code: "IntegrationCode is invalid."
	// pauses Autotask, and the probes keep failing with the same code.
	probesBefore := c.logLines("provider still failing authentication")
	s.mail("bdr1@appliance.example", "bolt@alerts.example.net", alertMail("bolt@alerts.example.net", "BOLT-SRV-1", "fail", 1))
	s.expect("QUIT", "221")
	waitFor(t, "Autotask to pause on the wrong integration code and a probe to fail", 20*time.Second, func() bool {
		q := queue()
		return len(q.Outbox) == 1 && strings.Contains(q.Outbox[0].LastError, "IntegrationCode is invalid") &&
			c.logLines("provider still failing authentication") > probesBefore
	})
	// A reload (SIGHUP) probes at once.
	reloads := c.logLines("config and rules reloaded")
	c.signal(syscall.SIGHUP)
	waitFor(t, "the reload", 10*time.Second, func() bool { return c.logLines("config and rules reloaded") > reloads })

	// Everything the HTTP listener serves.
	bodies := map[string][]byte{}
	admin := AdminClient(c.admin, 30*time.Second)
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/admin/queue", "/admin/audit?n=1000", "/admin/incidents?n=1000", "/admin/backup"} {
		get := http.Get
		url := "http://" + c.http + p
		if strings.HasPrefix(p, "/admin/") {
			get, url = admin.Get, AdminURL(p)
		}
		resp, err := get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		bodies[p] = b
	}
	if !bytes.Contains(bodies["/readyz"], []byte("provider autotask paused")) {
		t.Errorf("readyz does not show the paused provider:\n%s", bodies["/readyz"])
	}
	var q QueueView
	if err := json.Unmarshal(bodies["/admin/queue"], &q); err != nil {
		t.Fatal(err)
	}
	c.stop()

	// The secrets were in play: the fakes got them and served the echoes.
	token := "Basic " + basicToken(leakCWCompany, leakCWPublic, leakCWPrivate)
	authed, echoed := 0, 0
	for _, r := range cw.Requests() {
		if r.Header.Get("Authorization") == token && r.Header.Get("clientId") == leakCWClient {
			authed++
		}
		if r.Status >= 400 {
			echoed++
		}
	}
	if authed == 0 || echoed < 9 {
		t.Errorf("ConnectWise fake: %d requests with the configured credentials, %d error answers; the test did not exercise the secrets", authed, echoed)
	}
	authed, echoed = 0, 0
	badCode := false
	for _, r := range at.Requests() {
		if r.Header.Get("Secret") == leakATSecret && r.Header.Get("ApiIntegrationCode") == leakATCode {
			authed++
		}
		if r.Fault != "" {
			echoed++
		}
		if r.Header.Get("ApiIntegrationCode") == leakATBadCode && r.Status == 500 {
			badCode = true
		}
	}
	if authed == 0 || echoed < 7 || !badCode {
		t.Errorf("Autotask fake: %d requests with the configured credentials, %d faults served, wrong code refused: %v", authed, echoed, badCode)
	}
	// Echoed secrets reached the dead letters and the logs, scrubbed.
	if len(q.Dead) != 3 {
		t.Errorf("%d dead letters, want 3 (two ConnectWise 400s, one Autotask 500 envelope)", len(q.Dead))
	}
	redactedReasons := 0
	for _, j := range q.Dead {
		if strings.Contains(j.Reason, "[redacted]") {
			redactedReasons++
		}
	}
	if redactedReasons < 2 {
		var reasons []string
		for _, j := range q.Dead {
			reasons = append(reasons, j.Reason)
		}
		t.Errorf("only %d dead letter reasons show a scrubbed secret; the echoes did not reach them:\n%s", redactedReasons, strings.Join(reasons, "\n"))
	}
	logs := c.stderr.String()
	for _, want := range []string{"[redacted]", "authentication failed", "provider paused", "provider still failing authentication",
		"job moved to dead letters", "IntegrationCode is invalid", "connectwise request"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the %s log lacks %q: that path was not exercised", format, want)
		}
	}
	if !strings.Contains(replies.String(), "235 ") || !strings.Contains(replies.String(), "421 ") {
		t.Errorf("SMTP replies lack a successful login or the lockout:\n%s", replies.String())
	}

	// And none of it shows a secret.
	secrets.Check(t, "stdout", c.stdout.String())
	for i, line := range strings.SplitAfter(logs, "\n") {
		secrets.Check(t, fmt.Sprintf("stderr line %d", i+1), line)
	}
	secrets.Check(t, "SMTP replies", replies.String())
	for p, b := range bodies {
		secrets.Check(t, "GET "+p, string(b))
	}
	// Every file the gateway wrote (the database above all, read raw after
	// the clean stop); the config may name references but holds no value
	// that came from the environment or a file.
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Base(p) {
		case "cw-public.key", "at-integration.code":
			return nil
		case "psagate.toml":
			cfgText := readAll(t, p)
			for _, v := range []string{leakCWPublic, leakCWPrivate, leakATSecret, leakATCode, leakSMTPPass1} {
				if bytes.Contains(cfgText, []byte(v)) {
					t.Errorf("the config file holds a resolved env:/file: secret")
				}
			}
			return nil
		}
		secrets.Check(t, "file "+filepath.Base(p), string(readAll(t, p)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		t.Fatalf("no database file to check: %v", err)
	}
}

// getJSONFrom reads an admin API path over the Unix socket sock.
func getJSONFrom(sock, path string, v any) error {
	resp, err := AdminClient(sock, 30*time.Second).Get(AdminURL(path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// panicProvider panics in Create with a message full of credentials, as a
// provider bug that dumps its request might.
type panicProvider struct {
	psa.Provider
	calls atomic.Int32
}

func (p *panicProvider) Name() string { return "connectwise" }

func (p *panicProvider) Create(ctx context.Context, c psa.Call, t psa.Ticket) (psa.TicketRef, error) {
	p.calls.Add(1)
	panic(fmt.Sprintf("nil map in request &{Method:POST Header:map[Authorization:[Basic %s] Clientid:[%s]]} keys %s/%s, smtp password %s",
		basicToken(leakCWCompany, leakCWPublic, leakCWPrivate), leakCWClient, leakCWPublic, leakCWPrivate, leakSMTPPass2))
}

// TestSecretsNotInRecoveredPanic: a provider that panics with credentials in
// the panic value costs one job (dead, with the panic text scrubbed), not
// the gateway; the log carries no secret even without serve's scrubbing
// writer in front of it.
func TestSecretsNotInRecoveredPanic(t *testing.T) {
	secrets := leakSecrets()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cw-private.key")
	if err := os.WriteFile(keyFile, []byte(leakCWPrivate+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf(`[psa]
provider = "connectwise"
connectwise.endpoint = "http://127.0.0.1:9/v4_6_release/apis/3.0"
connectwise.company_id = %q
connectwise.public_key = %q
connectwise.private_key = "file:%s"
connectwise.client_id = %q
connectwise.company = "PVC01"
connectwise.board = "Backup Alerts"
[deliver]
backoff_min = "20ms"
backoff_max = "200ms"
`, leakCWCompany, leakCWPublic, keyFile, leakCWClient)
	clients := `
[[client]]
name = "acme"
recipients = ["acme@alerts.example.net"]
[client.psa]
provider = "log"
`
	cfg := withPSA(t, dir, section, clients)
	data := strings.Replace(string(readAll(t, cfg)), "[state]\n", "[[smtp.user]]\nname = \"relay\"\npassword = \""+leakSMTPPass2+"\"\n[state]\n", 1)
	data = strings.Replace(data, "accept_domains", "require_auth = false\naccept_domains", 1)
	if err := writeFile(cfg, data); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	pp := &panicProvider{}
	ticketLog := &testutil.Buffer{}
	h := startApp(t, cfg, Options{
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Providers: map[string]psa.Provider{"connectwise": pp, "log": logpsa.New(ticketLog)},
	})
	send := func(to, dev string) string {
		replies := &testutil.Buffer{}
		s, _ := dialSMTP(t, h.app.SMTPAddr(), "127.0.0.1", replies)
		s.expect("EHLO bdr1.example", "250")
		s.mail("bdr1@appliance.example", to, alertMail(to, dev, "fail", 1))
		s.expect("QUIT", "221")
		return replies.String()
	}
	var replies strings.Builder
	replies.WriteString(send("pinecrest@alerts.example.net", "PVC-SRV-P1"))
	waitFor(t, "the panicking job to die", 10*time.Second, func() bool {
		q, err := ReadQueue(h.app.DB)
		return err == nil && len(q.Dead) == 1
	})
	// The gateway still takes mail, and the other provider still delivers.
	replies.WriteString(send("acme@alerts.example.net", "ACME-SRV-P2"))
	replies.WriteString(send("pinecrest@alerts.example.net", "PVC-SRV-P3"))
	waitFor(t, "delivery after the panic", 10*time.Second, func() bool {
		q, err := ReadQueue(h.app.DB)
		return err == nil && len(q.Outbox) == 0 && len(q.Dead) == 2
	})
	if n := pp.calls.Load(); n != 2 {
		t.Errorf("the panicking provider was called %d times, want 2", n)
	}
	if !strings.Contains(ticketLog.String(), `"op":"create"`) || !strings.Contains(ticketLog.String(), "ACME-SRV-P2") {
		t.Errorf("the log provider did not get the acme ticket after the panic:\n%s", ticketLog.String())
	}
	q, err := ReadQueue(h.app.DB)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range q.Dead {
		if !strings.Contains(j.Reason, "internal error in the connectwise provider") || !strings.Contains(j.Reason, "[redacted]") {
			t.Errorf("dead letter %d: reason %q does not show the scrubbed panic", j.ID, j.Reason)
		}
		secrets.Check(t, fmt.Sprintf("dead letter %d reason", j.ID), j.Reason)
	}
	if !strings.Contains(logs.String(), "provider panicked") {
		t.Fatalf("the panic was not logged:\n%s", logs.String())
	}
	var dump bytes.Buffer
	if err := h.app.DB.Backup(&dump); err != nil {
		t.Fatal(err)
	}
	h.stop()
	secrets.Check(t, "in-process log", logs.String())
	secrets.Check(t, "log provider output", ticketLog.String())
	secrets.Check(t, "SMTP replies", replies.String())
	secrets.Check(t, "database backup", string(dump.Bytes()))
	secrets.Check(t, "database file", string(readAll(t, filepath.Join(dir, "state.db"))))
}
