package gateway

import (
	"time"

	"psagate/internal/incident"
	"psagate/internal/psa"
	"psagate/internal/rules"
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

// refusalAudits bounds the audit entries of SMTP refusals a minute, so a
// scanner hammering the port cannot push real decisions out of the capped
// audit trail; the rest are counted in psagate_smtp_refused_total only.
const refusalAudits = 120

// Refused audits a connection or mail refused at the SMTP level (relay,
// size, network, hop limit ...): decision reject, the reason as effect and
// the reply the sender got as detail.
func (g *Gateway) Refused(reason, ip, from string, rcpt []string, reply string) {
	now := g.now()
	g.refMu.Lock()
	if now.Sub(g.refWindow) >= time.Minute {
		if g.refDropped > 0 {
			g.log.Warn("SMTP refusals not audited (over the audit's per-minute bound); they are counted in psagate_smtp_refused_total",
				"n", g.refDropped)
		}
		g.refWindow, g.refCount, g.refDropped = now, 0, 0
	}
	g.refCount++
	over := g.refCount > refusalAudits
	if over {
		g.refDropped++
	}
	g.refMu.Unlock()
	if over {
		return
	}
	e := &store.AuditEntry{Time: now, From: from, Rcpt: firstOf(rcpt), RemoteIP: ip, Rule: "(smtp)",
		Decision: string(rules.ActionReject), Effect: reason, Detail: reply}
	select {
	case g.audit <- e:
	default:
		g.log.Warn("audit queue full; refusal not recorded in the audit trail", "reason", reason)
	}
}
