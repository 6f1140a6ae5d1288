package smtpd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"net/smtp"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/message"
)

// recorder is the Handler of these tests: it keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	msgs []received
}

type received struct {
	raw []byte
	env message.Envelope
}

func (r *recorder) handle(ctx context.Context, raw []byte, env message.Envelope) Reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, received{raw: append([]byte(nil), raw...), env: env})
	return Reply{250, [3]int{2, 0, 0}, fmt.Sprintf("Queued as test-%d", len(r.msgs))}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) last() received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[len(r.msgs)-1]
}

// testConfig is a valid [smtp] section listening on a free loopback port.
func testConfig(t *testing.T, extra string) config.SMTP {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte("[smtp]\nlisten = \"127.0.0.1:0\"\nhostname = \"gw.test\"\naccept_domains = [\"alerts.example.net\"]\n"+extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.SMTP
}

// start runs a server for cfg on ln (default: the configured address).
func start(t *testing.T, cfg config.SMTP, ln net.Listener) (*Server, *recorder, string) {
	t.Helper()
	rec := &recorder{}
	s, err := New(cfg, rec.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ln == nil {
		ln, err = s.Listen()
		if err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return s, rec, ln.Addr().String()
}

// rawClient speaks SMTP over a plain socket, byte for byte.
type rawClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}

// reply reads one (possibly multi-line) reply and returns it whole.
func (rc *rawClient) reply() string {
	rc.t.Helper()
	var b strings.Builder
	for {
		line, err := rc.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String()
		}
		if len(line) < 4 || line[3] != '-' {
			return b.String()
		}
	}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// cmd sends one line and returns the reply.
func (rc *rawClient) cmd(line string) string {
	rc.send(line + "\r\n")
	return rc.reply()
}

func expectCode(t *testing.T, got string, code string) {
	t.Helper()
	if !strings.HasPrefix(got, code) {
		t.Fatalf("reply %q, want %s", strings.TrimSpace(got), code)
	}
}

func (rc *rawClient) hello() {
	rc.t.Helper()
	expectCode(rc.t, rc.reply(), "220")
	expectCode(rc.t, rc.cmd("EHLO appliance.test"), "250")
}

const alert = "From: bdr@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: test\r\n\r\nbody\r\n"

func TestAcceptAndReply(t *testing.T) {
	_, rec, addr := start(t, testConfig(t, ""), nil)
	err := smtp.SendMail(addr, nil, "bdr@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, []byte(alert))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	got := rec.last()
	if string(got.raw) != alert {
		t.Fatalf("raw = %q", got.raw)
	}
	if got.env.MailFrom != "bdr@pinecrest-vet.example" || got.env.RcptTo[0] != "pinecrest@alerts.example.net" ||
		got.env.RemoteIP != netip.MustParseAddr("127.0.0.1") || got.env.Helo == "" {
		t.Fatalf("envelope = %+v", got.env)
	}
	// The handler's reply text reaches the client.
	rc := dial(t, addr)
	rc.hello()
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "250")
	expectCode(t, rc.cmd("RCPT TO:<x@alerts.example.net>"), "250")
	expectCode(t, rc.cmd("DATA"), "354")
	if r := rc.cmd(strings.ReplaceAll(alert, "\r\n", "\r\n") + "."); !strings.Contains(r, "250 2.0.0 Queued as test-2") {
		t.Fatalf("DATA reply %q", r)
	}
}

func TestForeignRecipientDomainIs550(t *testing.T) {
	_, rec, addr := start(t, testConfig(t, ""), nil)
	rc := dial(t, addr)
	rc.hello()
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "250")
	r := rc.cmd("RCPT TO:<victim@gmail.example>")
	expectCode(t, r, "550")
	if !strings.Contains(r, "Relaying denied") || !strings.Contains(r, "alerts.example.net") {
		t.Fatalf("reply does not explain: %q", r)
	}
	expectCode(t, rc.cmd("RCPT TO:<nodomain>"), "5")
	// Subdomains are other domains.
	expectCode(t, rc.cmd("RCPT TO:<a@evil.alerts.example.net>"), "550")
	expectCode(t, rc.cmd("RCPT TO:<Ok@ALERTS.example.net>"), "250")
	if rec.count() != 0 {
		t.Fatal("nothing was sent yet")
	}
}

func TestPeerOutsideAllowedNetworksIs554(t *testing.T) {
	_, _, addr := start(t, testConfig(t, "allowed_networks = [\"10.0.0.0/8\"]\n"), nil)
	rc := dial(t, addr)
	r := rc.reply()
	expectCode(t, r, "554")
	if !strings.Contains(r, "127.0.0.1") || !strings.Contains(r, "allowed_networks") {
		t.Fatalf("reply does not explain: %q", r)
	}
	if _, err := rc.r.ReadByte(); err == nil {
		t.Fatal("connection stayed open after 554")
	}
}

func TestTooManyRecipients(t *testing.T) {
	_, _, addr := start(t, testConfig(t, "max_recipients = 2\n"), nil)
	rc := dial(t, addr)
	rc.hello()
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "250")
	expectCode(t, rc.cmd("RCPT TO:<a@alerts.example.net>"), "250")
	expectCode(t, rc.cmd("RCPT TO:<b@alerts.example.net>"), "250")
	expectCode(t, rc.cmd("RCPT TO:<c@alerts.example.net>"), "452")
}

