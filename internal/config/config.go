// Package config loads psagate's TOML configuration. Unknown keys are
// errors (a typo must not pass silently), every error names the file, line
// and key, secrets may be given as "env:NAME", "file:/path" or a literal, and
// every default is the safe one.
//
// PSA settings ([psa], [client.psa], [client.device.psa]) are kept
// flattened ("connectwise.board") so the org → client → device resolution in
// package route can work key by key and say where each value came from.
package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"psagate/internal/psa"
	"psagate/internal/suggest"
	"psagate/internal/tomlpos"
)

// Config is a loaded, validated configuration.
type Config struct {
	File    string  `toml:"-"`
	SMTP    SMTP    `toml:"smtp"`
	State   State   `toml:"state"`
	HTTP    HTTP    `toml:"http"`
	Rules   Rules   `toml:"rules"`
	Deliver Deliver `toml:"deliver"`
	Log     Log     `toml:"log"`
	Auth    Auth    `toml:"auth"`
	IMAP    []IMAP  `toml:"imap"`

	Incidents  Incidents  `toml:"incidents"`
	Quarantine Quarantine `toml:"quarantine"`

	// PSA holds the organisation-wide settings, flattened, secrets resolved.
	PSA     psa.Settings `toml:"-"`
	Clients []*Client    `toml:"-"`
	// ClientsDir is [clients] dir: *.toml files of more [[client]] tables.
	ClientsDir string `toml:"-"`

	// Lines of the PSA keys, for errors found after loading (by route, psa test).
	lines map[string]int
}

// SMTP is the [smtp] section.
type SMTP struct {
	Listen           string   `toml:"listen"`
	Hostname         string   `toml:"hostname"`
	MaxMessageBytes  int64    `toml:"max_message_bytes"`
	MaxRecipients    int      `toml:"max_recipients"`
	ReadTimeout      Duration `toml:"read_timeout"`
	WriteTimeout     Duration `toml:"write_timeout"`
	DataTimeout      Duration `toml:"data_timeout"`
	MaxSessions      int      `toml:"max_sessions"`
	MaxSessionsPerIP int      `toml:"max_sessions_per_ip"`
	// MaxConnPerMinutePerIP caps new connections from one address per
	// minute (0: no cap); for a listener open to the internet.
	MaxConnPerMinutePerIP int      `toml:"max_connections_per_minute_per_ip"`
	MaxCommands           int      `toml:"max_commands"`      // commands before MAIL FROM
	MailTimeout           Duration `toml:"mail_timeout"`      // from connect (or the last message) to MAIL FROM
	MaxIdleCommands       int      `toml:"max_idle_commands"` // NOOP, RSET, ... per message
	ReservedSessions      *int     `toml:"reserved_sessions"` // slots kept for addresses with no session
	MaxInflightBytes      int64    `toml:"max_inflight_bytes"`
	MaxHops               int      `toml:"max_hops"` // Received: headers before a message is taken for a loop
	MaxAuthFailures       int      `toml:"max_auth_failures"`
	AuthFailurePause      Duration `toml:"auth_failure_pause"`
	MaxLineLength         int      `toml:"max_line_length"`
	MaxHeaders            int      `toml:"max_headers"`
	MaxMIMEParts          int      `toml:"max_mime_parts"`
	MaxMIMEDepth          int      `toml:"max_mime_depth"`
	ShutdownTimeout       Duration `toml:"shutdown_timeout"`
	SessionTimeout        Duration `toml:"session_timeout"`
	BareLF                string   `toml:"bare_lf"` // normalize | reject
	RequireAuth           *bool    `toml:"require_auth"`
	AllowedNetworks       []string `toml:"allowed_networks"`
	AcceptDomains         []string `toml:"accept_domains"`
	// AcceptRecipients, when set, is the recipient allowlist: only these
	// addresses (in accept_domains) are taken; "clients" stands for every
	// client's recipients.
	AcceptRecipients []string       `toml:"accept_recipients"`
	RequireTLS       bool           `toml:"require_tls"`
	TLSCert          string         `toml:"tls_cert"`
	TLSKey           string         `toml:"tls_key"`
	Users            []User         `toml:"user"`
	AllowedPrefixes  []netip.Prefix `toml:"-"`
	// Reserved is reserved_sessions resolved (its default depends on
	// max_sessions, and 0 is a value an admin may choose).
	Reserved int `toml:"-"`
}

