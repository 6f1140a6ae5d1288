// Package rules compiles psagate's rule files and decides, for each decoded
// alert, what to do with it: drop, reject, ticket, note, close or
// quarantine. The language is modelled on Exchange transport rules ("from
// these senders, subject contains these words → delete") with the match
// semantics of Sieve. This comment is the language's reference (docs/design.md,
// section "Rules", summarises it and says how to add a key).
//
// # Files
//
// Every *.toml file of the rules directory is read in name order (names
// starting with "." are skipped, so editor backups do not load). Each holds
// any number of [[rule]] tables:
//
//	[[rule]]
//	name = "x360recover agent connection lost"  # required, unique across all files
//	priority = 100      # lower runs first; default 1000; ties by file, then position
//	mode = "enforce"    # or "audit": decide and log, but act as if it did not match
//	stop = true         # false: keep this rule's fields and decision, go on evaluating
//	[rule.if]           # every key must hold; a list holds when any value matches
//	from = ["@axcient.net"]
//	subject_contains = ["Connection:"]
//	[rule.except]       # any key that holds skips the rule
//	subject_contains = ["restored"]
//	[rule.extract]      # named groups become fields for templates
//	device = 'Agent (?P<device>[\w.-]+)'
//	[rule.then]
//	action = "ticket"
//	summary = "{device}: agent connection lost"
//
// # Conditions
//
// Keys of [rule.if] and [rule.except]; a single value may be written
// without the list brackets.
//
//   - from: the From header address or the envelope sender (MAIL FROM).
//     Values are a full address ("alerts@example.com"), "@domain" (exactly
//     that domain, not its subdomains) or a glob where * matches any run of
//     characters and ? one character ("*@*.axcient.net").
//   - to: an envelope recipient (RCPT TO) or a To/Cc address; values as for from.
//   - sender_ip: the connecting IP address is in one of these networks
//     ("10.0.0.0/8", "2001:db8::/32") or is one of these addresses.
//   - subject_contains, body_contains: the subject / body text contains one
//     of these strings.
//   - subject_matches, body_matches: one of these RE2 regular expressions
//     matches the subject / body text.
//   - header: a table of header name → strings; each header named must be
//     present and contain one of its strings. Each header counts as its own
//     key: in [rule.except] any one of them skips the rule.
//   - has_attachment: true or false.
//   - attachment_name_matches: RE2 expressions over the attachment file names.
//   - size_over: the raw message is larger than this: bytes as an integer,
//     or a string with a unit: "512KiB", "2MB", "1.5 MB" (KB, MB, GB are
//     powers of 1000; KiB, MiB, GiB powers of 1024).
//   - client: the client psagate routed the message to is one of these names.
//   - authenticated: true or false: the sender passed authentication (DKIM
//     or SPF aligned with the From domain, as DMARC defines it; [auth]).
//   - dkim_domain: a DKIM signature of one of these domains (or a
//     subdomain) verified.
//   - extracted: the rule's own [rule.extract] sets one of these fields (a
//     non-empty value). A ticket or close rule that says extracted =
//     ["device"] never decides a mail it cannot key by device: such mail
//     goes on to the next rule rather than sharing "{client}//{check}" with
//     every other device of the client.
//
// A rule's require_auth (beside name and priority) lists vendor domains:
// a mail this rule decides that claims one of them (From or envelope
// sender in that domain) but did not pass authentication is quarantined
// instead, so a forged "backup succeeded" never closes a ticket.
//
// All text matching ignores case, Unicode-aware. The _contains keys are
// plain substrings compared under full Unicode case folding, so "Büro"
// matches "BÜRO" and "straße" matches "STRASSE". The _matches keys (and the
// extract expressions) are RE2 compiled case-insensitively, as if they
// began with (?i); RE2 folds single characters only ("ß" does not match
// "SS"), and (?-i) turns case sensitivity back on inside an expression.
//
// # Extraction and templates
//
// [rule.extract] maps a name to an RE2 expression, or a list of them, that
// runs against the subject and, when it does not match there, the body. A
// list is tried in order and the first expression that sets a field wins,
// so a reliable shape ("Computer: X" line) can come before a loose one ("on
// X" in the subject), whatever their positions in the text. Every named group
// that matched a non-empty text becomes a field; an expression without named
// groups sets the field named by its key to its first group, or to the whole
// match. Values are made one line and trimmed. Fields accumulate along a
// chain of stop = false rules; a later rule's value of the same field wins.
//
// Templates (key, summary, description, note) use {field} placeholders;
// {{ and }} are literal braces. Besides extracted fields these are always
// available: client, device (empty unless extracted), check, rule, subject,
// from, from_name, to (the first envelope recipient), sender_ip, date (RFC
// 3339, of the Date header or else the time received), message_id, size and
// body. A template may name only those, fields its own rule extracts and
// fields extracted by an enforce-mode stop = false rule that runs before it.
//
// # Evaluation
//
// Rules run in order. A rule matches when all its conditions hold and none
// of its exceptions does. An audit-mode rule that matches is recorded in
// Decision.Audit and otherwise ignored. The first enforce-mode rule that
// matches decides, unless it says stop = false: then its fields are kept,
// its decision is provisional and evaluation goes on; a later matching rule
// decides instead (and its own stop applies). A message no rule decides gets
// Options.DefaultAction with the subject as summary.
//
// Evaluation runs inside the SMTP DATA command, so it is built for speed
// (about 10 µs for a typical alert against 1,000 rules on one core): rules
// are pre-indexed by their sender addresses and subject literals so that
// only candidates are evaluated (index.go); the literals of every _contains
// list and the literals every regular expression requires are found with one
// Aho-Corasick scan per text that folds case as it reads; regular expressions
// run only when their literals are present and at most once per message;
// and within a rule the cheap conditions are checked first.
package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Action is what a decision does with the message. It is psagate's one
// decision vocabulary: the rule file's `action`, the verdict spooled with a
// message, the incident engine's input and outcome, the audit record of a
// message, `try` output and the "decision" metric label all use these
// values. What the incident engine then did (opened, noted, held ...) is an
// incident.Effect. Two words outside it are not decisions about a message:
// "admin" marks the audit record of an admin's action (silence, release,
// forget ...), and psagate_rule_matches_total counts a matching audit-mode
// rule (which decides nothing) as action "audit".
type Action string

