// Package route decides which client a message belongs to and resolves the
// effective PSA settings of a ticket, key by key: organisation defaults,
// then the client's overrides, then the device's (vault/appliance level),
// then the deciding rule's. Removing an override returns the key to the
// value of the level above ("reset to defaults").
package route

import (
	"maps"
	"slices"
	"strings"
	"time"

	"psagate/internal/config"
	"psagate/internal/glob"
	"psagate/internal/psa"
	"psagate/internal/suggest"
)

// DefaultClient is the client name of messages that match no [[client]].
const DefaultClient = "default"

// Router resolves clients and settings for one config.
type Router struct {
	cfg *config.Config
}

// New returns a Router over cfg.
func New(cfg *config.Config) *Router { return &Router{cfg: cfg} }

// byRecipient returns the client whose recipients include rc, or "".
func (r *Router) byRecipient(rc string) string {
	rc = strings.ToLower(strings.TrimSpace(rc))
	for _, c := range r.cfg.Clients {
		if slices.Contains(c.Recipients, rc) {
			return c.Name
		}
	}
	return ""
}

// SplitByClient groups the envelope recipients of one mail by the client
// each belongs to, in RCPT order of each client's first recipient, when
// they belong to two clients or more; recipients of no client go with the
// first group. It returns nil when there is at most one client among them:
// then the mail is decided once, as ByEnvelope routes it. One mail to two
// clients' addresses is two alerts, one for each (issue 14).
func (r *Router) SplitByClient(rcpts []string) (groups [][]string, clients []string) {
	idx := map[string]int{}
	var none []string
	for _, rc := range rcpts {
		c := r.byRecipient(rc)
		if c == "" {
			none = append(none, rc)
			continue
		}
		i, ok := idx[c]
		if !ok {
			i = len(groups)
			idx[c] = i
			groups = append(groups, nil)
			clients = append(clients, c)
		}
		groups[i] = append(groups[i], rc)
	}
	if len(groups) < 2 {
		return nil, nil
	}
	groups[0] = append(groups[0], none...)
	return groups, clients
}

// ByEnvelope finds the client of a message from its recipients (in RCPT
// order) and then its senders (envelope and header). It returns "" when
// none matches; the rules may still name a device that does.
func (r *Router) ByEnvelope(rcpts []string, senders ...string) string {
	for _, rc := range rcpts {
		if c := r.byRecipient(rc); c != "" {
			return c
		}
	}
	for _, s := range senders {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			continue
		}
		for _, c := range r.cfg.Clients {
			for _, want := range c.Senders {
				if matchSender(want, s) {
					return c.Name
				}
			}
		}
	}
	return ""
}

// SenderPinned reports whether client lists its senders and none of the
// given sender addresses (envelope and header) is one of them: mail that
// claims to be the client's alert but comes from elsewhere, such as a
// look-alike domain. A client without senders pins nothing.
func (r *Router) SenderPinned(client string, senders ...string) bool {
	c := r.cfg.Client(client)
	if c == nil || len(c.Senders) == 0 {
		return false
	}
	for _, s := range senders {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			continue
		}
		for _, want := range c.Senders {
			if matchSender(want, s) {
				return false
			}
		}
	}
	return true
}

func matchSender(want, addr string) bool {
	if strings.HasPrefix(want, "@") {
		return strings.HasSuffix(addr, want)
	}
	return want == addr
}

// ByDevice finds the client whose `devices` globs match device.
func (r *Router) ByDevice(device string) string {
	if device == "" {
		return ""
	}
	for _, c := range r.cfg.Clients {
		for _, g := range c.Devices {
			if glob.MatchFold(g, device) {
				return c.Name
			}
		}
		for _, d := range c.Device {
			if glob.MatchFold(d.Name, device) {
				return c.Name
			}
		}
	}
	return ""
}

// Enabled reports whether tickets may be made for client. Unknown clients
// (and the default) follow the organisation.
func (r *Router) Enabled(client string) bool {
	if c := r.cfg.Client(client); c != nil {
		return c.Enabled
	}
	return true
}

// EnabledAt is Enabled at a given time: a client disabled with
// disabled_until is enabled again from then on.
func (r *Router) EnabledAt(client string, now time.Time) bool {
	if c := r.cfg.Client(client); c != nil {
		return c.EnabledAt(now)
	}
	return true
}

// Origin says where an effective value came from.
type Origin struct {
	Key   string
	Value string // redacted for secrets
	From  string // "org", "client acme", "device ACME-VAULT-01", "rule NAME", "default"
}

// Effective returns the settings for a ticket of client about device, with
// the deciding rule's overrides on top.
func (r *Router) Effective(client, device string, overrides map[string]string) psa.Settings {
	s, _ := r.resolve(client, device, overrides, "")
	return s
}

