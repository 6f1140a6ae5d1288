package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"psagate/internal/incident"
	"psagate/internal/message"
	"psagate/internal/rules"
	"psagate/internal/store"
)

func (g *Gateway) spoolLoop(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		for {
			n, err := g.ProcessSpool(ctx, 128)
			if err != nil {
				g.log.Error("processing the spool failed; will retry", "err", err)
				break
			}
			if n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-g.spoolWake:
		case <-tick.C:
		}
	}
}

// Result is what became of one processed message.
type Result struct {
	Verdict  *Verdict
	Outcome  *incident.Outcome
	Decision rules.Action
	Effect   incident.Effect
	Entry    *store.SpoolEntry
	Pruned   int // quarantined messages pruned to make room (max_messages)
}

// ProcessSpool runs the incident engine over up to n spooled messages in
// one transaction and returns how many it handled. When that transaction
// fails, the messages are taken one by one, so that a single message the
// engine cannot handle is set aside (quarantined, with the error) instead
// of blocking every message behind it.
func (g *Gateway) ProcessSpool(ctx context.Context, n int) (int, error) {
	results, err := g.processBatch(n)
	if err != nil {
		g.log.Warn("spool batch failed; retrying its messages one by one", "err", err)
		results, err = g.processOneByOne(n)
	}
	jobs := false
	for _, r := range results {
		g.logResult(r)
		if r.Outcome != nil && len(r.Outcome.Jobs) > 0 {
			jobs = true
		}
	}
	if jobs {
		g.onJobs()
	}
	if len(results) > 0 {
		wake(g.timerWake)
	}
	return len(results), err
}

func (g *Gateway) processBatch(n int) ([]*Result, error) {
	var results []*Result
	s := g.Snapshot()
	eng := g.Engine(s)
	err := g.db.Update(func(tx *store.Tx) error {
		results = results[:0]
		entries, err := tx.SpoolBatch(n)
		if len(entries) == 0 && err != nil {
			return &messageError{err} // the head record itself is damaged
		}
		// A damaged record after good ones: process those, and meet the
		// damage when it is the head.
		for _, e := range entries {
			r, err := Process(tx, eng, s, e)
			if err != nil {
				return &messageError{fmt.Errorf("message %s: %w", e.ID, err)}
			}
			results = append(results, r)
			if err := tx.DeleteSpool(e.Seq); err != nil {
				return err
			}
		}
		if g.storeFault != nil {
			return g.storeFault()
		}
		return nil
	})
	return results, err
}

// messageError is a failure that belongs to one message (it cannot be
// decoded or processed), as opposed to the database failing to commit: only
// the first kind sets a message aside; the second is retried as it is.
type messageError struct{ err error }

func (e *messageError) Error() string { return e.err.Error() }

func (e *messageError) Unwrap() error { return e.err }

func (g *Gateway) processOneByOne(n int) ([]*Result, error) {
	var out []*Result
	for range n {
		r, perr := g.processBatch(1)
		if perr == nil {
			if len(r) == 0 {
				break
			}
			out = append(out, r...)
			continue
		}
		if !errors.As(perr, new(*messageError)) {
			// The store, not the message: leave it spooled for the retry.
			return out, perr
		}
		// This message fails on its own: keep it for an admin.
		var head *store.SpoolEntry
		qerr := g.db.Update(func(tx *store.Tx) error {
			entries, err := tx.SpoolHead(1)
			if ce := (*store.CorruptSpoolError)(nil); errors.As(err, &ce) {
				reason := "spool record could not be decoded: " + ce.Error()
				if head, err = tx.SetAsideCorrupt(ce.Seq, reason, g.now()); err != nil || head == nil {
					return err
				}
				return tx.AddAudit(&store.AuditEntry{Time: head.Received, Message: head.ID, Decision: string(rules.ActionQuarantine),
					Effect: "processing failed", Detail: reason})
			}
			if err != nil || len(entries) == 0 {
				return err
			}
			head = entries[0]
			reason := "could not be processed: " + perr.Error()
			if err := tx.Quarantine(head, reason); err != nil {
				return err
			}
			if err := tx.AddAudit(failedAudit(head, reason)); err != nil {
				return err
			}
			return tx.DeleteSpool(head.Seq)
		})
		if qerr != nil {
			return out, fmt.Errorf("%w; and setting the message aside failed: %v", perr, qerr)
		}
		if head != nil {
			g.log.Error("message could not be processed; it is kept in quarantine", "msg", head.ID, "err", perr)
		}
	}
	return out, nil
}

