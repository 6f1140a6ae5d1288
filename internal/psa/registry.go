package psa

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
)

// Descriptor is everything the rest of psagate knows about one provider.
// Each provider package registers one from its init function (the way a
// Caddy module registers itself), so the config loader, the rule compiler,
// the CLI and the app iterate the registry and never name a provider.
// Adding a PSA is a new package plus one import line in
// internal/psa/builtin (docs/design.md, "Adding a PSA").
type Descriptor struct {
	// Name is the provider's word everywhere: [psa] provider = NAME, the
	// [psa.NAME] section, [deliver.NAME], metric labels, ticket references.
	Name string
	// Title is how the PSA calls itself, for messages to humans.
	Title string
	// Keys are the settings of the [psa.NAME] section. The config loader
	// refuses any other key, so a typo is an error at its line.
	Keys []string
	// Secrets are the keys among Keys that hold credentials: resolved from
	// env:/file:, redacted in every output, never settable by a rule.
	Secrets []string
	// Tables are the keys among Keys that may also be written as a TOML
	// table, each entry becoming its own flattened key
	// ("autotask.note_publish.close", "autotask.fields.Backup Vault"), with
	// the entry names allowed (nil: any name, tenant-defined).
	Tables map[string][]string
	// Connection are the keys among Keys that select the PSA instance or the
	// login (not ticket fields): a rule may not set them and `try` does not
	// show them.
	Connection []string
	// DerivedSecrets returns forms the PSA builds from the secrets (such as
	// an authorization token) so they are scrubbed from text too. May be nil.
	DerivedSecrets func(Settings) []string
	// Limits are the delivery defaults for [deliver.NAME].
	Limits Limits
	// New builds the provider. It should also implement Checker when the
	// PSA can be tested and looked up.
	New func(Env) Provider
	// Fake, when set, starts the provider's fake PSA on listen for
	// `psagate psa fake NAME`: a rehearsal tenant for an admin without keys.
	Fake func(listen string) (*FakeServer, error)
}

// FakeServer is a running fake PSA.
type FakeServer struct {
	Settings Settings // the settings that reach it, keyed "NAME.key"
	About    string   // what the fake holds, for the admin
	Close    func()
}

// Limits are a provider's delivery defaults and hard limits.
type Limits struct {
	Concurrency   int     // concurrent calls by default
	RatePerMinute float64 // calls a minute by default; 0 = unlimited
	// MaxConcurrency, when set, is the most concurrent calls the PSA allows
	// per integration; a config asking for more is refused with
	// MaxConcurrencyWhy.
	MaxConcurrency    int
	MaxConcurrencyWhy string
}

// Env is what a provider is built with.
type Env struct {
	HTTPClient *http.Client // nil: the provider's own default client
	Logger     *slog.Logger // never nil
	Out        io.Writer    // where a provider that only writes (log) writes
}

// GeneralKeys are settings of the [psa] section shared by every provider.
var GeneralKeys = []string{"provider", "auto_close", "after_manual_close"}

var (
	regMu    sync.RWMutex
	registry = map[string]Descriptor{}
)

// Register adds a provider. It panics on a duplicate or incomplete
// descriptor: that is a programming error found at start-up.
func Register(d Descriptor) {
	if d.Name == "" || d.New == nil {
		panic("psa: Register needs a Name and a New function")
	}
	for _, k := range append(slices.Clone(d.Secrets), d.Connection...) {
		if !slices.Contains(d.Keys, k) {
			panic(fmt.Sprintf("psa: provider %s lists %q as a secret or connection key but not in Keys", d.Name, k))
		}
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[d.Name]; dup {
		panic("psa: provider " + d.Name + " registered twice")
	}
	registry[d.Name] = d
}

// Lookup returns the registered provider called name.
func Lookup(name string) (Descriptor, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	d, ok := registry[name]
	return d, ok
}

// Registered returns every registered provider, by name.
func Registered() []Descriptor {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]Descriptor, 0, len(registry))
	for _, d := range registry {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names returns the registered provider names, sorted.
func Names() []string {
	var out []string
	for _, d := range Registered() {
		out = append(out, d.Name)
	}
	return out
}

// KeysOf returns the settings of provider name, and whether it is registered.
func KeysOf(name string) ([]string, bool) {
	d, ok := Lookup(name)
	return d.Keys, ok
}

// IsSecretKey reports whether the flattened key ("autotask.secret") holds
// a secret.
func IsSecretKey(key string) bool {
	prov, k, ok := cutKey(key)
	if !ok {
		return false
	}
	d, ok := Lookup(prov)
	return ok && slices.Contains(d.Secrets, k)
}

// IsConnectionKey reports whether the flattened key selects the PSA
// instance or login rather than a ticket field.
func IsConnectionKey(key string) bool {
	prov, k, ok := cutKey(key)
	if !ok {
		return false
	}
	d, ok := Lookup(prov)
	return ok && slices.Contains(d.Connection, k)
}

// TicketKeys are the keys of d that shape a ticket: neither secrets, nor
// connection settings, nor the call timeout.
func (d Descriptor) TicketKeys() []string {
	var out []string
	for _, k := range d.Keys {
		if k == "timeout" || slices.Contains(d.Secrets, k) || slices.Contains(d.Connection, k) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// NewAll builds one instance of every registered provider.
func NewAll(env Env) map[string]Provider {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	if env.Out == nil {
		env.Out = io.Discard
	}
	out := map[string]Provider{}
	for _, d := range Registered() {
		e := env
		e.Logger = env.Logger.With("provider", d.Name)
		out[d.Name] = d.New(e)
	}
	return out
}

func cutKey(key string) (prov, k string, ok bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '.' {
			return key[:i], key[i+1:], true
		}
	}
	return "", "", false
}
