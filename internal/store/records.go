package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Timer is a scheduled event: a hold-down ending or an expected mail due.
type Timer struct {
	At   time.Time
	Kind string // "holddown" | "expect"
	Ref  string // incident id or expect key
}

func timerKey(tm Timer) []byte {
	k := u64(uint64(tm.At.UnixNano()))
	k = append(k, tm.Kind...)
	k = append(k, 0)
	return append(k, BoundKey(tm.Ref)...)
}

func parseTimerKey(k []byte) (Timer, bool) {
	if len(k) < 9 {
		return Timer{}, false
	}
	rest := k[8:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return Timer{}, false
	}
	return Timer{At: time.Unix(0, int64(getU64(k))), Kind: string(rest[:i]), Ref: string(rest[i+1:])}, true
}

// AddTimer schedules tm.
func (t *Tx) AddTimer(tm Timer) error { return t.b(bTimers).Put(timerKey(tm), nil) }

// DeleteTimer unschedules tm.
func (t *Tx) DeleteTimer(tm Timer) error { return t.b(bTimers).Delete(timerKey(tm)) }

// DueTimers returns the timers due at or before now, earliest first.
func (t *Tx) DueTimers(now time.Time) []Timer {
	var out []Timer
	c := t.b(bTimers).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		tm, ok := parseTimerKey(k)
		if !ok {
			continue
		}
		if tm.At.After(now) {
			break
		}
		out = append(out, tm)
	}
	return out
}

// NextTimer returns when the earliest timer is due.
func (t *Tx) NextTimer() (time.Time, bool) {
	k, _ := t.b(bTimers).Cursor().First()
	if tm, ok := parseTimerKey(k); ok {
		return tm.At, true
	}
	return time.Time{}, false
}

// Timers returns every scheduled timer, earliest first.
func (t *Tx) Timers() []Timer {
	var out []Timer
	c := t.b(bTimers).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if tm, ok := parseTimerKey(k); ok {
			out = append(out, tm)
		}
	}
	return out
}

// GetExpect reads the absence-tracking record under key into v.
func (t *Tx) GetExpect(key string, v any) (bool, error) {
	return getJSON(t.b(bExpect), []byte(BoundKey(key)), v)
}

// PutExpect writes an absence-tracking record.
func (t *Tx) PutExpect(key string, v any) error {
	return putJSON(t.b(bExpect), []byte(BoundKey(key)), v)
}

// EachExpect calls fn with every absence-tracking record.
func (t *Tx) EachExpect(fn func(key string, raw []byte) error) error {
	return t.b(bExpect).ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

// AuditEntry records one decision, so an admin can answer "why was this
// mail dropped?" long after the fact.
type AuditEntry struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Message  string    `json:"message_id"` // psagate's id, as in the SMTP reply
	MsgID    string    `json:"header_message_id,omitempty"`
	From     string    `json:"from,omitempty"`
	Rcpt     string    `json:"rcpt,omitempty"`
	RemoteIP string    `json:"remote_ip,omitempty"`
	Subject  string    `json:"subject,omitempty"`
	Client   string    `json:"client,omitempty"`
	Device   string    `json:"device,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	Decision string    `json:"decision"`
	Effect   string    `json:"effect,omitempty"` // an incident.Effect ("noted", "held", "cancelled", "no-op" ...) or a gateway/admin word ("kept", "released")
	Key      string    `json:"key,omitempty"`
	Incident uint64    `json:"incident,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Auth     string    `json:"auth,omitempty"` // Authentication-Results view, when [auth] ran
}

// AddAudit appends e, dropping the oldest entries beyond the cap.
func (t *Tx) AddAudit(e *AuditEntry) error {
	b := t.b(bAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	if err := putJSON(b, u64(seq), e); err != nil {
		return err
	}
	if max := uint64(t.db.auditMax); seq > max {
		var old [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && getU64(k) <= seq-max; k, _ = c.Next() {
			old = append(old, bytes.Clone(k))
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// Audit calls fn for audit entries, newest first, until fn returns false.
func (t *Tx) Audit(fn func(*AuditEntry) bool) error {
	c := t.b(bAudit).Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		var e AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("audit %d: %w", getU64(k), err)
		}
		if !fn(&e) {
			return nil
		}
	}
	return nil
}
