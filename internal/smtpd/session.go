package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"psagate/internal/message"
)

// refused counts and reports a refusal in a session and returns its reply.
func (ss *session) refused(reason string, rcpt string, e *gosmtp.SMTPError) error {
	ss.s.refuse(reason)
	r := Refusal{Reason: reason, From: ss.from, Rcpt: append([]string(nil), ss.rcpts...), Reply: fmt.Sprintf("%d %s", e.Code, e.Message)}
	if ss.ip.IsValid() {
		r.RemoteIP = ss.ip.String()
	}
	if rcpt != "" {
		r.Rcpt = []string{rcpt}
	}
	ss.s.report(r)
	return e
}

type backend struct{ s *Server }

func (b *backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	var cn *conn
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	cn, _ = nc.(*conn)
	if cn != nil {
		cn.mu.Lock()
		cn.smtp = c
		cn.mu.Unlock()
		cn.progress()
	}
	ip := addrOf(c.Conn().RemoteAddr())
	_, isTLS := c.TLSConnectionState()
	return &session{s: b.s, c: c, conn: cn, ip: ip, tls: isTLS, helo: c.Hostname()}, nil
}

type session struct {
	s    *Server
	c    *gosmtp.Conn
	conn *conn
	ip   netip.Addr
	tls  bool
	helo string

	authed string
	inMail bool // a MAIL FROM was accepted and no RSET/EHLO/DATA ended it
	from   string
	size   int64 // SIZE= of MAIL FROM, 0 if none
	rcpts  []string
}

func smtpErr(code int, enh [3]int, msg string) *gosmtp.SMTPError {
	return &gosmtp.SMTPError{Code: code, EnhancedCode: gosmtp.EnhancedCode(enh), Message: msg}
}

func (ss *session) requireAuth() bool {
	return len(ss.s.conf().Users) > 0 && (ss.s.conf().RequireAuth == nil || *ss.s.conf().RequireAuth)
}

func (ss *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if ss.s.closing() {
		return smtpErr(421, [3]int{4, 3, 2}, "Service shutting down; please send again later")
	}
	if ss.inMail {
		// go-smtp would start over with the first transaction's recipients
		// still listed; RFC 5321 3.3 wants a RSET between transactions.
		return smtpErr(503, [3]int{5, 5, 1}, "Nested MAIL command: a transaction is already open; send RSET first")
	}
	if ss.s.conf().RequireTLS && !ss.tls {
		ss.s.refuse("tls")
		return smtpErr(530, [3]int{5, 7, 0}, "This gateway requires STARTTLS before MAIL FROM (smtp.require_tls)")
	}
	if opts != nil && opts.Size > ss.s.conf().MaxMessageBytes {
		ss.from = from
		return ss.refused("size", "", smtpErr(552, [3]int{5, 3, 4}, fmt.Sprintf("Message too big: this gateway takes at most %d bytes (smtp.max_message_bytes)", ss.s.conf().MaxMessageBytes)))
	}
	if ss.requireAuth() && ss.authed == "" {
		ss.s.refuse("auth")
		return smtpErr(530, [3]int{5, 7, 0}, "Authentication required: log in with AUTH before MAIL FROM")
	}
	ss.size = 0
	if opts != nil && opts.Size > 0 {
		// RFC 1870 6.1: a size that does not fit now is a 452 at MAIL.
		if used := ss.s.InflightBytes(); used+opts.Size > ss.s.conf().MaxInflightBytes {
			ss.s.refuse("memory")
			return errBusy(ss.s.conf().MaxInflightBytes)
		}
		ss.size = opts.Size
	}
	ss.from, ss.inMail = from, true
	if ss.conn != nil {
		ss.conn.setMail(true)
		ss.conn.progress()
	}
	return nil
}

// errBusy is the answer when smtp.max_inflight_bytes is in use: a
// temporary refusal, so the sender keeps the message and tries again.
func errBusy(limit int64) *gosmtp.SMTPError {
	return smtpErr(452, [3]int{4, 3, 1}, fmt.Sprintf("Insufficient system storage: too many messages in transfer (smtp.max_inflight_bytes %d); try again later", limit))
}

