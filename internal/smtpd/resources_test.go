package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"psagate/internal/message"
)

// Issue 14: an end of data go-smtp misses, long header lines, the
// in-flight memory budget, idle sessions holding slots, and mail loops.

const (
	rBareCREnd      = "550 5.5.2 Message refused: a bare CR before <CR><LF>.<CR><LF> (an SMTP smuggling pattern); closing"
	rBareCREndInSte = "550 5.5.2 Message refused: a bare CR before <CR><LF>.<CR><LF> (an SMTP smuggling pattern)"
	rBusy1MiB       = "452 4.3.1 Insufficient system storage: too many messages in transfer (smtp.max_inflight_bytes 1048576); try again later"
	rLoop           = "554 5.4.6 Too many hops: 51 Received: headers, more than 50 (smtp.max_hops); the message is looping"
)

// <CR><CR><LF>.<CR><LF> ends the data for any RFC 5321 reader but not for
// go-smtp's: without the guard the sender waits for data_timeout (10
// minutes here; converse gives up after 10 s and fails the test) and a
// second transaction pipelined behind it is read as part of the message.
func TestBareCRBeforeEndOfData(t *testing.T) {
	t.Parallel()
	both := func(want ...string) map[string]outcome {
		return map[string]outcome{"normalize": {want: want}, "reject": {want: want}}
	}
	cases := []rawCase{
		{
			name:   "sender waits for the reply",
			writes: []string{envelope + smBody + "\r\r\n.\r\n"},
			byMode: both(lines(envelopeReplies, rBareCREnd)...),
		},
		{
			name:   "second transaction pipelined behind it",
			writes: []string{envelope + smBody + "\r\r\n.\r\n" + smuggledIn + "QUIT\r\n"},
			byMode: both(lines(envelopeReplies, rBareCREnd)...),
		},
		{
			name:   "second transaction in a later write",
			writes: []string{envelope + smBody + "\r\r\n.\r\n", smuggledIn, "QUIT\r\n"},
			byMode: both(lines(envelopeReplies, rBareCREnd)...),
		},
		{
			name:   "split byte by byte",
			writes: []string{envelope + smBody, "\r", "\r", "\n", ".", "\r", "\n"},
			byMode: both(lines(envelopeReplies, rBareCREnd)...),
		},
		{
			name:   "four CRs",
			writes: []string{envelope + smBody + "\r\r\r\r\n.\r\n" + smuggledIn + "QUIT\r\n"},
			byMode: both(lines(envelopeReplies, rBareCREnd)...),
		},
		{
			// With an odd number of CRs go-smtp does see the end; the shape
			// is refused all the same, and the session carries on in step.
			name:   "three CRs: go-smtp ends, the shape is refused",
			writes: []string{envelope + smBody + "\r\r\r\n.\r\n" + "QUIT\r\n"},
			byMode: both(lines(envelopeReplies, rBareCREndInSte, rBye)...),
		},
		{
			// A bare CR elsewhere with a normal end is what it was before.
			name:   "bare CR mid-line and a clean end",
			writes: []string{envelope + "Subject: s\r\n\r\nab\rcd\r\n.\r\nQUIT\r\n"},
			byMode: map[string]outcome{
				"normalize": {want: lines(envelopeReplies, rQueued1, rBye), msgs: []string{"Subject: s\r\n\r\nab\r\ncd\r\n"}},
				"reject":    {want: lines(envelopeReplies, rBareLF, rBye)},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// The same over STARTTLS: the guard works on the decrypted stream.
func TestBareCRBeforeEndOfDataOverTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t)
	_, rec, addr := start(t, testConfig(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", certFile, keyFile)), nil)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	pre := readLines(t, raw, "EHLO c\r\nSTARTTLS\r\n", "220 2.0.0 Ready to start TLS")
	if pre[0] != rGreet {
		t.Fatalf("before TLS: %q", pre)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if _, err := io.WriteString(c, "EHLO c\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nDATA\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, smBody+"\r\r\n.\r\n"); err != nil {
		t.Fatal(err)
	}
	tr := readAll(c)
	i := 0
	for i < len(tr.lines) && tr.lines[i] != rMailA {
		i++
	}
	assertLines(t, tr.lines[min(i, len(tr.lines)):], lines(rMailA, rRcptX, rGoAhead, rBareCREnd))
	if rec.count() != 0 {
		t.Fatalf("handler got %d messages", rec.count())
	}
}

// The stall reports that let the receiver see a waiting sender pass
// through TLS as transient errors: a message of many TLS records, sent in
// many writes, arrives whole.
func TestLargeMessageOverTLSWithStalls(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t)
	_, rec, addr := start(t, testConfig(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", certFile, keyFile)), nil)
	c := startTLS(t, addr, pool)
	if err := c.Mail("a@b.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("x@alerts.example.net"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	want.WriteString("Subject: big\r\n\r\n")
	for i := range 5000 {
		fmt.Fprintf(&want, "line %05d %s\r\n", i, strings.Repeat("z", 50))
	}
	for chunk := range slices.Chunk([]byte(want.String()), 7000) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of data: %v", err)
	}
	if rec.count() != 1 || string(rec.last().raw) != want.String() {
		t.Fatalf("handler got %d messages; last %d bytes, want %d", rec.count(), len(rec.last().raw), want.Len())
	}
}

// readLines writes w and reads reply lines, one byte at a time (nothing
// read past them), up to and including the line last.
func readLines(t *testing.T, c net.Conn, w, last string) []string {
	t.Helper()
	if _, err := io.WriteString(c, w); err != nil {
		t.Fatal(err)
	}
	var out []string
	var b bytes.Buffer
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			t.Fatalf("read: %v (so far %q)", err, out)
		}
		b.Write(one)
		if one[0] == '\n' {
			l := strings.TrimSuffix(b.String(), "\r\n")
			out = append(out, l)
			b.Reset()
			if l == last {
				return out
			}
		}
	}
}

// An 8 KB single-line HTML alert used to get 500 and a closed connection.
// It is taken; header lines over 998 bytes are folded (at white space, so
// unfolding restores them), long body lines are kept, and the handler is
// told, for the audit.
func TestLongLinesAreTakenAndHeadersFolded(t *testing.T) {
	t.Parallel()
	_, rec, addr := start(t, testConfig(t, ""), nil)
	words := strings.Repeat("<td>disk 3 failed</td> ", 400) // ~9 KB, spaces every 23 bytes
	html := "<html><body>" + strings.Repeat("<p>Backup job failed on PVC-BDR1</p>", 250) + "</body></html>"
	noSpace := strings.Repeat("x", 2500) // folded after "X-Token:", then split twice
	msg := "Subject: " + words + "\r\nX-Token: " + noSpace + "\r\nContent-Type: text/html\r\n\r\n" + html + "\r\n"
	tr := converse(t, addr, envelope+msg+".\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, rQueued1, rBye))
	got := rec.last()
	head, body, _ := strings.Cut(string(got.raw), "\r\n\r\n")
	for l := range strings.SplitSeq(head, "\r\n") {
		if len(l) > 998 {
			t.Fatalf("header line of %d bytes left", len(l))
		}
	}
	if body != html+"\r\n" {
		t.Fatalf("body changed: %d bytes, want %d", len(body), len(html)+2)
	}
	unfolded := strings.ReplaceAll(head, "\r\n ", " ")
	unfolded = strings.ReplaceAll(unfolded, "\r\n\t", "\t")
	wantHead := "Subject: " + words + "\r\nX-Token: " + noSpace[:997] + " " + noSpace[997:1994] + " " + noSpace[1994:] + "\r\nContent-Type: text/html"
	if unfolded != wantHead {
		i := 0
		for i < min(len(unfolded), len(wantHead)) && unfolded[i] == wantHead[i] {
			i++
		}
		t.Fatalf("unfolded header differs at %d of %d/%d:\n got %q\nwant %q", i, len(unfolded), len(wantHead), unfolded[max(0, i-20):min(len(unfolded), i+40)], wantHead[max(0, i-20):min(len(wantHead), i+40)])
	}
	wantNotes := []string{"2 header line(s) longer than 998 bytes folded (2 break(s) without white space: a space was inserted there)",
		"1 body line(s) longer than 998 bytes kept as sent"}
	if strings.Join(got.env.Notes, "|") != strings.Join(wantNotes, "|") {
		t.Fatalf("notes %q, want %q", got.env.Notes, wantNotes)
	}
	a := message.Decode(got.raw, got.env, message.Limits{})
	if a.Subject != strings.TrimSpace(words) {
		t.Fatalf("decoded subject %q...", a.Subject[:min(80, len(a.Subject))])
	}
}

func TestFoldLongLinesLeavesShortMessagesAlone(t *testing.T) {
	raw := []byte("Subject: s\r\n\r\nbody\r\n")
	out, notes := foldLongLines(raw)
	if &out[0] != &raw[0] || notes != nil {
		t.Fatalf("copied or noted: %q %q", out, notes)
	}
}

// gatedHandler holds every message until released, to keep it in flight.
type gatedHandler struct {
	arrived chan int
	release chan struct{}
	mu      sync.Mutex
	n       int
}

func (g *gatedHandler) handle(ctx context.Context, raw []byte, env message.Envelope) Reply {
	g.mu.Lock()
	g.n++
	n := g.n
	g.mu.Unlock()
	g.arrived <- len(raw)
	<-g.release
	return Reply{250, [3]int{2, 0, 0}, fmt.Sprintf("Queued as test-%d", n)}
}

// A message is charged to smtp.max_inflight_bytes while it arrives and
// until it is stored; one that does not fit gets 452 4.3.1 (the sender
// keeps it and tries again), at MAIL when SIZE says so, else at the end of
// its data, and nothing of it is held meanwhile.
func TestInflightBudget(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "max_message_bytes = 600000\nmax_inflight_bytes = 1048576\n")
	g := &gatedHandler{arrived: make(chan int, 4), release: make(chan struct{})}
	s, err := New(cfg, g.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	addr := ln.Addr().String()

	body := func(n int) string {
		return "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 98)+"\r\n", n/100) + ".\r\n"
	}
	// A: 400 KB, held in the handler: 400 KB received + 400 KB to store.
	aDone := make(chan transcript, 1)
	go func() { aDone <- converse(t, addr, envelope+body(400000)+"QUIT\r\n") }()
	if n := <-g.arrived; n < 400000 {
		t.Fatalf("handler got %d bytes", n)
	}
	if used := s.InflightBytes(); used < 800000 || used > 1048576 {
		t.Fatalf("in flight: %d bytes", used)
	}
	// B does not fit: refused at the end of its data, session goes on.
	tr := converse(t, addr, envelope+body(200000)+"QUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, rBusy1MiB, rBye))
	// C says its size: refused at MAIL.
	tr = converse(t, addr, "HELO c\r\nMAIL FROM:<a@b.example> SIZE=300000\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(rGreet, rHelo, rBusy1MiB, rBye))
	close(g.release)
	assertLines(t, (<-aDone).lines, lines(envelopeReplies, rQueued1, rBye))
	// Everything given back: B's retry goes through.
	tr = converse(t, addr, envelope+body(200000)+"QUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, "250 2.0.0 Queued as test-2", rBye))
	<-g.arrived
	if used := s.InflightBytes(); used != 0 {
		t.Fatalf("%d bytes still charged", used)
	}
}

// Between transactions a session has smtp.mail_timeout to send MAIL FROM,
// however many NOOPs it sends meanwhile.
func TestMailTimeoutIsNotStretchedByNOOP(t *testing.T) {
	t.Parallel()
	_, _, addr := start(t, testConfig(t, "mail_timeout = \"400ms\"\nmax_idle_commands = 1000\n"), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	began := time.Now()
	stop := make(chan struct{})
	dripped := make(chan struct{})
	go func() { defer close(dripped); trickle(c, strings.Repeat("NOOP\r\n", 100), 10*time.Millisecond, stop) }()
	tr := readAll(c)
	close(stop)
	<-dripped
	within(t, "closed", time.Since(began), 400*time.Millisecond)
	if len(tr.lines) < 3 || tr.lines[len(tr.lines)-1] != "421 4.4.2 gw.test: no MAIL FROM within smtp.mail_timeout (400ms); closing" {
		t.Fatalf("replies %s", quoteLines(tr.lines))
	}
}

// NOOP, RSET and the like are limited per message.
func TestIdleCommandBudget(t *testing.T) {
	t.Parallel()
	_, rec, addr := start(t, testConfig(t, "max_idle_commands = 3\n"), nil)
	const noop, reset = "250 2.0.0 I have successfully done nothing", "250 2.0.0 Session reset"
	tr := converse(t, addr, "HELO c\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\nNOOP\r\nRSET\r\nNOOP\r\nMAIL FROM:<a@b.example>\r\n")
	assertLines(t, tr.lines, lines(rGreet, rHelo, rMailA, noop, noop, reset, noop,
		"421 4.7.0 gw.test: too many commands that send nothing (NOOP, RSET, ...; smtp.max_idle_commands 3); closing"))
	// A message handed over starts the count again.
	tr = converse(t, addr, envelope+"Subject: s\r\n\r\nx\r\n.\r\nNOOP\r\nNOOP\r\nNOOP\r\n"+
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nDATA\r\nSubject: t\r\n\r\ny\r\n.\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, rQueued1, noop, noop, noop, rMailA, rRcptX, rGoAhead, rQueued2, rBye))
	if rec.count() != 2 {
		t.Fatalf("%d messages", rec.count())
	}
}

// The last reserved_sessions slots go only to addresses holding none: 25
// addresses cannot take all the slots and lock out an appliance.
func TestReservedSessionsLeaveRoomForOthers(t *testing.T) {
	t.Parallel()
	_, _, addr := start(t, testConfig(t, "max_sessions = 5\nmax_sessions_per_ip = 5\nreserved_sessions = 2\n"), nil)
	dialFrom := func(local string) net.Conn {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	greeting := func(c net.Conn) string {
		var b bytes.Buffer
		one := make([]byte, 1)
		for !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
			if _, err := c.Read(one); err != nil {
				t.Fatalf("read: %v (so far %q)", err, b.String())
			}
			b.Write(one)
		}
		return strings.TrimSuffix(b.String(), "\r\n")
	}
	for range 3 {
		if g := greeting(dialFrom("127.0.0.1")); g != rGreet {
			t.Fatalf("greeting %q", g)
		}
	}
	if g := greeting(dialFrom("127.0.0.1")); g != "421 4.7.0 gw.test: too many connections from 127.0.0.1; the remaining slots are kept for other senders; try again later" {
		t.Fatalf("4th session from one address: %q", g)
	}
	if g := greeting(dialFrom("127.0.0.2")); g != rGreet {
		t.Fatalf("another address: %q", g)
	}
}

// More Received: fields than smtp.max_hops is a loop: 554 5.4.6, nothing
// handed over. 50 are still taken.
func TestMailLoopIsRefused(t *testing.T) {
	t.Parallel()
	_, rec, addr := start(t, testConfig(t, ""), nil)
	hops := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "Received: from relay%d.example by relay%d.example; Mon, 7 Dec 2026 02:00:00 +0000\r\n", i, i+1)
		}
		return b.String()
	}
	tr := converse(t, addr, envelope+hops(51)+"Subject: loop\r\n\r\nx\r\n.\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, rLoop, rBye))
	if rec.count() != 0 {
		t.Fatalf("handler got %d messages", rec.count())
	}
	// A Received: in the body is not a hop.
	tr = converse(t, addr, envelope+hops(50)+"Subject: ok\r\n\r\n"+hops(10)+".\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, rQueued1, rBye))
}

func TestCountReceived(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"Received: a\r\nreceived : b\r\n\tcontinued: Received: x\r\nX-Received: c\r\n\r\nReceived: body\r\n", 2},
		{"RECEIVED:a\r\n", 1},
		{"", 0},
	} {
		if got := countReceived([]byte(tc.in)); got != tc.want {
			t.Errorf("countReceived(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
