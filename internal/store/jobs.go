package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"psagate/internal/psa"
)

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