// The actions.
const (
	ActionDrop       Action = "drop"       // accept with 250 and discard
	ActionReject     Action = "reject"     // refuse with 550 and the rule's text
	ActionTicket     Action = "ticket"     // open (or note) the incident's ticket
	ActionNote       Action = "note"       // add a note to the open ticket of the key
	ActionClose      Action = "close"      // close the open incident of the key
	ActionQuarantine Action = "quarantine" // keep for an admin, no PSA call
)

// Actions lists every action, in the order messages name them.
var Actions = []Action{ActionDrop, ActionReject, ActionTicket, ActionNote, ActionClose, ActionQuarantine}

// Rule modes.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"
)

// Repeat policies of a ticket rule: what a repeat of an open problem does.
const (
	RepeatNote   = "note"   // add a note to the open ticket
	RepeatIgnore = "ignore" // count it, change nothing in the PSA
	RepeatNew    = "new"    // open another ticket
)

// DefaultPriority is the priority of a rule that gives none.
const DefaultPriority = 1000

// Builtins are the fields every template may use.
var Builtins = []string{"client", "device", "check", "rule", "subject", "from", "from_name", "to", "sender_ip", "date", "message_id", "size", "body"}

// Options change how a rule set is compiled.
type Options struct {
	// DefaultAction is the action of a message no rule decides; "" means
	// ticket, so an unknown alert is never silently lost.
	DefaultAction Action
}

// File is one rule file's content. Name is how errors refer to it, e.g.
// "rules/veeam.toml".
type File struct {
	Name string
	Data []byte
}

// Rule is one compiled [[rule]]. Rules are shared by every evaluation:
// treat them as read-only.
type Rule struct {
	Name     string
	File     string
	Line     int // of the [[rule]] header
	Priority int
	Mode     string // ModeEnforce or ModeAudit
	Stop     bool
	// RequireAuth lists vendor domains: when this rule decides a mail
	// that claims one of them without passing sender authentication, the
	// mail is quarantined instead.
	RequireAuth []string
	Then        *Then
	Fields      []string // the fields [rule.extract] can set, sorted

	pos      int // position in its file
	fileIdx  int
	ifs      []*cond // in evaluation order (cheapest first)
	excepts  []*cond
	extracts []*extractor
	tpls     []namedTemplate // for the field check after ordering
	keyLine  int             // of then.key, else of then.action: where a key problem is reported
}

// Then is what a rule does when it decides. Templates are nil when the rule
// does not set them and the caller's default applies: Description (the
// message text), Note (a standard repeat/recovery note). Key and Summary are
// always set on a rule's Then; on the default decision's Then Key is nil.
type Then struct {
	Action      Action
	Key         *Template // correlation key; default "{client}/{device}/{check}"
	Summary     *Template // ticket summary; default "{subject}"
	Description *Template
	Note        *Template     // text of the note a note, close (or repeated ticket) adds
	Text        string        // reject reply text
	Check       string        // the kind of problem, e.g. "backup"; default the rule name
	Delay       time.Duration // ticket: hold-down before opening
	Reopen      time.Duration // ticket: reopen the last closed ticket of the key within this
	Expect      time.Duration // a matching mail is expected at least this often per client/device
	Repeat      string        // ticket: RepeatNote (default), RepeatIgnore or RepeatNew
	Attach      bool          // upload the attachments to the ticket
	// AfterManualClose overrides the after_manual_close policy: "new" or
	// "reopen" after a technician closed the ticket.
	AfterManualClose string
	// Severity ranks the problem ("warning" < "failure" < "critical");
	// EscalatePriority raises an open ticket's priority to this rule's
	// when this rule reports a more severe problem for the same key.
	Severity         string
	EscalatePriority bool
	// PSA holds overrides of the effective PSA settings, flattened
	// ("connectwise.board"). Never credentials or connection settings.
	PSA map[string]string
}

