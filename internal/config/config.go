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
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
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
