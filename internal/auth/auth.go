// Package auth authenticates the sender of a message: DKIM signatures
// (github.com/emersion/go-msgauth/dkim), SPF for the envelope sender and
// client IP (blitiri.com.ar/go/spf) and DMARC alignment of either with the
// From header domain (the record read with go-msgauth/dmarc). The result is
// a message.AuthResults: an Authentication-Results line for the audit and
// `try -explain`, and the facts the rule conditions `authenticated` and
// `dkim_domain` and the `require_auth` lists test.
//
// Why blitiri.com.ar/go/spf: it implements RFC 7208 fully (macros, include,
// redirect, the 10-lookup and void-lookup limits), takes a context and a
// resolver interface (so [auth] dns and the fast timeouts apply to it as to
// DKIM), has no dependencies, and is maintained (v1.6.0 is served by the Go
// module proxy; it is the SPF library of the chasquid mail server).
//
// Every DNS answer that is not a clean "exists" or "does not exist" (a
// timeout, SERVFAIL, a refused connection) is a temperror, never a pass:
// a mail whose vendor cannot be verified right now is kept in quarantine,
// not trusted.
package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"github.com/prometheus/client_golang/prometheus"

	"psagate/internal/message"
)

// Options configure a Checker.
type Options struct {
	// DNS is the resolver as host:port; "" uses the system's resolvers.
	DNS string
	// Timeout bounds each DNS question (default 2s): a slow resolver must
	// not hold an SMTP DATA reply for long.
	Timeout time.Duration
	// CacheTTL is how long answers and results are reused (default 5m).
	CacheTTL time.Duration
	// AuthServID names this host in the Authentication-Results line.
	AuthServID string
	Now        func() time.Time
}

// Checker authenticates messages. It is safe for concurrent use and keeps
// its caches across config reloads.
type Checker struct {
	res     *net.Resolver
	timeout time.Duration
	ttl     time.Duration
	servID  string
	now     func() time.Time

	mu      sync.Mutex
	txt     map[string]txtEntry
	results map[[32]byte]resultEntry

	// Lookups counts DNS questions by type and result (ok, notfound,
	// timeout, error); Results counts outcomes by method and result.
	Lookups *prometheus.CounterVec
	Results *prometheus.CounterVec
}

type txtEntry struct {
	vals []string
	err  error // nil or a not-found error; temporary failures are not cached
	exp  time.Time
}

type resultEntry struct {
	r   *message.AuthResults
	exp time.Time
}

// maxCache bounds each cache; past it the cache is emptied (simple, and
// the alert volume of an MSP never gets near it in one TTL).
const maxCache = 10000

// New returns a Checker.
func New(o Options) *Checker {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 5 * time.Minute
	}
	if o.AuthServID == "" {
		o.AuthServID = "psagate"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Checker{timeout: o.Timeout, ttl: o.CacheTTL, servID: o.AuthServID, now: o.Now,
		txt: map[string]txtEntry{}, results: map[[32]byte]resultEntry{},
		Lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_auth_dns_lookups_total",
			Help: "DNS questions asked for sender authentication, by type and result (ok, notfound, timeout, error).",
		}, []string{"type", "result"}),
		Results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "psagate_auth_results_total",
			Help: "Sender authentication results by method (spf, dkim, dmarc) and result.",
		}, []string{"method", "result"}),
	}
	c.res = &net.Resolver{PreferGo: true}
	if o.DNS != "" {
		addr := o.DNS
		c.res.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	return c
}

// Collectors are the metrics to register.
func (c *Checker) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.Lookups, c.Results}
}

// Input is what authentication looks at.
type Input struct {
	Raw      []byte
	IP       netip.Addr // the SMTP client; invalid for mail not received over SMTP
	Helo     string
	MailFrom string
	From     string // the From header address
}

