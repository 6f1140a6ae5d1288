// Package testutil holds what several packages' tests share: finding the
// repository and the shared sample set, reading an EXPECTED.tsv, judging a
// decision against it, and a small byte-exact SMTP client.
package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoRoot is the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above " + file)
		}
		dir = parent
	}
}

// SharedSamples returns ../shared/samples beside the repository, or "" when
// that folder is absent (a fresh clone outside the workplace).
func SharedSamples(t testing.TB) string {
	dir := filepath.Join(RepoRoot(t), "..", "shared", "samples")
	if _, err := os.Stat(filepath.Join(dir, "EXPECTED.tsv")); err != nil {
		return ""
	}
	return dir
}

// SampleSets returns the sample folders to replay: the project's own
// testdata/samples always, and ../shared/samples when present. A test that
// uses the shared set logs clearly when it is absent.
func SampleSets(t testing.TB) []string {
	sets := []string{filepath.Join(RepoRoot(t), "testdata", "samples")}
	if s := SharedSamples(t); s != "" {
		sets = append(sets, s)
	} else {
		t.Log("SKIPPED PART: ../shared/samples is absent; replaying only testdata/samples")
	}
	return sets
}

// Row is one line of an EXPECTED.tsv.
type Row struct {
	File       string
	Vendor     string
	Kind       string
	DeviceKey  string
	Decision   string
	AlsoOK     []string
	Check      string
	IncidentOf string
	MailFrom   string
	RcptTo     string
	Malformed  string
}

// ReadExpected parses dir/EXPECTED.tsv by its header names.
func ReadExpected(t testing.TB, dir string) []Row {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "EXPECTED.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	head := strings.Split(lines[0], "\t")
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(h)] = i
	}
	get := func(f []string, name string) string {
		i, ok := col[name]
		if !ok || i >= len(f) {
			return ""
		}
		v := strings.TrimSpace(f[i])
		if v == "-" {
			return ""
		}
		return v
	}
	var rows []Row
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		f := strings.Split(l, "\t")
		r := Row{File: get(f, "file"), Vendor: get(f, "vendor"), Kind: get(f, "kind"), DeviceKey: get(f, "device_key"),
			Decision: get(f, "decision"), Check: get(f, "check"), IncidentOf: get(f, "incident_ref"),
			MailFrom: get(f, "mail_from"), RcptTo: get(f, "rcpt_to"), Malformed: get(f, "malformed")}
		if a := get(f, "also_ok"); a != "" {
			r.AlsoOK = strings.Split(a, "|")
		}
		rows = append(rows, r)
	}
	return rows
}

// Accepts reports whether a decision (and its effect) is what the row
// expects or one of its also_ok values. "ticket(hold-down)" is a ticket
// decision held back by a delay; "close(no-op)" is a close that had
// nothing to close or that cancelled a hold-down (no PSA call either way).
func (r Row) Accepts(decision, effect string) bool {
	if decision == r.Decision {
		return true
	}
	for _, a := range r.AlsoOK {
		switch a {
		case "ticket(hold-down)":
			if decision == "ticket" && (effect == "held" || effect == "held-repeat") {
				return true
			}
		case "close(no-op)":
			if decision == "close" && (effect == "no-op" || effect == "cancelled") {
				return true
			}
		default:
			if decision == a {
				return true
			}
		}
	}
	return false
}

// SMTPClient is a byte-exact SMTP client over a raw connection: what it
// is told to send is what goes on the wire (net/smtp rewrites line ends).
type SMTPClient struct {
	t testing.TB
	C net.Conn
	R *bufio.Reader
}

// Dial connects and reads the greeting.
func Dial(t testing.TB, addr string) (*SMTPClient, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { c.Close() })
	sc := &SMTPClient{t: t, C: c, R: bufio.NewReader(c)}
	return sc, sc.Reply()
}

// Reply reads one reply, all its lines.
func (c *SMTPClient) Reply() string {
	var b strings.Builder
	for {
		line, err := c.R.ReadString('\n')
		b.WriteString(line)
		if err != nil || len(line) < 4 || line[3] != '-' {
			return b.String()
		}
	}
}

// Raw writes bytes as they are.
func (c *SMTPClient) Raw(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.C, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Cmd sends a command line and returns the reply.
func (c *SMTPClient) Cmd(format string, args ...any) string {
	c.t.Helper()
	c.Raw(fmt.Sprintf(format, args...) + "\r\n")
	return c.Reply()
}

// Send runs one mail transaction with a CRLF message (dot-stuffed here)
// and returns the reply to the end of DATA.
func (c *SMTPClient) Send(from string, to []string, raw []byte) string {
	c.t.Helper()
	if r := c.Cmd("MAIL FROM:<%s>", from); !strings.HasPrefix(r, "250") {
		return r
	}
	for _, rc := range to {
		if r := c.Cmd("RCPT TO:<%s>", rc); !strings.HasPrefix(r, "250") {
			return r
		}
	}
	if r := c.Cmd("DATA"); !strings.HasPrefix(r, "354") {
		return r
	}
	body := string(raw)
	if !strings.HasSuffix(body, "\r\n") {
		body += "\r\n"
	}
	body = strings.ReplaceAll(body, "\r\n.", "\r\n..")
	if strings.HasPrefix(body, ".") {
		body = "." + body
	}
	c.Raw(body + ".\r\n")
	return c.Reply()
}

// SendMail dials, greets and sends one message; it returns the DATA reply.
func SendMail(t testing.TB, addr, from string, to []string, raw []byte) string {
	t.Helper()
	c, greet := Dial(t, addr)
	if !strings.HasPrefix(greet, "220") {
		return greet
	}
	if r := c.Cmd("EHLO test.client"); !strings.HasPrefix(r, "250") {
		return r
	}
	r := c.Send(from, to, raw)
	c.Cmd("QUIT")
	c.C.Close()
	return r
}

// QueuedID extracts the message id from a "250 2.0.0 Queued as ID" reply
// (or "Accepted as ID ..." for a drop).
func QueuedID(reply string) string {
	for _, p := range []string{"Queued as ", "Accepted as ", "Already queued as "} {
		if i := strings.Index(reply, p); i >= 0 {
			f := strings.Fields(reply[i+len(p):])
			if len(f) > 0 {
				return strings.TrimRight(f[0], ".,")
			}
		}
	}
	return ""
}

// Buffer is a bytes buffer safe for a server's goroutines, for capturing
// logs and provider output in tests.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