// User is an [[smtp.user]] account for AUTH PLAIN/LOGIN.
type User struct {
	Name     string `toml:"name"`
	Password Secret `toml:"password"`
}

// State is the [state] section.
type State struct {
	Path     string   `toml:"path"`
	AuditMax int      `toml:"audit_max"`
	SeenTTL  Duration `toml:"seen_ttl"`
}

// DefaultHTTPListen is [http] listen when the key is absent: loopback, so
// the admin API that queue, incidents and audit use is never exposed.
const DefaultHTTPListen = "127.0.0.1:9725"

// HTTP is the [http] section: metrics and health on TCP, and the admin API
// on a Unix socket.
type HTTP struct {
	Listen string `toml:"listen"`
	// AdminSocket is the Unix socket of the admin API that queue,
	// incidents, audit, silence and quarantine use (and `try -state`).
	// It is created mode 0600, so only the service user (and root) can
	// connect, and each connection's peer user is checked as well.
	// Default: psagate-admin.sock next to the state database.
	AdminSocket string `toml:"admin_socket"`
}

// maxSocketPath is the longest Unix socket path Linux takes (sun_path is
// 108 bytes with its NUL; BSDs allow 104).
const maxSocketPath = 103

// Rules is the [rules] section.
type Rules struct {
	Dir               string   `toml:"dir"`
	DefaultAction     string   `toml:"default_action"`
	WatchInterval     Duration `toml:"watch_interval"`
	OnHeaderInjection string   `toml:"on_header_injection"` // quarantine | reject | ignore
	// AllowEmpty lets a rule set with no rules load, and a reload shrink
	// the active set by more than half; without it both are refused as a
	// half-finished deploy and the running rules stay in force.
	AllowEmpty bool `toml:"allow_empty"`
}

// Deliver is the [deliver] section: how outbox jobs reach the PSA.
type Deliver struct {
	MaxAge        Duration                  `toml:"max_age"`
	BackoffMin    Duration                  `toml:"backoff_min"`
	BackoffMax    Duration                  `toml:"backoff_max"`
	ProbeInterval Duration                  `toml:"probe_interval"`
	Providers     map[string]ProviderLimits `toml:"-"`
	// AttachTypes are the media types a rule may upload to a ticket
	// ("image/*" allowed); anything else becomes a note naming the file.
	AttachTypes []string `toml:"-"`
	// AttachMaxBytes caps one uploaded file.
	AttachMaxBytes int `toml:"-"`
}

// DefaultAttachTypes are what a backup alert legitimately carries:
// screenshots, PDF and plain-text reports. Executables, scripts, archives
// and HTML never reach a ticket from a mail.
var DefaultAttachTypes = []string{"image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp", "image/tiff", "application/pdf", "text/plain", "text/csv"}

// ProviderLimits bounds the calls to one provider and what may be
// uploaded to it.
type ProviderLimits struct {
	Concurrency   int     `toml:"concurrency"`
	RatePerMinute float64 `toml:"rate_per_minute"`
	// AttachTypes and AttachMaxBytes override [deliver] attach_types and
	// attach_max_bytes for this provider's tickets (unset: those apply).
	AttachTypes    []string `toml:"attach_types"`
	AttachMaxBytes int      `toml:"attach_max_bytes"`
}

// AttachPolicy is the attachment policy for tickets in provider's PSA.
func (d Deliver) AttachPolicy(provider string) (types []string, maxBytes int) {
	types, maxBytes = d.AttachTypes, d.AttachMaxBytes
	if p, ok := d.Providers[provider]; ok {
		if p.AttachTypes != nil {
			types = p.AttachTypes
		}
		if p.AttachMaxBytes > 0 {
			maxBytes = p.AttachMaxBytes
		}
	}
	return types, maxBytes
}

