package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"psagate/internal/auth"
	"psagate/internal/incident"
	"psagate/internal/message"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// Trial runs messages through the real pipeline against a scratch database,
// never calling a PSA: the engine of `psagate try`.
//
// Its clock is the messages' own Date headers (never going backwards), so a
// replayed day of mail shows the hold-downs, reopen windows and absence
// timers as they would have played out, not as if everything arrived in the
// same second.
type Trial struct {
	DB   *store.DB
	snap *Snapshot
	eng  *incident.Engine
	dir  string
	last time.Time
	now  func() time.Time
	// Auth, when set, authenticates senders as the gateway would (DNS
	// questions, through [auth] dns).
	Auth *auth.Checker
}

// TrialResult is what happened to one message.
type TrialResult struct {
	ID       string
	At       time.Time
	Verdict  *Verdict
	Alert    *message.Alert
	Trace    []rules.Trace
	Decision rules.Action
	Effect   incident.Effect
	Outcome  *incident.Outcome
	Timers   []*incident.Outcome // timers that fired before this message
}

// NewTrial creates the scratch database. When seed is not nil it is called
// with the path to fill first (a copy of a live database).
func NewTrial(snap *Snapshot, seed func(path string) error) (*Trial, error) {
	dir, err := os.MkdirTemp("", "psagate-try-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "state.db")
	if seed != nil {
		if err := seed(path); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("copy state: %w", err)
		}
	}
	db, err := store.Open(path, store.Options{LockTimeout: time.Second})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Trial{DB: db, snap: snap, dir: dir, eng: &incident.Engine{Router: snap.Router, Instance: db.Instance(), Incidents: snap.Config.Incidents}, now: time.Now}, nil
}

// Close removes the scratch database.
func (t *Trial) Close() {
	t.DB.Close()
	os.RemoveAll(t.dir)
}

// Run processes one message.
func (t *Trial) Run(id string, raw []byte, env message.Envelope, explain bool) (*TrialResult, error) {
	a := message.Decode(raw, env, t.snap.Limits())
	at := a.Date
	if at.IsZero() {
		at = t.last
		if at.IsZero() {
			at = t.now()
		}
	}
	if at.Before(t.last) {
		at = t.last
	}
	t.last = at
	a.Received = at
	t.snap.Authenticate(context.Background(), t.Auth, a, raw)
	v, tr := t.snap.DecideAlert(id, a, explain)
	res := &TrialResult{ID: id, At: at, Verdict: v, Alert: a, Trace: tr}
	err := t.DB.Update(func(tx *store.Tx) error {
		outs, err := FireDue(tx, t.eng, at)
		if err != nil {
			return err
		}
		res.Timers = outs
		if v.Action == rules.ActionDrop || v.Action == rules.ActionReject {
			res.Decision = v.Action
			return tx.AddAudit(auditEntry(v, env.MailFrom, firstOf(env.RcptTo), "", at, v.Action, "", nil, v.RejectText))
		}
		e := &store.SpoolEntry{ID: id, Received: at, MailFrom: env.MailFrom, RcptTo: env.RcptTo, Raw: raw}
		r, err := ProcessVerdict(tx, t.eng, t.snap, e, v)
		if err != nil {
			return err
		}
		res.Decision, res.Effect, res.Outcome = r.Decision, r.Effect, r.Outcome
		return nil
	})
	return res, err
}

// Pending lists what is still waiting after the last message: hold-downs
// that would open a ticket and expected mail that would be missed.
func (t *Trial) Pending() ([]store.Timer, []*store.Incident, error) {
	var timers []store.Timer
	var open []*store.Incident
	err := t.DB.View(func(tx *store.Tx) error {
		timers = tx.Timers()
		var err error
		open, err = tx.OpenIncidents()
		return err
	})
	sort.Slice(open, func(i, j int) bool { return open[i].ID < open[j].ID })
	return timers, open, err
}