// Process handles one spooled message inside tx: quarantine, or the
// incident engine; it records the audit entry in the same transaction.
func Process(tx *store.Tx, eng *incident.Engine, s *Snapshot, e *store.SpoolEntry) (*Result, error) {
	v, err := decodeVerdict(e.Decision)
	if err != nil {
		// A verdict we cannot read must not lose the message: keep it for
		// an admin instead.
		if qerr := tx.Quarantine(e, "unreadable verdict: "+err.Error()); qerr != nil {
			return nil, qerr
		}
		return &Result{Verdict: &Verdict{ID: e.ID}, Decision: rules.ActionQuarantine, Effect: "unreadable verdict", Entry: e}, nil
	}
	return ProcessVerdict(tx, eng, s, e, v)
}

// ProcessVerdict is Process for a verdict the caller holds (try decides
// and processes in one step: the verdict need not go through JSON).
func ProcessVerdict(tx *store.Tx, eng *incident.Engine, s *Snapshot, e *store.SpoolEntry, vp *Verdict) (*Result, error) {
	v := *vp
	rcpt := firstOf(e.RcptTo)
	r := &Result{Verdict: &v, Entry: e}
	switch v.Action {
	case rules.ActionQuarantine:
		reason := "rule " + v.Rule
		switch {
		case v.Rule == BuiltinInjection:
			reason = "header injection: " + joinProblems(v.Problems)
		case v.Rule == BuiltinAuth:
			reason = "sender authentication: " + joinProblems(v.Problems)
		case v.Guard != "":
			reason = fmt.Sprintf("unsafe to %s (rule %s): %s", v.Was, v.Rule, v.Guard)
		}
		if e.Decision == nil {
			// The quarantine keeps the verdict beside the message.
			b, err := encodeVerdict(&v)
			if err != nil {
				return nil, err
			}
			e.Decision = b
		}
		if err := tx.Quarantine(e, reason); err != nil {
			return nil, err
		}
		if tx.QuarantineLen() > s.Config.Quarantine.MaxMessages {
			n, err := PruneQuarantine(tx, s, e.Received)
			if err != nil {
				return nil, err
			}
			r.Pruned = n
		}
		r.Decision, r.Effect = rules.ActionQuarantine, "kept"
		return r, tx.AddAudit(auditEntry(&v, e.MailFrom, rcpt, e.RemoteIP, e.Received, rules.ActionQuarantine, "kept", nil, reason))
	case rules.ActionTicket, rules.ActionNote, rules.ActionClose:
	default:
		return nil, fmt.Errorf("unexpected action %q in the spool", v.Action)
	}
	ev := &incident.Event{
		MessageID: v.ID, At: e.Received, Action: v.Action, Rule: v.Rule, Client: v.Client, Device: v.Device,
		Check: v.Check, Key: v.Key, Summary: v.Summary, Description: v.Description, NoteText: v.NoteText,
		Repeat: v.Repeat, Delay: v.Delay, Reopen: v.Reopen, Expect: v.Expect, Attach: v.Attach, Overrides: v.Overrides,
		Severity: v.Severity, Escalate: v.Escalate,
	}
	if sil, err := silenceFor(tx, &v, e.Received); err != nil {
		return nil, err
	} else if sil != nil {
		return silenced(tx, sil, ev, &v, e)
	}
	if v.Attach && v.Attachments > 0 {
		raw, err := tx.SpoolRaw(e)
		if err != nil {
			return nil, err
		}
		a := message.Decode(raw, message.Envelope{}, s.Limits())
		// The policy of the PSA this ticket goes to: each can have its own.
		types, maxBytes := s.Config.Deliver.AttachPolicy(s.Router.Effective(v.Client, v.Device, v.Overrides).Provider())
		ev.Attachments, ev.Withheld = FilterAttachments(a.Attachments, types, maxBytes)
	}
	out, err := eng.Apply(tx, ev)
	if err != nil {
		return nil, err
	}
	r.Outcome, r.Decision, r.Effect = out, out.Decision, out.Effect
	detail := out.Detail
	if len(ev.Withheld) > 0 {
		detail = strings.TrimPrefix(detail+"; attachments not uploaded: "+strings.Join(ev.Withheld, "; "), "; ")
	}
	if note := copiesNote(&v); note != "" {
		detail = strings.TrimPrefix(detail+"; "+note, "; ")
	}
	return r, tx.AddAudit(auditEntry(&v, e.MailFrom, rcpt, e.RemoteIP, e.Received, out.Decision, out.Effect, out.Incident, detail))
}

func joinProblems(p []string) string {
	if len(p) == 0 {
		return "(no detail)"
	}
	return strings.Join(p, "; ")
}
