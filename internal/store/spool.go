package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"
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
