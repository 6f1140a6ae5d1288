package config

import (
	"net"
	"strings"
	"time"
)

// Auth is the [auth] section: sender authentication (DKIM, SPF, DMARC
// alignment) of every message, see package auth.
type Auth struct {
	// Enabled turns the checks on for every message. They also run
	// whenever a client or rule has require_auth or a rule tests
	// authenticated or dkim_domain, whatever this says.
	Enabled bool `toml:"enabled"`
	// DNS is the resolver to ask, host:port ("" = the system's): for
	// split-horizon set-ups, and for tests.
	DNS string `toml:"dns"`
	// Timeout bounds each DNS question (default 2s).
	Timeout Duration `toml:"timeout"`
	// CacheTTL is how long DNS answers and results are reused (default 5m).
	CacheTTL Duration `toml:"cache_ttl"`
}

// AuthNeeded reports whether the config asks for sender authentication.
func (c *Config) AuthNeeded() bool {
	if c.Auth.Enabled {
		return true
	}
	for _, cl := range c.Clients {
		if len(cl.RequireAuth) > 0 {
			return true
		}
	}
	return false
}

func (l *loader) auth(a *Auth) {
	defDur(&a.Timeout, 2*time.Second)
	defDur(&a.CacheTTL, 5*time.Minute)
	if a.Timeout.D() > 30*time.Second {
		l.errf("auth.timeout", "%s is too long: every DNS question of a message waits up to this while the sender waits for its reply (at most 30s)", a.Timeout.D())
	}
	if a.DNS != "" {
		if _, port, err := net.SplitHostPort(a.DNS); err != nil || port == "" {
			l.errf("auth.dns", "%q is not host:port (write it like \"10.0.0.53:53\")", a.DNS)
		}
	}
}

// domainList reads a list of domains such as require_auth: lower-cased,
// a leading "@" removed.
func (l *loader) domainList(path string, in []string) []string {
	var out []string
	for i, d := range in {
		d = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(d), "@")))
		if d == "" || strings.ContainsAny(d, " @/:") || !strings.Contains(d, ".") {
			l.errf(path, "entry %d %q is not a domain (write it like \"datto.com\")", i+1, in[i])
			continue
		}
		out = append(out, d)
	}
	return out
}

// RequiresAuthFor returns the domain of list that a mail from a domain
// claims (the domain itself or a parent), or "".
func RequiresAuthFor(list []string, domain string) string {
	for _, d := range list {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return d
		}
	}
	return ""
}

// expandRecipients resolves smtp.accept_recipients: lower-cased, "clients"
// replaced by every client's recipients.
func (l *loader) expandRecipients(cfg *Config) {
	in := cfg.SMTP.AcceptRecipients
	if in == nil {
		return
	}
	var out []string
	for i, r := range in {
		r = strings.ToLower(strings.TrimSpace(r))
		switch {
		case r == "clients":
			for _, c := range cfg.Clients {
				out = append(out, c.Recipients...)
			}
		case strings.Count(r, "@") != 1 || strings.HasPrefix(r, "@"):
			l.errf("smtp.accept_recipients", "entry %d %q is not an address (or \"clients\" for every client's recipients)", i+1, in[i])
		default:
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		// An empty allowlist would refuse every mail: say so rather than
		// run a gateway that takes nothing.
		l.errf("smtp.accept_recipients", "lists no address (no client has recipients)")
	}
	cfg.SMTP.AcceptRecipients = out
}

// RecipientAllowed reports whether the recipient allowlist takes addr;
// without a list every address (in accept_domains) is taken.
func (s *SMTP) RecipientAllowed(addr string) bool {
	if s.AcceptRecipients == nil {
		return true
	}
	addr = strings.ToLower(strings.Trim(addr, "<> "))
	for _, r := range s.AcceptRecipients {
		if r == addr {
			return true
		}
	}
	return false
}
