package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// conn wraps a session's connection: it releases the session slot once,
// caps the session's lifetime, ends the session after any read timeout, and
// counts command lines before MAIL.
type conn struct {
	net.Conn
	s        *Server
	ip       netip.Addr
	once     sync.Once
	deadline time.Time // the session ends here at the latest

	mu        sync.Mutex
	smtp      *gosmtp.Conn // set by NewSession; its Conn() is the TLS layer after STARTTLS
	inData    bool
	commands  int
	mailSeen  bool
	killed    bool
	closeNext bool
	readErr   error // a read timed out: every later read fails the same way
	eof       bool  // the client has closed its side

	dotData bool      // in DATA (not BDAT): Read reports a stall before blocking
	stalled bool      // the stall before the next blocking read was reported
	aborted bool      // the message was refused mid-transfer: reads fail, the session ends
	mailBy  time.Time // MAIL FROM must come by then (smtp.mail_timeout)
	idle    int       // commands since the last message that moved nothing forward
	pending bool      // the command being read has not (yet) moved anything forward
}

func newConn(c net.Conn, s *Server, ip netip.Addr) *conn {
	now := time.Now()
	cn := &conn{Conn: c, s: s, ip: ip, deadline: now.Add(s.conf().SessionTimeout.D()), mailBy: now.Add(s.conf().MailTimeout.D())}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[cn] = struct{}{}
	closing := s.closed.Load()
	s.mu.Unlock()
	if closing {
		cn.wake()
	}
	return cn
}

// closing reports whether Shutdown has begun. It is read on every
// command, so it takes no lock.
func (s *Server) closing() bool { return s.closed.Load() }

// wake ends the wait for the next command of a session that is not
// transferring a message: the read times out at once and Read closes the
// session with a 421. A session in DATA is left to finish.
func (c *conn) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.inData {
		_ = c.Conn.SetReadDeadline(time.Now())
	}
}

func (c *conn) closeAfterWrite() {
	c.mu.Lock()
	c.closeNext = true
	c.mu.Unlock()
}

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	closeNow := c.closeNext
	c.closeNext = false
	c.mu.Unlock()
	if closeNow {
		c.Close()
	}
	return n, err
}

// Close frees the session slot before the socket closes, so a client that
// has seen the connection end can count on its slot being free again.
func (c *conn) Close() error {
	c.once.Do(func() { c.s.release(c) })
	return c.Conn.Close()
}

// Read makes a read timeout final. go-smtp answers a timeout in the middle
// of DATA, BDAT or AUTH and then goes on reading commands; the rest of a
// stalled message would then be taken as commands (a relay's stalled body
// could carry "MAIL FROM:..." lines). A timed-out session only ever ends.
//
// Outside message data the session is closed here and now, with the
// reason: bufio hands a partial line to go-smtp as if it were complete
// when the read under it times out, and the client must not get an answer
// to a command it never finished. In message data, Data answers.
func (c *conn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if c.aborted {
		c.mu.Unlock()
		return 0, errAborted
	}
	if c.dotData && !c.stalled {
		// See receive.go: the dot reader returns what it has, and the
		// receiver looks at it, before this session blocks for more.
		c.stalled = true
		c.mu.Unlock()
		return 0, errStall
	}
	c.stalled = false
	sticky := c.readErr
	c.mu.Unlock()
	if sticky != nil {
		return 0, sticky
	}
	n, err := c.Conn.Read(b)
	if errors.Is(err, io.EOF) {
		c.mu.Lock()
		c.eof = true
		c.mu.Unlock()
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.mu.Lock()
		c.readErr = err
		inData, sc := c.inData, c.smtp
		c.mu.Unlock()
		if !inData && c.s.closing() {
			c.s.log.Debug("shutting down; closing idle session", "remote", c.ip.String())
			c.abort(sc, "421 4.3.2 %s: service shutting down; please send again later", c.s.conf().Hostname)
		} else if !inData {
			what := fmt.Sprintf("no complete command within smtp.read_timeout (%s)", c.s.conf().ReadTimeout.D())
			if c.waitingForMail() && !time.Now().Before(c.mailByTime()) {
				what = fmt.Sprintf("no MAIL FROM within smtp.mail_timeout (%s)", c.s.conf().MailTimeout.D())
			}
			if !time.Now().Before(c.deadline) {
				what = fmt.Sprintf("session longer than smtp.session_timeout (%s)", c.s.conf().SessionTimeout.D())
			}
			c.s.log.Info("timeout; closing", "remote", c.ip.String(), "reason", what)
			c.abort(sc, "421 4.4.2 %s: %s; closing", c.s.conf().Hostname, what)
		}
	}
	return n, err
}

// waitingForMail reports whether the session is between transactions,
// where smtp.mail_timeout applies.
func (c *conn) waitingForMail() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.mailSeen && !c.inData
}

