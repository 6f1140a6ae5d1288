// Package smtpd is psagate's SMTP server, built on emersion/go-smtp: the
// Backend and Session that apply the listener's limits (networks, session
// caps, sizes, recipients, timeouts), AUTH PLAIN/LOGIN, STARTTLS, the
// recipient-domain allowlist (psagate is never an open relay) and the
// bare-LF policy, and hand each complete message to a Handler.
//
// Reply texts are written for the human who reads an appliance's mail log:
// they say what was wrong and, where it helps, what to change.
package smtpd

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"psagate/internal/config"
	"psagate/internal/message"
	"psagate/internal/metrics"
)

// Reply is the answer to a complete message.
type Reply struct {
	Code     int
	Enhanced [3]int
	Text     string
}

// Handler decides and stores one message. It is called while the DATA
// command is open; its reply is sent as the answer to DATA.
type Handler func(ctx context.Context, raw []byte, env message.Envelope) Reply

// Server is a running SMTP listener.
type Server struct {
	cfg     atomic.Pointer[config.SMTP] // swapped by Update; read per use
	tlsCert atomic.Pointer[tls.Certificate]
	handler Handler
	metrics *metrics.Metrics
	// onRefuse is told of refusals (SetOnRefuse).
	onRefuse atomic.Pointer[func(Refusal)]
	log      *slog.Logger
	smtp     *gosmtp.Server
	tls      *tls.Config

	mu          sync.Mutex
	total       int
	perIP       map[netip.Addr]int
	authFails   map[netip.Addr]*authFail
	authPruneAt int // sweep authFails when it reaches this size
	ln          net.Listener
	closed      atomic.Bool        // set under mu, with conns, so newConn cannot miss it; read without
	conns       map[*conn]struct{} // open sessions, to wake idle ones at shutdown
	now         func() time.Time

	inflight atomic.Int64               // bytes of smtp.max_inflight_bytes in use (receive.go)
	rate     map[netip.Addr]*rateWindow // connections per minute per IP (rate.go), under mu
}

type authFail struct {
	count int
	last  time.Time // latest failure
	until time.Time // paused until then (zero: not paused)
}

// authFailPruneMin is the size of the failure table from which stale
// entries are swept, so addresses that fail once each cannot grow it
// without bound.
const authFailPruneMin = 4096

// New builds a server for cfg. It does not listen yet.
func New(cfg config.SMTP, h Handler, m *metrics.Metrics, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{handler: h, metrics: m, log: log, perIP: map[netip.Addr]int{},
		authFails: map[netip.Addr]*authFail{}, now: time.Now}
	s.cfg.Store(&cfg)
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("smtp.tls_cert/tls_key: %w", err)
		}
		s.tlsCert.Store(&cert)
		// Through GetCertificate, so a reload can swap in a renewed
		// certificate without a restart.
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.tlsCert.Load(), nil }}
	}
	srv := gosmtp.NewServer(&backend{s: s})
	srv.Domain = cfg.Hostname
	// go-smtp refuses a message of exactly MaxMessageBytes (it cannot tell
	// that the next read would have been the end), so give it one byte more
	// and enforce the configured limit here, in Mail and receiver.read.
	srv.MaxMessageBytes = cfg.MaxMessageBytes + 1
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.ReadTimeout.D()
	srv.WriteTimeout = cfg.WriteTimeout.D()
	srv.TLSConfig = s.tls
	// The session decides who may authenticate (TLS or loopback), so the
	// library must not refuse before asking it.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = slogLogger{log}
	s.smtp = srv
	return s, nil
}

// conf is the configuration in force; sessions read it at each use, so
// an Update applies to the next command of every session.
func (s *Server) conf() *config.SMTP { return s.cfg.Load() }

