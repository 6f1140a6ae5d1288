package smtpd

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"psagate/internal/message"
	"psagate/internal/testutil"
)

// greetOK dials and checks the greeting: the session was admitted.
func greetOK(t *testing.T, addr string) *rawClient {
	t.Helper()
	rc := dial(t, addr)
	if r := rc.reply(); r != rGreet+"\r\n" {
		t.Fatalf("greeting %q", r)
	}
	return rc
}

// quit ends a session and waits until the server has closed it. The slot
// is released before the socket closes, so it is free once this returns.
func (rc *rawClient) quit() {
	rc.t.Helper()
	if r := rc.cmd("QUIT"); r != rBye+"\r\n" {
		rc.t.Fatalf("QUIT: %q", r)
	}
	if _, err := rc.r.ReadByte(); err == nil {
		rc.t.Fatal("connection open after QUIT")
	}
}

// refusedWith dials and expects exactly one reply line, then the close.
func refusedWith(t *testing.T, addr, want string) {
	t.Helper()
	tr := converse(t, addr)
	assertLines(t, tr.lines, []string{want})
}

func TestMaxSessionsTotal(t *testing.T) {
	t.Parallel()
	_, _, addr := start(t, testConfig(t, "max_sessions = 2\nmax_sessions_per_ip = 10\n"), nil)
	a := greetOK(t, addr)
	greetOK(t, addr)
	refusedWith(t, addr, "421 4.7.0 gw.test: too many connections (2); try again later")
	a.quit()
	greetOK(t, addr)
	refusedWith(t, addr, "421 4.7.0 gw.test: too many connections (2); try again later")
}

func TestMaxSessionsPerIP(t *testing.T) {
	t.Parallel()
	s, _, addr := start(t, testConfig(t, "max_sessions_per_ip = 1\n"), nil)
	a := greetOK(t, addr)
	refusedWith(t, addr, "421 4.7.0 gw.test: too many connections from 127.0.0.1 (1); try again later")
	a.quit()
	b := greetOK(t, addr)
	// A client that vanishes without QUIT frees its slot too. Nothing the
	// client can observe marks that moment, so watch the counter.
	b.c.Close()
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.total == 0 && len(s.perIP) == 0
	})
	greetOK(t, addr)
}

// waitFor polls a condition that has no observable event, with a deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const rTooManyCmds = "421 4.7.0 gw.test: too many commands without sending mail; closing"

