package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"psagate/internal/psa"
)

// Incident states.
const (
	StatePending   = "pending"   // held down: waiting for a recovery before a ticket is opened
	StateOpen      = "open"      // a ticket exists (or its create job is queued)
	StateClosed    = "closed"    // closed by a recovery (or by hand)
	StateCancelled = "cancelled" // recovered inside the hold-down: no ticket was ever made
	// StateClosedInPSA: someone closed, completed, merged or deleted the
	// ticket in the PSA; psagate writes nothing more to it.
	StateClosedInPSA = "closed-in-psa"
)

// Incident is one ongoing problem and its ticket.
type Incident struct {
	ID          uint64          `json:"id"`
	Key         string          `json:"key"`
	Client      string          `json:"client"`
	Device      string          `json:"device,omitempty"`
	Check       string          `json:"check,omitempty"`
	Rule        string          `json:"rule,omitempty"`
	State       string          `json:"state"`
	Summary     string          `json:"summary"`
	ExternalRef string          `json:"external_ref"`
	Provider    string          `json:"provider,omitempty"`
	Ticket      psa.TicketRef   `json:"ticket,omitzero"`
	NoPSA       bool            `json:"no_psa,omitempty"` // its client was disabled: no PSA calls
	Absence     bool            `json:"absence,omitempty"`
	FirstSeen   time.Time       `json:"first_seen"`
	LastSeen    time.Time       `json:"last_seen"`
	Count       int             `json:"count"`
	Notes       int             `json:"notes,omitempty"`
	Ignored     int             `json:"ignored,omitempty"`
	OpenedAt    time.Time       `json:"opened_at,omitzero"`
	ClosedAt    time.Time       `json:"closed_at,omitzero"`
	DueAt       time.Time       `json:"due_at,omitzero"`
	Reopened    int             `json:"reopened,omitempty"`
	LastMessage string          `json:"last_message,omitempty"`
	Held        json.RawMessage `json:"held,omitempty"` // the ticket to open when a hold-down ends

	// PSAStatus is the ticket's status as last read from the PSA, PSAGone
	// that the PSA no longer knows it, CheckedAt when it was read.
	PSAStatus string    `json:"psa_status,omitempty"`
	PSAGone   bool      `json:"psa_gone,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// Storm control: notes in the current hour's window, and the repeats
	// counted instead of noted since, for the one summary note.
	NoteWindow     time.Time `json:"note_window,omitzero"`
	WindowNotes    int       `json:"window_notes,omitempty"`
	Throttled      int       `json:"throttled,omitempty"`
	ThrottledFirst time.Time `json:"throttled_first,omitzero"`
	ThrottledLast  time.Time `json:"throttled_last,omitzero"`
	ThrottledText  string    `json:"throttled_text,omitempty"` // the last throttled repeat's summary
	// Severity is the highest severity reported for the incident (see
	// incident.SeverityRank); Escalated that its priority was raised.
	Severity  string `json:"severity,omitempty"`
	Escalated bool   `json:"escalated,omitempty"`
}

// Active reports whether the incident is pending or open.
func (i *Incident) Active() bool { return i.State == StatePending || i.State == StateOpen }

// NewIncidentID allocates an incident id.
func (t *Tx) NewIncidentID() (uint64, error) { return t.b(bIncidents).NextSequence() }

// Incident returns the incident with id, or nil.
func (t *Tx) Incident(id uint64) (*Incident, error) {
	var inc Incident
	ok, err := getJSON(t.b(bIncidents), u64(id), &inc)
	if !ok || err != nil {
		return nil, err
	}
	return &inc, nil
}

// MaxKeyLen bounds the incident, expect and timer keys this package
// writes. bbolt refuses keys over 32 KiB, and a key is made of text an
// alert controls (its Subject, a device name a rule extracted): a 32 KB
// Subject once made a message unprocessable (issue 14).
const MaxKeyLen = 512

// BoundKey returns key when it is at most MaxKeyLen bytes, else its first
// bytes (cut on a UTF-8 boundary) and a hash of the whole key, so distinct
// long keys stay distinct and the same long key always maps to the same
// bounded one. BoundKey(BoundKey(k)) == BoundKey(k).
func BoundKey(key string) string {
	if len(key) <= MaxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	tail := "…#" + hex.EncodeToString(sum[:16])
	cut := MaxKeyLen - len(tail)
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return key[:cut] + tail
}

// IncidentByKey returns the latest incident of key (in any state), or nil.
func (t *Tx) IncidentByKey(key string) (*Incident, error) {
	id := t.b(bKeys).Get([]byte(BoundKey(key)))
	if id == nil {
		return nil, nil
	}
	return t.Incident(getU64(id))
}

// PutIncident stores inc and keeps the key and open indexes in step.
func (t *Tx) PutIncident(inc *Incident) error {
	if inc.ID == 0 {
		return errors.New("incident without id")
	}
	if err := putJSON(t.b(bIncidents), u64(inc.ID), inc); err != nil {
		return err
	}
	key := []byte(BoundKey(inc.Key))
	keys := t.b(bKeys)
	if cur := keys.Get(key); cur == nil || getU64(cur) <= inc.ID {
		if err := keys.Put(key, u64(inc.ID)); err != nil {
			return err
		}
	}
	open := t.b(bOpen)
	if inc.Active() {
		return open.Put(key, u64(inc.ID))
	}
	if cur := open.Get(key); cur != nil && getU64(cur) == inc.ID {
		return open.Delete(key)
	}
	return nil
}

// Incidents calls fn for every incident, newest first, until fn returns false.
func (t *Tx) Incidents(fn func(*Incident) bool) error {
	c := t.b(bIncidents).Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		var inc Incident
		if err := json.Unmarshal(v, &inc); err != nil {
			return fmt.Errorf("incident %d: %w", getU64(k), err)
		}
		if !fn(&inc) {
			return nil
		}
	}
	return nil
}

// OpenIncidents returns the pending and open incidents, in key order.
func (t *Tx) OpenIncidents() ([]*Incident, error) {
	var out []*Incident
	c := t.b(bOpen).Cursor()
	for _, v := c.First(); v != nil; _, v = c.Next() {
		inc, err := t.Incident(getU64(v))
		if err != nil {
			return out, err
		}
		if inc != nil {
			out = append(out, inc)
		}
	}
	return out, nil
}
