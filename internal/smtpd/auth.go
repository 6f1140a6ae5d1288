package smtpd

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

type authFail struct {
	count int
	last  time.Time // latest failure
	until time.Time // paused until then (zero: not paused)
}

// authFailPruneMin is the size of the failure table from which stale
// entries are swept, so addresses that fail once each cannot grow it
// without bound.
const authFailPruneMin = 4096

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