func (ss *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	at := strings.LastIndexByte(to, '@')
	if at < 0 {
		return ss.refused("relay", to, smtpErr(550, [3]int{5, 1, 3}, fmt.Sprintf("<%s> is not a full address; send alerts to an address at %s", to, strings.Join(ss.s.conf().AcceptDomains, " or "))))
	}
	dom := strings.ToLower(strings.TrimSuffix(to[at+1:], "."))
	for _, d := range ss.s.conf().AcceptDomains {
		if dom == d {
			if !ss.s.conf().RecipientAllowed(to) {
				return ss.refused("recipient", to, smtpErr(550, [3]int{5, 1, 1}, fmt.Sprintf("<%s>: no such recipient here (smtp.accept_recipients)", to)))
			}
			ss.rcpts = append(ss.rcpts, strings.ToLower(to))
			if ss.conn != nil {
				ss.conn.progress()
			}
			return nil
		}
	}
	return ss.refused("relay", to, smtpErr(550, [3]int{5, 7, 1}, fmt.Sprintf("Relaying denied: this gateway only takes mail for %s, not <%s>", strings.Join(ss.s.conf().AcceptDomains, ", "), to)))
}

func (ss *session) Data(r io.Reader) error {
	// go-smtp hands BDAT chunks over through a pipe, DATA through its dot
	// reader; only the second has an end-of-data line to get wrong.
	_, bdat := r.(*io.PipeReader)
	dot := !bdat && ss.conn != nil
	if ss.conn != nil {
		ss.conn.setData(true, dot)
		defer ss.conn.setData(false, false)
		// The whole message must arrive within data_timeout; go-smtp only
		// sets a deadline per command line.
		_ = ss.conn.setDeadline(time.Now().Add(ss.s.conf().DataTimeout.D()))
	}
	cfg := ss.s.conf()
	rc := &receiver{s: ss.s, limit: cfg.MaxMessageBytes, hint: ss.size, watch: dot}
	defer rc.release()
	raw, err := rc.read(r)
	if err != nil {
		if errors.Is(err, gosmtp.ErrDataTooLarge) {
			return ss.refused("size", "", smtpErr(552, [3]int{5, 3, 4}, fmt.Sprintf("Message too big: this gateway takes at most %d bytes (smtp.max_message_bytes)", cfg.MaxMessageBytes)))
		}
		if errors.Is(err, errOverBudget) {
			// go-smtp discards the rest as it arrives; nothing more is held.
			ss.s.refuse("memory")
			ss.s.log.Info("message refused for now: smtp.max_inflight_bytes in use", "remote", ss.ip.String())
			return errBusy(cfg.MaxInflightBytes)
		}
		if errors.Is(err, errBareCREnd) {
			// The sender has ended its data (as RFC 5321 reads the stream)
			// and waits; go-smtp has not. Stop reading, answer, close.
			ss.conn.abortData()
			ss.conn.closeAfterWrite()
			ss.s.log.Info("message refused", "remote", ss.ip.String(), "reason", "end of data after a bare CR")
			return ss.refused("bare_lf", "", smtpErr(550, [3]int{5, 5, 2}, "Message refused: a bare CR before <CR><LF>.<CR><LF> (an SMTP smuggling pattern); closing"))
		}
		// After a timeout or an over-long line the rest of the stream cannot
		// be trusted to be commands: answer, then close.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if ss.conn != nil {
				ss.conn.closeAfterWrite()
			}
			return smtpErr(421, [3]int{4, 4, 2}, fmt.Sprintf("Timed out while receiving the message (smtp.data_timeout %s); closing, please retry", cfg.DataTimeout.D()))
		}
		if errors.Is(err, gosmtp.ErrTooLongLine) {
			if ss.conn != nil {
				ss.conn.closeAfterWrite()
			}
			ss.s.refuse("protocol")
			// 5xx: retrying the same message cannot succeed.
			return smtpErr(500, [3]int{5, 5, 0}, fmt.Sprintf("Line too long: this gateway takes lines of at most %d bytes (smtp.max_line_length); closing", cfg.MaxLineLength))
		}
		return smtpErr(451, [3]int{4, 3, 0}, "Error while receiving the message; please retry")
	}
	if ss.conn != nil && ss.conn.hungUp() {
		// go-smtp reads a BDAT chunk through an io.LimitReader, which makes
		// a chunk cut short by a hang-up look complete. DATA cannot get here
		// that way: its end marker is read before any read could see EOF.
		return smtpErr(451, [3]int{4, 3, 0}, "Connection closed before the whole message arrived")
	}
	if dot && bytes.HasSuffix(raw, bareCREnd[:3]) {
		// go-smtp did end here (an odd number of CRs keeps it in step), but
		// it is the same shape: <CR><CR><LF>.<CR><LF>.
		return ss.refused("bare_lf", "", smtpErr(550, [3]int{5, 5, 2}, "Message refused: a bare CR before <CR><LF>.<CR><LF> (an SMTP smuggling pattern)"))
	}
	raw, verr := checkLineEndings(raw, cfg.BareLF)
	if verr != nil {
		ss.s.log.Info("message refused", "remote", ss.ip.String(), "reason", verr.Message)
		return ss.refused("bare_lf", "", verr)
	}
	if hops := countReceived(raw); hops > cfg.MaxHops {
		ss.s.log.Info("message refused", "remote", ss.ip.String(), "reason", "mail loop", "received_headers", hops)
		return ss.refused("loop", "", smtpErr(554, [3]int{5, 4, 6}, fmt.Sprintf("Too many hops: %d Received: headers, more than %d (smtp.max_hops); the message is looping", hops, cfg.MaxHops)))
	}
	env := message.Envelope{MailFrom: ss.from, RcptTo: append([]string(nil), ss.rcpts...), RemoteIP: ss.ip, Helo: ss.helo}
	raw, env.Notes = foldLongLines(raw)
	// Storing copies the message once more (bbolt writes it through a
	// buffer of its own): charge that too, or come back later.
	if !rc.charge(int64(len(raw))) {
		ss.s.refuse("memory")
		return errBusy(cfg.MaxInflightBytes)
	}
	rep := ss.s.handler(context.Background(), raw, env)
	return smtpErr(rep.Code, rep.Enhanced, rep.Text)
}