// Update applies a reloaded [smtp] section. The keys that go-smtp reads
// for itself, and the listener, cannot change while it runs: Update
// returns their names, leaves their old values in force, and the caller
// says a restart is needed. Everything else (who may connect and log in,
// which domains are taken, limits of psagate's own, the certificate)
// applies at once. A certificate that cannot be loaded fails the update
// and changes nothing.
func (s *Server) Update(cfg config.SMTP) (restartNeeded []string, err error) {
	old := s.conf()
	fixed := []struct {
		key     string
		changed bool
	}{
		{"smtp.listen", old.Listen != cfg.Listen},
		{"smtp.hostname", old.Hostname != cfg.Hostname},
		{"smtp.max_message_bytes", old.MaxMessageBytes != cfg.MaxMessageBytes},
		{"smtp.max_recipients", old.MaxRecipients != cfg.MaxRecipients},
		{"smtp.max_line_length", old.MaxLineLength != cfg.MaxLineLength},
		{"smtp.read_timeout", old.ReadTimeout != cfg.ReadTimeout},
		{"smtp.write_timeout", old.WriteTimeout != cfg.WriteTimeout},
		{"smtp.tls_cert", (old.TLSCert == "") != (cfg.TLSCert == "")}, // turning STARTTLS on or off
	}
	next := cfg
	for _, f := range fixed {
		if f.changed {
			restartNeeded = append(restartNeeded, f.key)
		}
	}
	next.Listen, next.Hostname, next.MaxMessageBytes, next.MaxRecipients = old.Listen, old.Hostname, old.MaxMessageBytes, old.MaxRecipients
	next.MaxLineLength, next.ReadTimeout, next.WriteTimeout = old.MaxLineLength, old.ReadTimeout, old.WriteTimeout
	if s.tls == nil {
		next.TLSCert, next.TLSKey = "", ""
	} else if cfg.TLSCert == "" {
		next.TLSCert, next.TLSKey = old.TLSCert, old.TLSKey
	} else {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("smtp.tls_cert/tls_key: %w", err)
		}
		s.tlsCert.Store(&cert)
	}
	s.cfg.Store(&next)
	return restartNeeded, nil
}

type slogLogger struct{ l *slog.Logger }

// Printf sorts go-smtp's messages by weight: a recovered panic is a bug in
// psagate and must be seen; accept errors matter to an operator; the rest
// (a client hanging up mid-command, a failed TLS handshake) is routine on
// an open port and would drown the log.
func (l slogLogger) Printf(format string, v ...any) {
	level := slog.LevelDebug
	switch {
	case strings.HasPrefix(format, "panic serving"):
		level = slog.LevelError
	case strings.HasPrefix(format, "accept error"):
		level = slog.LevelWarn
	}
	l.l.Log(context.Background(), level, "smtp", "detail", fmt.Sprintf(format, v...))
}
func (l slogLogger) Println(v ...any) { l.l.Debug("smtp", "detail", fmt.Sprint(v...)) }

// Listen opens the configured address.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.conf().Listen)
	if err != nil {
		return nil, fmt.Errorf("smtp.listen %s: %w", s.conf().Listen, err)
	}
	return ln, nil
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	gl := &guardListener{Listener: ln, s: s}
	s.mu.Lock()
	s.ln = gl
	s.mu.Unlock()
	err := s.smtp.Serve(gl)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets sessions in progress finish until ctx
// ends, then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed.Store(true)
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Sessions waiting for a command are told to come back later now,
	// rather than holding shutdown for shutdown_timeout: only a message
	// being transferred is worth waiting for.
	for _, c := range conns {
		c.wake()
	}
	err := s.smtp.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s.smtp.Close()
	}
	if errors.Is(err, gosmtp.ErrServerClosed) {
		return nil
	}
	return err
}

// refuse counts a refusal by reason.
func (s *Server) refuse(reason string) {
	if s.metrics != nil {
		s.metrics.SMTPRefused.WithLabelValues(reason).Inc()
	}
}

// Refusal is a connection or mail refused before it was accepted, for the
// audit trail: an admin tracing a mail that "never arrived" finds why.
type Refusal struct {
	Reason   string // the psagate_smtp_refused_total reason
	RemoteIP string
	From     string   // MAIL FROM, when given
	Rcpt     []string // the recipients accepted so far, or the one refused
	Reply    string   // what the sender was told
}

