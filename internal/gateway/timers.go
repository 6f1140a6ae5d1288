package gateway

import (
	"context"
	"time"

	"psagate/internal/incident"
	"psagate/internal/store"
)

func (g *Gateway) timerLoop(ctx context.Context) {
	for {
		if _, err := g.FireTimers(g.now()); err != nil {
			g.log.Error("timers failed; will retry", "err", err)
		}
		var next time.Time
		var ok bool
		_ = g.db.View(func(tx *store.Tx) error { next, ok = tx.NextTimer(); return nil })
		wait := time.Minute
		if ok {
			if d := next.Sub(g.now()); d < wait {
				wait = d
			}
		}
		if wait < 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.timerWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// FireTimers handles every timer due at now (hold-downs ending, expected
// mail overdue) and returns the outcomes.
func (g *Gateway) FireTimers(now time.Time) ([]*incident.Outcome, error) {
	s := g.Snapshot()
	eng := g.Engine(s)
	var outs []*incident.Outcome
	err := g.db.Update(func(tx *store.Tx) error {
		outs = outs[:0]
		var err error
		outs, err = FireDue(tx, eng, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	jobs := false
	for _, o := range outs {
		attrs := []any{"decision", o.Decision, "effect", o.Effect, "detail", o.Detail}
		if o.Incident != nil {
			attrs = append(attrs, "incident", o.Incident.ID, "key", o.Incident.Key, "client", o.Incident.Client)
		}
		g.log.Info("timer", attrs...)
		if g.metrics != nil {
			g.metrics.Decisions.WithLabelValues(string(o.Decision), string(o.Effect)).Inc()
		}
		if len(o.Jobs) > 0 {
			jobs = true
		}
	}
	if jobs {
		g.onJobs()
	}
	return outs, nil
}

// FireDue handles the timers due at now inside tx and audits them.
func FireDue(tx *store.Tx, eng *incident.Engine, now time.Time) ([]*incident.Outcome, error) {
	var outs []*incident.Outcome
	for _, tm := range tx.DueTimers(now) {
		if tm.Kind == timerSilence {
			os, err := fireSilence(tx, eng, tm, now)
			if err != nil {
				return nil, err
			}
			outs = append(outs, os...)
			continue
		}
		o, err := eng.Fire(tx, tm, now)
		if err != nil {
			return nil, err
		}
		if o == nil {
			continue
		}
		outs = append(outs, o)
		if err := tx.AddAudit(outcomeAudit(o, now, "timer: ")); err != nil {
			return nil, err
		}
	}
	return outs, nil
}
