package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Silence is a maintenance window: mail it matches is decided and audited
// but makes no PSA call; when it ends, what is still failing is ticketed
// and what recovered is closed (Pending).
type Silence struct {
	ID      uint64    `json:"id"`
	Client  string    `json:"client"`
	Device  string    `json:"device,omitempty"` // glob, "" for every device
	Rule    string    `json:"rule,omitempty"`   // exact rule name, "" for every rule
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Comment string    `json:"comment"`
	By      string    `json:"by,omitempty"` // who added it
	// Expired is when an admin ended it early, and by whom.
	Expired   time.Time `json:"expired,omitzero"`
	ExpiredBy string    `json:"expired_by,omitempty"`
	// CaughtUp is set once the incidents it held back were caught up.
	CaughtUp bool `json:"caught_up,omitempty"`
	Matched  int  `json:"matched"`
	// Pending holds, per incident key, the last event the silence held
	// back (encoded by the gateway), replayed when it ends.
	Pending map[string]json.RawMessage `json:"pending,omitempty"`
}

// ActiveAt reports whether the silence holds mail back at now.
func (s *Silence) ActiveAt(now time.Time) bool {
	return !now.Before(s.Start) && now.Before(s.End) && s.Expired.IsZero()
}

// AddSilence stores a new silence, giving it the next id.
func (t *Tx) AddSilence(s *Silence) error {
	b := t.b(bSilences)
	id, err := b.NextSequence()
	if err != nil {
		return err
	}
	s.ID = id
	return t.PutSilence(s)
}

// PutSilence writes s.
func (t *Tx) PutSilence(s *Silence) error { return putJSON(t.b(bSilences), u64(s.ID), s) }

// Silence returns silence id, or nil.
func (t *Tx) Silence(id uint64) (*Silence, error) {
	b := t.b(bSilences)
	if b == nil {
		return nil, nil
	}
	var s Silence
	ok, err := getJSON(b, u64(id), &s)
	if !ok || err != nil {
		return nil, err
	}
	return &s, nil
}

// Silences calls fn for every silence, newest first, until fn returns false.
func (t *Tx) Silences(fn func(*Silence) bool) error {
	b := t.b(bSilences)
	if b == nil {
		return nil // a database opened read-only from before silences
	}
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		var s Silence
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("silence %d: %w", getU64(k), err)
		}
		if !fn(&s) {
			return nil
		}
	}
	return nil
}

// QuarantineEntry returns the quarantined message with psagate id (or
// the quarantine's own sequence number, as text), or nil.
func (t *Tx) QuarantineEntry(id string) (*SpoolEntry, error) {
	var found *SpoolEntry
	err := t.eachQuarantined(func(e *SpoolEntry) bool {
		if strings.EqualFold(e.ID, id) || fmt.Sprint(e.Seq) == id {
			found = e
			return false
		}
		return true
	}, true)
	return found, err
}

// eachQuarantined calls fn for quarantined messages, oldest first, until
// fn returns false. Without raw, the message bytes are not copied.
func (t *Tx) eachQuarantined(fn func(*SpoolEntry) bool, raw bool) error {
	c := t.b(bQuarantine).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		e, err := decodeSpool(getU64(k), v)
		if err != nil {
			return err
		}
		if !raw {
			e.Size, e.Raw = len(e.Raw), nil
		}
		if !fn(e) {
			return nil
		}
	}
	return nil
}

// QuarantineList returns the quarantined messages without their bytes,
// oldest first.
func (t *Tx) QuarantineList() ([]*SpoolEntry, error) {
	var out []*SpoolEntry
	err := t.eachQuarantined(func(e *SpoolEntry) bool { out = append(out, e); return true }, false)
	return out, err
}

// DeleteQuarantined removes quarantine entry seq.
func (t *Tx) DeleteQuarantined(seq uint64) error { return t.b(bQuarantine).Delete(u64(seq)) }

// QuarantineLen is the number of quarantined messages. It counts keys
// (Stats lags writes made in the same transaction).
func (t *Tx) QuarantineLen() int {
	n := 0
	c := t.b(bQuarantine).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// PruneQuarantine deletes the oldest quarantined messages beyond max (0:
// no cap) and those quarantined before before (zero: no age limit), and
// returns them (without bytes) for the audit trail.
func (t *Tx) PruneQuarantine(max int, before time.Time) ([]*SpoolEntry, error) {
	b := t.b(bQuarantine)
	over := 0
	if n := t.QuarantineLen(); max > 0 && n > max {
		over = n - max
	}
	var gone []*SpoolEntry
	var keys [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		e, err := decodeSpool(getU64(k), v)
		old := err == nil && !before.IsZero() && e.QuarantinedAt().Before(before)
		if len(keys) >= over && !old {
			if err == nil && before.IsZero() {
				break // keys are in age order: nothing later is over the cap
			}
			continue
		}
		if err != nil {
			e = &SpoolEntry{Seq: getU64(k), ID: fmt.Sprintf("corrupt-%d", getU64(k))}
		}
		e.Size, e.Raw = len(e.Raw), nil
		gone = append(gone, e)
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return nil, err
		}
	}
	return gone, nil
}

// QuarantinedAt is when the message was set aside (its receipt time for
// entries from before that was recorded).
func (e *SpoolEntry) QuarantinedAt() time.Time {
	if !e.Quarantined.IsZero() {
		return e.Quarantined
	}
	return e.Received
}

// PutSpool spools e (a released quarantined message) without the dedupe
// check: an admin asked for it to be processed again.
func (t *Tx) PutSpool(e *SpoolEntry) error {
	val, err := encodeSpool(e)
	if err != nil {
		return err
	}
	sp := t.b(bSpool)
	seq, err := sp.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	return sp.Put(u64(seq), val)
}

// ErrNotFound is returned for an id that names nothing.
var ErrNotFound = errors.New("not found")

// DeleteIncident forgets incident id: its record, its key and open index
// entries (when they point at it) and its queued jobs. Its audit entries
// and dead letters stay for the record.
func (t *Tx) DeleteIncident(id uint64) (*Incident, int, error) {
	inc, err := t.Incident(id)
	if err != nil || inc == nil {
		if err == nil {
			err = fmt.Errorf("incident %d: %w", id, ErrNotFound)
		}
		return nil, 0, err
	}
	for _, b := range [][]byte{bKeys, bOpen} {
		if cur := t.b(b).Get([]byte(inc.Key)); cur != nil && getU64(cur) == id {
			if err := t.b(b).Delete([]byte(inc.Key)); err != nil {
				return nil, 0, err
			}
		}
	}
	var jobs []uint64
	if err := t.Jobs(func(j *Job) bool {
		if j.Incident == id {
			jobs = append(jobs, j.ID)
		}
		return true
	}); err != nil {
		return nil, 0, err
	}
	for _, j := range jobs {
		if err := t.DeleteJob(j); err != nil {
			return nil, 0, err
		}
	}
	return inc, len(jobs), t.b(bIncidents).Delete(u64(id))
}