// Severities are the values of a rule's severity, least severe first.
var Severities = []string{"info", "warning", "failure", "critical"}

// SeverityRank orders severities: 0 for none or unknown, then 1, 2 ...
func SeverityRank(s string) int {
	for i, v := range Severities {
		if v == s {
			return i + 1
		}
	}
	return 0
}

// Set is a compiled, ordered rule set. It is immutable and safe for
// concurrent use.
type Set struct {
	rules  []*Rule
	def    *Then
	subjAC *acMachine
	bodyAC *acMachine
	nre    int
	pool   sync.Pool

	// The rule index (index.go).
	ungated     []uint64 // rules without a gate: always candidates
	gated       int
	fromIx      *addrIndex
	toIx        *addrIndex
	subjGate    [][]int32 // subject literal id → rules gated on it
	hasSubjGate bool
}

// Rules returns the rules in evaluation order.
func (s *Set) Rules() []*Rule {
	if s == nil {
		return nil
	}
	return slices.Clone(s.rules)
}

// DefaultThen is what a message no rule decides gets.
func (s *Set) DefaultThen() *Then { return s.def }

// Load compiles every *.toml file in dir, in name order. Files whose name
// starts with "." are skipped (editor lock and backup files).
func Load(dir string, opt Options) (*Set, error) {
	names, err := ruleFiles(dir)
	if err != nil {
		return nil, &LoadError{Errs: []*Error{{File: dir, Msg: fmt.Sprintf("cannot read the rule directory: %v", unwrapPath(err))}}}
	}
	var files, all []File
	var errs []*Error
	for _, n := range names {
		p := filepath.Join(dir, n)
		all = append(all, File{Name: p})
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, &Error{File: p, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))})
			continue
		}
		files = append(files, File{Name: p, Data: data})
	}
	s, err := Compile(files, opt)
	if len(errs) > 0 {
		var le *LoadError
		if errors.As(err, &le) {
			errs = append(errs, le.Errs...)
		}
		sortErrors(errs, all)
		return nil, &LoadError{Errs: errs}
	}
	return s, err
}

// ruleFiles lists the names of the rule files in dir, sorted.
func ruleFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".toml") || strings.HasPrefix(n, ".") {
			continue
		}
		// Follow symlinks (a Kubernetes ConfigMap is a tree of them) but
		// skip directories that happen to end in .toml.
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && fi.IsDir() {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// unwrapPath drops the path from an *os.PathError: the Error already names
// the file.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Compile compiles files, in the given order, into a rule set. When any
// file has a problem it returns a *LoadError listing all of them.
func Compile(files []File, opt Options) (*Set, error) {
	c := newCompiler()
	def := opt.DefaultAction
	if def == "" {
		def = ActionTicket
	}
	if !slices.Contains(Actions, def) {
		c.errs = append(c.errs, &Error{Msg: fmt.Sprintf("default action %q is not an action (one of %s)", def, actionList())})
	}
	for i, f := range files {
		c.file(i, f)
	}
	c.checkNames()
	sort.SliceStable(c.rules, func(i, j int) bool {
		a, b := c.rules[i], c.rules[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		if a.fileIdx != b.fileIdx {
			return a.fileIdx < b.fileIdx
		}
		return a.pos < b.pos
	})
	c.checkTemplates()
	if len(c.errs) > 0 {
		sortErrors(c.errs, files)
		return nil, &LoadError{Errs: c.errs}
	}
	s := &Set{
		rules:  c.rules,
		subjAC: c.subj.build(),
		bodyAC: c.body.build(),
		nre:    len(c.regexes),
		def:    &Then{Action: def, Summary: mustTemplate("{subject}")},
	}
	if def == ActionTicket {
		s.def.Repeat = RepeatNote
	}
	s.buildIndex()
	s.pool.New = func() any { return newState(s) }
	return s, nil
}

func actionList() string {
	parts := make([]string, len(Actions))
	for i, a := range Actions {
		parts[i] = string(a)
	}
	return strings.Join(parts, ", ")
}

// UsesAuth reports whether a rule needs the sender authentication result:
// it has require_auth or tests authenticated or dkim_domain.
func (s *Set) UsesAuth() bool {
	if s == nil {
		return false
	}
	for _, r := range s.rules {
		if len(r.RequireAuth) > 0 {
			return true
		}
		for _, c := range slices.Concat(r.ifs, r.excepts) {
			if c.kind == kAuthenticated || c.kind == kDKIMDomain {
				return true
			}
		}
	}
	return false
}