func TestOversizedMessageIs552WithBoundedMemory(t *testing.T) {
	const limit = 1 << 20
	_, rec, addr := start(t, testConfig(t, fmt.Sprintf("max_message_bytes = %d\n", limit)), nil)

	// Declared too big: refused at MAIL.
	rc := dial(t, addr)
	rc.hello()
	expectCode(t, rc.cmd(fmt.Sprintf("MAIL FROM:<a@b.example> SIZE=%d", limit*4)), "552")

	// Not declared: refused at the end of DATA, having read (and dropped) 12 MiB.
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "250")
	expectCode(t, rc.cmd("RCPT TO:<a@alerts.example.net>"), "250")
	expectCode(t, rc.cmd("DATA"), "354")
	line := strings.Repeat("x", 998) + "\r\n"
	chunk := []byte(strings.Repeat(line, 1024)) // ~1 MiB
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 12 {
		if _, err := rc.c.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	r := rc.cmd(".")
	runtime.ReadMemStats(&after)
	expectCode(t, r, "552")
	if !strings.Contains(r, fmt.Sprint(limit)) {
		t.Fatalf("552 does not state the limit: %q", r)
	}
	if rec.count() != 0 {
		t.Fatal("oversized message reached the handler")
	}
	// The server allocated at most a few times the limit while 12x the limit
	// streamed through it.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*limit {
		t.Fatalf("allocated %d bytes while refusing a %d-byte-limited message", grew, limit)
	}
	// The session is still usable.
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "250")
	expectCode(t, rc.cmd("RCPT TO:<a@alerts.example.net>"), "250")
	expectCode(t, rc.cmd("DATA"), "354")
	expectCode(t, rc.cmd("Subject: small\r\n\r\nok\r\n."), "250")
}

func TestMessageExactlyAtLimitIsAccepted(t *testing.T) {
	const limit = 4096
	_, rec, addr := start(t, testConfig(t, fmt.Sprintf("max_message_bytes = %d\n", limit)), nil)
	body := "Subject: x\r\n\r\n"
	body += strings.Repeat("y", limit-len(body)-2) + "\r\n"
	if len(body) != limit {
		t.Fatalf("bad test body length %d", len(body))
	}
	if err := smtp.SendMail(addr, nil, "a@b.example", []string{"a@alerts.example.net"}, []byte(body)); err != nil {
		t.Fatalf("message of exactly the limit refused: %v", err)
	}
	if got := len(rec.last().raw); got != limit {
		t.Fatalf("got %d bytes", got)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and every other address
// given, and returns the file paths and a pool that trusts it.
func selfSigned(t *testing.T, ips ...net.IP) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...), DNSNames: []string{"gw.test"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return cf, kf, pool
}

// externalAddr returns a non-loopback address of this host, so a test can
// connect as a peer that is not on loopback.
func externalAddr(t *testing.T) netip.Addr {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok {
			ip, _ := netip.AddrFromSlice(pn.IP)
			ip = ip.Unmap()
			if ip.IsValid() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && ip.Is4() {
				return ip
			}
		}
	}
	return netip.Addr{}
}

