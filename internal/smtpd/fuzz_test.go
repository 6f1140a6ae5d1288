package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/message"
)

// fuzzSep splits a fuzz input into separate writes, so the fuzzer can
// also explore how commands and data are cut across TCP segments.
const fuzzSep = 0xFE

// fuzzMaxInput bounds one input, to keep every iteration fast.
const fuzzMaxInput = 32 << 10

// fuzzServer is one live server the fuzz inputs are played against, with a
// handler that checks every message it is given.
type fuzzServer struct {
	cfg       config.SMTP
	addr      string
	srv       *Server
	bdatRaces atomic.Int64 // see knownBDATRace

	mu       sync.Mutex
	problems []string // handler checks that failed, and recovered panics
}

// panicWatch is the server's slog handler: go-smtp recovers a panic in a
// command handler, answers 421 and logs "panic serving ..." through
// Server.ErrorLog, which psagate logs at debug level as "smtp" detail=...
type panicWatch struct{ fs *fuzzServer }

func (p panicWatch) Enabled(context.Context, slog.Level) bool { return true }
func (p panicWatch) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p panicWatch) WithGroup(string) slog.Handler            { return p }
func (p panicWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "smtp" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if d := a.Value.String(); a.Key == "detail" && strings.HasPrefix(d, "panic serving ") {
			if knownBDATRace(d) {
				p.fs.bdatRaces.Add(1)
			} else {
				p.fs.problem("go-smtp recovered a %s", d)
			}
		}
		return true
	})
	return nil
}

// knownBDATRace recognises a go-smtp v0.25.1 bug that psagate cannot
// avoid: handleBdat starts a goroutine that calls c.Session().Data(r)
// (conn.go:1059) some time later. When a chunk moves no bytes ("BDAT 0",
// or a hang-up right after "BDAT n"), the session can end and Conn.Close
// set the session to nil first, and the goroutine dereferences nil. go-smtp
// recovers it in that goroutine; no reply is affected (nobody reads the
// result), nothing is delivered, nothing leaks. "BDAT 0" then QUIT hits it
// almost every time (TestBDAT "BDAT 0 then QUIT"). Only that exact stack,
// without a psagate frame, is tolerated; an upgrade moves the line and
// makes this fail, to be looked at again.
func knownBDATRace(detail string) bool {
	return strings.Contains(detail, "nil pointer dereference") &&
		strings.Contains(detail, "go-smtp.(*Conn).handleBdat.func1()\n") &&
		strings.Contains(detail, "go-smtp@v0.25.1/conn.go:1059 ") &&
		!strings.Contains(detail, "psagate/")
}

func (fs *fuzzServer) problem(format string, args ...any) {
	fs.mu.Lock()
	fs.problems = append(fs.problems, fmt.Sprintf(format, args...))
	fs.mu.Unlock()
}

// handle checks what a Handler may rely on: the size limit, CRLF-only line
// ends (either mode: "normalize" rewrote them, "reject" refused them) and
// only recipients in accept_domains.
func (fs *fuzzServer) handle(_ context.Context, raw []byte, env message.Envelope) Reply {
	if int64(len(raw)) > fs.cfg.MaxMessageBytes {
		fs.problem("handler got %d bytes, limit %d", len(raw), fs.cfg.MaxMessageBytes)
	}
	for i, c := range raw {
		if (c == '\n' && (i == 0 || raw[i-1] != '\r')) || (c == '\r' && (i+1 == len(raw) || raw[i+1] != '\n')) {
			fs.problem("bare line end at byte %d of %q (bare_lf = %s)", i, raw, fs.cfg.BareLF)
			break
		}
	}
	if len(env.RcptTo) == 0 || len(env.RcptTo) > fs.cfg.MaxRecipients {
		fs.problem("handler got %d recipients", len(env.RcptTo))
	}
	for _, r := range env.RcptTo {
		if !strings.HasSuffix(r, "@alerts.example.net") && !strings.HasSuffix(r, "@alerts.example.net.") {
			fs.problem("recipient %q outside accept_domains", r)
		}
	}
	return Reply{250, [3]int{2, 0, 0}, "Queued"}
}

