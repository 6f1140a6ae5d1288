// Package gateway joins psagate's stages into the path of one message:
// decode (message), route (client), rules (decision), render (key, summary,
// texts), then either answer at once (drop, reject) or spool the message
// and its verdict durably; a worker then runs the incident engine over the
// spool and queues the PSA jobs that package deliver sends.
//
// The same code serves `psagate serve` and `psagate try`: try runs Decide
// and Process against a scratch database and a clock taken from each
// message's Date, so an admin sees exactly what the gateway would do.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strings"
	"time"

	"psagate/internal/auth"
	"psagate/internal/config"
	"psagate/internal/message"
	"psagate/internal/route"
	"psagate/internal/rules"
	"psagate/internal/sanitize"
	"psagate/internal/store"
)

// BuiltinDefault and BuiltinInjection name decisions no admin rule made.
const (
	BuiltinDefault   = "(default action)"
	BuiltinInjection = "(header injection check)"
)

// VerdictVersion is the version of the verdict record written beside each
// spooled message. A record from a newer psagate is not guessed at: the
// message is quarantined with the reason.
const VerdictVersion = 1

// Verdict is the decision made while DATA is open. It is stored with the
// spooled message (JSON, with a version), so a message decided under one
// rule set finishes under it even if the rules are reloaded meanwhile.
type Verdict struct {
	Version     int               `json:"version,omitempty"` // 0: written before versions, read as 1
	ID          string            `json:"id"`
	Action      rules.Action      `json:"action"`
	Rule        string            `json:"rule"`
	RuleFile    string            `json:"rule_file,omitempty"`
	Audit       []string          `json:"audit,omitempty"`
	Client      string            `json:"client"`
	Device      string            `json:"device,omitempty"`
	Check       string            `json:"check,omitempty"`
	Key         string            `json:"key,omitempty"`
	Summary     string            `json:"summary,omitempty"`
	Description string            `json:"description,omitempty"`
	NoteText    string            `json:"note_text,omitempty"`
	RejectText  string            `json:"reject_text,omitempty"`
	Repeat      string            `json:"repeat,omitempty"`
	Delay       time.Duration     `json:"delay,omitempty"`
	Reopen      time.Duration     `json:"reopen,omitempty"`
	Expect      time.Duration     `json:"expect,omitempty"`
	Attach      bool              `json:"attach,omitempty"`
	Overrides   map[string]string `json:"overrides,omitempty"`
	Fields      map[string]string `json:"fields,omitempty"`
	Subject     string            `json:"subject"`
	From        string            `json:"from,omitempty"`
	HeaderMsgID string            `json:"header_message_id,omitempty"`
	Problems    []string          `json:"problems,omitempty"`
	Attachments int               `json:"attachments,omitempty"`
	// Copies are the clients a mail addressed to several was decided for,
	// one verdict (and one spooled copy) each.
	Copies []string `json:"copies,omitempty"`
	// Notes say what the SMTP layer changed in the message (long header
	// lines folded); the audit entry carries them.
	Notes []string `json:"notes,omitempty"`
	// Auth is the Authentication-Results view of the message ("" when
	// [auth] is off).
	Auth string `json:"auth,omitempty"`

	AfterManualClose string `json:"after_manual_close,omitempty"`
	Severity         string `json:"severity,omitempty"`
	Escalate         bool   `json:"escalate_priority,omitempty"`

	// Guard says why a safety check (safety.go) quarantined a message the
	// rule had decided otherwise; Was is that decision. Both are empty
	// when the rule's decision stands.
	Guard string       `json:"guard,omitempty"`
	Was   rules.Action `json:"was,omitempty"`
}

// timeStamp matches the dates and times mail subjects carry: ISO and
// local dates (2026-12-07, 07.12.2026, 12/7/26), clock times (03:00,
// 3:00:59 PM), ISO date-times with zones.
var timeStamp = regexp.MustCompile(`(?i)\b\d{1,4}[-./]\d{1,2}[-./]\d{1,4}(?:[t ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2}|\s*[ap]\.?m\.?)?)?\b|\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?\b`)

