package smtpd

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

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
