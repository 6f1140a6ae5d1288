// Package incident keeps one ticket per ongoing problem. Messages that the
// rules turned into ticket, note or close decisions are correlated by their
// key; the engine opens, notes, holds down (flap damping), reopens and closes
// incidents, watches for expected mail that stops arriving, and emits the
// provider-neutral PSA jobs into the outbox.
//
// Every change happens inside the caller's store transaction, together with
// the removal of the message from the spool, so a crash leaves either the
// message still spooled or its full effect recorded, never half of it.
package incident

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"psagate/internal/config"
	"psagate/internal/message"
	"psagate/internal/psa"
	"psagate/internal/route"
	"psagate/internal/rules"
	"psagate/internal/sanitize"
	"psagate/internal/store"
)

// The engine handles the actions ticket, note and close of rules.Action
// (the one decision vocabulary); drop, reject and quarantine never reach it.

// Effect says what a decision did to the incident, for the audit trail,
// `try` and the metrics.
type Effect string

// The effects.
const (
	EffectOpened    Effect = "opened"
	EffectHeld      Effect = "held" // hold-down started: no ticket yet
	EffectHeldAgain Effect = "held-repeat"
	EffectNoted     Effect = "noted"
	EffectIgnored   Effect = "ignored"
	EffectNew       Effect = "new-ticket"
	EffectReopened  Effect = "reopened"
	EffectClosed    Effect = "closed"
	EffectCancelled Effect = "cancelled" // recovery inside the hold-down: no ticket was made
	EffectNoop      Effect = "no-op"     // nothing open for the key
	EffectKeptOpen  Effect = "noted-not-closed"
	// EffectClosedInPSA: the PSA showed the ticket closed, completed,
	// merged or deleted by someone else; the incident ended with it.
	EffectClosedInPSA Effect = "closed-in-psa"
	// EffectThrottled: a repeat counted, not noted, because the ticket had
	// its max_notes_per_hour already (storm control).
	EffectThrottled Effect = "throttled"
	// EffectSummarised: the one note summing up the throttled repeats.
	EffectSummarised Effect = "summarised"
	// EffectEscalated: a more severe repeat raised the ticket's priority.
	EffectEscalated Effect = "escalated"
	// EffectSilenced: a silence (maintenance window) held the mail back:
	// decided and audited, no PSA call; caught up when the silence ends.
	EffectSilenced Effect = "silenced"
)

// Event is one decided message, as the incident engine needs it.
type Event struct {
	MessageID   string
	At          time.Time
	Action      rules.Action
	Rule        string
	Client      string
	Device      string
	Check       string
	Key         string
	Summary     string
	Description string
	NoteText    string // the note a repeat, a note action or a close adds
	Repeat      string
	Delay       time.Duration
	Reopen      time.Duration
	Expect      time.Duration
	Attach      bool
	Attachments []message.Attachment
	// Withheld lists attachments the rule wanted uploaded but the policy
	// refused (type or size), with the reason; they become a note.
	Withheld  []string
	Overrides map[string]string
	// Severity is the deciding rule's severity; Escalate its
	// escalate_priority.
	Severity string
	Escalate bool
}

// Outcome is what the engine did with an event or a timer.
type Outcome struct {
	Decision rules.Action // ticket, note or close, after correlation
	Effect   Effect
	Incident *store.Incident
	Jobs     []*store.Job
	Detail   string
}

// Engine applies events to the incident state.
type Engine struct {
	Router   *route.Router
	Instance string // the database's instance id, part of every external reference
	// Incidents holds max_notes_per_hour (0: no storm control).
	Incidents config.Incidents
}

// heldTicket is what a hold-down opens when it ends.
type heldTicket struct {
	Summary     string            `json:"summary"`
	Description string            `json:"description"`
	Overrides   map[string]string `json:"overrides,omitempty"`
	MessageID   string            `json:"message_id,omitempty"`
}

// Apply handles one event inside tx.
func (e *Engine) Apply(tx *store.Tx, ev *Event) (*Outcome, error) {
	cur, err := tx.IncidentByKey(ev.Key)
	if err != nil {
		return nil, err
	}
	var out *Outcome
	switch ev.Action {
	case rules.ActionTicket:
		out, err = e.ticket(tx, ev, cur)
	case rules.ActionNote:
		out, err = e.note(tx, ev, cur)
	case rules.ActionClose:
		out, err = e.close(tx, ev, cur)
	default:
		return nil, fmt.Errorf("incident: action %q is not handled here", ev.Action)
	}
	if err != nil {
		return nil, err
	}
	if ev.Expect > 0 {
		extra, err := e.sawExpected(tx, ev)
		if err != nil {
			return nil, err
		}
		if extra != "" {
			out.Detail = strings.TrimSpace(out.Detail + "; " + extra)
		}
		// A close of the absence incident is part of this message's effect.
	}
	return out, nil
}

