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
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