// Log is the [log] section.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error
	Format string `toml:"format"` // text | json
}

// Client is a [[client]]: an MSP customer.
type Client struct {
	Name    string
	Enabled bool
	// DisabledUntil, when set, turns the client's ticketing back on by
	// itself at that time (enabled = false is then implied until it).
	DisabledUntil time.Time
	Recipients    []string
	Senders       []string
	Devices       []string // globs on the device name a rule extracted
	// RequireAuth lists vendor domains whose mail to this client must pass
	// sender authentication (aligned DKIM or SPF); a mail claiming one of
	// them without it is quarantined.
	RequireAuth []string
	PSA         psa.Settings
	Device      []*Device
	Line        int
	File        string // the file defining it: the config or a [clients] dir include
}

// Device is a [[client.device]]: vault or appliance level overrides.
type Device struct {
	Name string
	PSA  psa.Settings
	Line int
}

// Duration is a time.Duration written as "60s", "15m", "24h".
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like \"60s\", \"15m\" or \"24h\")", string(b))
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", string(b))
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Secret is a value that must never be printed. It is written as
// "env:NAME" (read from the environment), "file:/path" (read from a file,
// trailing newline removed) or a literal.
type Secret struct {
	ref   string
	value string
}

func (s *Secret) UnmarshalText(b []byte) error {
	s.ref = string(b)
	return nil
}

// Value is the resolved secret.
func (s Secret) Value() string { return s.value }

// Ref is how the secret was given, with a literal hidden.
func (s Secret) Ref() string {
	if strings.HasPrefix(s.ref, "env:") || strings.HasPrefix(s.ref, "file:") {
		return s.ref
	}
	return "[literal]"
}

func (s Secret) String() string               { return "[redacted]" }
func (s Secret) GoString() string             { return "config.Secret{[redacted]}" }
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.Ref()), nil }