func (ss *session) Reset() {
	ss.from, ss.rcpts, ss.inMail, ss.size = "", nil, false, 0
	if ss.conn != nil {
		ss.conn.setMail(false)
	}
}

func (ss *session) Logout() error { return nil }

// checkLineEndings applies the bare-LF policy to a received message (already
// dot-unstuffed by go-smtp, which ends DATA only at <CR><LF>.<CR><LF>, so no
// variant can end a message early or start a second one).
//
// "reject" refuses any bare LF or bare CR (RFC 5321 2.3.8). "normalize"
// accepts bare line endings from sloppy mailers and rewrites them to CRLF,
// but refuses the SMTP smuggling shapes: a "." line next to a bare line
// ending (<LF>.<LF>, <LF>.<CR><LF>, <CR>.<CR> ...) and CRLF followed by a
// bare LF or CR (what <CR><LF>.<LF> becomes once the dot is unstuffed).
func checkLineEndings(raw []byte, mode string) ([]byte, *gosmtp.SMTPError) {
	bare := 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '\n':
			if i == 0 || raw[i-1] != '\r' {
				bare++
			}
		case '\r':
			if i+1 >= len(raw) || raw[i+1] != '\n' {
				bare++
			}
		}
	}
	if bare == 0 {
		return raw, nil
	}
	if mode == "reject" {
		return nil, smtpErr(550, [3]int{5, 5, 2}, "Message refused: it contains bare LF or CR line endings; SMTP requires CRLF (RFC 5321 section 2.3.8). Fix the sender, or set smtp.bare_lf = \"normalize\"")
	}
	smuggle := smtpErr(550, [3]int{5, 5, 2}, "Message refused: it contains a \".\" line with bare LF/CR line endings (an SMTP smuggling pattern)")
	// The data starts right after the CRLF that ended the DATA command, so
	// a bare LF or CR first is that same shape ("DATA<CR><LF>.<LF>").
	if raw[0] == '\n' || (raw[0] == '\r' && (len(raw) < 2 || raw[1] != '\n')) {
		return nil, smuggle
	}
	isEOL := func(i int) bool { return i < len(raw) && (raw[i] == '\r' || raw[i] == '\n') }
	out := make([]byte, 0, len(raw)+bare)
	lineStart := true
	prevBare := false // the previous line ended with a bare LF or CR
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if lineStart && c == '.' && isEOL(i+1) {
			endBare := !(raw[i+1] == '\r' && i+2 < len(raw) && raw[i+2] == '\n')
			if prevBare || endBare {
				return nil, smuggle
			}
		}
		switch {
		case c == '\r' && i+1 < len(raw) && raw[i+1] == '\n':
			// CRLF followed at once by a bare LF or CR is a dot-unstuffed
			// <CR><LF>.<LF> (or .<CR>).
			if i+2 < len(raw) && (raw[i+2] == '\n' || (raw[i+2] == '\r' && !(i+3 < len(raw) && raw[i+3] == '\n'))) {
				return nil, smuggle
			}
			out = append(out, '\r', '\n')
			i++
			lineStart, prevBare = true, false
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
			lineStart, prevBare = true, true
		default:
			out = append(out, c)
			lineStart = false
		}
	}
	return out, nil
}