func startFuzzServer(f *testing.F, mode string) *fuzzServer {
	f.Helper()
	c, err := config.Parse("fuzz.toml", []byte(`[smtp]
listen = "127.0.0.1:0"
hostname = "gw.fuzz"
accept_domains = ["alerts.example.net"]
max_message_bytes = 2048
max_line_length = 512
max_recipients = 5
max_commands = 40
read_timeout = "2s"
data_timeout = "2s"
session_timeout = "4s"
max_sessions_per_ip = 4
max_auth_failures = 1000000
require_auth = false
bare_lf = "`+mode+`"
[[smtp.user]]
name = "appliance"
password = "pw-seq"
`))
	if err != nil {
		f.Fatal(err)
	}
	fs := &fuzzServer{cfg: c.SMTP}
	s, err := New(c.SMTP, fs.handle, nil, slog.New(panicWatch{fs}))
	if err != nil {
		f.Fatal(err)
	}
	fs.srv = s
	ln, err := s.Listen()
	if err != nil {
		f.Fatal(err)
	}
	fs.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return fs
}

// FuzzSession plays each input, as a command stream cut into writes at
// 0xFE, against a live server in each bare_lf mode. It checks that the
// server never panics, writes only well-formed reply lines, hands the
// handler only messages that keep the limits and the line-end policy, and
// still greets a fresh connection afterwards.
//
// The servers are started once per fuzz process (FuzzSession's body runs
// once per process; f.Fuzz's function once per input) and shut down by
// f.Cleanup, so a plain `go test`, which runs only the seeds, exits
// cleanly.
func FuzzSession(f *testing.F) {
	var seeds []rawCase
	seeds = append(seeds, smugglingCases()...)
	seeds = append(seeds, sequenceCases()...)
	seeds = append(seeds, bdatCases()...)
	seeds = append(seeds, maxCommandsCases()...)
	for _, tc := range seeds {
		f.Add([]byte(strings.Join(tc.writes, string([]byte{fuzzSep}))))
	}
	f.Add([]byte("HELO c\r\nAUTH PLAIN " + plainAuth("appliance", "pw-seq") + "\r\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n" +
		"RCPT TO:<x@alerts.example.net>\r\nRCPT TO:<y@ALERTS.example.net.>\r\nDATA\r\n\xfeSubject: s\r\n\r\n..x\r\n.\r\nRSET\r\nQUIT\r\n"))
	servers := []*fuzzServer{startFuzzServer(f, "normalize"), startFuzzServer(f, "reject")}

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxInput {
			data = data[:fuzzMaxInput]
		}
		chunks := bytes.Split(data, []byte{fuzzSep})
		for _, fs := range servers {
			// Problems are per input: a failure must reproduce from its
			// input alone, or minimising it would find nothing useful.
			fs.mu.Lock()
			fs.problems = nil
			fs.mu.Unlock()
			fs.session(t, chunks)
			fs.idle(t)
			fs.mu.Lock()
			problems := fs.problems
			fs.mu.Unlock()
			if len(problems) > 0 {
				t.Fatalf("bare_lf=%s: %s", fs.cfg.BareLF, strings.Join(problems, "\n"))
			}
			fs.stillServes(t)
		}
	})
}

// session writes the chunks, half-closes (the server sees EOF and must
// end the session at once) and checks every reply line.
func (fs *fuzzServer) session(t *testing.T, chunks [][]byte) {
	c, err := net.DialTimeout("tcp", fs.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for _, ch := range chunks {
			if _, err := c.Write(ch); err != nil {
				return
			}
		}
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	out, err := io.ReadAll(c)
	<-wrote
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("bare_lf=%s: server still open 10s after the client's EOF; read %q", fs.cfg.BareLF, out)
	}
	reset := err != nil // the server closed with unread input: a RST may cut the last line
	rest := out
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if !reset {
				t.Fatalf("bare_lf=%s: unterminated reply %q", fs.cfg.BareLF, rest)
			}
			break
		}
		line := rest[:i+1]
		rest = rest[i+1:]
		if !wellFormed(line) {
			t.Fatalf("bare_lf=%s: malformed reply line %q in %q", fs.cfg.BareLF, line, out)
		}
		if bytes.HasPrefix(line, []byte("421 4.0.0 Internal server error")) {
			t.Fatalf("bare_lf=%s: server panicked: %q", fs.cfg.BareLF, out)
		}
	}
}

