// Package psa defines what psagate asks of a ticket system: the Provider
// interface, the provider-neutral ticket model, the effective settings a call
// is made with, and the classification of failures (transient, permanent,
// authentication) that the delivery workers act on.
//
// The providers themselves live in sub-packages that register a Descriptor
// (registry.go); internal/psa/builtin imports the ones psagate ships.
package psa

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Settings are the effective PSA settings for one call, flattened to
// "section.key" names: "provider", "auto_close", "connectwise.board",
// "autotask.queue_id" ... Values are text (numbers and booleans in their TOML
// spelling). Secret values are the resolved secrets: never print a Settings
// without Redacted.
type Settings map[string]string

// Get returns the value of key, or "".
func (s Settings) Get(key string) string { return s[key] }

// Provider is the name of the provider the settings select.
func (s Settings) Provider() string { return s["provider"] }

// Bool returns the boolean value of key, or def when unset or unparsable.
func (s Settings) Bool(key string, def bool) bool {
	v, err := strconv.ParseBool(s[key])
	if err != nil {
		return def
	}
	return v
}

// Int returns the integer value of key, or def when unset or not a number.
func (s Settings) Int(key string, def int) int {
	v, err := strconv.Atoi(strings.TrimSpace(s[key]))
	if err != nil {
		return def
	}
	return v
}

// Section returns the keys of one provider ("connectwise") without the prefix.
func (s Settings) Section(provider string) map[string]string {
	out := map[string]string{}
	p := provider + "."
	for k, v := range s {
		if rest, ok := strings.CutPrefix(k, p); ok {
			out[rest] = v
		}
	}
	return out
}

// Redacted returns a copy with every secret value replaced by "[redacted]".
func (s Settings) Redacted() Settings {
	out := maps.Clone(s)
	for k, v := range out {
		if IsSecretKey(k) && v != "" {
			out[k] = "[redacted]"
		}
	}
	return out
}

// String prints the redacted settings in key order.
func (s Settings) String() string {
	r := s.Redacted()
	keys := slices.Sorted(maps.Keys(r))
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%q", k, r[k])
	}
	return b.String()
}

// LogValue keeps secrets out of slog output even when a Settings is logged whole.
func (s Settings) LogValue() slog.Value { return slog.StringValue(s.String()) }

// NotePurposes are the kinds of note a per-kind setting can address:
// "default" for any note without its own entry, "repeat" for a repeated
// alert, "note" for an update a rule asked for, "internal" for notes
// psagate writes about itself (attachments it could not upload), "close"
// for the resolution note and "reopen" for the note of a reopened ticket.
var NotePurposes = []string{"default", "repeat", "note", "internal", "close", "reopen"}

// TableKey splits a flattened key of a table setting ("autotask.fields.X",
// see Descriptor.Tables) into its setting ("autotask.fields") and entry
// ("X"). ok is false for any other key.
func TableKey(full string) (setting, entry string, ok bool) {
	prov, rest, found := strings.Cut(full, ".")
	if !found {
		return "", "", false
	}
	name, entry, found := strings.Cut(rest, ".")
	if !found || entry == "" {
		return "", "", false
	}
	d, known := Lookup(prov)
	if _, isTable := d.Tables[name]; !known || !isTable {
		return "", "", false
	}
	return prov + "." + name, entry, true
}

// IsTableSetting reports whether key ("fields") of provider prov may be
// written as a table.
func IsTableSetting(prov, key string) bool {
	d, ok := Lookup(prov)
	_, isTable := d.Tables[key]
	return ok && isTable
}

// CheckTableEntry reports whether entry is allowed in the table setting
// ("autotask.note_publish"), with a message saying what is.
func CheckTableEntry(setting, entry string) error {
	prov, name, _ := strings.Cut(setting, ".")
	d, _ := Lookup(prov)
	allowed, ok := d.Tables[name]
	if !ok {
		return fmt.Errorf("%s is not a table setting", setting)
	}
	if allowed == nil || slices.Contains(allowed, entry) {
		return nil
	}
	return fmt.Errorf("%s has no entry %q; entries are %s", setting, entry, strings.Join(allowed, ", "))
}

// Table returns the entries of a table setting ("autotask.fields") by name.
func (s Settings) Table(setting string) map[string]string {
	out := map[string]string{}
	p := setting + "."
	for k, v := range s {
		if rest, ok := strings.CutPrefix(k, p); ok && rest != "" {
			out[rest] = v
		}
	}
	return out
}