func TestMaxCommandsBeforeMail(t *testing.T) {
	t.Parallel()
	for _, tc := range maxCommandsCases() {
		tc.modes, tc.extra = []string{"normalize"}, "max_commands = 5\n"
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// maxCommandsCases run with max_commands = 5 (also FuzzSession's seeds).
func maxCommandsCases() []rawCase {
	const noop = "250 2.0.0 I have successfully done nothing"
	const reset = "250 2.0.0 Session reset"
	body := "Subject: s\r\n\r\n" + strings.Repeat("line\r\n", 300)
	return []rawCase{
		{
			// The 5th command is answered; the server then closes without
			// waiting for a 6th.
			name:   "exactly max_commands, then silence",
			writes: []string{"HELO c\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n"},
			want:   lines(rGreet, rHelo, noop, noop, noop, noop, rTooManyCmds),
		},
		{
			name:   "RSET does not restart the count",
			writes: []string{"HELO c\r\nRSET\r\nRSET\r\nRSET\r\nRSET\r\nRSET\r\nRSET\r\n"},
			want:   lines(rGreet, rHelo, reset, reset, reset, reset, rTooManyCmds),
		},
		{
			name:   "HELO does not restart the count",
			writes: []string{"HELO c\r\nHELO c\r\nHELO c\r\nHELO c\r\nHELO c\r\nHELO c\r\n"},
			want:   lines(rGreet, rHelo, rHelo, rHelo, rHelo, rHelo, rTooManyCmds),
		},
		{
			name:   "a failed MAIL counts",
			writes: []string{"HELO c\r\nMAIL FROM:<bad\r\nMAIL FROM:<bad\r\nMAIL FROM:<bad\r\nMAIL FROM:<bad\r\nMAIL FROM:<bad\r\n"},
			want: lines(rGreet, rHelo, "501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>", "501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>",
				"501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>", "501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>", rTooManyCmds),
		},
		{
			// Commands inside a transaction are not counted, and a message
			// handed over restarts the count.
			name: "a delivered message restarts the count",
			writes: []string{"HELO c\r\nNOOP\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nNOOP\r\nNOOP\r\nDATA\r\nSubject: s\r\n\r\nb\r\n.\r\n" +
				"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n"},
			want: lines(rGreet, rHelo, noop, noop, rMailA, rRcptX, noop, noop, rGoAhead, rQueued1,
				noop, noop, noop, noop, noop, rTooManyCmds),
			msgs: []string{"Subject: s\r\n\r\nb\r\n"},
		},
		{
			// Message lines that arrive in the same read as the commands
			// (DATA pipelined without waiting for 354, BDAT pipelined as
			// CHUNKING allows) are data, not commands.
			name:   "pipelined DATA body is not counted",
			writes: []string{envelope + body + ".\r\nQUIT\r\n"},
			want:   lines(envelopeReplies, rQueued1, rBye),
			msgs:   []string{body},
		},
		{
			name: "pipelined BDAT chunk is not counted",
			writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\n" +
				fmt.Sprintf("BDAT %d LAST\r\n%sQUIT\r\n", len(body), body)},
			want: lines(rGreet, rHelo, rMailA, rRcptX, rQueued1, rBye),
			msgs: []string{body},
		},
	}
}

// After STARTTLS the bytes on the socket are ciphertext; commands are still
// counted, and the 421 is sent inside TLS.
func TestMaxCommandsCountedOverTLS(t *testing.T) {
	t.Parallel()
	cf, kf, pool := selfSigned(t)
	_, _, addr := start(t, testConfig(t, fmt.Sprintf("max_commands = 5\nmax_sessions_per_ip = 1\ntls_cert = %q\ntls_key = %q\n", cf, kf)), nil)
	rc := greetOK(t, addr)
	if r := rc.cmd("HELO c"); r != rHelo+"\r\n" { // 1
		t.Fatal(r)
	}
	if r := rc.cmd("STARTTLS"); r != "220 2.0.0 Ready to start TLS\r\n" { // 2
		t.Fatal(r)
	}
	tc := tls.Client(rc.c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// Three more commands in one TLS record, then one that is not read.
	if _, err := io.WriteString(tc, "HELO c\r\nNOOP\r\nNOOP\r\nNOOP\r\n"); err != nil {
		t.Fatal(err)
	}
	tr := readAll(tc)
	assertLines(t, tr.lines, lines(rHelo, "250 2.0.0 I have successfully done nothing", "250 2.0.0 I have successfully done nothing", rTooManyCmds))
	// The slot is free again.
	greetOK(t, addr)
}

// An idle timeout after STARTTLS is reported inside TLS too.
func TestTimeoutOverTLS(t *testing.T) {
	t.Parallel()
	cf, kf, pool := selfSigned(t)
	_, _, addr := start(t, testConfig(t, timeoutConfig+fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", cf, kf)), nil)
	rc := greetOK(t, addr)
	if r := rc.cmd("STARTTLS"); r != "220 2.0.0 Ready to start TLS\r\n" {
		t.Fatal(r)
	}
	tc := tls.Client(rc.c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tc, "HELO c\r\nNOO"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	tr := readAll(tc)
	within(t, "closed", time.Since(began), 300*time.Millisecond)
	assertLines(t, tr.lines, lines(rHelo, rReadTimeout))
	greetOK(t, addr)
}

func TestAuthFailurePauseAndExpiry(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "max_auth_failures = 2\nauth_failure_pause = \"1h\"\n[[smtp.user]]\nname = \"u\"\npassword = \"right-pw\"\n")
	s, _, addr := start(t, cfg, nil)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	setNow := func(at time.Time) {
		s.mu.Lock()
		s.now = func() time.Time { return at }
		s.mu.Unlock()
	}
	setNow(t0)
	bad := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00u\x00wrong")) + "\r\n"
	good := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00u\x00right-pw")) + "\r\n"
	const wrong = "535 5.7.8 Authentication failed: wrong user name or password"

	tr := converse(t, addr, "HELO c\r\n"+bad+bad+"NOOP\r\n")
	assertLines(t, tr.lines, lines(rGreet, rHelo, wrong, "421 4.7.0 Too many failed logins; try again in 1h0m0s"))
	// Paused: refused at connect, even for the right password.
	refusedWith(t, addr, "421 4.7.0 gw.test: too many failed logins from 127.0.0.1; try again after 2030-01-01T01:00:00Z")
	setNow(t0.Add(time.Hour - time.Second))
	refusedWith(t, addr, "421 4.7.0 gw.test: too many failed logins from 127.0.0.1; try again after 2030-01-01T01:00:00Z")

	// After the pause the count starts again from zero.
	setNow(t0.Add(time.Hour + time.Second))
	tr = converse(t, addr, "HELO c\r\n"+bad+"QUIT\r\n")
	assertLines(t, tr.lines, lines(rGreet, rHelo, wrong, rBye))
	// Failures further apart than the pause do not add up.
	setNow(t0.Add(3 * time.Hour))
	tr = converse(t, addr, "HELO c\r\n"+bad+good+"QUIT\r\n")
	assertLines(t, tr.lines, lines(rGreet, rHelo, wrong, "235 2.0.0 Authentication succeeded", rBye))
	// A success clears the count: one more failure is not the second.
	tr = converse(t, addr, "HELO c\r\n"+bad+"QUIT\r\n")
	assertLines(t, tr.lines, lines(rGreet, rHelo, wrong, rBye))
}

// Addresses that each fail once must not grow the failure table for ever:
// stale entries are swept whenever the table has doubled since the last
// sweep (and is at least authFailPruneMin big).
func TestAuthFailureTableIsPruned(t *testing.T) {
	t.Parallel()
	s, err := New(testConfig(t, "max_auth_failures = 3\nauth_failure_pause = \"10m\"\n"), (&recorder{}).handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := t0
	s.now = func() time.Time { return at }
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)}) }
	paused := ip(1 << 20)
	for range 3 {
		s.authFailed(paused)
	}
	old := 3 * authFailPruneMin
	for i := range old {
		s.authFailed(ip(i))
	}
	if n := len(s.authFails); n != old+1 {
		t.Fatalf("%d entries, want all %d kept while their failures are recent", n, old+1)
	}
	// Later than the pause the single failures are stale; the paused
	// address stays while its (here prolonged) pause runs.
	at = t0.Add(11 * time.Minute)
	s.authFails[paused].until = at.Add(time.Hour)
	for i := range 2*old + 2 {
		before := len(s.authFails)
		s.authFailed(ip(old + i))
		if len(s.authFails) < before {
			if want := i + 2; len(s.authFails) != want {
				t.Fatalf("%d entries after the sweep, want %d (paused + new)", len(s.authFails), want)
			}
			if code, _, _ := s.admit(paused); code != 421 {
				t.Fatalf("paused address admitted after the sweep (code %d)", code)
			}
			return
		}
	}
	t.Fatalf("no sweep while the table grew to %d", len(s.authFails))
}

// timeoutConfig has test-sized timeouts and one slot per address, so a
// greeting after each test proves the slot was released.
const timeoutConfig = "read_timeout = \"300ms\"\ndata_timeout = \"400ms\"\nsession_timeout = \"1500ms\"\nmax_sessions_per_ip = 1\n"

const (
	rDataTimeout    = "421 4.4.2 Timed out while receiving the message (smtp.data_timeout 400ms); closing, please retry"
	rReadTimeout    = "421 4.4.2 gw.test: no complete command within smtp.read_timeout (300ms); closing"
	rSessionTimeout = "421 4.4.2 gw.test: session longer than smtp.session_timeout (1.5s); closing"
)

// within fails unless d is at least min (the timeout did not fire early)
// and not far beyond it (it fired at all, on a loaded 2-core machine).
func within(t *testing.T, what string, d, min time.Duration) {
	t.Helper()
	if d < min-20*time.Millisecond || d > min+3*time.Second {
		t.Fatalf("%s after %v, want about %v", what, d, min)
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	const user = "[[smtp.user]]\nname = \"u\"\npassword = \"pw\"\n"
	cases := []struct {
		name    string
		extra   string
		writes  []string
		want    []string
		timeout time.Duration
	}{
		// The unfinished "NOO" is not answered (bufio would hand it to
		// go-smtp as a whole line): the timeout reply is the last word.
		{"silent mid-command", "", []string{"HELO c\r\nNOO"}, lines(rGreet, rHelo, rReadTimeout), 300 * time.Millisecond},
		{"silent before any command", "", nil, lines(rGreet, rReadTimeout), 300 * time.Millisecond},
		{"silent mid-DATA", "", []string{envelope + "Subject: s\r\n\r\nbo"}, lines(envelopeReplies, rDataTimeout), 400 * time.Millisecond},
		// "body.<CR><LF>" is not the end of data: the CRLF before the dot
		// is part of the end marker.
		{"message without the CRLF before the dot", "", []string{envelope + "Subject: s\r\n\r\nbody.\r\n"}, lines(envelopeReplies, rDataTimeout), 400 * time.Millisecond},
		{"silent after LF.LF", "", []string{envelope + "Subject: s\n\nbody\n.\n"}, lines(envelopeReplies, rDataTimeout), 400 * time.Millisecond},
		{"silent in an AUTH exchange", user, []string{"HELO c\r\nAUTH LOGIN\r\n"}, lines(rGreet, rHelo, "334 VXNlcm5hbWU6", rReadTimeout), 300 * time.Millisecond},
		{"AUTH response cut short", user, []string{"HELO c\r\nAUTH LOGIN\r\ndQ==\r\ncHc"}, lines(rGreet, rHelo, "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", rReadTimeout), 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, rec, addr := start(t, testConfig(t, timeoutConfig+tc.extra), nil)
			began := time.Now()
			tr := converse(t, addr, tc.writes...)
			within(t, "closed", time.Since(began), tc.timeout)
			assertLines(t, tr.lines, tc.want)
			assertMessages(t, rec, nil)
			greetOK(t, addr)
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.authFails) != 0 {
				t.Fatal("a password cut short by the timeout counted as a failed login")
			}
		})
	}
}