func (e *Engine) ticket(tx *store.Tx, ev *Event, cur *store.Incident) (*Outcome, error) {
	if cur != nil && cur.Active() {
		cur.LastSeen, cur.LastMessage = ev.At, ev.MessageID
		cur.Count++
		if cur.State == store.StatePending {
			if err := tx.PutIncident(cur); err != nil {
				return nil, err
			}
			return &Outcome{Decision: rules.ActionTicket, Effect: EffectHeldAgain, Incident: cur,
				Detail: fmt.Sprintf("still in hold-down until %s (%d alerts)", cur.DueAt.UTC().Format(time.RFC3339), cur.Count)}, nil
		}
		if cur.NoPSA && cur.Ticket.IsZero() && e.Router.EnabledAt(cur.Client, ev.At) {
			return e.ticketAfterEnable(tx, ev, cur)
		}
		switch ev.Repeat {
		case rules.RepeatIgnore:
			cur.Ignored++
			if err := tx.PutIncident(cur); err != nil {
				return nil, err
			}
			return &Outcome{Decision: rules.ActionNote, Effect: EffectIgnored, Incident: cur,
				Detail: fmt.Sprintf("repeat counted only (%d alerts)", cur.Count)}, nil
		case rules.RepeatNew:
			// The earlier incident stays as it is in the PSA; the key now
			// follows the new one, so a recovery closes the newest ticket.
			cur.State = "superseded"
			if err := tx.PutIncident(cur); err != nil {
				return nil, err
			}
			out, err := e.open(tx, ev, nil)
			if err != nil {
				return nil, err
			}
			out.Effect = EffectNew
			return out, nil
		default:
			return e.repeatNote(tx, ev, cur)
		}
	}
	// The ticket was closed by someone in the PSA and the problem is back:
	// after_manual_close decides between reopening it and a new ticket.
	if cur != nil && cur.State == store.StateClosedInPSA && !cur.NoPSA && !cur.Ticket.IsZero() && !cur.PSAGone &&
		e.afterManualClose(cur, ev.Overrides) == config.AfterCloseReopen {
		return e.reopen(tx, ev, cur, "Problem returned after the ticket was closed in the PSA",
			"the ticket was closed in the PSA; after_manual_close = reopen")
	}
	// Recurrence of a closed problem inside the reopen window: reopen its ticket.
	if cur != nil && cur.State == store.StateClosed && ev.Reopen > 0 && !cur.ClosedAt.IsZero() &&
		ev.At.Sub(cur.ClosedAt) <= ev.Reopen && !cur.NoPSA {
		return e.reopen(tx, ev, cur, "Problem returned", fmt.Sprintf("recurred within the reopen window of %s", ev.Reopen))
	}
	return e.open(tx, ev, nil)
}

// reopen reopens the closed incident cur (and its ticket) for ev.
func (e *Engine) reopen(tx *store.Tx, ev *Event, cur *store.Incident, title, detail string) (*Outcome, error) {
	cur.State = store.StateOpen
	cur.Reopened++
	cur.Count++
	cur.LastSeen, cur.LastMessage = ev.At, ev.MessageID
	cur.ClosedAt = time.Time{}
	resetStorm(cur)
	j := e.job(ev, cur, store.OpReopen)
	j.NoteText = ev.NoteText
	j.NoteTitle = title
	j.NoteKind = psa.NoteDiscussion
	if err := tx.AddJob(j); err != nil {
		return nil, err
	}
	if err := tx.PutIncident(cur); err != nil {
		return nil, err
	}
	return &Outcome{Decision: rules.ActionTicket, Effect: EffectReopened, Incident: cur, Jobs: []*store.Job{j}, Detail: detail}, nil
}

