package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"psagate/internal/glob"
	"psagate/internal/incident"
	"psagate/internal/store"
)

// timerSilence ends a silence: what it held back is caught up.
const timerSilence = "silence"

// AdminDecision is the audit decision of an action an admin took (the
// effect says which: silence-added, released, forgotten ...).
const AdminDecision = "admin"

// silenceFor returns the silence holding back mail like v at at, or nil.
func silenceFor(tx *store.Tx, v *Verdict, at time.Time) (*store.Silence, error) {
	var found *store.Silence
	err := tx.Silences(func(s *store.Silence) bool {
		if s.ActiveAt(at) && strings.EqualFold(s.Client, v.Client) &&
			(s.Device == "" || glob.MatchFold(s.Device, v.Device)) && (s.Rule == "" || s.Rule == v.Rule) {
			found = s
			return false
		}
		return true
	})
	return found, err
}

// hold records ev under silence s instead of applying it: the last event
// of each incident key is kept for the catch-up.
func hold(tx *store.Tx, s *store.Silence, ev *incident.Event) error {
	held := *ev
	held.Attachments, held.Withheld = nil, nil
	b, err := json.Marshal(&held)
	if err != nil {
		return err
	}
	if s.Pending == nil {
		s.Pending = map[string]json.RawMessage{}
	}
	s.Pending[ev.Key] = b
	s.Matched++
	return tx.PutSilence(s)
}

func silenceDetail(s *store.Silence) string {
	return fmt.Sprintf("silence %d (%s) until %s: no PSA call", s.ID, s.Comment, s.End.UTC().Format(time.RFC3339))
}

// catchUp replays, at now, the last event the silence held back for each
// incident key: a failure still failing opens (or notes) its ticket, a
// recovery closes. Hold-down is not applied again: the silence was longer.
func catchUp(tx *store.Tx, eng *incident.Engine, s *store.Silence, now time.Time) ([]*incident.Outcome, error) {
	if s.CaughtUp {
		return nil, nil
	}
	var outs []*incident.Outcome
	for _, k := range slices.Sorted(maps.Keys(s.Pending)) {
		var ev incident.Event
		if err := json.Unmarshal(s.Pending[k], &ev); err != nil {
			return nil, fmt.Errorf("silence %d: held event of %q: %w", s.ID, k, err)
		}
		ev.At, ev.Delay, ev.Expect = now, 0, 0
		o, err := eng.Apply(tx, &ev)
		if err != nil {
			return nil, err
		}
		outs = append(outs, o)
		if err := tx.AddAudit(outcomeAudit(o, now, fmt.Sprintf("silence %d ended: ", s.ID))); err != nil {
			return nil, err
		}
	}
	s.CaughtUp, s.Pending = true, nil
	return outs, tx.PutSilence(s)
}

// AddSilence starts silence s (ID, Start default now) inside tx, schedules
// its end, and audits who added it.
func AddSilence(tx *store.Tx, s *store.Silence, now time.Time) error {
	if strings.TrimSpace(s.Client) == "" {
		return errors.New("a silence needs a client (-client)")
	}
	if strings.TrimSpace(s.Comment) == "" {
		return errors.New("a silence needs a comment saying why (-comment)")
	}
	if s.Start.IsZero() {
		s.Start = now
	}
	if !s.End.After(now) || !s.End.After(s.Start) {
		return errors.New("a silence must end in the future (-for 4h)")
	}
	if err := tx.AddSilence(s); err != nil {
		return err
	}
	if err := tx.AddTimer(store.Timer{At: s.End, Kind: timerSilence, Ref: fmt.Sprint(s.ID)}); err != nil {
		return err
	}
	what := "client " + s.Client
	if s.Device != "" {
		what += ", device " + s.Device
	}
	if s.Rule != "" {
		what += ", rule " + s.Rule
	}
	return tx.AddAudit(&store.AuditEntry{Time: now, Decision: AdminDecision, Effect: "silence-added", Client: s.Client, Device: s.Device, Rule: s.Rule,
		Detail: fmt.Sprintf("silence %d by %s: %s until %s: %s", s.ID, s.By, what, s.End.UTC().Format(time.RFC3339), s.Comment)})
}

// ExpireSilence ends silence id now, by hand, and catches up what it held.
func ExpireSilence(tx *store.Tx, eng *incident.Engine, id uint64, now time.Time, by string) (*store.Silence, []*incident.Outcome, error) {
	s, err := tx.Silence(id)
	if err != nil {
		return nil, nil, err
	}
	if s == nil {
		return nil, nil, fmt.Errorf("silence %d: %w", id, store.ErrNotFound)
	}
	if !s.Expired.IsZero() || !now.Before(s.End) {
		return s, nil, fmt.Errorf("silence %d has already ended", id)
	}
	if err := tx.DeleteTimer(store.Timer{At: s.End, Kind: timerSilence, Ref: fmt.Sprint(s.ID)}); err != nil {
		return nil, nil, err
	}
	s.Expired, s.ExpiredBy = now, by
	if err := tx.AddAudit(&store.AuditEntry{Time: now, Decision: AdminDecision, Effect: "silence-expired", Client: s.Client,
		Detail: fmt.Sprintf("silence %d expired by %s (%d mails held back)", s.ID, by, s.Matched)}); err != nil {
		return nil, nil, err
	}
	outs, err := catchUp(tx, eng, s, now)
	return s, outs, err
}

// fireSilence is the timer of a silence's end.
func fireSilence(tx *store.Tx, eng *incident.Engine, tm store.Timer, now time.Time) ([]*incident.Outcome, error) {
	if err := tx.DeleteTimer(tm); err != nil {
		return nil, err
	}
	var id uint64
	if _, err := fmt.Sscan(tm.Ref, &id); err != nil {
		return nil, nil
	}
	s, err := tx.Silence(id)
	if err != nil || s == nil {
		return nil, err
	}
	return catchUp(tx, eng, s, now)
}

// silenced is what ProcessVerdict does with a mail a silence holds back.
func silenced(tx *store.Tx, s *store.Silence, ev *incident.Event, v *Verdict, e *store.SpoolEntry) (*Result, error) {
	if err := hold(tx, s, ev); err != nil {
		return nil, err
	}
	r := &Result{Verdict: v, Entry: e, Decision: v.Action, Effect: incident.EffectSilenced}
	return r, tx.AddAudit(auditEntry(v, e.MailFrom, firstOf(e.RcptTo), e.RemoteIP, e.Received, v.Action, incident.EffectSilenced, nil, silenceDetail(s)))
}
