package gateway

import (
	"strings"
	"time"

	"psagate/internal/incident"
	"psagate/internal/message"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// record queues an audit entry for a decision that needs no transaction of
// its own (drops and rejects): losing it in a crash loses no alert.
func (g *Gateway) record(v *Verdict, env message.Envelope, decision rules.Action, effect incident.Effect, inc *store.Incident, detail string) {
	e := auditEntry(v, env.MailFrom, firstOf(env.RcptTo), ipString(env), env.Received, decision, effect, inc, detail)
	select {
	case g.audit <- e:
	default:
		g.log.Warn("audit queue full; decision not recorded in the audit trail", "id", v.ID)
	}
}

func auditEntry(v *Verdict, from, rcpt, ip string, at time.Time, decision rules.Action, effect incident.Effect, inc *store.Incident, detail string) *store.AuditEntry {
	if len(v.Notes) > 0 {
		notes := strings.Join(v.Notes, "; ")
		if detail == "" {
			detail = notes
		} else {
			detail += "; " + notes
		}
	}
	e := &store.AuditEntry{Time: at, Message: v.ID, MsgID: v.HeaderMsgID, From: v.From, Rcpt: rcpt, RemoteIP: ip,
		Subject: v.Subject, Client: v.Client, Device: v.Device, Rule: v.Rule, Decision: string(decision), Effect: string(effect),
		Key: v.Key, Detail: detail, Auth: v.Auth}
	if e.From == "" {
		e.From = from
	}
	if inc != nil {
		e.Incident = inc.ID
	}
	return e
}

// CloseAudit flushes and stops the audit writer; call after the SMTP
// server has stopped.
func (g *Gateway) CloseAudit() {
	g.closeOnce.Do(func() { close(g.audit) })
	<-g.auditDone
}

func (g *Gateway) auditLoop() {
	defer close(g.auditDone)
	for e := range g.audit {
		batch := []*store.AuditEntry{e}
	more:
		for len(batch) < 256 {
			select {
			case e, ok := <-g.audit:
				if !ok {
					break more
				}
				batch = append(batch, e)
			default:
				break more
			}
		}
		if err := g.db.Update(func(tx *store.Tx) error {
			for _, e := range batch {
				if err := tx.AddAudit(e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			g.log.Error("audit write failed", "err", err, "entries", len(batch))
		}
	}
}

// failedAudit is the audit entry of a message that could not be
// processed: everything its verdict says (subject, client, rule, key), so
// an admin searching the audit by subject or client still finds it.
func failedAudit(e *store.SpoolEntry, reason string) *store.AuditEntry {
	v, err := decodeVerdict(e.Decision)
	if err != nil {
		v = &Verdict{ID: e.ID}
	}
	v.ID = e.ID
	return auditEntry(v, e.MailFrom, firstOf(e.RcptTo), e.RemoteIP, e.Received, rules.ActionQuarantine, "processing failed", nil, reason)
}

func (g *Gateway) logResult(r *Result) {
	v := r.Verdict
	attrs := []any{"id", v.ID, "decision", r.Decision, "effect", r.Effect, "rule", v.Rule, "client", v.Client,
		"subject", v.Subject, "from", v.From}
	if v.Device != "" {
		attrs = append(attrs, "device", v.Device)
	}
	if v.Key != "" {
		attrs = append(attrs, "key", v.Key)
	}
	if o := r.Outcome; o != nil {
		if o.Incident != nil {
			attrs = append(attrs, "incident", o.Incident.ID)
		}
		if len(o.Jobs) > 0 {
			attrs = append(attrs, "jobs", len(o.Jobs))
		}
		if o.Detail != "" {
			attrs = append(attrs, "detail", o.Detail)
		}
	}
	g.log.Info("decision", attrs...)
	if g.metrics != nil && r.Pruned > 0 {
		g.metrics.QuarantinePruned.Add(float64(r.Pruned))
	}
	if g.metrics != nil {
		g.metrics.Decisions.WithLabelValues(string(r.Decision), string(r.Effect)).Inc()
	}
}