// open starts a new incident for ev: at once, or after a hold-down.
func (e *Engine) open(tx *store.Tx, ev *Event, absence *store.Incident) (*Outcome, error) {
	id, err := tx.NewIncidentID()
	if err != nil {
		return nil, err
	}
	inc := &store.Incident{
		ID:          id,
		Key:         ev.Key,
		Client:      ev.Client,
		Device:      ev.Device,
		Check:       ev.Check,
		Rule:        ev.Rule,
		Summary:     ev.Summary,
		ExternalRef: e.ExternalRef(id, ev.Key),
		FirstSeen:   ev.At,
		LastSeen:    ev.At,
		Count:       1,
		LastMessage: ev.MessageID,
		NoPSA:       !e.Router.EnabledAt(ev.Client, ev.At),
		Severity:    ev.Severity,
		Absence:     absence != nil,
	}
	inc.Provider = e.Router.Effective(ev.Client, ev.Device, ev.Overrides).Provider()
	if ev.Delay > 0 {
		inc.State = store.StatePending
		inc.DueAt = ev.At.Add(ev.Delay)
		held, err := json.Marshal(heldTicket{Summary: ev.Summary, Description: ev.Description, Overrides: ev.Overrides, MessageID: ev.MessageID})
		if err != nil {
			return nil, err
		}
		inc.Held = held
		if err := tx.AddTimer(store.Timer{At: inc.DueAt, Kind: "holddown", Ref: fmt.Sprint(id)}); err != nil {
			return nil, err
		}
		if err := tx.PutIncident(inc); err != nil {
			return nil, err
		}
		return &Outcome{Decision: rules.ActionTicket, Effect: EffectHeld, Incident: inc,
			Detail: fmt.Sprintf("hold-down: a ticket opens at %s unless a recovery arrives first", inc.DueAt.UTC().Format(time.RFC3339))}, nil
	}
	inc.State = store.StateOpen
	inc.OpenedAt = ev.At
	jobs, err := e.createJobs(tx, ev, inc, ev.Summary, ev.Description)
	if err != nil {
		return nil, err
	}
	if err := tx.PutIncident(inc); err != nil {
		return nil, err
	}
	detail := ""
	if inc.NoPSA {
		detail = "client disabled: recorded, no PSA call"
	}
	return &Outcome{Decision: rules.ActionTicket, Effect: EffectOpened, Incident: inc, Jobs: jobs, Detail: detail}, nil
}

func (e *Engine) createJobs(tx *store.Tx, ev *Event, inc *store.Incident, summary, description string) ([]*store.Job, error) {
	if inc.NoPSA {
		return nil, nil
	}
	j := e.job(ev, inc, store.OpCreate)
	j.Summary = summary
	j.Description = description
	j.ExternalRef = inc.ExternalRef
	if err := tx.AddJob(j); err != nil {
		return nil, err
	}
	jobs := []*store.Job{j}
	aj, err := e.attachJobs(tx, ev, inc)
	if err != nil {
		return nil, err
	}
	return append(jobs, aj...), nil
}

// noteJobs queues the note job j and, after it, the uploads of the
// event's attachments.
func (e *Engine) noteJobs(tx *store.Tx, ev *Event, cur *store.Incident, j *store.Job) ([]*store.Job, error) {
	if err := tx.AddJob(j); err != nil {
		return nil, err
	}
	aj, err := e.attachJobs(tx, ev, cur)
	if err != nil {
		return nil, err
	}
	return append([]*store.Job{j}, aj...), nil
}