// SecretValues returns the non-empty secret values of s and the forms in
// which a library or a PSA might echo them (base64, URL-escaped, JSON- and
// Go-quoted, and the provider's derived tokens), longest first, so a caller can
// scrub them from any text.
func (s Settings) SecretValues() []string {
	var raw []string
	for k, v := range s {
		if IsSecretKey(k) && v != "" {
			raw = append(raw, v)
		}
	}
	// Every provider's, not only the selected one's: a scope's settings
	// carry the sections of all of them.
	for _, d := range Registered() {
		if d.DerivedSecrets != nil {
			raw = append(raw, d.DerivedSecrets(s)...)
		}
	}
	return SecretForms(raw...)
}

// SecretForms returns each value with its encoded forms, longest first and
// without duplicates.
func SecretForms(values ...string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(v string) {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, v := range values {
		add(v)
		add(base64.StdEncoding.EncodeToString([]byte(v)))
		add(base64.RawStdEncoding.EncodeToString([]byte(v)))
		add(base64.URLEncoding.EncodeToString([]byte(v)))
		add(base64.RawURLEncoding.EncodeToString([]byte(v)))
		add(url.QueryEscape(v))
		add(url.PathEscape(v))
		q := strconv.Quote(v)
		add(q[1 : len(q)-1])
		if j, err := json.Marshal(v); err == nil {
			add(string(j[1 : len(j)-1]))
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// RedactURL returns a URL-like setting with any user and password removed,
// for messages that must show the setting.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 && strings.Contains(raw[:i], ":") {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				return raw[:j+3] + "[redacted]@" + raw[i+1:]
			}
			return "[redacted]@" + raw[i+1:]
		}
		return raw
	}
	u.User = url.User("[redacted]")
	return strings.Replace(u.String(), "%5Bredacted%5D", "[redacted]", 1)
}

// Scrub replaces every occurrence of a secret of s in text with "[redacted]".
func (s Settings) Scrub(text string) string {
	for _, v := range s.SecretValues() {
		if len(v) >= 4 { // a one-letter "secret" would blank out ordinary words
			text = strings.ReplaceAll(text, v, "[redacted]")
		}
	}
	return text
}

// TicketRef identifies a ticket in a provider.
type TicketRef struct {
	Provider string `json:"provider"`
	ID       string `json:"id"`               // the provider's record id, as text
	Number   string `json:"number,omitempty"` // the human ticket number where the PSA has one (Autotask T20250211.0001)
}

func (r TicketRef) String() string {
	if r.Number != "" {
		return r.Provider + ":" + r.ID + " (" + r.Number + ")"
	}
	return r.Provider + ":" + r.ID
}

// IsZero reports whether no ticket is referenced.
func (r TicketRef) IsZero() bool { return r.ID == "" }

// Ticket is a ticket to open. Company, board, queue, status, type, priority
// and contact come from the Call's Settings, never from the mail.
type Ticket struct {
	Summary     string // one line; the provider cuts it to its limit at a rune boundary
	Description string // the full alert text
	// ExternalRef is unique to the incident and stable across retries. The
	// provider stores it (cut to its field limit, keeping it unique) and
	// searches for it before a retried create, so a retry never makes a
	// second ticket.
	ExternalRef string
	Key         string // the incident key, for humans and the log provider
	Client      string // the psagate client name
	Device      string
}

// NoteKind says where a note shows in the PSA.
type NoteKind string

const (
	NoteDiscussion NoteKind = "discussion" // visible detail / discussion (default)
	NoteInternal   NoteKind = "internal"
	NoteResolution NoteKind = "resolution"
	// NoteRepeat is a repeat of an alert whose ticket is open. Providers
	// that do not tell it apart show it like NoteDiscussion.
	NoteRepeat NoteKind = "repeat"
)

// Note is text added to an existing ticket.
type Note struct {
	Title string // short title where the PSA has one (Autotask); may be empty
	Text  string
	Kind  NoteKind
	// Marker is unique to the job. The provider embeds it in the note (a
	// trailing "psagate-ref: ..." line) and, on a retried call, looks for a
	// note carrying it before writing again.
	Marker string
}

// Attachment is a file to upload to a ticket.
type Attachment struct {
	Name        string
	ContentType string
	Data        []byte
	Marker      string // as for Note: lets a retried upload find an earlier copy
}

// Call carries what every provider call needs besides its payload.
type Call struct {
	Settings Settings
	// Retry is true when an earlier attempt of the same job may have reached
	// the PSA (it was started and its outcome was not recorded). The provider
	// must then look for the earlier effect (external ref, marker) before
	// writing again.
	Retry bool
}