// After a DATA timeout the connection is closed, not turned back to
// command state: the rest of a stalled body (which may hold "MAIL FROM:"
// lines) must never run as commands.
func TestStalledBodyIsNeverReadAsCommands(t *testing.T) {
	t.Parallel()
	_, rec, addr := start(t, testConfig(t, timeoutConfig), nil)
	rc := dial(t, addr)
	rc.send(envelope + "Subject: s\r\n\r\nstalled line")
	for _, want := range lines(envelopeReplies, rDataTimeout) {
		if got := strings.TrimRight(rc.reply(), "\r\n"); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	// The relay, unaware, goes on with the body.
	_, _ = io.WriteString(rc.c, "\r\nMAIL FROM:<evil@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nDATA\r\nSubject: forged\r\n\r\nx\r\n.\r\n")
	if rest, err := io.ReadAll(rc.r); len(rest) != 0 {
		t.Fatalf("server answered after the data timeout: %q (%v)", rest, err)
	}
	assertMessages(t, rec, nil)
	greetOK(t, addr)
}

// A stalled BDAT chunk ends the session the same way.
func TestStalledBDATChunk(t *testing.T) {
	t.Parallel()
	_, rec, addr := start(t, testConfig(t, timeoutConfig), nil)
	tr := converse(t, addr, "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nBDAT 100 LAST\r\nonly ten.\n")
	if n := len(tr.lines); n != 6 || !strings.HasPrefix(tr.lines[4], "554 5.0.0 Error: transaction failed: ") ||
		!strings.HasSuffix(tr.lines[4], "i/o timeout") || tr.lines[5] != rIdle {
		t.Fatalf("replies: %s", quoteLines(tr.lines))
	}
	assertLines(t, tr.lines[:4], lines(rGreet, rHelo, rMailA, rRcptX))
	assertMessages(t, rec, nil)
	greetOK(t, addr)
}

// trickle writes s one byte per tick until it is written, a write fails or
// stop is closed. It stands for a slowloris client.
func trickle(c net.Conn, s string, every time.Duration, stop <-chan struct{}) {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for i := 0; i < len(s); i++ {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
	}
}

func TestSlowloris(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200) // 200 bytes at 20ms: 4s, far past every timeout
	cases := []struct {
		name    string
		prefix  string
		drip    string
		want    []string
		timeout time.Duration
	}{
		{"one command byte at a time", "", "NOOP " + long, lines(rGreet, rReadTimeout), 300 * time.Millisecond},
		{"one body byte at a time", envelope, "Subject: " + long, lines(envelopeReplies, rDataTimeout), 400 * time.Millisecond},
		// Every command arrives in time; the session as a whole does not.
		{"commands that never end the session", "", strings.Repeat("NOOP\r\n", 100), nil, 1500 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, addr := start(t, testConfig(t, timeoutConfig+"max_commands = 1000\nmax_idle_commands = 1000\nmail_timeout = \"1h\"\n"), nil)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			began := time.Now()
			if _, err := io.WriteString(c, tc.prefix); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			dripped := make(chan struct{})
			go func() { defer close(dripped); trickle(c, tc.drip, 20*time.Millisecond, stop) }()
			tr := readAll(c)
			close(stop)
			<-dripped
			within(t, "closed", time.Since(began), tc.timeout)
			if tc.want == nil { // the session timeout: NOOP replies, then the idle 421
				tc.want = lines(rGreet)
				for range len(tr.lines) - 2 {
					tc.want = append(tc.want, "250 2.0.0 I have successfully done nothing")
				}
				tc.want = append(tc.want, rSessionTimeout)
				if len(tr.lines) < 10 {
					t.Fatalf("only %d replies before the session timeout", len(tr.lines))
				}
			}
			assertLines(t, tr.lines, tc.want)
			greetOK(t, addr)
		})
	}
}

