package smtpd

import (
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
)

const userConfig = "[[smtp.user]]\nname = \"appliance\"\npassword = \"pw-seq\"\n"

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// TestCommandSequences sends malformed and out-of-order commands and
// asserts every reply line. Texts without a psagate wording are
// go-smtp's own; they are pinned so an upgrade that changes them is seen.
func TestCommandSequences(t *testing.T) {
	t.Parallel()
	for _, tc := range sequenceCases() {
		tc.modes = []string{"normalize"}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// sequenceCases are the command-sequence cases (also FuzzSession's seeds).
func sequenceCases() []rawCase {
	plain := plainAuth
	const limit = 200 // max_line_length in the long-line cases
	return []rawCase{
		{name: "DATA before MAIL", writes: []string{"HELO c\r\nDATA\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rNoRcpt, rBye)},
		{name: "RCPT before MAIL", writes: []string{"HELO c\r\nRCPT TO:<x@alerts.example.net>\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "502 5.5.1 Missing MAIL FROM command.", rBye)},
		{name: "MAIL before HELO", writes: []string{"MAIL FROM:<a@b.example>\r\nQUIT\r\n"},
			want: lines(rGreet, rIntroduce, rBye)},
		{
			// The second MAIL is refused; the first transaction carries on.
			name: "MAIL twice",
			writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<other@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nDATA\r\n" +
				"Subject: s\r\n\r\nb\r\n.\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, "503 5.5.1 Nested MAIL command: a transaction is already open; send RSET first",
				rRcptX, rGoAhead, rQueued1, rBye),
			msgs: []string{"Subject: s\r\n\r\nb\r\n"},
		},
		{name: "MAIL after RSET is a new transaction", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, "250 2.0.0 Session reset", rMailA, rBye)},
		{name: "RCPT without a domain", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<nodomain>\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, "501 5.5.2 Was expecting RCPT arg syntax of TO:<address>", rBye)},
		{name: "RCPT with an unknown parameter", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net> FOO=1\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, "500 5.5.4 Unknown RCPT TO argument", rBye)},
		{name: "RCPT for a foreign domain", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<v@gmail.example>\r\nDATA\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rNotOurs, rNoRcpt, rBye)},
		{name: "MAIL with an unknown parameter", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example> XYZ=1\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "500 5.5.4 Unknown MAIL FROM argument", rBye)},
		{name: "MAIL with a SIZE over the limit", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example> SIZE=999999999\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "552 5.3.4 Max message size exceeded", rBye)},
		{name: "DATA with an argument", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nDATA now\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, "501 5.5.4 DATA command should not have any arguments", rBye)},
		{name: "unknown command", writes: []string{"HELO c\r\nFOOB\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "500 5.5.2 Syntax errors, FOOB command unrecognized", rBye)},
		{name: "not implemented", writes: []string{"EXPN x\r\nVRFY x\r\nQUIT\r\n"},
			want: lines(rGreet, "502 5.5.1 EXPN command not implemented", "252 2.5.0 Cannot VRFY user, but will accept message", rBye)},
		{name: "empty line", writes: []string{"\r\nQUIT\r\n"},
			want: lines(rGreet, "500 5.5.2 Error: bad syntax", rBye)},
		{name: "command with NUL", writes: []string{"NOOP\x00\r\nNO\x00P\r\nQUIT\r\n"},
			want: lines(rGreet, "501 5.5.2 Bad command", "500 5.5.2 Syntax errors, NO\x00P command unrecognized", rBye)},
		{name: "command ended by bare LF", writes: []string{"NOOP\nQUIT\n"},
			want: lines(rGreet, "250 2.0.0 I have successfully done nothing", rBye)},
		{
			// go-smtp closes the connection after a line over
			// max_line_length; the reply is written before it closes.
			name: "line over max_line_length", extra: fmt.Sprintf("max_line_length = %d\n", limit),
			writes: []string{"NOOP " + strings.Repeat("x", limit) + "\r\nQUIT\r\n"},
			want:   lines(rGreet, rTooLong),
		},
		{
			// go-smtp's line limiter judges whole reads: a pipelined command
			// that arrived in the same read as the over-long line is lost
			// with it (one write on loopback is one read).
			name: "pipelined command before an over-long line", extra: fmt.Sprintf("max_line_length = %d\n", limit),
			writes: []string{"HELO c\r\nNOOP " + strings.Repeat("x", limit) + "\r\nQUIT\r\n"},
			want:   lines(rGreet, rTooLong),
		},
		{
			name: "line of exactly max_line_length", extra: fmt.Sprintf("max_line_length = %d\n", limit),
			// go-smtp counts the LF that ended the previous line, the
			// command and its CR: limit-2 characters of command fit.
			writes: []string{"HELO c\r\nNOOP " + strings.Repeat("x", limit-2-5) + "\r\nQUIT\r\n"},
			want:   lines(rGreet, rHelo, "250 2.0.0 I have successfully done nothing", rBye),
		},
		{
			name: "lower-case commands",
			writes: []string{"helo c\r\nmail from:<a@b.example>\r\nrcpt to:<x@alerts.example.net>\r\ndata\r\n" +
				"Subject: s\r\n\r\nb\r\n.\r\nquit\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, rGoAhead, rQueued1, rBye),
			msgs: []string{"Subject: s\r\n\r\nb\r\n"},
		},
		{name: "RSET mid-transaction then DATA", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nRSET\r\nDATA\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, "250 2.0.0 Session reset", rNoRcpt, rBye)},
		{name: "HELO twice resets the transaction", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nHELO c\r\nDATA\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, rHelo, rNoRcpt, rBye)},
		{name: "HELO without a domain", writes: []string{"HELO\r\nQUIT\r\n"},
			want: lines(rGreet, "501 5.5.2 Domain/address argument required for HELO", rBye)},
		{name: "STARTTLS when not configured", writes: []string{"EHLO c\r\nSTARTTLS\r\nQUIT\r\n"},
			want: lines(rGreet, "250-Hello c", "250-PIPELINING", "250-8BITMIME", "250-ENHANCEDSTATUSCODES", "250-CHUNKING",
				"250-SIZE 26214401", "250 LIMITS RCPTMAX=50", "502 5.5.1 TLS not supported", rBye)},
		{name: "AUTH before HELO", writes: []string{"AUTH PLAIN\r\nQUIT\r\n"},
			want: lines(rGreet, rIntroduce, rBye)},
		{name: "AUTH when no users are configured", writes: []string{"HELO c\r\nAUTH PLAIN " + plain("appliance", "pw-seq") + "\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "502 5.5.1 Authentication is not enabled on this gateway", rBye)},
		{name: "AUTH without a mechanism", extra: userConfig, writes: []string{"HELO c\r\nAUTH\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "502 5.5.4 Missing parameter", rBye)},
		{name: "AUTH with an unknown mechanism", extra: userConfig, writes: []string{"HELO c\r\nAUTH CRAM-MD5\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "504 5.5.4 Unsupported authentication mechanism: use PLAIN or LOGIN", rBye)},
		{name: "AUTH with bad base64", extra: userConfig, writes: []string{"HELO c\r\nAUTH PLAIN !!!\r\nAUTH LOGIN\r\n%%%\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "454 4.7.0 Invalid base64 data", "334 VXNlcm5hbWU6", "454 4.7.0 Invalid base64 data", rBye)},
		{name: "AUTH cancelled with *", extra: userConfig, writes: []string{"HELO c\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN\r\n*\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "334 VXNlcm5hbWU6", "501 5.0.0 Negotiation cancelled", "334 ", "501 5.0.0 Negotiation cancelled", rBye)},
		{name: "AUTH PLAIN with a foreign authorisation identity", extra: userConfig,
			writes: []string{"HELO c\r\nAUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("root\x00appliance\x00pw-seq")) + "\r\nQUIT\r\n"},
			want:   lines(rGreet, rHelo, "535 5.7.8 Authentication failed: authorization identity must be empty or the user", rBye)},
		{
			name: "AUTH, then AUTH again", extra: userConfig,
			writes: []string{"HELO c\r\nAUTH PLAIN " + plain("appliance", "pw-seq") + "\r\nAUTH PLAIN " + plain("appliance", "pw-seq") + "\r\nQUIT\r\n"},
			want:   lines(rGreet, rHelo, "235 2.0.0 Authentication succeeded", "503 5.5.1 Already authenticated", rBye),
		},
		{name: "MAIL without AUTH when users are configured", extra: userConfig, writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, "530 5.7.0 Authentication required: log in with AUTH before MAIL FROM", rBye)},
		{
			// The 4th protocol error (bad syntax, unknown command) closes
			// the connection: go-smtp's errThreshold is 3.
			name:   "fourth protocol error closes",
			writes: []string{"HELO c\r\nFOO1\r\nFOO2\r\n\r\nNOOP\r\nFOO3\r\n"},
			want: lines(rGreet, rHelo, "500 5.5.2 Syntax errors, FOO1 command unrecognized", "500 5.5.2 Syntax errors, FOO2 command unrecognized",
				"500 5.5.2 Error: bad syntax", "250 2.0.0 I have successfully done nothing",
				"500 5.5.2 Syntax errors, FOO3 command unrecognized", rTooMany),
		},
		{name: "QUIT closes", writes: []string{"QUIT\r\n"}, want: lines(rGreet, rBye)},
		{name: "QUIT mid-transaction delivers nothing", writes: []string{"HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nQUIT\r\nDATA\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, rBye)},
	}
}

// BDAT: go-smtp advertises CHUNKING and cannot be told not to, so psagate
// takes BDAT. Its data goes through Session.Data like DATA's, so the size
// limit and the bare-LF policy apply the same way; BDAT data is not
// dot-stuffed, so a "." line is plain data there.
func TestBDAT(t *testing.T) {
	t.Parallel()
	for _, tc := range bdatCases() {
		if tc.byMode == nil {
			tc.modes = []string{"normalize"}
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// bdatCases are the BDAT cases (also FuzzSession's seeds).
func bdatCases() []rawCase {
	const (
		limit    = 2048
		mailRcpt = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\n"
	)
	extra := fmt.Sprintf("max_message_bytes = %d\n", limit)
	bdat := func(s string, last bool) string {
		if last {
			return fmt.Sprintf("BDAT %d LAST\r\n%s", len(s), s)
		}
		return fmt.Sprintf("BDAT %d\r\n%s", len(s), s)
	}
	rCont := "250 2.0.0 Continue"
	big := "Subject: big\r\n\r\n" + strings.Repeat("y", limit-16-2) + "\r\n" // exactly limit
	return []rawCase{
		{name: "one chunk", writes: []string{mailRcpt + bdat("Subject: s\r\n\r\nb\r\n.\r\n", true) + "QUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, rQueued1, rBye),
			msgs: []string{"Subject: s\r\n\r\nb\r\n.\r\n"}},
		{name: "chunks split anywhere", writes: []string{mailRcpt + bdat("Subject: s\r", false) + bdat("\n\r\nbo", false) + bdat("dy\r\n", true) + "QUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, rCont, rCont, rQueued1, rBye),
			msgs: []string{"Subject: s\r\n\r\nbody\r\n"}},
		{name: "exactly the limit", extra: extra, writes: []string{mailRcpt + bdat(big[:1000], false) + bdat(big[1000:], true) + "QUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, rCont, rQueued1, rBye),
			msgs: []string{big}},
		{
			// One byte over: go-smtp's own check (it is told limit+1) lets
			// it through; psagate's refuses it with the configured number.
			name: "one byte over the limit", extra: extra,
			writes: []string{mailRcpt + bdat(big+"z", true) + "NOOP\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, fmt.Sprintf("552 5.3.4 Message too big: this gateway takes at most %d bytes (smtp.max_message_bytes)", limit),
				"250 2.0.0 I have successfully done nothing", rBye),
		},
		{
			// Far over: go-smtp refuses from the size alone and discards
			// the chunk; the session carries on in step.
			name: "chunk far over the limit", extra: extra,
			writes: []string{mailRcpt + bdat(strings.Repeat("z\r\n", limit), true) + "NOOP\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, "552 5.3.4 Max message size exceeded",
				"250 2.0.0 I have successfully done nothing", rBye),
		},
		{
			// go-smtp discards a refused chunk with the line limit still on:
			// a chunk with a line over max_line_length ends the session.
			name: "chunk far over the limit with one long line", extra: extra + "max_line_length = 4096\n",
			writes: []string{mailRcpt + bdat(strings.Repeat("z", 5000), true) + "NOOP\r\nQUIT\r\n"},
			want:   lines(rGreet, rHelo, rMailA, rRcptX, "552 5.3.4 Max message size exceeded", rTooLong),
		},
		{
			name:   "bare LF in BDAT",
			writes: []string{mailRcpt + bdat("Subject: s\r\n\r\na\nb\r\n", true) + "QUIT\r\n"},
			byMode: map[string]outcome{
				"normalize": {want: lines(rGreet, rHelo, rMailA, rRcptX, rQueued1, rBye), msgs: []string{"Subject: s\r\n\r\na\r\nb\r\n"}},
				"reject":    {want: lines(rGreet, rHelo, rMailA, rRcptX, rBareLF, rBye)},
			},
		},
		{
			name:   "smuggling shape in BDAT",
			writes: []string{mailRcpt + bdat(smBody+"\n.\n"+smuggledIn, true) + "QUIT\r\n"},
			byMode: map[string]outcome{
				"normalize": {want: lines(rGreet, rHelo, rMailA, rRcptX, rSmuggle, rBye)},
				"reject":    {want: lines(rGreet, rHelo, rMailA, rRcptX, rBareLF, rBye)},
			},
		},
		{
			// The chunk follows a refused BDAT too, and is skipped.
			name:   "BDAT without RCPT",
			writes: []string{"HELO c\r\n" + bdat("NOOP\r\n", true) + "QUIT\r\n"},
			want:   lines(rGreet, rHelo, rNoRcpt, rBye),
		},
		{name: "BDAT with a bad size", writes: []string{mailRcpt + "BDAT x\r\nBDAT\r\nBDAT 1 NOW\r\nQUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, "501 5.5.4 Malformed size argument", "501 5.5.4 Missing chunk size argument",
				"501 5.5.4 Unknown BDAT argument", rBye)},
		{
			name:   "RSET between chunks drops the message",
			writes: []string{mailRcpt + bdat("Subject: s\r\n", false) + "RSET\r\nQUIT\r\n"},
			want:   lines(rGreet, rHelo, rMailA, rRcptX, rCont, "250 2.0.0 Session reset", rBye),
		},
		{
			// go-smtp's BDAT goroutine may run after the session is gone
			// and recover its own nil dereference (see knownBDATRace in
			// fuzz_test.go); what the client sees is unaffected.
			name:   "BDAT 0 then QUIT",
			writes: []string{mailRcpt + "BDAT 0\r\nQUIT\r\n"},
			want:   lines(rGreet, rHelo, rMailA, rRcptX, rCont, rBye),
		},
		{
			name:   "BDAT 0 LAST is an empty message",
			writes: []string{mailRcpt + "BDAT 0 LAST\r\nQUIT\r\n"},
			want:   lines(rGreet, rHelo, rMailA, rRcptX, rQueued1, rBye),
			msgs:   []string{""},
		},
		{
			name:   "DATA during BDAT",
			writes: []string{mailRcpt + bdat("Subject: s\r\n", false) + "DATA\r\n" + bdat("\r\nb\r\n", true) + "QUIT\r\n"},
			want: lines(rGreet, rHelo, rMailA, rRcptX, rCont, "502 5.5.1 DATA not allowed during message transfer",
				rQueued1, rBye),
			msgs: []string{"Subject: s\r\n\r\nb\r\n"},
		},
	}
}

// A client that hangs up in the middle of a message has not sent it: go-smtp
// reads a BDAT chunk through an io.LimitReader, which turns the early EOF
// into a short, successful copy, and would hand the truncated message on.
// Nothing may be delivered (the client, which never got a 250, will send
// the whole message again). A complete message followed by the hang-up is
// delivered.
func TestHangUpMidMessage(t *testing.T) {
	t.Parallel()
	const mailRcpt = "HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\n"
	cases := []struct {
		name, send string
		msgs       []string
	}{
		{"BDAT LAST cut short", mailRcpt + "BDAT 100 LAST\r\nSubject: cut\r\n", nil},
		{"BDAT cut short", mailRcpt + "BDAT 100\r\nSubject: cut\r\n", nil},
		{"BDAT LAST complete", mailRcpt + "BDAT 14 LAST\r\nSubject: all\r\n", []string{"Subject: all\r\n"}},
		{"DATA cut short", envelope + "Subject: cut\r\n", nil},
		{"DATA complete", envelope + "Subject: all\r\n.\r\n", []string{"Subject: all\r\n"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, rec, addr := start(t, testConfig(t, ""), nil)
			rc := dial(t, addr)
			rc.send(tc.send)
			if err := rc.c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			tr := readAll(rc.c)
			assertMessages(t, rec, tc.msgs)
			if len(tr.lines) < 4 {
				t.Fatalf("replies: %s", quoteLines(tr.lines))
			}
			assertLines(t, tr.lines[:4], lines(rGreet, rHelo, rMailA, rRcptX))
			if tc.msgs != nil && tr.lines[len(tr.lines)-1] != rQueued1 {
				t.Fatalf("last reply %q", tr.lines[len(tr.lines)-1])
			}
		})
	}
}