// idle waits until the server has no session left: the one just played
// has released its slot (which happens before its socket closes) and so
// run its last command.
func (fs *fuzzServer) idle(t *testing.T) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		fs.srv.mu.Lock()
		n := fs.srv.total
		fs.srv.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bare_lf=%s: %d session(s) still open 5s after the client saw the close", fs.cfg.BareLF, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// wellFormed: three digits (2xx-5xx), space or dash, text, CRLF.
func wellFormed(line []byte) bool {
	if len(line) < 6 || !bytes.HasSuffix(line, []byte("\r\n")) {
		return false
	}
	return line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9' &&
		(line[3] == ' ' || line[3] == '-')
}

// stillServes checks that a fresh connection is greeted, and ends it.
func (fs *fuzzServer) stillServes(t *testing.T) {
	c, err := net.DialTimeout("tcp", fs.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("server gone: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if greet, err := r.ReadString('\n'); greet != "220 gw.fuzz ESMTP Service Ready\r\n" {
		t.Fatalf("bare_lf=%s: a fresh connection got %q (%v)", fs.cfg.BareLF, greet, err)
	}
	if _, err := io.WriteString(c, "QUIT\r\n"); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "221 2.0.0 Bye\r\n" {
		t.Fatalf("QUIT on a fresh connection: %q", rest)
	}
}

// FuzzFoldLongLines: folding never leaves a header line over 998 bytes
// (header lines being what it folds), never touches the body, and
// unfolding gives back the header with at most the noted spaces added.
func FuzzFoldLongLines(f *testing.F) {
	f.Add([]byte("Subject: " + strings.Repeat("word ", 300) + "\r\n\r\nbody\r\n"))
	f.Add([]byte("X-Token: " + strings.Repeat("x", 3000) + "\r\nA: b\r\n\r\n" + strings.Repeat("y", 2000) + "\r\n"))
	f.Add([]byte(strings.Repeat("z", 1200) + ": v\r\n\r\n"))
	f.Add([]byte("Subject:" + strings.Repeat("\t", 1500) + "x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		// smtpd folds after the bare-LF policy, so lines end in CRLF.
		raw = bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r"), nil), []byte("\n"), []byte("\r\n"))
		out, notes := foldLongLines(raw)
		end, oend := headerEnd(raw), headerEnd(out)
		if !bytes.Equal(raw[end:], out[oend:]) {
			t.Fatalf("body changed")
		}
		for line := range bytes.Lines(out[:oend]) {
			if n := len(bytes.TrimRight(line, "\r\n")); n > maxLine {
				t.Fatalf("header line of %d bytes left", n)
			}
		}
		unfold := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n "), []byte(" ")) }
		u := bytes.ReplaceAll(unfold(out[:oend]), []byte("\r\n\t"), []byte("\t"))
		orig := raw[:end]
		if len(notes) == 0 || !strings.Contains(notes[0], "without white space") {
			if !bytes.Equal(u, bytes.ReplaceAll(unfold(orig), []byte("\r\n\t"), []byte("\t"))) {
				t.Fatalf("unfolded header differs from the original")
			}
		} else if len(bytes.ReplaceAll(u, []byte(" "), nil)) != len(bytes.ReplaceAll(bytes.ReplaceAll(unfold(orig), []byte("\r\n\t"), []byte("\t")), []byte(" "), nil)) {
			t.Fatalf("split header lost or gained more than spaces")
		}
	})
}