// Header caps. The SMTP layer bounds line length (max_line_length, which
// closes the connection) and size; the number of header fields, MIME parts
// and nesting depth are the MIME decoder's caps (max_headers,
// max_mime_parts, max_mime_depth), so such messages are accepted here and
// decoded with a limit problem.
func TestThousandsOfHeaderFields(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	_, rec, addr := start(t, cfg, nil)
	var b strings.Builder
	b.WriteString("Subject: many\r\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "X-Field-%d: v\r\n", i)
	}
	b.WriteString("\r\nbody\r\n")
	tr := converse(t, addr, envelope+b.String()+".\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, rQueued1, rBye))
	assertMessages(t, rec, []string{b.String()})
	a := message.Decode(rec.last().raw, rec.last().env, message.Limits{MaxHeaders: cfg.MaxHeaders, MaxParts: cfg.MaxMIMEParts, MaxDepth: cfg.MaxMIMEDepth})
	if !a.HasProblem(message.ProblemLimit) || a.Subject != "many" {
		t.Fatalf("decoder did not cap the header fields: subject %q, problems %+v", a.Subject, a.Problems)
	}
}

func TestHugeHeaderLine(t *testing.T) {
	t.Parallel()
	_, rec, addr := start(t, testConfig(t, "max_sessions_per_ip = 1\n"), nil)
	tr := converse(t, addr, envelope+"Subject: "+strings.Repeat("h", 100<<10)+"\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies,
		"500 5.5.0 Line too long: this gateway takes lines of at most 65536 bytes (smtp.max_line_length); closing"))
	assertMessages(t, rec, nil)
	greetOK(t, addr)
}