// Provider is a ticket system.
type Provider interface {
	Name() string
	// Create opens a ticket and returns its reference.
	Create(ctx context.Context, c Call, t Ticket) (TicketRef, error)
	// AddNote adds a note to a ticket.
	AddNote(ctx context.Context, c Call, ref TicketRef, n Note) error
	// Attach uploads a file to a ticket. A file the PSA cannot take (too
	// large, type refused) should become a note saying so rather than an error.
	Attach(ctx context.Context, c Call, ref TicketRef, a Attachment) error
	// Close adds the resolution note and moves the ticket to a closed status.
	// Closing a ticket that is already closed succeeds.
	Close(ctx context.Context, c Call, ref TicketRef, resolution Note) error
	// Reopen moves a closed ticket back to the configured open status and adds
	// the note.
	Reopen(ctx context.Context, c Call, ref TicketRef, n Note) error
}

// Checker is implemented by providers that can test their configuration and
// list the values an admin may choose from.
type Checker interface {
	// Validate checks the settings without a network call (site format,
	// missing credentials). Each problem is its own error.
	Validate(s Settings) []error
	// Test is the "Test It" button: it writes one line per step to out and
	// returns nil only when the connection works and every configured name
	// resolves ("Connection Succeeded").
	Test(ctx context.Context, s Settings, out io.Writer) error
	// Lookup lists values of one kind ("boards", "queues", "priorities" ...).
	Lookup(ctx context.Context, s Settings, what string) ([]Value, error)
	// Probe makes one cheap authenticated call; the delivery workers use it
	// to learn when a provider paused for bad credentials works again.
	Probe(ctx context.Context, s Settings) error
}

// Value is one row of a lookup.
type Value struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Detail string `json:"detail,omitempty"`
}

// Kind classifies a failure by what the delivery worker should do next.
type Kind int

const (
	// Transient failures (timeouts, resets, 5xx, 429) are retried with backoff.
	Transient Kind = iota
	// Permanent failures (validation, unknown company) will fail again the
	// same way: the job goes to the dead letters with the PSA's message.
	Permanent
	// Auth failures (401/403, bad keys) pause the provider until a probe works.
	Auth
)

func (k Kind) String() string {
	switch k {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Auth:
		return "auth"
	}
	return "unknown"
}

// Error is a classified provider failure. Message is the PSA's own
// explanation (sanitised, secrets removed) plus what to do about it.
type Error struct {
	Provider   string
	Op         string // create, note, attach, close, reopen, lookup, test
	Kind       Kind
	Status     int           // HTTP status, 0 for network errors
	RetryAfter time.Duration // from Retry-After, 0 if none
	Field      string        // the offending field of a validation error
	// Reason names the failure for humans and metrics ("validation",
	// "auth", "threshold", "server", "network" ...); "" when unknown.
	Reason  string
	Message string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Provider)
	if e.Op != "" {
		b.WriteString(" " + e.Op)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Field != "" {
		b.WriteString(": field " + e.Field)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil && e.Message == "" {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf classifies any error. Errors that are not *Error are transient when
// they look like network trouble or a deadline, permanent otherwise: an error
// nobody classified is a bug, and retrying it for a day only hides it.
func KindOf(err error) Kind {
	if err == nil {
		return Transient
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return Transient
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return Transient
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return Transient
	}
	return Permanent
}

// Reasons of *Error.Reason.
const (
	ReasonValidation = "validation" // the PSA refused a value or a missing field: fix the config
	ReasonPermission = "permission" // the API user may read but not do this
	ReasonServer     = "server"     // a server fault without a validation message: retried
)

// ReasonOf is the reason label of err: its Reason, else its kind.
func ReasonOf(err error) string {
	var pe *Error
	if errors.As(err, &pe) && pe.Reason != "" {
		return pe.Reason
	}
	return KindOf(err).String()
}

// RetryAfterOf returns the Retry-After the PSA asked for, or 0.
func RetryAfterOf(err error) time.Duration {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	return 0
}

// ParseRetryAfter reads a Retry-After header: delta seconds or an HTTP date.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v) // the three HTTP-date forms, in GMT
	if err != nil {
		t, err = time.Parse(time.RFC1123, v) // the same with another zone name
	}
	if err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// MarkerLine is the line a provider appends to a note so that a retried call
// can recognise an earlier copy.
func MarkerLine(marker string) string { return "psagate-ref: " + marker }