func TestAuthNeedsTLSOffLoopback(t *testing.T) {
	ext := externalAddr(t)
	if !ext.IsValid() {
		t.Fatal("this host has no non-loopback IPv4 address to test a remote peer with")
	}
	cf, kf, pool := selfSigned(t, net.IP(ext.AsSlice()))
	t.Setenv("TEST_SMTP_PW", "s3cret-pass")
	cfg := testConfig(t, fmt.Sprintf("allowed_networks = [%q]\ntls_cert = %q\ntls_key = %q\n[[smtp.user]]\nname = \"appliance\"\npassword = \"env:TEST_SMTP_PW\"\n",
		ext.String()+"/32", cf, kf))
	ln, err := net.Listen("tcp", net.JoinHostPort(ext.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	_, rec, addr := start(t, cfg, ln)

	rc := dial(t, addr)
	expectCode(t, rc.reply(), "220")
	ehlo := rc.cmd("EHLO appliance.test")
	if strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("before TLS EHLO must offer STARTTLS and no AUTH: %q", ehlo)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00appliance\x00s3cret-pass"))
	r := rc.cmd("AUTH PLAIN " + plain)
	expectCode(t, r, "538")
	// Users are configured, so mail needs a login first.
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "530")

	// net/smtp does STARTTLS, then AUTH PLAIN over TLS. (It hangs up after
	// a failed AUTH, so each attempt gets its own connection.)
	tlsDial := func() *smtp.Client {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.StartTLS(&tls.Config{RootCAs: pool, ServerName: ext.String()}); err != nil {
			t.Fatalf("STARTTLS: %v", err)
		}
		return c
	}
	c := tlsDial()
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
		t.Fatalf("AUTH not offered after TLS: %v %q", ok, mechs)
	}
	if err := c.Auth(smtp.PlainAuth("", "appliance", "wrong", ext.String())); err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("wrong password: %v", err)
	}
	c = tlsDial()
	if err := c.Auth(smtp.PlainAuth("", "appliance", "s3cret-pass", ext.String())); err != nil {
		t.Fatalf("AUTH after STARTTLS: %v", err)
	}
	if err := c.Mail("a@b.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("x@alerts.example.net"); err != nil {
		t.Fatal(err)
	}
	w, _ := c.Data()
	io.WriteString(w, alert)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if rec.count() != 1 || rec.last().env.RemoteIP != ext {
		t.Fatalf("message not received from %v", ext)
	}
}

func TestAuthOnLoopbackWithoutTLSAndLogin(t *testing.T) {
	t.Setenv("TEST_SMTP_PW", "pw-loopback")
	_, rec, addr := start(t, testConfig(t, "[[smtp.user]]\nname = \"relay\"\npassword = \"env:TEST_SMTP_PW\"\n"), nil)
	rc := dial(t, addr)
	expectCode(t, rc.reply(), "220")
	if ehlo := rc.cmd("EHLO x"); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("loopback EHLO: %q", ehlo)
	}
	expectCode(t, rc.cmd("AUTH LOGIN"), "334")
	expectCode(t, rc.cmd(base64.StdEncoding.EncodeToString([]byte("relay"))), "334")
	expectCode(t, rc.cmd(base64.StdEncoding.EncodeToString([]byte("pw-loopback"))), "235")
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "250")
	expectCode(t, rc.cmd("RCPT TO:<x@alerts.example.net>"), "250")
	expectCode(t, rc.cmd("DATA"), "354")
	expectCode(t, rc.cmd("Subject: s\r\n\r\nb\r\n."), "250")
	if rec.count() != 1 {
		t.Fatal("not delivered")
	}
}

func TestRepeatedAuthFailuresPauseThePeer(t *testing.T) {
	t.Setenv("TEST_SMTP_PW", "right")
	_, _, addr := start(t, testConfig(t, "max_auth_failures = 3\nauth_failure_pause = \"1h\"\n[[smtp.user]]\nname = \"u\"\npassword = \"env:TEST_SMTP_PW\"\n"), nil)
	rc := dial(t, addr)
	rc.hello()
	bad := base64.StdEncoding.EncodeToString([]byte("\x00u\x00wrong"))
	expectCode(t, rc.cmd("AUTH PLAIN "+bad), "535")
	expectCode(t, rc.cmd("AUTH PLAIN "+bad), "535")
	expectCode(t, rc.cmd("AUTH PLAIN "+bad), "421")
	if _, err := rc.r.ReadByte(); err == nil {
		t.Fatal("connection stayed open after the last failure")
	}
	// A new connection from the same address is refused during the pause,
	// even with the right password.
	rc2 := dial(t, addr)
	r := rc2.reply()
	expectCode(t, r, "421")
	if !strings.Contains(r, "failed logins") {
		t.Fatalf("pause reply: %q", r)
	}
}

// startTLS is a net/smtp client on addr after STARTTLS, closed with the test.
func startTLS(t *testing.T, addr string, pool *x509.CertPool) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.StartTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRequireTLS(t *testing.T) {
	cf, kf, pool := selfSigned(t)
	_, rec, addr := start(t, testConfig(t, fmt.Sprintf("require_tls = true\ntls_cert = %q\ntls_key = %q\n", cf, kf)), nil)
	rc := dial(t, addr)
	rc.hello()
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "530")
	c := startTLS(t, addr, pool)
	if err := c.Mail("a@b.example"); err != nil {
		t.Fatalf("MAIL after STARTTLS: %v", err)
	}
	c.Rcpt("x@alerts.example.net")
	w, _ := c.Data()
	io.WriteString(w, alert)
	if err := w.Close(); err != nil || rec.count() != 1 {
		t.Fatalf("data: %v, received %d", err, rec.count())
	}
}

