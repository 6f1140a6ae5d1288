package config

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"psagate/internal/psa"
)

// clients builds [[client]] tables. names holds the clients seen so far
// (lower-case name → "file:line"), across the main file and its includes.
func (l *loader) clients(raw []rawClient, names map[string]string) []*Client {
	var out []*Client
	for i, rc := range raw {
		base := fmt.Sprintf("client[%d]", i)
		c := &Client{Name: strings.TrimSpace(rc.Name), Enabled: true, Line: l.ix.Line(base)}
		if rc.Enabled != nil {
			c.Enabled = *rc.Enabled
		}
		if rc.DisabledUntil != nil {
			if rc.Enabled != nil && *rc.Enabled {
				l.errf(base+".disabled_until", "disabled_until turns a disabled client back on: it needs enabled = false (or no enabled key), not enabled = true")
			}
			c.Enabled, c.DisabledUntil = false, rc.DisabledUntil.Time
		}
		if c.Name == "" && !l.bad[base+".name"] {
			l.errf(base, "client without a name")
		} else if prev, dup := names[strings.ToLower(c.Name)]; dup {
			if line, same := strings.CutPrefix(prev, l.file+":"); same {
				prev = "line " + line
			}
			l.errf(base+".name", "client %q is defined twice (first at %s)", c.Name, prev)
		} else {
			c.File = l.file
			names[strings.ToLower(c.Name)] = fmt.Sprintf("%s:%d", l.file, c.Line)
		}
		for j, r := range rc.Recipients {
			r = strings.ToLower(strings.TrimSpace(r))
			if !strings.Contains(r, "@") {
				l.errf(fmt.Sprintf("%s.recipients", base), "recipient %d %q is not an address", j+1, r)
			}
			c.Recipients = append(c.Recipients, r)
		}
		for j, s := range rc.Senders {
			s = strings.ToLower(strings.TrimSpace(s))
			if !strings.Contains(s, "@") {
				l.errf(fmt.Sprintf("%s.senders", base), "sender %d %q must be an address or \"@domain\"", j+1, s)
			}
			c.Senders = append(c.Senders, s)
		}
		// Globs as internal/glob matches them: no pattern is malformed.
		c.Devices = append(c.Devices, rc.Devices...)
		c.RequireAuth = l.domainList(base+".require_auth", rc.RequireAuth)
		c.PSA = l.psa(base+".psa", rc.PSA, false)
		devNames := map[string]bool{}
		for j, rd := range rc.Device {
			dbase := fmt.Sprintf("%s.device[%d]", base, j)
			d := &Device{Name: strings.TrimSpace(rd.Name), Line: l.ix.Line(dbase)}
			if d.Name == "" && !l.bad[dbase+".name"] {
				l.errf(dbase, "device without a name")
			} else if devNames[strings.ToLower(d.Name)] {
				l.errf(dbase+".name", "device %q is defined twice in client %q", d.Name, c.Name)
			}
			devNames[strings.ToLower(d.Name)] = true
			d.PSA = l.psa(dbase+".psa", rd.PSA, false)
			c.Device = append(c.Device, d)
		}
		out = append(out, c)
	}
	return out
}