func (c *conn) mailByTime() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mailBy
}

// progress records that the current command moved the session forward
// (a session, a login, a sender, a recipient, a message): it does not
// count against smtp.max_idle_commands.
func (c *conn) progress() {
	c.mu.Lock()
	c.pending = false
	c.mu.Unlock()
}

// abortData makes every later read fail: the message was refused before
// its end, which go-smtp would otherwise wait for.
func (c *conn) abortData() {
	c.mu.Lock()
	c.aborted = true
	c.mu.Unlock()
}

func (c *conn) isInData() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inData
}

// hungUp reports whether the client has closed its side of the connection.
func (c *conn) hungUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eof
}

// timedOut reports whether a read has timed out: the session is ending.
func (c *conn) timedOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr != nil
}

// SetReadDeadline is called by go-smtp before it reads each command line or
// AUTH response (server.ReadTimeout is never zero), through the TLS layer
// after STARTTLS. That makes it the place to count commands: it sees lines
// as go-smtp consumes them, not bytes as they arrive (which, pipelined,
// may be message data, and after STARTTLS are ciphertext).
//
// It also never lets a deadline extend past the session's own, so a client
// trickling one command a minute cannot hold a slot for ever.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if c.killed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	if !c.inData {
		// NOOP, RSET, VRFY, a refused RCPT...: a few are normal, a stream
		// of them only holds a session slot.
		if c.pending {
			c.idle++
		}
		c.pending = true
		if c.idle > c.s.conf().MaxIdleCommands {
			return c.kill("too many commands that send nothing", "421 4.7.0 %s: too many commands that send nothing (NOOP, RSET, ...; smtp.max_idle_commands %d); closing",
				c.s.conf().Hostname, c.s.conf().MaxIdleCommands)
		}
	}
	if !c.inData && !c.mailSeen {
		c.commands++
		if c.commands > c.s.conf().MaxCommands {
			return c.kill("too many commands before MAIL", "421 4.7.0 %s: too many commands without sending mail; closing", c.s.conf().Hostname)
		}
	}
	c.mu.Unlock()
	return c.setDeadline(t)
}

// kill ends the session over a command limit: it is called with c.mu
// held, and releases it.
func (c *conn) kill(why, format string, args ...any) error {
	c.killed = true
	sc := c.smtp
	c.mu.Unlock()
	c.s.refuse("protocol")
	c.s.log.Info(why+"; closing", "remote", c.ip.String())
	c.abort(sc, format, args...)
	return net.ErrClosed
}

func (c *conn) setDeadline(t time.Time) error {
	if t.IsZero() || t.After(c.deadline) {
		t = c.deadline
	}
	if c.waitingForMail() {
		// Between transactions the session has until mailBy to send MAIL
		// FROM, however many NOOPs it sends meanwhile.
		if by := c.mailByTime(); t.After(by) {
			t = by
		}
	}
	if c.s.closing() && !c.isInData() {
		// Shutting down: the wait for the next command ends at once.
		t = time.Now()
	}
	return c.Conn.SetReadDeadline(t)
}

// abort writes a last reply line and closes. It runs on go-smtp's session
// goroutine between commands (from SetReadDeadline or Read), after every
// earlier reply was written, so nothing interleaves. The reply goes
// through the TLS layer when there is one (known once the client has said
// EHLO; a client that sent STARTTLS before any EHLO just sees the close).
func (c *conn) abort(sc *gosmtp.Conn, format string, args ...any) {
	var w net.Conn = c.Conn
	if sc != nil {
		if tc, ok := sc.Conn().(*tls.Conn); ok {
			w = tc
		}
	}
	_ = w.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(w, format+"\r\n", args...)
	c.Close()
}

func (c *conn) setMail(seen bool) {
	c.mu.Lock()
	if c.mailSeen && !seen {
		// A transaction ended without a message (RSET): a fresh
		// mail_timeout, which RSETs cannot stretch for ever since each
		// counts against max_idle_commands.
		if by := time.Now().Add(c.s.conf().MailTimeout.D()); by.After(c.mailBy) {
			c.mailBy = by
		}
	}
	c.mailSeen = seen
	c.mu.Unlock()
}

// setData marks message transfer; dot is DATA (as opposed to BDAT). A
// message handed over restarts the command counts and mail_timeout; RSET or
// EHLO do not restart the counts, or they would lift the limits.
func (c *conn) setData(on, dot bool) {
	c.mu.Lock()
	c.inData = on
	c.dotData, c.stalled = on && dot, false
	if on {
		c.commands, c.idle, c.pending = 0, 0, false
	} else {
		c.mailBy = time.Now().Add(c.s.conf().MailTimeout.D())
	}
	c.mu.Unlock()
}
