package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"psagate/internal/psa"
)

// SpoolEntry is an accepted message waiting to be processed. Decision is
// the rule engine's verdict made while DATA was open, encoded by the caller.
type SpoolEntry struct {
	Seq      uint64          `json:"-"`
	ID       string          `json:"id"`
	Received time.Time       `json:"received"`
	MailFrom string          `json:"mail_from"`
	RcptTo   []string        `json:"rcpt_to"`
	RemoteIP string          `json:"remote_ip,omitempty"`
	Helo     string          `json:"helo,omitempty"`
	Decision json.RawMessage `json:"decision,omitempty"`
	Reason   string          `json:"reason,omitempty"` // set when quarantined
	// Quarantined is when the message was set aside; Size is the size of
	// Raw where a listing leaves the bytes out.
	Quarantined time.Time `json:"quarantined,omitzero"`
	Size        int       `json:"size,omitempty"`
	Raw         []byte    `json:"-"`

	// lazy: read by SpoolBatch, whose entries leave the message in the
	// database until SpoolRaw asks for it.
	lazy bool
}

// A spool record is the raw message, then its JSON header, then the
// header's length (4 bytes, big-endian) and spoolMagic. The message is not
// base64-inflated inside the JSON, and it comes first so that a buffer
// with spare capacity after the message (smtpd leaves room) becomes the
// record without a copy: a 25 MB alert is then held once by psagate, not
// twice, while it is stored. Records of schema 1 (a length, the header,
// then the message) are still read.
var spoolMagic = []byte("\x00ps2")

func encodeSpool(e *SpoolEntry) ([]byte, error) {
	meta, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	need := len(meta) + 4 + len(spoolMagic)
	var out []byte
	if cap(e.Raw)-len(e.Raw) >= need {
		// Appending writes only past len(e.Raw): e.Raw itself is unchanged.
		out = e.Raw[:len(e.Raw):cap(e.Raw)]
	} else {
		out = make([]byte, len(e.Raw), len(e.Raw)+need)
		copy(out, e.Raw)
	}
	out = append(out, meta...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(meta)))
	return append(out, spoolMagic...), nil
}

func decodeSpool(seq uint64, v []byte) (*SpoolEntry, error) {
	e, start, end, err := decodeSpoolMeta(seq, v)
	if err != nil {
		return nil, err
	}
	e.Raw = bytes.Clone(v[start:end])
	return e, nil
}

// decodeSpoolMeta decodes a record's header and says where its message is
// in v, without reading the message (its pages of the database file are
// not touched, so they do not count towards psagate's resident memory).
func decodeSpoolMeta(seq uint64, v []byte) (e *SpoolEntry, start, end int, err error) {
	if e, start := decodeSpool2(seq, v); e != nil {
		return e, 0, start, nil
	}
	if len(v) < 4 {
		return nil, 0, 0, fmt.Errorf("spool entry %d: truncated", seq)
	}
	n := int(binary.BigEndian.Uint32(v))
	if 4+n > len(v) {
		return nil, 0, 0, fmt.Errorf("spool entry %d: bad header length", seq)
	}
	e = &SpoolEntry{Seq: seq}
	if err := json.Unmarshal(v[4:4+n], e); err != nil {
		return nil, 0, 0, fmt.Errorf("spool entry %d: %w", seq, err)
	}
	return e, 4 + n, len(v), nil
}

// decodeSpool2 reads the header of a record in the current layout and
// returns where it starts (the message ends there), or nil when v is not
// such a record (a schema 1 record, or damage).
func decodeSpool2(seq uint64, v []byte) (*SpoolEntry, int) {
	tail := 4 + len(spoolMagic)
	if len(v) < tail || !bytes.Equal(v[len(v)-len(spoolMagic):], spoolMagic) {
		return nil, 0
	}
	n := int(binary.BigEndian.Uint32(v[len(v)-tail:]))
	if n < 2 || n > len(v)-tail {
		return nil, 0
	}
	start := len(v) - tail - n
	meta := v[start : len(v)-tail]
	if meta[0] != '{' || meta[len(meta)-1] != '}' {
		return nil, 0
	}
	e := &SpoolEntry{Seq: seq}
	if json.Unmarshal(meta, e) != nil {
		return nil, 0
	}
	return e, start
}

