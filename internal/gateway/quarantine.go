package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"psagate/internal/message"
	"psagate/internal/rules"
	"psagate/internal/sanitize"
	"psagate/internal/store"
)

// Release takes quarantined message id out of the quarantine and runs it
// through the current rules again, as an admin asked (by). With as =
// "ticket" it becomes a ticket whatever the rules say. A mail the rules
// would still quarantine stays where it is, unless as says otherwise; one
// they now drop or reject is removed. Whatever needs the incident engine
// is spooled, so the spool worker handles it like new mail. It returns the
// new verdict.
func Release(tx *store.Tx, s *Snapshot, id, as string, now time.Time, by string) (*Verdict, error) {
	switch as {
	case "", string(rules.ActionTicket):
	default:
		return nil, fmt.Errorf("release -as %q: only \"ticket\" can be forced", as)
	}
	e, err := tx.QuarantineEntry(id)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, fmt.Errorf("quarantined message %s: %w", id, store.ErrNotFound)
	}
	if strings.HasPrefix(e.ID, "corrupt-") {
		return nil, fmt.Errorf("%s is a damaged spool record, not a mail: look at it with quarantine show, then delete it", e.ID)
	}
	env := message.Envelope{MailFrom: e.MailFrom, RcptTo: e.RcptTo, Helo: e.Helo, Received: now}
	if ip, err := netip.ParseAddr(e.RemoteIP); err == nil {
		env.RemoteIP = ip
	}
	v, a, _ := s.Decide(e.ID, e.Raw, env)
	if as == string(rules.ActionTicket) {
		v.Action, v.Guard, v.Was = rules.ActionTicket, "", ""
		if v.Repeat == "" {
			v.Repeat = rules.RepeatNote
		}
		// A built-in check (header injection) quarantines before any rule
		// made a key or texts: those of an unknown alert then apply.
		if v.Key == "" {
			v.Key = sanitize.Line(v.Client + "/" + a.From + "/" + a.Subject)
		}
		if v.Summary == "" {
			v.Summary = a.Subject
		}
		if v.Summary == "" {
			v.Summary = "(no subject) alert from " + a.From
		}
		if v.Description == "" {
			v.Description = DefaultDescription(a, v)
		}
	}
	detail := fmt.Sprintf("released by %s, decided again: %s by rule %q (it was quarantined: %s)", by, v.Action, v.Rule, e.Reason)
	if as != "" {
		detail = fmt.Sprintf("released by %s as %s (it was quarantined: %s)", by, as, e.Reason)
	}
	switch v.Action {
	case rules.ActionQuarantine:
		return v, fmt.Errorf("the rules still quarantine %s (rule %q%s): release it with -as ticket to ticket it anyway, or delete it",
			e.ID, v.Rule, strings.TrimSuffix(", "+v.Guard, ", "))
	case rules.ActionTicket, rules.ActionNote, rules.ActionClose:
		vb, err := encodeVerdict(v)
		if err != nil {
			return nil, err
		}
		ne := *e
		ne.Decision, ne.Reason, ne.Received, ne.Quarantined = vb, "", now, time.Time{}
		if err := tx.PutSpool(&ne); err != nil {
			return nil, err
		}
	}
	if err := tx.DeleteQuarantined(e.Seq); err != nil {
		return nil, err
	}
	return v, tx.AddAudit(&store.AuditEntry{Time: now, Message: e.ID, MsgID: v.HeaderMsgID, From: v.From, Rcpt: firstOf(e.RcptTo),
		Subject: v.Subject, Client: v.Client, Device: v.Device, Rule: v.Rule, Key: v.Key,
		Decision: AdminDecision, Effect: "released", Detail: detail})
}

// DeleteQuarantined deletes quarantined message id for good.
func DeleteQuarantined(tx *store.Tx, id string, now time.Time, by string) error {
	e, err := tx.QuarantineEntry(id)
	if err != nil {
		return err
	}
	if e == nil {
		return fmt.Errorf("quarantined message %s: %w", id, store.ErrNotFound)
	}
	if err := tx.DeleteQuarantined(e.Seq); err != nil {
		return err
	}
	return tx.AddAudit(&store.AuditEntry{Time: now, Message: e.ID, From: e.MailFrom, Rcpt: firstOf(e.RcptTo),
		Decision: AdminDecision, Effect: "deleted", Detail: fmt.Sprintf("quarantined message deleted by %s (it was quarantined: %s)", by, e.Reason)})
}

// PruneQuarantine applies [quarantine] max_messages and max_age at now,
// auditing each pruned message, and returns how many went.
func PruneQuarantine(tx *store.Tx, s *Snapshot, now time.Time) (int, error) {
	q := s.Config.Quarantine
	var before time.Time
	if q.MaxAge > 0 {
		before = now.Add(-q.MaxAge.D())
	}
	gone, err := tx.PruneQuarantine(q.MaxMessages, before)
	if err != nil {
		return 0, err
	}
	for _, e := range gone {
		if err := tx.AddAudit(&store.AuditEntry{Time: now, Message: e.ID, From: e.MailFrom, Rcpt: firstOf(e.RcptTo),
			Decision: AdminDecision, Effect: "pruned",
			Detail: fmt.Sprintf("quarantine over max_messages = %d or older than max_age = %s (it was quarantined: %s)", q.MaxMessages, q.MaxAge.D(), e.Reason)}); err != nil {
			return 0, err
		}
	}
	return len(gone), nil
}

// ErrNotFound is store.ErrNotFound, for callers that map it to 404.
var ErrNotFound = store.ErrNotFound

// IsNotFound reports whether err says an id names nothing.
func IsNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
