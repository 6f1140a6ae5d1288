package incident

import (
	"fmt"
	"time"

	"psagate/internal/config"
	"psagate/internal/psa"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// What this file adds to the engine is what a long-running gateway meets
// next to people: clients disabled and enabled again, tickets closed by a
// technician, devices that repeat a failure all weekend, and warnings that
// turn into failures.

// timerStorm ends an incident's storm-control window: the repeats counted
// in it become one summary note.
const timerStorm = "storm"

// stormWindow is the window max_notes_per_hour counts in.
const stormWindow = time.Hour

// ticketAfterEnable gives an incident recorded while its client was
// disabled the ticket it never got, now that the client is enabled again.
func (e *Engine) ticketAfterEnable(tx *store.Tx, ev *Event, cur *store.Incident) (*Outcome, error) {
	cur.NoPSA = false
	cur.OpenedAt = ev.At
	cur.Provider = e.Router.Effective(ev.Client, ev.Device, ev.Overrides).Provider()
	desc := ev.Description + fmt.Sprintf("\n\n(psagate recorded %d alerts for this problem since %s while ticketing for client %q was disabled.)",
		cur.Count, cur.FirstSeen.UTC().Format(time.RFC3339), cur.Client)
	jobs, err := e.createJobs(tx, ev, cur, ev.Summary, desc)
	if err != nil {
		return nil, err
	}
	if err := tx.PutIncident(cur); err != nil {
		return nil, err
	}
	return &Outcome{Decision: rules.ActionTicket, Effect: EffectOpened, Incident: cur, Jobs: jobs,
		Detail: fmt.Sprintf("client enabled again: incident %d, recorded while it was disabled, gets its ticket", cur.ID)}, nil
}

// repeatNote adds a repeat of an open incident's failure to its ticket,
// within max_notes_per_hour, and raises the ticket's priority when the
// repeat is more severe than what the ticket was opened for.
func (e *Engine) repeatNote(tx *store.Tx, ev *Event, cur *store.Incident) (*Outcome, error) {
	var jobs []*store.Job
	escalate := ev.Escalate && rules.SeverityRank(ev.Severity) > rules.SeverityRank(cur.Severity) && cur.Severity != ""
	prevSeverity := cur.Severity
	if rules.SeverityRank(ev.Severity) > rules.SeverityRank(cur.Severity) {
		cur.Severity = ev.Severity
	}
	if escalate && !cur.NoPSA {
		j := e.job(ev, cur, store.OpPriority)
		j.NoteTitle, j.NoteKind = "Escalated", psa.NoteDiscussion
		j.NoteText = fmt.Sprintf("psagate raised this ticket's priority: the problem was reported as %s and is now reported as %s (rule %q).\n\n%s",
			prevSeverity, ev.Severity, ev.Rule, ev.NoteText)
		if err := tx.AddJob(j); err != nil {
			return nil, err
		}
		cur.Escalated = true
		cur.Notes++
		if err := tx.PutIncident(cur); err != nil {
			return nil, err
		}
		return &Outcome{Decision: rules.ActionNote, Effect: EffectEscalated, Incident: cur, Jobs: []*store.Job{j},
			Detail: fmt.Sprintf("severity %s -> %s: priority raised", prevSeverity, ev.Severity)}, nil
	}
	if cur.NoteWindow.IsZero() || !ev.At.Before(cur.NoteWindow.Add(stormWindow)) {
		if cur.Throttled > 0 && !cur.NoPSA {
			// The window's timer has not fired yet: sum it up now, before
			// this repeat's note, so the ticket reads in order.
			j := e.summaryJob(ev.At, cur)
			if err := tx.AddJob(j); err != nil {
				return nil, err
			}
			jobs = append(jobs, j)
		}
		resetStorm(cur)
		cur.NoteWindow = ev.At
	}
	if max := e.Incidents.MaxNotesPerHour; max > 0 && cur.WindowNotes >= max {
		if cur.Throttled == 0 {
			cur.ThrottledFirst = ev.At
			if err := tx.AddTimer(store.Timer{At: cur.NoteWindow.Add(stormWindow), Kind: timerStorm, Ref: fmt.Sprint(cur.ID)}); err != nil {
				return nil, err
			}
		}
		cur.Throttled++
		cur.ThrottledLast, cur.ThrottledText = ev.At, ev.Summary
		if err := tx.PutIncident(cur); err != nil {
			return nil, err
		}
		return &Outcome{Decision: rules.ActionNote, Effect: EffectThrottled, Incident: cur, Jobs: jobs,
			Detail: fmt.Sprintf("storm control: the ticket had its %d notes this hour (max_notes_per_hour); %d repeats counted for one summary note", max, cur.Throttled)}, nil
	}
	cur.WindowNotes++
	cur.Notes++
	if !cur.NoPSA {
		j := e.job(ev, cur, store.OpNote)
		j.NoteText = ev.NoteText
		j.NoteTitle = "Repeat alert"
		j.NoteKind = psa.NoteRepeat
		// If the ticket turns out closed in the PSA, this repeat becomes
		// a new ticket or a reopen (TicketEnded) with this text.
		j.Recur, j.Summary, j.Description = true, ev.Summary, ev.Description
		nj, err := e.noteJobs(tx, ev, cur, j)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, nj...)
	}
	if err := tx.PutIncident(cur); err != nil {
		return nil, err
	}
	return &Outcome{Decision: rules.ActionNote, Effect: EffectNoted, Incident: cur, Jobs: jobs,
		Detail: fmt.Sprintf("repeat %d of incident %d", cur.Count, cur.ID)}, nil
}