// Trace returns every effective key of the selected provider and the
// general keys, with where each came from, in key order. Secrets are redacted.
func (r *Router) Trace(client, device string, overrides map[string]string, rule string) []Origin {
	s, from := r.resolve(client, device, overrides, rule)
	prov := s.Provider()
	var out []Origin
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if p, _, ok := strings.Cut(k, "."); ok && p != prov {
			continue
		}
		v := s[k]
		if psa.IsSecretKey(k) && v != "" {
			v = "[redacted]"
		}
		out = append(out, Origin{Key: k, Value: v, From: from[k]})
	}
	return out
}

func (r *Router) resolve(client, device string, overrides map[string]string, rule string) (psa.Settings, map[string]string) {
	s := psa.Settings{}
	from := map[string]string{}
	apply := func(layer psa.Settings, label string) {
		// A table setting given as one value (autotask.note_publish =
		// "Internal Only") replaces the per-entry values of the layers
		// below, as any value replaces a lower one.
		for k := range layer {
			if prov, key, ok := strings.Cut(k, "."); ok && !strings.Contains(key, ".") && psa.IsTableSetting(prov, key) {
				for old := range s {
					if strings.HasPrefix(old, k+".") {
						delete(s, old)
						delete(from, old)
					}
				}
			}
		}
		for k, v := range layer {
			s[k] = v
			from[k] = label
		}
	}
	apply(r.cfg.PSA, "org")
	if c := r.cfg.Client(client); c != nil {
		apply(c.PSA, "client "+c.Name)
		if d := deviceOf(c, device); d != nil {
			apply(d.PSA, "device "+d.Name)
		}
	}
	label := "rule"
	if rule != "" {
		label = "rule " + rule
	}
	apply(overrides, label)
	return s, from
}

func deviceOf(c *config.Client, device string) *config.Device {
	if device == "" {
		return nil
	}
	for _, d := range c.Device {
		if strings.EqualFold(d.Name, device) {
			return d
		}
	}
	for _, d := range c.Device {
		if glob.MatchFold(d.Name, device) {
			return d
		}
	}
	return nil
}

// ClientName maps "" to DefaultClient.
func ClientName(c string) string {
	if c == "" {
		return DefaultClient
	}
	return c
}

// LookAlike finds the pinned sender that addr imitates: a client lists
// senders, addr matches none of any client's, and addr's domain looks
// like a pinned domain without being it or one of its subdomains. It
// returns the client and the pinned sender, or "", "". A look-alike routed
// to no client (or to another one) would otherwise escape the pin.
func (r *Router) LookAlike(addr string) (client, pinned string) {
	addr = strings.ToLower(strings.TrimSpace(addr))
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return "", ""
	}
	for _, c := range r.cfg.Clients {
		for _, want := range c.Senders {
			if matchSender(want, addr) {
				return "", "" // a known sender of some client
			}
		}
	}
	dom := addr[at+1:]
	for _, c := range r.cfg.Clients {
		for _, want := range c.Senders {
			i := strings.LastIndexByte(want, '@')
			if i < 0 || i == len(want)-1 {
				continue
			}
			if looksLike(dom, want[i+1:]) {
				return c.Name, want
			}
		}
	}
	return "", ""
}

// looksLike reports whether domain d imitates the pinned domain p: the
// same letters with digits for look-alike letters (datt0.com), p followed
// by more (datto.com.evil, datto.com-alerts.example), p's name as a word
// of another name (datto-backup.com), or p's name one letter off
// (dattto.com). p itself and its subdomains are p's own.
func looksLike(d, p string) bool {
	if d == p || strings.HasSuffix(d, "."+p) {
		return false
	}
	if skeleton(d) == skeleton(p) {
		return true
	}
	if strings.HasPrefix(d, p) && (d[len(p)] == '.' || d[len(p)] == '-') {
		return true
	}
	dl, drest, _ := strings.Cut(d, ".")
	pl, prest, _ := strings.Cut(p, ".")
	if len(pl) < 4 {
		return false // short names ("abc") are words of too many others
	}
	if dl != pl && slices.Contains(strings.Split(dl, "-"), pl) {
		return true
	}
	return len(pl) >= 5 && drest == prest && suggest.Distance(dl, pl) == 1
}

// skeleton maps characters that pass for others in a domain name to
// those: 0 → o, 1 → l, 3 → e, 5 → s, "rn" → "m", "vv" → "w".
func skeleton(s string) string {
	s = strings.NewReplacer("0", "o", "1", "l", "3", "e", "5", "s", "rn", "m", "vv", "w").Replace(s)
	return s
}
