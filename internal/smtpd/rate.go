package smtpd

import (
	"net/netip"
	"time"
)

// rateWindow counts one address's connections in the current minute.
type rateWindow struct {
	start time.Time
	n     int
}

// ratePruneAt is the table size from which windows older than a minute are
// swept, so addresses that connect once each cannot grow it without bound.
const ratePruneAt = 4096

// overRate counts a connection from ip against
// smtp.max_connections_per_minute_per_ip and reports whether it is over.
// A fixed one-minute window per address: simple, and enough to stop one
// internet host from hammering the listener. Called with s.mu held.
func (s *Server) overRate(ip netip.Addr) bool {
	max := s.conf().MaxConnPerMinutePerIP
	if max <= 0 {
		return false
	}
	now := s.now()
	if s.rate == nil {
		s.rate = map[netip.Addr]*rateWindow{}
	}
	if len(s.rate) >= ratePruneAt {
		for a, w := range s.rate {
			if now.Sub(w.start) >= time.Minute {
				delete(s.rate, a)
			}
		}
	}
	w := s.rate[ip]
	if w == nil || now.Sub(w.start) >= time.Minute {
		w = &rateWindow{start: now}
		s.rate[ip] = w
	}
	w.n++
	return w.n > max
}