// resolveSecret reads a secret reference.
func resolveSecret(ref string) (string, error) {
	switch {
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		return v, nil
	case strings.HasPrefix(ref, "file:"):
		p := strings.TrimPrefix(ref, "file:")
		b, err := os.ReadFile(p)
		if err != nil {
			// The path is not secret; the error from os names it.
			return "", fmt.Errorf("cannot read secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return ref, nil
}

// Error is one problem in a config file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found while loading, in line order.
type Errors []*Error

func (es Errors) Error() string {
	var parts []string
	for _, e := range es {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, "\n")
}

// Load reads and validates the config file at path. When the returned error
// is an Errors, it lists every problem, not only the first.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// LoadWithoutSecrets is Load for commands that never call a PSA or accept
// logins (try, queue, incidents, audit, clients): secret references are
// not resolved, so those commands work without the PSA keys in their
// environment. Secret values in the result are empty.
func LoadWithoutSecrets(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, data, false)
}

// LoadPartial is Load for `psagate check`. Along with every problem it
// returns the config built from the values that were valid, with defaults in
// place of the bad ones, so the check can go on to the rules directory; that
// config must not be run. It is nil only when the file cannot be read or is
// not TOML at all.
func LoadPartial(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, errs := decode(path, data, true)
	if len(errs) > 0 {
		return cfg, errs
	}
	return cfg, nil
}

// Parse is Load for data already read; path is used in errors.
func Parse(path string, data []byte) (*Config, error) { return parse(path, data, true) }

func parse(path string, data []byte, secrets bool) (*Config, error) {
	cfg, errs := decode(path, data, secrets)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// decode loads data as far as it can: a syntax error ends it, anything else
// is collected, so the caller gets every problem (in line order) and the
// config made of the rest.
func decode(path string, data []byte, secrets bool) (*Config, Errors) {
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, Errors{syntaxError(path, err, nil)}
	}
	l := &loader{file: path, ix: tomlpos.New(data), lines: map[string]int{}, bad: map[string]bool{}, noSecrets: !secrets}
	text := string(data)
	provTables, took := l.providerTables(doc)
	if l.checkValues(doc, reflect.TypeFor[rawConfig](), "") || took {
		// Decode what is left. Its lines no longer match the file, which is
		// why every later error takes its line from l.ix.
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(doc); err != nil {
			l.errs = append(l.errs, &Error{File: path, Msg: err.Error()})
			return nil, l.sorted()
		}
		text = b.String()
	}
	var raw rawConfig
	md, err := toml.Decode(text, &raw)
	if err != nil {
		// checkValues missed a kind of value; the decoder's own error is
		// still better than none.
		var ix *tomlpos.Index
		if text != string(data) {
			ix = l.ix
		}
		l.errs = append(l.errs, syntaxError(path, err, ix))
		return nil, l.sorted()
	}
	for _, k := range md.Undecoded() {
		ks := k.String()
		if l.underFreeForm(ks) {
			continue
		}
		lines := l.ix.LinesOf(ks)
		if len(lines) == 0 {
			lines = []int{0}
		}
		for _, ln := range lines {
			l.errs = append(l.errs, &Error{File: path, Line: ln, Key: ks, Msg: "unknown key" + l.suggest(ks)})
		}
	}
	raw.Deliver.providers = l.decodeProviderTables(provTables)
	cfg := l.build(&raw, md)
	return cfg, l.sorted()
}

// providerTables takes the [deliver.NAME] tables of registered providers
// out of doc: rawDeliver cannot name them (the registry decides which
// exist), so each is checked and decoded on its own.
func (l *loader) providerTables(doc map[string]any) (map[string]map[string]any, bool) {
	d, ok := doc["deliver"].(map[string]any)
	if !ok {
		return nil, false
	}
	out := map[string]map[string]any{}
	for _, name := range psa.Names() {
		t, ok := d[name].(map[string]any)
		if !ok {
			continue
		}
		delete(d, name)
		l.checkValues(t, reflect.TypeFor[ProviderLimits](), "deliver."+name)
		out[name] = t
	}
	return out, len(out) > 0
}

func (l *loader) decodeProviderTables(tables map[string]map[string]any) map[string]*ProviderLimits {
	out := map[string]*ProviderLimits{}
	for _, name := range slices.Sorted(maps.Keys(tables)) {
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(tables[name]); err != nil {
			l.errf("deliver."+name, "%v", err)
			continue
		}
		var p ProviderLimits
		md, err := toml.Decode(b.String(), &p)
		if err != nil {
			l.errf("deliver."+name, "%v", err)
			continue
		}
		for _, k := range md.Undecoded() {
			ks := "deliver." + name + "." + k.String()
			l.errs = append(l.errs, &Error{File: l.file, Line: l.ix.Line(ks), Key: ks, Msg: "unknown key" + l.suggest(ks)})
		}
		out[name] = &p
	}
	return out
}

// syntaxError turns a decoder error into an Error. ix, when set, gives the
// line instead of the error's own position (the decoder read re-encoded
// text, not the file).
func syntaxError(path string, err error, ix *tomlpos.Index) *Error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: path, Msg: err.Error()}
	}
	msg := pe.Message
	if isSecretName(pe.LastKey) {
		// The parser quotes what it found, which here is the secret.
		msg = "this secret's value is not valid TOML: write it as a quoted string (the value is not shown)"
	}
	line := pe.Position.Line
	if ix != nil {
		line = ix.Line(pe.LastKey)
	}
	return &Error{File: path, Line: line, Key: pe.LastKey, Msg: msg}
}

func (l *loader) sorted() Errors {
	sort.SliceStable(l.errs, func(i, j int) bool { return l.errs[i].Line < l.errs[j].Line })
	return l.errs
}

// isSecretName reports whether a TOML key path ends in a secret's name.
func isSecretName(key string) bool {
	last := key[strings.LastIndex(key, ".")+1:]
	switch last {
	case "public_key", "private_key", "client_id", "secret", "integration_code", "password":
		return true
	}
	return false
}