func TestSessionCaps(t *testing.T) {
	_, _, addr := start(t, testConfig(t, "max_sessions_per_ip = 2\n"), nil)
	a, b := dial(t, addr), dial(t, addr)
	expectCode(t, a.reply(), "220")
	expectCode(t, b.reply(), "220")
	c := dial(t, addr)
	r := c.reply()
	expectCode(t, r, "421")
	if !strings.Contains(r, "too many connections from 127.0.0.1") {
		t.Fatalf("reply %q", r)
	}
	// Closing one frees its slot.
	expectCode(t, a.cmd("QUIT"), "221")
	a.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := dial(t, addr)
		if r := d.reply(); strings.HasPrefix(r, "220") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot not released after QUIT")
		}
	}
}

func TestTooManyCommandsBeforeMail(t *testing.T) {
	_, _, addr := start(t, testConfig(t, "max_commands = 5\n"), nil)
	rc := dial(t, addr)
	rc.hello() // 1 command
	for range 3 {
		expectCode(t, rc.cmd("NOOP"), "250")
	}
	// The 6th command line closes the session.
	rc.send("NOOP\r\nNOOP\r\n")
	var all strings.Builder
	for {
		line, err := rc.r.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			break
		}
	}
	if !strings.Contains(all.String(), "421 4.7.0") {
		t.Fatalf("no 421 after too many commands: %q", all.String())
	}
}

// go-smtp reports recovered panics, accept errors and routine client
// errors through one Printf; only the first two may reach an Info log.
func TestGoSMTPLogLevels(t *testing.T) {
	cases := []struct {
		format string
		args   []any
		want   string // level in the log line, "" for not logged at Info
	}{
		{"panic serving %v: %v\n%s", []any{"127.0.0.1:4000", "boom", "goroutine 1"}, "ERROR"},
		{"accept error: %s; retrying in %s", []any{"too many open files", "5ms"}, "WARN"},
		{"error handling %v: %s", []any{"127.0.0.1:4000", "connection reset by peer"}, ""},
	}
	for _, tc := range cases {
		var buf strings.Builder
		l := slogLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
		l.Printf(tc.format, tc.args...)
		got := buf.String()
		if tc.want == "" {
			if got != "" {
				t.Errorf("%q logged at Info: %s", tc.format, got)
			}
			continue
		}
		if !strings.Contains(got, "level="+tc.want) || !strings.Contains(got, fmt.Sprint(tc.args[1])) {
			t.Errorf("%q: want level %s with the detail, got %s", tc.format, tc.want, got)
		}
	}
}

// Shutdown tells idle sessions to come back later at once, instead of
// waiting shutdown_timeout for them, and lets a message in transfer finish.
func TestShutdownClosesIdleAndFinishesData(t *testing.T) {
	s, rec, addr := start(t, testConfig(t, "read_timeout = \"5m\"\n"), nil)
	idle := dial(t, addr)
	idle.hello()
	busy := dial(t, addr)
	busy.hello()
	expectCode(t, busy.cmd("MAIL FROM:<a@b.example>"), "250")
	expectCode(t, busy.cmd("RCPT TO:<x@alerts.example.net>"), "250")
	expectCode(t, busy.cmd("DATA"), "354")
	busy.send("Subject: half\r\n\r\nfirst half\r\n")
	waitFor(t, func() bool { // the server is in DATA
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			if c.isInData() {
				return true
			}
		}
		return false
	})

	// With read_timeout at 5m, only waking idle sessions lets Shutdown
	// return inside its deadline (which would make it return an error).
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	const bye = "421 4.3.2 gw.test: service shutting down; please send again later\r\n"
	if got := idle.reply(); got != bye {
		t.Fatalf("idle session got %q, want %q", got, bye)
	}
	if got := idle.reply(); got != "" {
		t.Fatalf("idle session still open after the 421: %q", got)
	}

	busy.send("second half\r\n.\r\n")
	expectCode(t, busy.reply(), "250")
	if got := busy.reply(); got != bye {
		t.Fatalf("after its message the busy session got %q, want %q", got, bye)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	assertMessages(t, rec, []string{"Subject: half\r\n\r\nfirst half\r\nsecond half\r\n"})
}