// SetOnRefuse sets a function told of every refusal of a connection,
// sender, recipient or message (not of commands out of order).
func (s *Server) SetOnRefuse(fn func(Refusal)) { s.onRefuse.Store(&fn) }

func (s *Server) report(r Refusal) {
	if fn := s.onRefuse.Load(); fn != nil && *fn != nil {
		(*fn)(r)
	}
}

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

// guardListener applies the connection-level rules before go-smtp sees a
// connection: allowed networks, total and per-IP caps, and the pause after
// repeated AUTH failures.
type guardListener struct {
	net.Listener
	s *Server
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		code, msg, reason := l.s.admit(ip)
		if code != 0 {
			l.s.refuse(reason)
			if reason == "network" {
				// Only a sender psagate does not take mail from: busy and
				// rate refusals are temporary and counted.
				l.s.report(Refusal{Reason: reason, RemoteIP: ip.String(), Reply: fmt.Sprintf("%d %s", code, msg)})
			}
			l.s.log.Info("connection refused", "remote", ip.String(), "reason", reason)
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "%d %s\r\n", code, msg)
				c.Close()
			}()
			continue
		}
		if l.s.metrics != nil {
			l.s.metrics.SessionsActive.Inc()
		}
		return newConn(c, l.s, ip), nil
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) allowed(ip netip.Addr) bool {
	for _, p := range s.conf().AllowedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// admit decides whether a new connection may start a session and counts it.
func (s *Server) admit(ip netip.Addr) (int, string, string) {
	if !s.allowed(ip) {
		return 554, fmt.Sprintf("5.7.1 %s: connections from %s are not allowed (add it to smtp.allowed_networks)", s.conf().Hostname, ip), "network"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.authFails[ip]; f != nil && s.now().Before(f.until) {
		return 421, fmt.Sprintf("4.7.0 %s: too many failed logins from %s; try again after %s", s.conf().Hostname, ip, f.until.UTC().Format(time.RFC3339)), "auth"
	}
	if s.overRate(ip) {
		return 421, fmt.Sprintf("4.7.0 %s: too many connections from %s in the last minute (%d); try again later", s.conf().Hostname, ip, s.conf().MaxConnPerMinutePerIP), "rate"
	}
	if s.total >= s.conf().MaxSessions {
		return 421, fmt.Sprintf("4.7.0 %s: too many connections (%d); try again later", s.conf().Hostname, s.conf().MaxSessions), "busy"
	}
	if s.perIP[ip] >= s.conf().MaxSessionsPerIP {
		return 421, fmt.Sprintf("4.7.0 %s: too many connections from %s (%d); try again later", s.conf().Hostname, ip, s.conf().MaxSessionsPerIP), "busy"
	}
	// The last reserved_sessions slots go only to addresses that hold none,
	// so a few busy (or hostile) addresses cannot take every slot and lock
	// out an appliance that has one alert to send.
	if s.perIP[ip] > 0 && s.total >= s.conf().MaxSessions-s.conf().Reserved {
		return 421, fmt.Sprintf("4.7.0 %s: too many connections from %s; the remaining slots are kept for other senders; try again later", s.conf().Hostname, ip), "busy"
	}
	s.total++
	s.perIP[ip]++
	return 0, "", ""
}

func (s *Server) release(c *conn) {
	ip := c.ip
	s.mu.Lock()
	s.total--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	delete(s.conns, c)
	s.mu.Unlock()
	if s.metrics != nil {
		s.metrics.SessionsActive.Dec()
	}
}

// authFailed counts a failed AUTH and reports whether the peer must now be
// disconnected and paused. Failures count within auth_failure_pause of
// each other; an address quiet for longer starts again from zero.
func (s *Server) authFailed(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	f := s.authFails[ip]
	if f == nil || s.authStale(f, now) {
		if f == nil && len(s.authFails) >= max(s.authPruneAt, authFailPruneMin) {
			for k, v := range s.authFails {
				if s.authStale(v, now) {
					delete(s.authFails, k)
				}
			}
			// Sweep again only once the table has doubled: amortised O(1).
			s.authPruneAt = 2 * len(s.authFails)
		}
		f = &authFail{}
		s.authFails[ip] = f
	}
	f.count++
	f.last = now
	if f.count >= s.conf().MaxAuthFailures {
		f.until = now.Add(s.conf().AuthFailurePause.D())
		return true
	}
	return false
}

// authStale reports whether an entry no longer matters: its pause is over,
// or (not paused) its last failure is older than the pause.
func (s *Server) authStale(f *authFail, now time.Time) bool {
	if !f.until.IsZero() {
		return now.After(f.until)
	}
	return now.Sub(f.last) > s.conf().AuthFailurePause.D()
}

func (s *Server) authOK(ip netip.Addr) {
	s.mu.Lock()
	delete(s.authFails, ip)
	s.mu.Unlock()
}

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

// AuthMechanisms advertises AUTH only where a password may be sent: over
// TLS, or from loopback (a local relay or test). With require_tls, TLS only.
func (ss *session) AuthMechanisms() []string {
	if len(ss.s.conf().Users) == 0 || !ss.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) authAllowed() bool {
	if ss.tls {
		return true
	}
	return !ss.s.conf().RequireTLS && ss.ip.IsLoopback()
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if len(ss.s.conf().Users) == 0 {
		return nil, smtpErr(502, [3]int{5, 5, 1}, "Authentication is not enabled on this gateway")
	}
	if !ss.authAllowed() {
		ss.s.refuse("tls")
		return nil, smtpErr(538, [3]int{5, 7, 11}, "Encryption required: use STARTTLS before AUTH (passwords are never accepted in clear text)")
	}
	check := func(user, pass string) error {
		if ss.conn != nil && ss.conn.timedOut() {
			// A line cut short by a timeout (see conn.Read) is not a
			// login attempt; the session is already closed.
			return smtpErr(421, [3]int{4, 4, 2}, "Timed out")
		}
		for _, u := range ss.s.conf().Users {
			if subtle.ConstantTimeCompare([]byte(u.Name), []byte(user)) == 1 &&
				subtle.ConstantTimeCompare([]byte(u.Password.Value()), []byte(pass)) == 1 {
				ss.authed = u.Name
				ss.s.authOK(ss.ip)
				if ss.conn != nil {
					ss.conn.progress()
				}
				return nil
			}
		}
		ss.s.refuse("auth")
		// Only a configured user name is logged: a password typed into the
		// user field must not end up in the log.
		who := "(not a configured user)"
		for _, u := range ss.s.conf().Users {
			if u.Name == user {
				who = user
			}
		}
		ss.s.log.Info("authentication failed", "remote", ss.ip.String(), "user", who)
		if ss.s.authFailed(ss.ip) {
			// Too many failures: close once this reply is written; admit()
			// refuses this address until the pause ends.
			if ss.conn != nil {
				ss.conn.closeAfterWrite()
			}
			return smtpErr(421, [3]int{4, 7, 0}, fmt.Sprintf("Too many failed logins; try again in %s", ss.s.conf().AuthFailurePause.D()))
		}
		return smtpErr(535, [3]int{5, 7, 8}, "Authentication failed: wrong user name or password")
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtpErr(535, [3]int{5, 7, 8}, "Authentication failed: authorization identity must be empty or the user")
			}
			return check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtpErr(504, [3]int{5, 5, 4}, "Unsupported authentication mechanism: use PLAIN or LOGIN")
}

// loginServer is the server side of the (obsolete, still common) LOGIN
// mechanism, which go-sasl only implements as a client.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) > 0 { // initial response carries the user name
			l.user = string(response)
			l.step = 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.check(l.user, string(response))
	}
	return nil, true, errors.New("unexpected LOGIN response")
}

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
