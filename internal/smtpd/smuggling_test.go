package smtpd

import (
	"strings"
	"testing"

	"psagate/internal/message"
)

// What these tests establish, byte for byte over a real socket:
//
//   - go-smtp ends DATA only at <CR><LF>.<CR><LF>, so no bare-LF/CR variant
//     ends a message early: the would-be second transaction that follows a
//     smuggling sequence is never run as commands (the transcripts below
//     show no reply to the smuggled MAIL/RCPT/DATA), it is data of the
//     first message, which the bare-LF policy then refuses as a whole.
//   - bare_lf = "normalize" rewrites stray line ends to CRLF but refuses the
//     smuggling shapes; bare_lf = "reject" refuses any bare LF or CR.
//
// One shape cannot be refused: <CR><LF>.<CR> followed by anything but <LF>.
// go-smtp's dot-unstuffing drops both the "." and the CR, so what reaches
// Session.Data is an ordinary CRLF line; the bare CR is gone before psagate
// can see it. Nothing is smuggled (the handler gets ONE message with the
// rest as body text, and an RFC-conforming relay always dot-stuffs such a
// line, so only a client talking to psagate directly can send it). The
// cases named "undetectable" pin that behaviour so a go-smtp upgrade that
// changes it shows up here.

const (
	smBody = "Subject: s\r\n\r\nline1"
	// smuggled is a complete second transaction an attacker hides in the body.
	smuggled   = "MAIL FROM:<evil@b.example>\r\nRCPT TO:<y@alerts.example.net>\r\nDATA\r\nSubject: forged\r\n\r\nforged\r\n"
	smuggledIn = smuggled + ".\r\n"
)

type rawCase struct {
	name   string
	modes  []string // bare_lf values to run under; nil = both
	extra  string   // further [smtp] config lines
	writes []string
	want   []string // reply lines, greeting first
	msgs   []string // messages the handler received, in order
	// byMode overrides want/msgs for one mode.
	byMode map[string]outcome
}

type outcome struct {
	want []string
	msgs []string
}

func (tc rawCase) run(t *testing.T) {
	modes := tc.modes
	if modes == nil {
		modes = []string{"normalize", "reject"}
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			_, rec, addr := start(t, testConfig(t, "bare_lf = \""+mode+"\"\n"+tc.extra), nil)
			want, msgs := tc.want, tc.msgs
			if o, ok := tc.byMode[mode]; ok {
				want, msgs = o.want, o.msgs
			}
			tr := converse(t, addr, tc.writes...)
			assertLines(t, tr.lines, want)
			if tr.tail != "" {
				t.Fatalf("partial reply line %q", tr.tail)
			}
			assertMessages(t, rec, msgs)
		})
	}
}

// refusedBoth is the outcome of a smuggling shape: refused in both modes,
// with the mode's own text, and nothing delivered.
func refusedBoth() map[string]outcome {
	return map[string]outcome{
		"normalize": {want: lines(envelopeReplies, rSmuggle, rBye)},
		"reject":    {want: lines(envelopeReplies, rBareLF, rBye)},
	}
}