type rawConfig struct {
	SMTP    SMTP           `toml:"smtp"`
	State   State          `toml:"state"`
	HTTP    HTTP           `toml:"http"`
	Rules   Rules          `toml:"rules"`
	Deliver rawDeliver     `toml:"deliver"`
	Log     Log            `toml:"log"`
	Auth    Auth           `toml:"auth"`
	PSA     map[string]any `toml:"psa"`
	Client  []rawClient    `toml:"client"`
	Clients rawClients     `toml:"clients"`
	IMAP    []IMAP         `toml:"imap"`

	Incidents  Incidents  `toml:"incidents"`
	Quarantine Quarantine `toml:"quarantine"`
}

type rawDeliver struct {
	MaxAge        Duration `toml:"max_age"`
	BackoffMin    Duration `toml:"backoff_min"`
	BackoffMax    Duration `toml:"backoff_max"`
	ProbeInterval Duration `toml:"probe_interval"`
	AttachTypes   []string `toml:"attach_types"`
	AttachMax     int      `toml:"attach_max_bytes"`
	// providers holds the [deliver.NAME] tables of registered providers,
	// taken out of the document before the decode (see providerTables).
	providers map[string]*ProviderLimits
}

type rawClient struct {
	Name          string         `toml:"name"`
	Enabled       *bool          `toml:"enabled"`
	DisabledUntil *Deadline      `toml:"disabled_until"`
	Recipients    []string       `toml:"recipients"`
	Senders       []string       `toml:"senders"`
	Devices       []string       `toml:"devices"`
	RequireAuth   []string       `toml:"require_auth"`
	PSA           map[string]any `toml:"psa"`
	Device        []rawDevice    `toml:"device"`
}

type rawDevice struct {
	Name string         `toml:"name"`
	PSA  map[string]any `toml:"psa"`
}

type loader struct {
	file string
	ix   *tomlpos.Index
	errs Errors
	// bad holds the keys whose value was reported and removed before the
	// decode; the checks after it see them as absent and must not then
	// complain that they are missing.
	bad       map[string]bool
	lines     map[string]int
	pending   []pendingSecret
	noSecrets bool
}

type pendingSecret struct {
	provider string
	err      *Error
}

func (l *loader) errf(path string, format string, args ...any) {
	if l.bad[path] {
		return
	}
	l.errs = append(l.errs, &Error{File: l.file, Line: l.ix.Line(path), Key: displayKey(path), Msg: fmt.Sprintf(format, args...)})
}

// displayKey turns "client[1].psa.connectwise.board" into a key an admin
// recognises; the line already says which client.
func displayKey(path string) string { return path }

// underFreeForm reports keys that BurntSushi cannot check because they are
// decoded into maps; the loader checks those itself.
func (l *loader) underFreeForm(k string) bool {
	return k == "psa" || strings.HasPrefix(k, "psa.") || strings.HasPrefix(k, "client.psa") || strings.HasPrefix(k, "client.device.psa")
}

var knownTop = []string{"smtp", "state", "http", "rules", "deliver", "log", "auth", "incidents", "quarantine", "psa", "client", "clients", "imap"}

func (l *loader) suggest(key string) string {
	last := key[strings.LastIndex(key, ".")+1:]
	if !strings.Contains(key, ".") {
		if c := suggest.Closest(last, knownTop); c != "" {
			return fmt.Sprintf(" (did you mean %q?)", c)
		}
		return " (sections are " + strings.Join(knownTop, ", ") + ")"
	}
	return ""
}