// Check authenticates one message. It never fails: problems are results
// (temperror, permerror).
func (c *Checker) Check(ctx context.Context, in Input) *message.AuthResults {
	key := c.key(in)
	now := c.now()
	c.mu.Lock()
	if e, ok := c.results[key]; ok && now.Before(e.exp) {
		c.mu.Unlock()
		return e.r
	}
	c.mu.Unlock()

	r := c.check(ctx, in)

	// A temperror is not kept: the next delivery asks DNS again.
	if r.SPF != "temperror" && r.DMARC != "temperror" {
		c.mu.Lock()
		if len(c.results) >= maxCache {
			clear(c.results)
		}
		c.results[key] = resultEntry{r: r, exp: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return r
}

func (c *Checker) key(in Input) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", in.IP, strings.ToLower(in.Helo), strings.ToLower(in.MailFrom), strings.ToLower(in.From))
	h.Write(in.Raw)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

type dkimSig struct {
	domain, result, reason string
}

func (c *Checker) check(ctx context.Context, in Input) *message.AuthResults {
	r := &message.AuthResults{FromDomain: message.DomainOf(in.From)}

	// SPF: the envelope sender's domain, or the HELO name for a bounce
	// (RFC 7208 2.4).
	spfDomain := message.DomainOf(in.MailFrom)
	spfIdentity := "smtp.mailfrom=" + spfDomain
	if spfDomain == "" {
		spfDomain = strings.ToLower(strings.TrimSuffix(in.Helo, "."))
		spfIdentity = "smtp.helo=" + spfDomain
	}
	spfReason := ""
	switch {
	case !in.IP.IsValid():
		r.SPF, spfReason = "none", "no client IP: not received over SMTP"
	case spfDomain == "":
		r.SPF, spfReason = "none", "no envelope sender or HELO domain"
	default:
		sender := in.MailFrom
		if sender == "" {
			sender = "postmaster@" + spfDomain
		}
		sctx, cancel := context.WithTimeout(ctx, 4*c.timeout)
		res, err := spf.CheckHostWithSender(net.IP(in.IP.Unmap().AsSlice()), in.Helo, sender,
			spf.WithContext(sctx), spf.WithResolver(&spfResolver{c}))
		cancel()
		r.SPF = string(res)
		if err != nil && res != spf.Pass {
			spfReason = err.Error()
		}
		if r.SPF == "" {
			r.SPF = "temperror"
		}
	}
	c.Results.WithLabelValues("spf", r.SPF).Inc()

	// DKIM: every signature; only a verified one counts.
	var sigs []dkimSig
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(in.Raw), &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return c.lookupTXT(ctx, name) },
		MaxVerifications: 5,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		sigs = append(sigs, dkimSig{result: "permerror", reason: err.Error()})
	}
	for _, v := range vs {
		s := dkimSig{domain: strings.ToLower(v.Domain), result: "pass"}
		switch {
		case v.Err == nil:
			r.DKIMDomains = append(r.DKIMDomains, s.domain)
		case dkim.IsTempFail(v.Err):
			s.result, s.reason = "temperror", v.Err.Error()
		case dkim.IsPermFail(v.Err):
			s.result, s.reason = "permerror", v.Err.Error()
		default:
			s.result, s.reason = "fail", v.Err.Error()
		}
		sigs = append(sigs, s)
	}
	if len(sigs) == 0 {
		c.Results.WithLabelValues("dkim", "none").Inc()
	}
	for _, s := range sigs {
		c.Results.WithLabelValues("dkim", s.result).Inc()
	}

	// DMARC: a pass of either method whose domain is aligned with From.
	r.DMARC = "none"
	policy := ""
	if r.FromDomain == "" {
		r.DMARC = "permerror"
	} else {
		rec, derr := c.dmarcRecord(ctx, r.FromDomain)
		strictDKIM, strictSPF := false, false
		switch {
		case derr == nil:
			policy = string(rec.Policy)
			strictDKIM, strictSPF = rec.DKIMAlignment == dmarc.AlignmentStrict, rec.SPFAlignment == dmarc.AlignmentStrict
		case errors.Is(derr, dmarc.ErrNoPolicy):
		case dmarc.IsTempFail(derr):
			r.DMARC = "temperror"
		default:
			// A malformed record: alignment is still checked, relaxed.
			policy = "invalid record"
		}
		dkimOK := slices.ContainsFunc(r.DKIMDomains, func(d string) bool { return Aligned(d, r.FromDomain, strictDKIM) })
		spfOK := r.SPF == "pass" && Aligned(message.DomainOf(in.MailFrom), r.FromDomain, strictSPF)
		if r.DMARC != "temperror" {
			r.Authenticated = dkimOK || spfOK
			switch {
			case r.Authenticated:
				r.DMARC = "pass"
			case r.SPF == "temperror" || slices.ContainsFunc(sigs, func(s dkimSig) bool { return s.result == "temperror" }):
				r.DMARC = "temperror"
			case derr == nil || policy != "":
				r.DMARC = "fail"
			default:
				// No record: not a DMARC fail, but not authenticated either.
				r.DMARC = "none"
			}
		}
	}
	c.Results.WithLabelValues("dmarc", r.DMARC).Inc()

	var b strings.Builder
	b.WriteString(c.servID)
	fmt.Fprintf(&b, "; spf=%s %s", r.SPF, oneLine(spfIdentity))
	if spfReason != "" {
		fmt.Fprintf(&b, " (%s)", oneLine(spfReason))
	}
	if len(sigs) == 0 {
		b.WriteString("; dkim=none (no signature)")
	}
	for _, s := range sigs {
		fmt.Fprintf(&b, "; dkim=%s", s.result)
		if s.domain != "" {
			fmt.Fprintf(&b, " header.d=%s", oneLine(s.domain))
		}
		if s.reason != "" {
			fmt.Fprintf(&b, " (%s)", oneLine(s.reason))
		}
	}
	fmt.Fprintf(&b, "; dmarc=%s header.from=%s", r.DMARC, oneLine(r.FromDomain))
	if policy != "" {
		fmt.Fprintf(&b, " (p=%s)", policy)
	}
	r.Header = b.String()
	return r
}