func TestSmugglingVariants(t *testing.T) {
	t.Parallel()
	for _, tc := range smugglingCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// smugglingCases are the DATA-stream variants (also FuzzSession's seeds).
func smugglingCases() []rawCase {
	return []rawCase{
		{name: "LF.LF", writes: []string{envelope + smBody + "\n.\n" + smuggledIn + "QUIT\r\n"}, byMode: refusedBoth()},
		{name: "CRLF.LF", writes: []string{envelope + smBody + "\r\n.\n" + smuggledIn + "QUIT\r\n"}, byMode: refusedBoth()},
		{name: "LF.CRLF", writes: []string{envelope + smBody + "\n.\r\n" + smuggledIn + "QUIT\r\n"}, byMode: refusedBoth()},
		{name: "CR.CR", writes: []string{envelope + smBody + "\r.\r" + smuggledIn + "QUIT\r\n"}, byMode: refusedBoth()},
		{name: "CR.CRLF", writes: []string{envelope + smBody + "\r.\r\n" + smuggledIn + "QUIT\r\n"}, byMode: refusedBoth()},
		{name: "LF.LF with the smuggled message in a separate write", writes: []string{envelope + smBody + "\n.\n", smuggledIn, "QUIT\r\n"}, byMode: refusedBoth()},
		// Right after DATA's own CRLF, ".<LF>" unstuffs to a leading bare LF.
		{name: "DATA CRLF then .LF", writes: []string{envelope + ".\n" + smuggledIn + "QUIT\r\n"}, byMode: refusedBoth()},
		{name: "DATA CRLF then .CR", writes: []string{envelope + ".\r\r" + smuggledIn + "QUIT\r\n"}, byMode: refusedBoth()},
		// go-smtp misses this end of data; smtpd refuses it at once and
		// closes (resources_test.go has the variants).
		{name: "CR CRLF.CRLF", writes: []string{envelope + smBody + "\r\r\n.\r\n" + smuggledIn + "QUIT\r\n"},
			byMode: map[string]outcome{"normalize": {want: lines(envelopeReplies, rBareCREnd)}, "reject": {want: lines(envelopeReplies, rBareCREnd)}}},
		{name: "pure LF message ended by LF.LF", writes: []string{envelope + "Subject: s\n\nbody\n.\n" + smuggledIn + "QUIT\r\n"}, byMode: refusedBoth()},
		{
			name:   "CRLF.CR undetectable: go-smtp drops the dot and the CR",
			writes: []string{envelope + smBody + "\r\n.\r" + smuggledIn + "QUIT\r\n"},
			want:   lines(envelopeReplies, rQueued1, rBye),
			msgs:   []string{smBody + "\r\n" + smuggled},
		},
		{
			// ".<CR><CR><LF>" unstuffs to <CR><LF> and leaves go-smtp mid-line,
			// so the next ".<CR><LF>" is data too: still one message.
			name:   "CRLF.CR CRLF.CRLF undetectable: one message",
			writes: []string{envelope + smBody + "\r\n.\r\r\n.\r\n" + smuggledIn + "QUIT\r\n"},
			want:   lines(envelopeReplies, rQueued1, rBye),
			msgs:   []string{smBody + "\r\n\r\n.\r\n" + smuggled},
		},
		{
			name:   "bare LF and bare CR inside lines",
			writes: []string{envelope + "Subject: s\r\n\r\nab\ncd\r\nef\rgh\r\n.\r\nQUIT\r\n"},
			byMode: map[string]outcome{
				"normalize": {want: lines(envelopeReplies, rQueued1, rBye), msgs: []string{"Subject: s\r\n\r\nab\r\ncd\r\nef\r\ngh\r\n"}},
				"reject":    {want: lines(envelopeReplies, rBareLF, rBye)},
			},
		},
		{
			name:   "pure LF message without dot lines is normalised",
			writes: []string{envelope + "Subject: s\n\nbody\n\r\n.\r\nQUIT\r\n"},
			byMode: map[string]outcome{
				"normalize": {want: lines(envelopeReplies, rQueued1, rBye), msgs: []string{"Subject: s\r\n\r\nbody\r\n\r\n"}},
				"reject":    {want: lines(envelopeReplies, rBareLF, rBye)},
			},
		},
		{
			name: "legitimately pipelined second message after CRLF.CRLF",
			writes: []string{envelope + "Subject: one\r\n\r\n1\r\n.\r\n" +
				"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nDATA\r\nSubject: two\r\n\r\n2\r\n.\r\nQUIT\r\n"},
			want: lines(envelopeReplies, rQueued1, rMailA, rRcptX, rGoAhead, rQueued2, rBye),
			msgs: []string{"Subject: one\r\n\r\n1\r\n", "Subject: two\r\n\r\n2\r\n"},
		},
		{
			name:   "dot-stuffing round trip",
			writes: []string{envelope + "Subject: dots\r\n\r\n..hidden\r\n..\r\n...\r\n.. x\r\nend\r\n.\r\nQUIT\r\n"},
			want:   lines(envelopeReplies, rQueued1, rBye),
			msgs:   []string{"Subject: dots\r\n\r\n.hidden\r\n.\r\n..\r\n. x\r\nend\r\n"},
		},
		{
			// The CRLF before the final dot belongs to the message: a body
			// without a final line end arrives with one.
			name:   "body without a final CRLF",
			writes: []string{envelope + "Subject: s\r\n\r\nno newline", "\r\n.\r\nQUIT\r\n"},
			want:   lines(envelopeReplies, rQueued1, rBye),
			msgs:   []string{"Subject: s\r\n\r\nno newline\r\n"},
		},
		{
			name:   "empty message",
			writes: []string{envelope + ".\r\nQUIT\r\n"},
			want:   lines(envelopeReplies, rQueued1, rBye),
			msgs:   []string{""},
		},
		{
			name: "end of data split byte by byte",
			writes: []string{envelope + "Subject: s\r\n\r\nbody", "\r", "\n", ".", "\r", "\n",
				"Q", "U", "I", "T", "\r", "\n"},
			want: lines(envelopeReplies, rQueued1, rBye),
			msgs: []string{"Subject: s\r\n\r\nbody\r\n"},
		},
		{
			name:   "LF.LF split byte by byte is still refused",
			writes: []string{envelope + smBody, "\n", ".", "\n", smuggledIn, "QUIT\r\n"},
			byMode: refusedBoth(),
		},
		{
			// Decision: NUL is data. SMTP does not forbid it in 8BITMIME
			// bodies and alerts occasionally carry it; the MIME decoder
			// strips it from header values and flags a header injection
			// (TestNULInHeaderIsFlaggedByTheDecoder).
			name:   "NUL bytes are data",
			writes: []string{envelope + "Subject: a\x00b\r\n\r\nx\x00y\r\n.\r\nQUIT\r\n"},
			want:   lines(envelopeReplies, rQueued1, rBye),
			msgs:   []string{"Subject: a\x00b\r\n\r\nx\x00y\r\n"},
		},
	}
}

func TestNULInHeaderIsFlaggedByTheDecoder(t *testing.T) {
	t.Parallel()
	_, rec, addr := start(t, testConfig(t, ""), nil)
	converse(t, addr, envelope+"Subject: a\x00b\r\nFrom: x@y.example\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	if rec.count() != 1 {
		t.Fatalf("handler got %d messages", rec.count())
	}
	a := message.Decode(rec.last().raw, rec.last().env, message.Limits{})
	if a.Subject != "ab" || !a.HasProblem(message.ProblemInjection) {
		t.Fatalf("subject %q, problems %+v", a.Subject, a.Problems)
	}
}

// A smuggled sequence never becomes a command, however the client
// interleaves it: after the refused message the session is in command
// state exactly once, and the next real transaction is accepted alone.
func TestSessionUsableAfterRefusedSmuggle(t *testing.T) {
	t.Parallel()
	_, rec, addr := start(t, testConfig(t, ""), nil)
	tr := converse(t, addr, envelope+smBody+"\n.\n"+smuggledIn,
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@alerts.example.net>\r\nDATA\r\n", "Subject: ok\r\n\r\nok\r\n.\r\nQUIT\r\n")
	assertLines(t, tr.lines, lines(envelopeReplies, rSmuggle, rMailA, rRcptX, rGoAhead, rQueued1, rBye))
	assertMessages(t, rec, []string{"Subject: ok\r\n\r\nok\r\n"})
	if e := rec.last().env; e.MailFrom != "a@b.example" || strings.Join(e.RcptTo, ",") != "x@alerts.example.net" {
		t.Fatalf("envelope %+v", e)
	}
}