// subjectKey is the subject as part of an incident key: without dates and
// times, white space collapsed, case folded.
func subjectKey(subject string) string {
	s := timeStamp.ReplaceAllString(subject, "")
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

func encodeVerdict(v *Verdict) ([]byte, error) {
	v.Version = VerdictVersion
	return json.Marshal(v)
}

func decodeVerdict(b []byte) (*Verdict, error) {
	var v Verdict
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	if v.Version > VerdictVersion {
		return nil, fmt.Errorf("verdict record version %d is newer than this psagate reads (%d)", v.Version, VerdictVersion)
	}
	return &v, nil
}

// Snapshot is one consistent configuration: config, rules and the router
// over its clients. It is replaced whole on reload.
type Snapshot struct {
	Config *config.Config
	Rules  *rules.Set
	Router *route.Router
	// NeedsAuth: sender authentication runs on every message ([auth]
	// enabled, or a require_auth, or a rule testing its result).
	NeedsAuth bool
}

// NewSnapshot builds a snapshot.
func NewSnapshot(cfg *config.Config, rs *rules.Set) *Snapshot {
	return &Snapshot{Config: cfg, Rules: rs, Router: route.New(cfg), NeedsAuth: cfg.AuthNeeded() || rs.UsesAuth()}
}

// Limits returns the MIME decoding limits of the config.
func (s *Snapshot) Limits() message.Limits {
	return message.Limits{MaxParts: s.Config.SMTP.MaxMIMEParts, MaxDepth: s.Config.SMTP.MaxMIMEDepth, MaxHeaders: s.Config.SMTP.MaxHeaders}
}

// NewID returns a message id: sortable by time, unique, short enough for
// an SMTP reply and a log line.
func NewID(now time.Time) string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Decide decodes raw and decides what to do with it. It has no side
// effects and authenticates no sender (see DecideAuth).
func (s *Snapshot) Decide(id string, raw []byte, env message.Envelope) (*Verdict, *message.Alert, []rules.Trace) {
	return s.DecideAuth(context.Background(), nil, id, raw, env)
}

// DecideAuth is Decide that first authenticates the sender with ac when
// the snapshot needs it (DNS questions, cached); ac may be nil.
func (s *Snapshot) DecideAuth(ctx context.Context, ac *auth.Checker, id string, raw []byte, env message.Envelope) (*Verdict, *message.Alert, []rules.Trace) {
	a := message.Decode(raw, env, s.Limits())
	s.Authenticate(ctx, ac, a, raw)
	v, tr := s.DecideAlert(id, a, false)
	return v, a, tr
}

// Authenticate sets a.Auth when the snapshot needs sender authentication.
func (s *Snapshot) Authenticate(ctx context.Context, ac *auth.Checker, a *message.Alert, raw []byte) {
	if ac == nil || !s.NeedsAuth {
		return
	}
	a.Auth = ac.Check(ctx, auth.Input{Raw: raw, IP: a.RemoteIP, Helo: a.Helo, MailFrom: a.MailFrom, From: a.From})
}

// BuiltinAuth names the decision of a require_auth list.
const BuiltinAuth = "(sender authentication)"

// requireAuth quarantines a mail that claims a vendor domain listed in
// require_auth (of its client or of the deciding rules) without passing
// authentication. Drops and rejects stand: they act on nothing.
func (s *Snapshot) requireAuth(v *Verdict, a *message.Alert, d rules.Decision) {
	if v.Action == rules.ActionDrop || v.Action == rules.ActionReject || v.Action == rules.ActionQuarantine {
		return
	}
	var lists [][]string
	if c := s.Config.Client(v.Client); c != nil {
		lists = append(lists, c.RequireAuth)
	}
	for _, r := range d.Matched {
		lists = append(lists, r.RequireAuth)
	}
	for _, l := range lists {
		for _, dom := range l {
			if !a.ClaimsDomain(dom) || (a.Auth != nil && a.Auth.Authenticated) {
				continue
			}
			why := "sender authentication did not run"
			if a.Auth != nil {
				why = a.Auth.Header
			}
			v.Problems = append(v.Problems, fmt.Sprintf("auth: claims %s without an aligned DKIM or SPF pass (would have been %s by rule %q): %s", dom, v.Action, v.Rule, why))
			v.Action, v.Rule, v.RuleFile = rules.ActionQuarantine, BuiltinAuth, ""
			return
		}
	}
}

// DecideAlert is Decide for a decoded message; explain also returns the
// rule trace.
func (s *Snapshot) DecideAlert(id string, a *message.Alert, explain bool) (*Verdict, []rules.Trace) {
	v := &Verdict{ID: id, Subject: a.Subject, From: a.From, HeaderMsgID: a.MessageID, Attachments: len(a.Attachments), Notes: a.Notes}
	for _, p := range a.Problems {
		v.Problems = append(v.Problems, string(p.Kind)+": "+p.Detail)
	}
	client := s.Router.ByEnvelope(a.RcptTo, a.MailFrom, a.From)

	if a.HasProblem(message.ProblemInjection) && s.Config.Rules.OnHeaderInjection != "ignore" {
		v.Rule = BuiltinInjection
		v.Client = route.ClientName(client)
		v.Summary = a.Subject
		if s.Config.Rules.OnHeaderInjection == "reject" {
			v.Action = rules.ActionReject
			v.RejectText = "Message refused: a header contains encoded line breaks (header injection)"
		} else {
			v.Action = rules.ActionQuarantine
		}
		return v, nil
	}

	in := rules.Input{Alert: a, Client: client}
	var d rules.Decision
	var tr []rules.Trace
	if explain {
		d, tr = s.Rules.Explain(in)
	} else {
		d = s.Rules.Evaluate(in)
	}
	for _, r := range d.Audit {
		v.Audit = append(v.Audit, r.Name)
	}
	device := sanitize.Line(d.Fields["device"])
	if client == "" {
		client = s.Router.ByDevice(device)
	}
	v.Client = route.ClientName(client)
	v.Device = device
	v.Fields = d.Fields
	th := d.Then
	v.Action = d.Action
	if d.Rule != nil {
		v.Rule, v.RuleFile = d.Rule.Name, d.Rule.File
	} else {
		v.Rule = BuiltinDefault
	}
	v.Check = th.Check
	if v.Check == "" {
		v.Check = "alert"
	}
	vars := d.Vars(a, v.Client)
	vars["client"] = v.Client
	vars["device"] = device
	vars["check"] = v.Check

	switch {
	case th.Key != nil:
		v.Key = sanitize.Line(th.Key.Render(vars))
	case d.Rule == nil:
		// Unknown alerts: identical ones (same sender and subject) are one
		// problem, so repeats become notes rather than new tickets. Dates
		// and times in the subject ("failed at 2026-12-07 03:00") would
		// make every repeat a new ticket: they are not part of the key.
		// Other numbers stay (they name devices: SRV1, SRV2).
		v.Key = v.Client + "/" + a.From + "/" + subjectKey(a.Subject)
	default:
		v.Key = v.Client + "/" + device + "/" + v.Check
	}
	// The key is made of text the alert controls (a 32 KB Subject made it
	// too long for the database once): bound it here, where it is made,
	// so the incident, its audit entries and its external reference all
	// carry the same bounded key.
	v.Key = store.BoundKey(v.Key)
	if th.Summary != nil {
		v.Summary = sanitize.Line(th.Summary.Render(vars))
	}
	if v.Summary == "" {
		v.Summary = a.Subject
	}
	if v.Summary == "" {
		v.Summary = "(no subject) alert from " + a.From
	}
	if th.Description != nil {
		v.Description = sanitize.Text(th.Description.Render(vars))
	}
	if v.Description == "" {
		v.Description = DefaultDescription(a, v)
	}
	switch {
	case th.Note != nil:
		v.NoteText = sanitize.Text(th.Note.Render(vars))
	case v.Action == rules.ActionClose:
		v.NoteText = sanitize.Text(fmt.Sprintf("Recovered: %s\nReceived %s from %s.\n\n%s",
			a.Subject, a.Received.UTC().Format(time.RFC3339), a.From, a.Text))
	default:
		v.NoteText = sanitize.Text(fmt.Sprintf("Repeat alert: %s\nReceived %s from %s.\n\n%s",
			a.Subject, a.Received.UTC().Format(time.RFC3339), a.From, a.Text))
	}
	v.RejectText = th.Text
	if v.Action == rules.ActionReject && v.RejectText == "" {
		v.RejectText = "Rejected by rule " + v.Rule
	}
	if a.Auth != nil {
		v.Auth = a.Auth.Header
	}
	s.requireAuth(v, a, d)
	v.Repeat, v.Delay, v.Reopen, v.Expect, v.Attach = th.Repeat, th.Delay, th.Reopen, th.Expect, th.Attach
	v.AfterManualClose, v.Severity, v.Escalate = th.AfterManualClose, th.Severity, th.EscalatePriority
	if v.Repeat == "" {
		v.Repeat = rules.RepeatNote
	}
	if len(th.PSA) > 0 {
		v.Overrides = th.PSA
	}
	if th.AfterManualClose != "" {
		// Carried with the rule's PSA settings, so the rule's policy wins
		// over the device's, client's and organisation's as they do.
		v.Overrides = maps.Clone(v.Overrides)
		if v.Overrides == nil {
			v.Overrides = map[string]string{}
		}
		v.Overrides["after_manual_close"] = th.AfterManualClose
	}
	if why := s.safetyCheck(v, a, th, d.Rule != nil, vars); why != "" {
		v.Guard, v.Was, v.Action = why, v.Action, rules.ActionQuarantine
	}
	return v, tr
}

// DefaultDescription is the ticket text when a rule gives none: the alert's
// headers, its problems, its text and a list of its attachments.
func DefaultDescription(a *message.Alert, v *Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\n", a.From)
	if len(a.To) > 0 {
		fmt.Fprintf(&b, "To: %s\n", strings.Join(a.To, ", "))
	}
	if !a.Date.IsZero() {
		fmt.Fprintf(&b, "Date: %s\n", a.Date.Format(time.RFC1123Z))
	}
	fmt.Fprintf(&b, "Subject: %s\n", a.Subject)
	if v.Device != "" {
		fmt.Fprintf(&b, "Device: %s\n", v.Device)
	}
	fmt.Fprintf(&b, "Rule: %s\n", v.Rule)
	for _, p := range a.Problems {
		fmt.Fprintf(&b, "Warning: %s: %s\n", p.Kind, p.Detail)
	}
	b.WriteString("\n")
	b.WriteString(a.Text)
	if len(a.Attachments) > 0 {
		b.WriteString("\n\nAttachments:\n")
		for _, at := range a.Attachments {
			fmt.Fprintf(&b, "  %s (%s, %d bytes)\n", at.Name, at.ContentType, at.Size)
		}
	}
	return sanitize.Text(b.String())
}

// sortedKeys is used where map order would make output unstable.
func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