func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == '(' || r == ')' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// dmarcRecord looks the record up at the From domain, then at its
// organizational domain (RFC 7489 6.6.3).
func (c *Checker) dmarcRecord(ctx context.Context, domain string) (*dmarc.Record, error) {
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return c.lookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(domain, opts)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := OrgDomain(domain); org != domain {
			return dmarc.LookupWithOptions(org, opts)
		}
	}
	return rec, err
}

// lookupTXT asks DNS with the fast timeout, caches clean answers, and
// turns every failure other than "no such record" into a temporary
// net.DNSError, which both go-msgauth and the SPF library treat as
// temperror.
func (c *Checker) lookupTXT(ctx context.Context, name string) ([]string, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	now := c.now()
	c.mu.Lock()
	if e, ok := c.txt[name]; ok && now.Before(e.exp) {
		c.mu.Unlock()
		return e.vals, e.err
	}
	c.mu.Unlock()
	vals, err := ask(ctx, c, "txt", name, func(ctx context.Context) ([]string, error) { return c.res.LookupTXT(ctx, name) })
	if err == nil || isNotFound(err) {
		c.mu.Lock()
		if len(c.txt) >= maxCache {
			clear(c.txt)
		}
		c.txt[name] = txtEntry{vals: vals, err: err, exp: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return vals, err
}

// ask runs one DNS question under the timeout and counts it.
func ask[T any](ctx context.Context, c *Checker, typ, name string, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := f(ctx)
	switch {
	case err == nil:
		c.Lookups.WithLabelValues(typ, "ok").Inc()
		return v, nil
	case isNotFound(err):
		c.Lookups.WithLabelValues(typ, "notfound").Inc()
		return v, &net.DNSError{Err: "no such record", Name: name, IsNotFound: true}
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsTimeout || errors.Is(err, context.DeadlineExceeded) {
		c.Lookups.WithLabelValues(typ, "timeout").Inc()
	} else {
		c.Lookups.WithLabelValues(typ, "error").Inc()
	}
	var zero T
	return zero, &net.DNSError{Err: "DNS lookup failed: " + err.Error(), Name: name, IsTemporary: true, IsTimeout: true}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// spfResolver gives the SPF library the checker's resolver, timeouts and
// counting.
type spfResolver struct{ c *Checker }

func (r *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.c.lookupTXT(ctx, name)
}

func (r *spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return ask(ctx, r.c, "mx", name, func(ctx context.Context) ([]*net.MX, error) { return r.c.res.LookupMX(ctx, name) })
}

func (r *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return ask(ctx, r.c, "ip", host, func(ctx context.Context) ([]net.IPAddr, error) { return r.c.res.LookupIPAddr(ctx, host) })
}

func (r *spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return ask(ctx, r.c, "ptr", addr, func(ctx context.Context) ([]string, error) { return r.c.res.LookupAddr(ctx, addr) })
}

// Aligned reports DMARC identifier alignment (RFC 7489 3.1): the same
// domain (strict), or the same organizational domain (relaxed).
func Aligned(d, from string, strict bool) bool {
	d, from = strings.ToLower(d), strings.ToLower(from)
	if d == "" || from == "" {
		return false
	}
	if d == from {
		return true
	}
	return !strict && OrgDomain(d) == OrgDomain(from)
}

// OrgDomain approximates the organizational domain (RFC 7489 3.2) without
// the Public Suffix List: the last two labels, or three under a two-letter
// country code whose second level is a common registry label ("co.uk",
// "com.au"). Vendor alert domains (datto.com, axcient.net, veeam.com) are
// all of the simple kind; a list would only matter for alignment between
// two subdomains of an unusual suffix.
func OrgDomain(d string) string {
	labels := strings.Split(strings.ToLower(strings.TrimSuffix(d, ".")), ".")
	n := len(labels)
	if n <= 2 {
		return strings.Join(labels, ".")
	}
	if len(labels[n-1]) == 2 {
		switch labels[n-2] {
		case "co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "gv":
			return strings.Join(labels[n-3:], ".")
		}
	}
	return strings.Join(labels[n-2:], ".")
}