func (e *Engine) attachJobs(tx *store.Tx, ev *Event, inc *store.Incident) ([]*store.Job, error) {
	if !ev.Attach || inc.NoPSA {
		return nil, nil
	}
	var jobs []*store.Job
	if len(ev.Withheld) > 0 {
		j := e.job(ev, inc, store.OpNote)
		j.NoteTitle, j.NoteKind = "Attachments not uploaded", psa.NoteInternal
		j.NoteText = "psagate did not upload these attachments of the alert mail:\n  " + strings.Join(ev.Withheld, "\n  ") +
			"\nThe mail is kept in psagate's audit trail; allow more types with [deliver] attach_types."
		if err := tx.AddJob(j); err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	for _, a := range ev.Attachments {
		j := e.job(ev, inc, store.OpAttach)
		j.AttachName, j.AttachType, j.AttachData = a.Name, a.ContentType, a.Data
		if err := tx.AddJob(j); err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

func (e *Engine) note(tx *store.Tx, ev *Event, cur *store.Incident) (*Outcome, error) {
	if cur == nil || !cur.Active() {
		return &Outcome{Decision: rules.ActionNote, Effect: EffectNoop, Detail: "no open incident for key " + ev.Key}, nil
	}
	cur.LastSeen, cur.LastMessage = ev.At, ev.MessageID
	cur.Count++
	var jobs []*store.Job
	if cur.State == store.StateOpen && !cur.NoPSA {
		cur.Notes++
		j := e.job(ev, cur, store.OpNote)
		j.NoteText, j.NoteTitle, j.NoteKind = ev.NoteText, "Update", psa.NoteDiscussion
		nj, err := e.noteJobs(tx, ev, cur, j)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, nj...)
	}
	if err := tx.PutIncident(cur); err != nil {
		return nil, err
	}
	return &Outcome{Decision: rules.ActionNote, Effect: EffectNoted, Incident: cur, Jobs: jobs}, nil
}

func (e *Engine) close(tx *store.Tx, ev *Event, cur *store.Incident) (*Outcome, error) {
	if cur == nil || !cur.Active() {
		return &Outcome{Decision: rules.ActionClose, Effect: EffectNoop, Detail: "nothing open for key " + ev.Key}, nil
	}
	cur.LastSeen, cur.LastMessage = ev.At, ev.MessageID
	if cur.State == store.StatePending {
		cur.State = store.StateCancelled
		cur.ClosedAt = ev.At
		if err := tx.DeleteTimer(store.Timer{At: cur.DueAt, Kind: "holddown", Ref: fmt.Sprint(cur.ID)}); err != nil {
			return nil, err
		}
		if err := tx.PutIncident(cur); err != nil {
			return nil, err
		}
		return &Outcome{Decision: rules.ActionClose, Effect: EffectCancelled, Incident: cur,
			Detail: fmt.Sprintf("recovered %s after the first alert, inside the hold-down: no ticket", ev.At.Sub(cur.FirstSeen).Round(time.Second))}, nil
	}
	settings := e.Router.Effective(cur.Client, cur.Device, ev.Overrides)
	if !settings.Bool("auto_close", true) {
		var jobs []*store.Job
		if !cur.NoPSA {
			j := e.job(ev, cur, store.OpNote)
			j.NoteText = "Recovery received (automatic closing is off for this client):\n\n" + ev.NoteText
			j.NoteTitle, j.NoteKind = "Recovery received", psa.NoteDiscussion
			if err := tx.AddJob(j); err != nil {
				return nil, err
			}
			jobs = append(jobs, j)
		}
		cur.Notes++
		if err := tx.PutIncident(cur); err != nil {
			return nil, err
		}
		return &Outcome{Decision: rules.ActionClose, Effect: EffectKeptOpen, Incident: cur, Jobs: jobs,
			Detail: "auto_close = false: the recovery was added as a note"}, nil
	}
	cur.State = store.StateClosed
	cur.ClosedAt = ev.At
	// A recovery's own attachments (a passing boot screenshot) go to the
	// ticket before it closes.
	jobs, err := e.attachJobs(tx, ev, cur)
	if err != nil {
		return nil, err
	}
	if !cur.NoPSA {
		j := e.job(ev, cur, store.OpClose)
		j.NoteText, j.NoteTitle, j.NoteKind = ev.NoteText, "Resolved", psa.NoteResolution
		if cur.Throttled > 0 {
			j.NoteText = stormSummary(cur) + "\n\n" + j.NoteText
		}
		resetStorm(cur)
		if err := tx.AddJob(j); err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	if err := tx.PutIncident(cur); err != nil {
		return nil, err
	}
	return &Outcome{Decision: rules.ActionClose, Effect: EffectClosed, Incident: cur, Jobs: jobs}, nil
}

// job starts a job for inc.
func (e *Engine) job(ev *Event, inc *store.Incident, op string) *store.Job {
	prov := inc.Provider
	if !inc.Ticket.IsZero() {
		prov = inc.Ticket.Provider
	}
	return &store.Job{
		Provider:  prov,
		Incident:  inc.ID,
		Op:        op,
		Key:       inc.Key,
		Client:    inc.Client,
		Device:    inc.Device,
		Overrides: ev.Overrides,
		MessageID: ev.MessageID,
		Created:   ev.At,
	}
}

// ExternalRef is the incident's reference in the PSA: unique across
// psagate instances (the database instance id) and incidents (the id) in its
// first characters, so a PSA field limit that cuts the key keeps it unique.
// The key part keeps only characters that need no quoting in any PSA query
// language (ConnectWise conditions, Autotask filters); others become "_".
func (e *Engine) ExternalRef(id uint64, key string) string {
	safe := []byte(sanitize.Line(key))
	out := safe[:0]
	for _, c := range safe {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '.', c == '_', c == '/', c == '-':
			out = append(out, c)
		case c >= 0x80 && c < 0xC0:
			// continuation byte of a multi-byte rune: its lead byte became "_"
		default:
			out = append(out, '_')
		}
	}
	return fmt.Sprintf("psagate:%s-%d:%s", e.Instance, id, out)
}
