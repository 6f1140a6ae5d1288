package smtpd

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Reply lines go-smtp (or this package) writes, shared by the suites. The
// test config's hostname is gw.test and its domain alerts.example.net.
const (
	rGreet     = "220 gw.test ESMTP Service Ready"
	rHelo      = "250 2.0.0 Hello c"
	rMailA     = "250 2.0.0 Roger, accepting mail from <a@b.example>"
	rRcptX     = "250 2.0.0 I'll make sure <x@alerts.example.net> gets this"
	rGoAhead   = "354 Go ahead. End your data with <CR><LF>.<CR><LF>"
	rBye       = "221 2.0.0 Bye"
	rSmuggle   = `550 5.5.2 Message refused: it contains a "." line with bare LF/CR line endings (an SMTP smuggling pattern)`
	rBareLF    = `550 5.5.2 Message refused: it contains bare LF or CR line endings; SMTP requires CRLF (RFC 5321 section 2.3.8). Fix the sender, or set smtp.bare_lf = "normalize"`
	rIdle      = "421 4.4.2 Idle timeout, bye bye"
	rTooLong   = "500 5.4.0 Too long line, closing connection"
	rNoRcpt    = "502 5.5.1 Missing RCPT TO command."
	rTooMany   = "500 5.5.1 Too many errors. Quiting now"
	rNotOurs   = "550 5.7.1 Relaying denied: this gateway only takes mail for alerts.example.net, not <v@gmail.example>"
	rQueued1   = "250 2.0.0 Queued as test-1"
	rQueued2   = "250 2.0.0 Queued as test-2"
	rIntroduce = "502 5.5.1 Please introduce yourself first."

	// envelope is HELO, MAIL, RCPT and DATA, pipelined the way a client
	// with PIPELINING may send them.
	envelope = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nDATA\r\n"
)

// envelopeReplies are the replies to envelope, greeting first.
var envelopeReplies = []string{rGreet, rHelo, rMailA, rRcptX, rGoAhead}

func lines(groups ...any) []string {
	var out []string
	for _, g := range groups {
		switch v := g.(type) {
		case string:
			out = append(out, v)
		case []string:
			out = append(out, v...)
		default:
			panic("lines: string or []string")
		}
	}
	return out
}

// transcript is what a client saw on one connection.
type transcript struct {
	lines []string // reply lines, CRLF removed
	tail  string   // bytes after the last LF (a partial line), if any
	err   error    // how reading ended: nil for a clean EOF
}

// converse connects to addr, writes each chunk as its own write (in
// order, from a goroutine so a server that stops reading cannot block the
// test) and reads every reply until the server closes the connection. A
// write that fails because the server has already closed is not an error:
// what the client read is what the test asserts.
func converse(t testing.TB, addr string, chunks ...string) transcript {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, ch := range chunks {
			if _, err := io.WriteString(c, ch); err != nil {
				return
			}
		}
	}()
	tr := readAll(c)
	<-done
	if ne, ok := tr.err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("server did not close the connection; read so far: %q", tr.lines)
	}
	return tr
}

// readAll reads reply lines until EOF or an error.
func readAll(c net.Conn) transcript {
	var tr transcript
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if strings.HasSuffix(line, "\n") {
			tr.lines = append(tr.lines, strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"))
		} else {
			tr.tail = line
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				tr.err = err
			}
			return tr
		}
	}
}

// assertLines compares reply lines exactly and prints both lists on failure.
func assertLines(t testing.TB, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replies differ\n got: %s\nwant: %s", quoteLines(got), quoteLines(want))
	}
}

func quoteLines(l []string) string {
	var b strings.Builder
	for _, s := range l {
		b.WriteString("\n  ")
		b.WriteString(strconv.Quote(s))
	}
	return b.String()
}

// assertMessages compares what the handler received, byte for byte.
func assertMessages(t testing.TB, rec *recorder, want []string) {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, m := range rec.msgs {
		got = append(got, string(m.raw))
	}
	if len(got) != len(want) {
		t.Fatalf("handler got %d messages, want %d:%s", len(got), len(want), quoteLines(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d differs\n got: %q\nwant: %q", i+1, got[i], want[i])
		}
	}
}