func (l *loader) smtp(s *SMTP) {
	if s.Listen == "" {
		s.Listen = "127.0.0.1:2525"
	}
	if s.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "psagate.localdomain"
		}
		s.Hostname = h
	}
	// A message under 1 KiB cannot hold the headers of a real alert.
	limit(l, "smtp.max_message_bytes", &s.MaxMessageBytes, 25<<20, 1024)
	limit(l, "smtp.max_recipients", &s.MaxRecipients, 50, 1)
	defDur(&s.ReadTimeout, 60*time.Second)
	defDur(&s.WriteTimeout, 60*time.Second)
	defDur(&s.DataTimeout, 10*time.Minute)
	limit(l, "smtp.max_sessions", &s.MaxSessions, 200, 1)
	limit(l, "smtp.max_sessions_per_ip", &s.MaxSessionsPerIP, 40, 1)
	limit(l, "smtp.max_commands", &s.MaxCommands, 100, 1)
	defDur(&s.MailTimeout, 20*time.Second)
	limit(l, "smtp.max_idle_commands", &s.MaxIdleCommands, 10, 1)
	s.Reserved = s.MaxSessions / 5
	if s.ReservedSessions != nil {
		s.Reserved = *s.ReservedSessions
		if s.Reserved < 0 || s.Reserved >= s.MaxSessions {
			l.errf("smtp.reserved_sessions", "must be between 0 and max_sessions - 1 (%d), not %d", s.MaxSessions-1, s.Reserved)
			s.Reserved = s.MaxSessions / 5
		}
	}
	limit(l, "smtp.max_inflight_bytes", &s.MaxInflightBytes, 256<<20, 1<<20)
	if s.MaxInflightBytes < s.MaxMessageBytes && !l.bad["smtp.max_inflight_bytes"] {
		l.errf("smtp.max_inflight_bytes", "%d is less than max_message_bytes (%d): a message of the allowed size could never be taken", s.MaxInflightBytes, s.MaxMessageBytes)
	}
	limit(l, "smtp.max_hops", &s.MaxHops, 50, 1)
	limit(l, "smtp.max_connections_per_minute_per_ip", &s.MaxConnPerMinutePerIP, 0, 0)
	limit(l, "smtp.max_auth_failures", &s.MaxAuthFailures, 5, 1)
	defDur(&s.AuthFailurePause, 5*time.Minute)
	// RFC 5322 allows 998 bytes, but alert tools send single-line HTML of
	// many kilobytes; like Postfix, take such lines and fold them (see
	// smtpd). 64 KiB bounds what one unfinished command line can hold.
	limit(l, "smtp.max_line_length", &s.MaxLineLength, 64<<10, 1)
	limit(l, "smtp.max_headers", &s.MaxHeaders, 500, 1)
	limit(l, "smtp.max_mime_parts", &s.MaxMIMEParts, 100, 1)
	limit(l, "smtp.max_mime_depth", &s.MaxMIMEDepth, 10, 1)
	defDur(&s.ShutdownTimeout, 30*time.Second)
	defDur(&s.SessionTimeout, 30*time.Minute)
	switch s.BareLF {
	case "":
		s.BareLF = "normalize"
	case "reject", "normalize":
	default:
		l.errf("smtp.bare_lf", "must be \"normalize\" or \"reject\", not %q", s.BareLF)
	}
	if len(s.AllowedNetworks) == 0 {
		s.AllowedNetworks = []string{"127.0.0.0/8", "::1/128"}
	}
	for _, n := range s.AllowedNetworks {
		p, err := parsePrefix(n)
		if err != nil {
			l.errf("smtp.allowed_networks", "%v", err)
			continue
		}
		s.AllowedPrefixes = append(s.AllowedPrefixes, p)
	}
	if len(s.AcceptDomains) == 0 && !l.bad["smtp.accept_domains"] {
		l.errf("smtp", "accept_domains is empty: list the domain(s) your appliances send alerts to, e.g. accept_domains = [\"alerts.example.net\"]")
	}
	for i, d := range s.AcceptDomains {
		d = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(d, "@")))
		if d == "" || strings.ContainsAny(d, " @") {
			l.errf("smtp.accept_domains", "%q is not a domain", s.AcceptDomains[i])
		}
		s.AcceptDomains[i] = d
	}
	if (s.TLSCert == "") != (s.TLSKey == "") && !l.bad["smtp.tls_cert"] && !l.bad["smtp.tls_key"] {
		l.errf("smtp.tls_cert", "tls_cert and tls_key must be set together")
	}
	if s.RequireTLS && s.TLSCert == "" && !l.bad["smtp.tls_cert"] {
		l.errf("smtp.require_tls", "require_tls needs tls_cert and tls_key")
	}
	for i := range s.Users {
		u := &s.Users[i]
		base := fmt.Sprintf("smtp.user[%d]", i)
		if u.Name == "" && !l.bad[base+".name"] {
			l.errf(base, "user without a name")
		}
		l.password(base+".password", fmt.Sprintf("user %q", u.Name), &u.Password)
	}
}