func (l *loader) build(raw *rawConfig, md toml.MetaData) *Config {
	cfg := &Config{File: l.file, SMTP: raw.SMTP, State: raw.State, HTTP: raw.HTTP, Rules: raw.Rules, Log: raw.Log, Auth: raw.Auth, IMAP: raw.IMAP, lines: l.lines,
		Incidents: raw.Incidents, Quarantine: raw.Quarantine}
	// Only an absent key gets the default: listen = "" is how an admin turns
	// the HTTP server off.
	if !md.IsDefined("http", "listen") {
		cfg.HTTP.Listen = DefaultHTTPListen
	}
	l.smtp(&cfg.SMTP)
	l.state(&cfg.State)
	if cfg.HTTP.AdminSocket == "" {
		cfg.HTTP.AdminSocket = filepath.Join(filepath.Dir(cfg.State.Path), "psagate-admin.sock")
	}
	if len(cfg.HTTP.AdminSocket) > maxSocketPath {
		l.errf("http.admin_socket", "the admin socket path %q is %d bytes; a Unix socket path may have at most %d: set a shorter http.admin_socket",
			cfg.HTTP.AdminSocket, len(cfg.HTTP.AdminSocket), maxSocketPath)
	}
	l.rules(&cfg.Rules)
	cfg.Deliver = l.deliver(raw.Deliver)
	l.log(&cfg.Log)
	l.auth(&cfg.Auth)
	l.imap(cfg.IMAP)
	l.incidents(&cfg.Incidents)
	l.quarantine(&cfg.Quarantine)

	org := l.psa("psa", raw.PSA, true)
	if org["provider"] == "" {
		org["provider"] = "log"
	}
	if _, ok := org["auto_close"]; !ok {
		org["auto_close"] = "true"
	}
	if _, ok := org["after_manual_close"]; !ok {
		org["after_manual_close"] = cfg.Incidents.AfterManualClose
	}
	cfg.PSA = org

	names := map[string]string{}
	cfg.Clients = l.clients(raw.Client, names)
	cfg.ClientsDir = raw.Clients.Dir
	if raw.Clients.Dir != "" {
		cfg.Clients = append(cfg.Clients, l.includeClients(raw.Clients.Dir, names)...)
	}
	l.expandRecipients(cfg)
	used := cfg.UsedProviders()
	for _, p := range l.pending {
		if slices.Contains(used, p.provider) {
			l.errs = append(l.errs, p.err)
		}
	}
	return cfg
}

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