func TestDeepAndWideMultipart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "")
	_, rec, addr := start(t, cfg, nil)
	var b strings.Builder
	b.WriteString("Subject: nested\r\nMIME-Version: 1.0\r\n")
	const depth = 40
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ninner\r\n")
	for i := depth - 1; i >= 0; i-- {
		for j := range 10 {
			fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i, j)
		}
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	tr := converse(t, addr, envelope+b.String()+".\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, rQueued1, rBye))
	a := message.Decode(rec.last().raw, rec.last().env, message.Limits{MaxHeaders: cfg.MaxHeaders, MaxParts: cfg.MaxMIMEParts, MaxDepth: cfg.MaxMIMEDepth})
	if !a.HasProblem(message.ProblemLimit) {
		t.Fatalf("decoder did not cap depth/parts: problems %+v", a.Problems)
	}
}

// No password, right or wrong, reaches the log, whatever the session does
// (failed and good logins, a timeout in the middle of an AUTH exchange).
func TestPasswordsNeverLogged(t *testing.T) {
	t.Parallel()
	var buf testutil.Buffer
	cfg := testConfig(t, timeoutConfig+"max_auth_failures = 10\n[[smtp.user]]\nname = \"u\"\npassword = \"Sekr3t-right\"\n")
	rec := &recorder{}
	s, err := New(cfg, rec.handle, nil, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	addr := ln.Addr().String()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	converse(t, addr, "HELO c\r\nAUTH PLAIN "+b64("\x00u\x00Sekr3t-right")+"\r\nQUIT\r\n")
	converse(t, addr, "HELO c\r\nAUTH LOGIN\r\n"+b64("u")+"\r\n"+b64("Wr0ng-first")+"\r\n"+
		"AUTH PLAIN "+b64("\x00u\x00Wr0ng-second")+"\r\n")
	converse(t, addr, "HELO c\r\nAUTH LOGIN\r\n"+b64("u")+"\r\n"+b64("Wr0ng-cut")[:6])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
	<-done
	log := buf.String()
	if !strings.Contains(log, "authentication failed") || !strings.Contains(log, "timeout; closing") {
		t.Fatalf("the sessions were not logged as expected:\n%s", log)
	}
	for _, secret := range []string{"Sekr3t-right", "Wr0ng-first", "Wr0ng-second", "Wr0ng", b64("Wr0ng-cut")[:6]} {
		if strings.Contains(log, secret) {
			t.Fatalf("log holds %q:\n%s", secret, log)
		}
	}
}