// password resolves a required secret at path; who names its owner in the
// error when it is missing.
func (l *loader) password(path, who string, s *Secret) {
	if s.ref == "" {
		l.errf(path, "%s has no password", who)
		return
	}
	if l.noSecrets {
		return
	}
	v, err := resolveSecret(s.ref)
	if err != nil {
		l.errf(path, "%v", err)
	}
	s.value = v
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network (write it like \"10.0.0.0/8\")", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or network", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (l *loader) state(s *State) {
	if s.Path == "" {
		s.Path = "data/psagate.db"
	}
	limit(l, "state.audit_max", &s.AuditMax, 10000, 1)
	defDur(&s.SeenTTL, 7*24*time.Hour)
}

func (l *loader) rules(r *Rules) {
	if r.Dir == "" {
		r.Dir = "rules"
	}
	switch r.DefaultAction {
	case "":
		r.DefaultAction = "ticket"
	case "ticket", "quarantine", "drop":
	default:
		l.errf("rules.default_action", "must be \"ticket\", \"quarantine\" or \"drop\", not %q", r.DefaultAction)
		// LoadPartial's caller compiles the rules with it: a bad value would
		// be reported a second time, as a rules error.
		r.DefaultAction = "ticket"
	}
	defDur(&r.WatchInterval, 2*time.Second)
	switch r.OnHeaderInjection {
	case "":
		r.OnHeaderInjection = "quarantine"
	case "quarantine", "reject", "ignore":
	default:
		l.errf("rules.on_header_injection", "must be \"quarantine\", \"reject\" or \"ignore\", not %q", r.OnHeaderInjection)
	}
}

func (l *loader) deliver(r rawDeliver) Deliver {
	d := Deliver{MaxAge: r.MaxAge, BackoffMin: r.BackoffMin, BackoffMax: r.BackoffMax, ProbeInterval: r.ProbeInterval,
		AttachTypes: r.AttachTypes, AttachMaxBytes: r.AttachMax}
	if d.AttachTypes == nil {
		d.AttachTypes = DefaultAttachTypes
	}
	checkTypes := func(key string, types []string) {
		for _, t := range types {
			if !strings.Contains(t, "/") {
				l.errf(key, "%q is not a media type (write it like \"image/png\" or \"image/*\")", t)
			}
		}
	}
	checkTypes("deliver.attach_types", d.AttachTypes)
	limit(l, "deliver.attach_max_bytes", &d.AttachMaxBytes, 10<<20, 1)
	defDur(&d.MaxAge, 24*time.Hour)
	defDur(&d.BackoffMin, 2*time.Second)
	defDur(&d.BackoffMax, 10*time.Minute)
	defDur(&d.ProbeInterval, time.Minute)
	if d.BackoffMax < d.BackoffMin && !l.bad["deliver.backoff_min"] && !l.bad["deliver.backoff_max"] {
		l.errf("deliver.backoff_max", "backoff_max (%s) is below backoff_min (%s)", d.BackoffMax.D(), d.BackoffMin.D())
	}
	// Each provider's defaults come from its descriptor (they stay well
	// inside what the PSA documents); [deliver.NAME] overrides them.
	d.Providers = map[string]ProviderLimits{}
	for _, desc := range psa.Registered() {
		d.Providers[desc.Name] = ProviderLimits{Concurrency: desc.Limits.Concurrency, RatePerMinute: desc.Limits.RatePerMinute}
	}
	set := func(name string, p *ProviderLimits) {
		if p == nil {
			return
		}
		desc, _ := psa.Lookup(name)
		v := d.Providers[name]
		limit(l, "deliver."+name+".concurrency", &p.Concurrency, v.Concurrency, 1)
		v.Concurrency = p.Concurrency
		switch rate := p.RatePerMinute; {
		case math.IsNaN(rate) || rate < 0:
			l.errf("deliver."+name+".rate_per_minute", "must be a positive number of calls a minute, not %v (leave it out for the default, %s)", rate, rateText(v.RatePerMinute))
		case rate > 0:
			v.RatePerMinute = rate
		}
		if p.AttachTypes != nil {
			checkTypes("deliver."+name+".attach_types", p.AttachTypes)
			v.AttachTypes = p.AttachTypes
		}
		limit(l, "deliver."+name+".attach_max_bytes", &p.AttachMaxBytes, d.AttachMaxBytes, 1)
		v.AttachMaxBytes = p.AttachMaxBytes
		if m := desc.Limits.MaxConcurrency; m > 0 && v.Concurrency > m {
			l.errf("deliver."+name+".concurrency", "%s; %d would be throttled", desc.Limits.MaxConcurrencyWhy, v.Concurrency)
		}
		d.Providers[name] = v
	}
	for _, name := range slices.Sorted(maps.Keys(r.providers)) {
		set(name, r.providers[name])
	}
	return d
}

func (l *loader) log(lg *Log) {
	switch lg.Level {
	case "":
		lg.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		l.errf("log.level", "must be debug, info, warn or error, not %q", lg.Level)
	}
	switch lg.Format {
	case "":
		lg.Format = "text"
	case "text", "json":
	default:
		l.errf("log.format", "must be \"text\" or \"json\", not %q", lg.Format)
	}
}

// limit puts the default in place of an unset count or size (0 has always
// meant "the default") and rejects one below min, naming the default so the
// admin knows what leaving the key out gives.
func limit[T int | int64](l *loader, key string, p *T, def, min T) {
	switch {
	case *p == 0:
		*p = def
	case *p < min:
		l.errf(key, "must be at least %d, not %d (leave it out for the default, %d)", min, *p, def)
		*p = def
	}
}

func rateText(r float64) string {
	if r == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + " a minute"
}

func defDur(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}