func resetStorm(inc *store.Incident) {
	inc.NoteWindow, inc.WindowNotes, inc.Throttled = time.Time{}, 0, 0
	inc.ThrottledFirst, inc.ThrottledLast, inc.ThrottledText = time.Time{}, time.Time{}, ""
}

// stormSummary is the text of the one note for the repeats storm control
// counted instead of noting each.
func stormSummary(inc *store.Incident) string {
	from := inc.NoteWindow
	if from.IsZero() {
		from = inc.ThrottledFirst
	}
	return fmt.Sprintf("%d more failures between %s and %s UTC, last: %s (at %s).\n"+
		"psagate adds at most [incidents] max_notes_per_hour notes to a ticket an hour and counts the rest.",
		inc.Throttled, from.UTC().Format("2006-01-02 15:04"), from.Add(stormWindow).UTC().Format("15:04"),
		inc.ThrottledText, inc.ThrottledLast.UTC().Format("15:04:05"))
}

func (e *Engine) summaryJob(at time.Time, inc *store.Incident) *store.Job {
	j := e.job(&Event{At: at}, inc, store.OpNote)
	j.NoteTitle, j.NoteKind, j.NoteText = "Repeats summarised", psa.NoteRepeat, stormSummary(inc)
	return j
}

// fireStorm ends a storm-control window: the counted repeats become one note.
func (e *Engine) fireStorm(tx *store.Tx, tm store.Timer, now time.Time) (*Outcome, error) {
	var id uint64
	if _, err := fmt.Sscan(tm.Ref, &id); err != nil {
		return nil, nil
	}
	inc, err := tx.Incident(id)
	if err != nil || inc == nil || inc.Throttled == 0 {
		return nil, err
	}
	if inc.State != store.StateOpen || inc.NoPSA {
		resetStorm(inc)
		return nil, tx.PutIncident(inc)
	}
	j := e.summaryJob(now, inc)
	if err := tx.AddJob(j); err != nil {
		return nil, err
	}
	n := inc.Throttled
	resetStorm(inc)
	inc.Notes++
	if err := tx.PutIncident(inc); err != nil {
		return nil, err
	}
	return &Outcome{Decision: rules.ActionNote, Effect: EffectSummarised, Incident: inc, Jobs: []*store.Job{j},
		Detail: fmt.Sprintf("storm control: %d counted repeats summed up in one note", n)}, nil
}

// afterManualClose is the after_manual_close policy for inc: the rule's,
// else the device's, client's or organisation's setting.
func (e *Engine) afterManualClose(inc *store.Incident, overrides map[string]string) string {
	if v := e.Router.Effective(inc.Client, inc.Device, overrides).Get("after_manual_close"); v != "" {
		return v
	}
	return config.AfterCloseNew
}