// UsedProviders names the providers the org, a client or a device selects,
// sorted, each once.
func (cfg *Config) UsedProviders() []string {
	used := []string{cfg.PSA.Provider()}
	for _, c := range cfg.Clients {
		used = append(used, c.PSA.Provider())
		for _, d := range c.Device {
			used = append(used, d.PSA.Provider())
		}
	}
	slices.Sort(used)
	used = slices.Compact(used)
	if len(used) > 0 && used[0] == "" {
		used = used[1:]
	}
	return used
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

// psa flattens a [psa]-shaped table ("connectwise": {"board": ...}) into
// "connectwise.board" keys, checking every key and resolving secrets.
func (l *loader) psa(base string, m map[string]any, org bool) psa.Settings {
	out := psa.Settings{}
	known := map[string]bool{}
	for _, k := range psa.GeneralKeys {
		known[k] = true
	}
	for _, d := range psa.Registered() {
		for _, k := range d.Keys {
			known[d.Name+"."+k] = true
		}
	}
	var walk func(prefix string, v map[string]any)
	walk = func(prefix string, v map[string]any) {
		for _, k := range slices.Sorted(maps.Keys(v)) {
			full := k
			if prefix != "" {
				full = prefix + "." + k
			}
			path := base + "." + full
			if sub, ok := v[k].(map[string]any); ok {
				if _, isProv := psa.KeysOf(full); isProv && prefix == "" {
					walk(full, sub)
					continue
				}
				if psa.IsTableSetting(prefix, k) {
					l.psaTable(path, full, sub, out)
					continue
				}
				l.errf(path, "unknown key")
				continue
			}
			if psa.IsTableSetting(prefix, k) && psa.CheckTableEntry(full, "\x00") == nil {
				// A table of tenant-defined names (autotask.fields) has no
				// single-value form.
				l.errf(path, `must be a table of names and values, e.g. %s = { "Backup Vault" = "VAULT-01" }`, k)
				continue
			}
			if !known[full] {
				msg := "unknown PSA setting"
				if prov, key, ok := strings.Cut(full, "."); ok {
					if keys, isProv := psa.KeysOf(prov); isProv {
						if c := suggest.Closest(key, keys); c != "" {
							msg += fmt.Sprintf(" (did you mean %q?)", prov+"."+c)
						} else {
							msg += " (" + prov + " settings are " + strings.Join(keys, ", ") + ")"
						}
					}
				}
				l.errf(path, "%s", msg)
				continue
			}
			s, err := scalar(v[k])
			if err != nil {
				l.errf(path, "%v", err)
				continue
			}
			if psa.IsSecretKey(full) {
				if s == "" || l.noSecrets {
					continue
				}
				r, err := resolveSecret(s)
				if err != nil {
					// Only an error if that provider is used: an example config
					// may carry ConnectWise and Autotask sections while running
					// on the log provider without any credentials.
					prov, _, _ := strings.Cut(full, ".")
					l.pending = append(l.pending, pendingSecret{provider: prov, err: &Error{File: l.file, Line: l.ix.Line(path), Key: path, Msg: err.Error()}})
					continue
				}
				s = r
			}
			switch full {
			case "provider":
				if _, ok := psa.Lookup(s); !ok {
					hint := ""
					if c := suggest.Closest(s, psa.Names()); c != "" {
						hint = fmt.Sprintf(" (did you mean %q?)", c)
					}
					l.errf(path, "provider must be one of %s, not %q%s", strings.Join(psa.Names(), ", "), s, hint)
				}
			case "auto_close":
				if _, err := strconv.ParseBool(s); err != nil {
					l.errf(path, "auto_close must be true or false")
				}
			case "after_manual_close":
				if s != AfterCloseNew && s != AfterCloseReopen {
					l.errf(path, "after_manual_close must be %q or %q, not %q", AfterCloseNew, AfterCloseReopen, s)
				}
			}
			out[full] = s
			l.lines[path] = l.ix.Line(path)
		}
	}
	walk("", m)
	return out
}

// psaTable flattens a table setting (autotask.note_publish = { close =
// "All Autotask Users" }) into "autotask.note_publish.close" keys.
func (l *loader) psaTable(path, setting string, m map[string]any, out psa.Settings) {
	for _, e := range slices.Sorted(maps.Keys(m)) {
		ep := path + "." + e
		if err := psa.CheckTableEntry(setting, e); err != nil {
			l.errf(ep, "%v", err)
			continue
		}
		s, err := scalar(m[e])
		if err != nil {
			l.errf(ep, "%v", err)
			continue
		}
		out[setting+"."+e] = s
		l.lines[ep] = l.ix.Line(ep)
	}
}

// scalar renders a TOML scalar as settings text.
func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Duration:
		return x.String(), nil
	}
	return "", fmt.Errorf("must be a string, number or boolean, not %T", v)
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

// Line returns the line of a flattened PSA key at a config path such as
// "psa.connectwise.board" or "client[0].psa.connectwise.board", or 0.
func (c *Config) Line(path string) int { return c.lines[path] }

// Client returns the client with the given name (case-insensitive), or nil.
func (c *Config) Client(name string) *Client {
	for _, cl := range c.Clients {
		if strings.EqualFold(cl.Name, name) {
			return cl
		}
	}
	return nil
}

// Secrets returns every secret value in the config (PSA keys and SMTP
// passwords), so a caller can scrub them from text that might echo them.
func (c *Config) Secrets() []string {
	var out []string
	add := func(s psa.Settings) { out = append(out, s.SecretValues()...) }
	add(c.PSA)
	for _, cl := range c.Clients {
		add(cl.PSA)
		for _, d := range cl.Device {
			add(d.PSA)
		}
	}
	for _, u := range c.SMTP.Users {
		if u.Password.value != "" {
			out = append(out, psa.SecretForms(u.Password.value)...)
		}
	}
	for _, m := range c.IMAP {
		if m.Password.value != "" {
			out = append(out, psa.SecretForms(m.Password.value)...)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return slices.Compact(out)
}
