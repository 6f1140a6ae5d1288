package gateway

import (
	"time"

	"psagate/internal/incident"
	"psagate/internal/psa"
	"psagate/internal/store"
)

// TicketEnded is the delivery workers' hook for a ticket found closed or
// deleted in the PSA (deliver.Options.TicketEnded): the incident engine
// settles the incident and its queued calls inside tx, and each thing it
// did is audited there too.
func (g *Gateway) TicketEnded(tx *store.Tx, id, fromJob uint64, st psa.TicketState) error {
	now := g.now()
	outs, err := g.Engine(g.Snapshot()).TicketEnded(tx, id, fromJob, st, now)
	if err != nil {
		return err
	}
	for _, o := range outs {
		if err := tx.AddAudit(outcomeAudit(o, now, "psa: ")); err != nil {
			return err
		}
		if g.metrics != nil {
			g.metrics.Decisions.WithLabelValues(string(o.Decision), string(o.Effect)).Inc()
		}
		g.log.Info("ticket state", "decision", o.Decision, "effect", o.Effect, "incident", o.Incident.ID, "detail", o.Detail)
	}
	return nil
}

// outcomeAudit is the audit entry of an outcome that no mail caused (a
// timer, the PSA's ticket state, an admin).
func outcomeAudit(o *incident.Outcome, at time.Time, prefix string) *store.AuditEntry {
	e := &store.AuditEntry{Time: at, Decision: string(o.Decision), Effect: string(o.Effect), Detail: prefix + o.Detail}
	if o.Incident != nil {
		e.Incident, e.Key, e.Client, e.Device, e.Rule, e.Subject = o.Incident.ID, o.Incident.Key,
			o.Incident.Client, o.Incident.Device, o.Incident.Rule, o.Incident.Summary
	}
	return e
}