// TicketEnded records that the PSA shows incident id's ticket closed,
// completed, merged or deleted (st), read before job fromJob (0: by the
// reconciler). The incident ends as closed-in-psa, and the calls queued for
// the ticket from that job on are settled: notes, attachments and a close
// are dropped (nothing more is written to a ticket someone closed); the
// first repeat of the failure among them opens a new ticket or reopens the
// old one, as after_manual_close says, and the calls after it follow it.
// It returns what it did, for the audit trail.
func (e *Engine) TicketEnded(tx *store.Tx, id, fromJob uint64, st psa.TicketState, now time.Time) ([]*Outcome, error) {
	inc, err := tx.Incident(id)
	if err != nil || inc == nil {
		return nil, err
	}
	inc.PSAStatus, inc.PSAGone, inc.CheckedAt = st.Status, st.Gone, now
	var queued []*store.Job
	if err := tx.Jobs(func(j *store.Job) bool {
		if j.Incident == id && j.ID >= fromJob && j.Op != store.OpCreate {
			queued = append(queued, j)
		}
		return true
	}); err != nil {
		return nil, err
	}
	how := "closed"
	if st.Gone {
		how = "deleted"
	}
	var outs []*Outcome
	if inc.State == store.StateOpen || inc.State == store.StatePending {
		inc.State, inc.ClosedAt = store.StateClosedInPSA, now
		resetStorm(inc)
		outs = append(outs, &Outcome{Decision: rules.ActionClose, Effect: EffectClosedInPSA, Incident: inc,
			Detail: fmt.Sprintf("ticket %s was %s in the PSA (status %q)", inc.Ticket, how, st.Status)})
	}
	recur := -1
	for i, j := range queued {
		if j.Recur {
			recur = i
			break
		}
	}
	var dropped int
	end := len(queued)
	if recur >= 0 {
		end = recur
	}
	for _, j := range queued[:end] {
		if err := tx.DeleteJob(j.ID); err != nil {
			return nil, err
		}
		dropped++
	}
	if len(outs) > 0 && dropped > 0 {
		outs[0].Detail += fmt.Sprintf("; %d queued call(s) for it dropped", dropped)
	}
	if recur < 0 {
		return outs, tx.PutIncident(inc)
	}
	j, rest := queued[recur], queued[recur+1:]
	j.Recur, j.Started, j.Attempts, j.NextTry, j.LastError = false, false, 0, time.Time{}, ""
	if e.afterManualClose(inc, j.Overrides) == config.AfterCloseReopen && !st.Gone {
		inc.State, inc.ClosedAt = store.StateOpen, time.Time{}
		inc.Reopened++
		j.Op, j.NoteTitle = store.OpReopen, "Problem returned after the ticket was closed in the PSA"
		if err := tx.PutJob(j); err != nil {
			return nil, err
		}
		outs = append(outs, &Outcome{Decision: rules.ActionTicket, Effect: EffectReopened, Incident: inc, Jobs: []*store.Job{j},
			Detail: fmt.Sprintf("the failure was reported again after ticket %s was %s in the PSA; after_manual_close = reopen", inc.Ticket, how)})
		return outs, tx.PutIncident(inc)
	}
	if err := tx.PutIncident(inc); err != nil {
		return nil, err
	}
	nid, err := tx.NewIncidentID()
	if err != nil {
		return nil, err
	}
	summary := j.Summary
	if summary == "" {
		summary = inc.Summary
	}
	ni := &store.Incident{
		ID: nid, Key: inc.Key, Client: inc.Client, Device: inc.Device, Check: inc.Check, Rule: inc.Rule,
		State: store.StateOpen, Summary: summary, ExternalRef: e.ExternalRef(nid, inc.Key), Provider: inc.Ticket.Provider,
		FirstSeen: j.Created, LastSeen: j.Created, Count: 1, OpenedAt: now, LastMessage: j.MessageID, Severity: inc.Severity,
	}
	if ni.Provider == "" {
		ni.Provider = inc.Provider
	}
	desc := j.Description
	if desc == "" {
		desc = j.NoteText
	}
	j.Op, j.Incident, j.Summary, j.ExternalRef = store.OpCreate, nid, summary, ni.ExternalRef
	j.Description = desc + fmt.Sprintf("\n\n(The earlier ticket for this problem, %s, was %s in the PSA.)", inc.Ticket, how)
	j.NoteText, j.NoteTitle, j.NoteKind = "", "", ""
	if err := tx.PutJob(j); err != nil {
		return nil, err
	}
	for _, r := range rest {
		r.Incident = nid
		if err := tx.PutJob(r); err != nil {
			return nil, err
		}
	}
	if err := tx.PutIncident(ni); err != nil {
		return nil, err
	}
	outs = append(outs, &Outcome{Decision: rules.ActionTicket, Effect: EffectNew, Incident: ni, Jobs: []*store.Job{j},
		Detail: fmt.Sprintf("the failure was reported again after ticket %s was %s in the PSA; after_manual_close = new", inc.Ticket, how)})
	return outs, nil
}