// Accept spools e, unless dedupe (a hash identifying the message, see
// gateway.DedupeKey) was seen before: then it returns the id the message
// was first accepted under and dup = true. It returns only after the
// commit, so the caller may answer 250.
func (d *DB) Accept(e *SpoolEntry, dedupe []byte) (origID string, dup bool, err error) {
	res, err := d.AcceptAll([]*SpoolEntry{e}, [][]byte{dedupe})
	if err != nil {
		return "", false, err
	}
	return res[0].OrigID, res[0].Dup, nil
}

// Accepted is what became of one entry given to AcceptAll.
type Accepted struct {
	OrigID string // when Dup: the id it was first accepted under
	Dup    bool
}

// AcceptAll spools several entries (the per-client copies of one mail) in
// one transaction: all of them or none, so one SMTP reply can answer for
// all. dedupes[i] belongs to entries[i].
func (d *DB) AcceptAll(entries []*SpoolEntry, dedupes [][]byte) (res []Accepted, err error) {
	vals := make([][]byte, len(entries))
	size := 0
	for i, e := range entries {
		if i > 0 {
			// encodeSpool appends into Raw's spare capacity, and the
			// per-client copies of a mail share one Raw: the second would
			// overwrite the first's header. Give the others their own.
			c := *e
			c.Raw = slices.Clip(e.Raw)
			e = &c
		}
		if vals[i], err = encodeSpool(e); err != nil {
			return nil, err
		}
		size += len(vals[i])
	}
	defer func() { d.health.record(err, size) }()
	if err := d.health.injected(); err != nil {
		return nil, err
	}
	err = d.Batch(func(tx *Tx) error {
		res = make([]Accepted, len(entries)) // Batch may run this function again
		seen, sp := tx.b(bSeen), tx.b(bSpool)
		for i, e := range entries {
			dedupe := dedupes[i]
			if len(dedupe) > 0 {
				if v := seen.Get(dedupe); len(v) > 8 {
					res[i] = Accepted{OrigID: string(v[8:]), Dup: true}
					continue
				}
			}
			seq, err := sp.NextSequence()
			if err != nil {
				return err
			}
			if err := sp.Put(u64(seq), vals[i]); err != nil {
				return err
			}
			if len(dedupe) > 0 {
				if err := seen.Put(dedupe, append(u64(uint64(e.Received.UnixNano())), e.ID...)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return res, err
}

// CorruptSpoolError is a spool record that cannot be decoded (a damaged
// file, or a bug): SetAsideCorrupt moves it out of the way.
type CorruptSpoolError struct {
	Seq uint64
	Err error
}

func (e *CorruptSpoolError) Error() string { return e.Err.Error() }
func (e *CorruptSpoolError) Unwrap() error { return e.Err }

// SpoolHead returns up to n of the oldest spooled messages, and no more
// than spoolHeadBytes of them (but always the first). A record that
// cannot be decoded ends the list with a *CorruptSpoolError.
func (t *Tx) SpoolHead(n int) ([]*SpoolEntry, error) {
	var out []*SpoolEntry
	size := 0
	c := t.b(bSpool).Cursor()
	// Each message is copied out of the database: stop at spoolHeadBytes
	// (after one message, however large), or a backlog of large alerts
	// would be held in memory all at once.
	for k, v := c.First(); k != nil && len(out) < n && size < spoolHeadBytes; k, v = c.Next() {
		size += len(v)
		e, err := decodeSpool(getU64(k), v)
		if err != nil {
			return out, &CorruptSpoolError{Seq: getU64(k), Err: err}
		}
		out = append(out, e)
	}
	return out, nil
}

// SpoolBatch is SpoolHead for the spool worker: up to n of the oldest
// messages, each without its message bytes (Raw is nil); SpoolRaw reads
// them when they are needed (attachments, quarantine). A backlog of large
// alerts is then not copied out of the database, nor its pages of the
// file made resident, to decide messages that need only their headers.
func (t *Tx) SpoolBatch(n int) ([]*SpoolEntry, error) {
	var out []*SpoolEntry
	c := t.b(bSpool).Cursor()
	for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
		e, _, _, err := decodeSpoolMeta(getU64(k), v)
		if err != nil {
			return out, &CorruptSpoolError{Seq: getU64(k), Err: err}
		}
		e.lazy = true
		out = append(out, e)
	}
	return out, nil
}

// SpoolRaw returns the message of e, reading it from the spool for an
// entry of SpoolBatch (and keeping it in e.Raw).
func (t *Tx) SpoolRaw(e *SpoolEntry) ([]byte, error) {
	if e.Raw != nil || !e.lazy {
		return e.Raw, nil
	}
	v := t.b(bSpool).Get(u64(e.Seq))
	if v == nil {
		return nil, fmt.Errorf("spool entry %d: gone", e.Seq)
	}
	_, start, end, err := decodeSpoolMeta(e.Seq, v)
	if err != nil {
		return nil, err
	}
	e.Raw = bytes.Clone(v[start:end])
	return e.Raw, nil
}

// spoolHeadBytes bounds the bytes of messages SpoolHead returns.
const spoolHeadBytes = 16 << 20

// SetAsideCorrupt moves the undecodable spool record seq, bytes and all,
// to the quarantine under the id "corrupt-<seq>", so the messages after it
// are processed and an admin can still look at what was there. It returns
// the quarantine entry.
func (t *Tx) SetAsideCorrupt(seq uint64, reason string, now time.Time) (*SpoolEntry, error) {
	v := t.b(bSpool).Get(u64(seq))
	if v == nil {
		return nil, nil
	}
	e := &SpoolEntry{Seq: seq, ID: fmt.Sprintf("corrupt-%d", seq), Received: now, Raw: bytes.Clone(v)}
	if err := t.Quarantine(e, reason); err != nil {
		return nil, err
	}
	return e, t.DeleteSpool(seq)
}

// SpoolLen is the number of messages waiting.
func (t *Tx) SpoolLen() int { return t.b(bSpool).Stats().KeyN }

// DeleteSpool removes a processed message.
func (t *Tx) DeleteSpool(seq uint64) error { return t.b(bSpool).Delete(u64(seq)) }

// Quarantine keeps a message for an admin to look at.
func (t *Tx) Quarantine(e *SpoolEntry, reason string) error {
	q := t.b(bQuarantine)
	seq, err := q.NextSequence()
	if err != nil {
		return err
	}
	raw, err := t.SpoolRaw(e)
	if err != nil {
		return err
	}
	c := *e
	c.Reason, c.Raw = reason, raw
	val, err := encodeSpool(&c)
	if err != nil {
		return err
	}
	return q.Put(u64(seq), val)
}

// Quarantined lists quarantined messages, newest first.
func (t *Tx) Quarantined(limit int) ([]*SpoolEntry, error) {
	var out []*SpoolEntry
	c := t.b(bQuarantine).Cursor()
	for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
		e, err := decodeSpool(getU64(k), v)
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// PruneSeen forgets dedupe entries older than before.
func (d *DB) PruneSeen(before time.Time) (int, error) {
	n := 0
	err := d.Update(func(tx *Tx) error {
		// Collect first: deleting under a cursor while advancing it skips keys.
		var old [][]byte
		c := tx.b(bSeen).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) >= 8 && int64(getU64(v)) < before.UnixNano() {
				old = append(old, bytes.Clone(k))
			}
		}
		for _, k := range old {
			if err := tx.b(bSeen).Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

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

// Job operations.
const (
	OpCreate = "create"
	OpNote   = "note"
	OpAttach = "attach"
	OpClose  = "close"
	OpReopen = "reopen"
	// OpPriority raises the ticket's priority (escalation) and notes why.
	OpPriority = "priority"
)

// Job is one PSA call to make, in the outbox or the dead letters.
type Job struct {
	ID       uint64 `json:"id"`
	Incident uint64 `json:"incident"`
	Op       string `json:"op"`
	Key      string `json:"key"`
	Client   string `json:"client"`
	Device   string `json:"device,omitempty"`
	// Overrides are the deciding rule's PSA settings; the effective settings
	// are resolved again at delivery so a fixed config applies to a retry.
	Overrides map[string]string `json:"overrides,omitempty"`
	MessageID string            `json:"message_id,omitempty"`

	Summary     string       `json:"summary,omitempty"`
	Description string       `json:"description,omitempty"`
	ExternalRef string       `json:"external_ref,omitempty"`
	NoteTitle   string       `json:"note_title,omitempty"`
	NoteText    string       `json:"note_text,omitempty"`
	NoteKind    psa.NoteKind `json:"note_kind,omitempty"`
	Marker      string       `json:"marker,omitempty"`
	AttachName  string       `json:"attach_name,omitempty"`
	AttachType  string       `json:"attach_type,omitempty"`
	AttachData  []byte       `json:"attach_data,omitempty"`
	// Recur marks a note that reports the failure again (a repeat): if the
	// ticket turns out to be closed in the PSA, the failure is ticketed
	// again (after_manual_close) instead of noted. Summary and Description
	// then hold the repeat's ticket text.
	Recur bool `json:"recur,omitempty"`

	Created   time.Time `json:"created"`
	Attempts  int       `json:"attempts"`
	Started   bool      `json:"started,omitempty"` // an attempt began and its outcome is not known: it may have reached the PSA
	NextTry   time.Time `json:"next_try,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Provider  string    `json:"provider,omitempty"` // provider of the last attempt
	DeadAt    time.Time `json:"dead_at,omitzero"`
	Reason    string    `json:"reason,omitempty"` // why it is dead
}

// AddJob appends j to the outbox, giving it the next id.
func (t *Tx) AddJob(j *Job) error {
	ob := t.b(bOutbox)
	id, err := ob.NextSequence()
	if err != nil {
		return err
	}
	j.ID = id
	if j.Marker == "" && j.Op != OpCreate {
		// Unique per job and per database, so a retried note can be recognised.
		j.Marker = fmt.Sprintf("%s-%d", t.db.instance, id)
	}
	return t.PutJob(j)
}

// PutJob writes an outbox job and its index entry.
func (t *Tx) PutJob(j *Job) error {
	if err := putJSON(t.b(bOutbox), u64(j.ID), j); err != nil {
		return err
	}
	return t.b(bOutboxIdx).Put(u64(j.ID), encodeHead(j))
}

// JobHead is the part of an outbox job the dispatcher needs to choose what
// to run: reading it does not decode the job's texts and attachments.
type JobHead struct {
	ID       uint64
	Incident uint64
	NextTry  time.Time
	Provider string // the provider it is expected to go to (a hint: delivery resolves it again)
}

func encodeHead(j *Job) []byte {
	v := make([]byte, 16, 16+len(j.Provider))
	binary.BigEndian.PutUint64(v, j.Incident)
	var next uint64
	if !j.NextTry.IsZero() {
		next = uint64(j.NextTry.UnixNano())
	}
	binary.BigEndian.PutUint64(v[8:], next)
	return append(v, j.Provider...)
}

// JobHeads calls fn for every outbox job in id order, reading only the index.
func (t *Tx) JobHeads(fn func(JobHead) bool) error {
	c := t.b(bOutboxIdx).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(v) < 16 {
			return fmt.Errorf("outbox index entry %d is damaged", getU64(k))
		}
		h := JobHead{ID: getU64(k), Incident: getU64(v)}
		if n := getU64(v[8:]); n != 0 {
			h.NextTry = time.Unix(0, int64(n))
		}
		h.Provider = string(v[16:])
		if !fn(h) {
			return nil
		}
	}
	return nil
}

func (t *Tx) rebuildOutboxIndex() error {
	if err := t.tx.DeleteBucket(bOutboxIdx); err != nil {
		return err
	}
	idx, err := t.tx.CreateBucket(bOutboxIdx)
	if err != nil {
		return err
	}
	return eachJob(t.b(bOutbox), func(j *Job) bool {
		err = idx.Put(u64(j.ID), encodeHead(j))
		return err == nil
	})
}

// Job returns outbox job id, or nil.
func (t *Tx) Job(id uint64) (*Job, error) {
	var j Job
	ok, err := getJSON(t.b(bOutbox), u64(id), &j)
	if !ok || err != nil {
		return nil, err
	}
	return &j, nil
}

// DeleteJob removes a finished job from the outbox.
func (t *Tx) DeleteJob(id uint64) error {
	if err := t.b(bOutboxIdx).Delete(u64(id)); err != nil {
		return err
	}
	return t.b(bOutbox).Delete(u64(id))
}

// Jobs calls fn for every outbox job in id order until fn returns false.
func (t *Tx) Jobs(fn func(*Job) bool) error { return eachJob(t.b(bOutbox), fn) }

// DeadJobs calls fn for every dead job in id order until fn returns false.
func (t *Tx) DeadJobs(fn func(*Job) bool) error { return eachJob(t.b(bDead), fn) }

func eachJob(b *bolt.Bucket, fn func(*Job) bool) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var j Job
		if err := json.Unmarshal(v, &j); err != nil {
			return fmt.Errorf("job %d: %w", getU64(k), err)
		}
		if !fn(&j) {
			return nil
		}
	}
	return nil
}

// Kill moves an outbox job to the dead letters. Started is kept: a job
// that died after a timeout or in mid-call may have reached the PSA, and
// when it is revived its first attempt must look for that before it
// creates anything again.
func (t *Tx) Kill(j *Job, reason string, at time.Time) error {
	j.Reason = reason
	j.DeadAt = at
	if err := putJSON(t.b(bDead), u64(j.ID), j); err != nil {
		return err
	}
	return t.DeleteJob(j.ID)
}

// DeadJob returns dead job id, or nil.
func (t *Tx) DeadJob(id uint64) (*Job, error) {
	var j Job
	ok, err := getJSON(t.b(bDead), u64(id), &j)
	if !ok || err != nil {
		return nil, err
	}
	return &j, nil
}

// Revive moves a dead job back to the outbox under its own id, so it keeps
// its place before the later jobs of its incident.
func (t *Tx) Revive(id uint64, now time.Time) (*Job, error) {
	j, err := t.DeadJob(id)
	if err != nil || j == nil {
		return nil, err
	}
	j.Attempts, j.NextTry, j.Reason, j.DeadAt, j.Created = 0, time.Time{}, "", time.Time{}, now
	if err := t.PutJob(j); err != nil {
		return nil, err
	}
	return j, t.b(bDead).Delete(u64(id))
}

// DropDead deletes a dead job for good.
func (t *Tx) DropDead(id uint64) (bool, error) {
	if t.b(bDead).Get(u64(id)) == nil {
		return false, nil
	}
	return true, t.b(bDead).Delete(u64(id))
}

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
	Effect   string    `json:"effect,omitempty"` // e.g. "noted", "held", "cancelled hold-down", "no-op"
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
