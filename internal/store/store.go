// Package store keeps psagate's state in one bbolt file: the spool of
// accepted messages, incidents, the outbox of PSA jobs, dead letters, the
// Message-ID dedupe table, the audit trail, timers and a schema version.
//
// Durability rule: a message is acknowledged with 250 only after the
// transaction that spooled it has committed (bbolt fsyncs on commit), and it
// leaves the spool only in the transaction that records what became of it.
// Acceptance goes through a group commit so that many SMTP sessions share
// one fsync.
package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout this code reads and writes. 2: spool and
// quarantine records put the message before their header (records.go);
// schema 1 records are still read, so opening a schema 1 file for writing
// only records the new number.
const SchemaVersion = 2

var (
	bSpool      = []byte("spool")
	bSeen       = []byte("seen")
	bIncidents  = []byte("incidents")
	bKeys       = []byte("incident_keys") // incident key -> id of its latest incident
	bOpen       = []byte("incidents_open")
	bOutbox     = []byte("outbox")
	bOutboxIdx  = []byte("outbox_index") // job id -> incident, next try, provider: what the dispatcher scans
	bDead       = []byte("dead")
	bAudit      = []byte("audit")
	bTimers     = []byte("timers")
	bExpect     = []byte("expect")
	bQuarantine = []byte("quarantine")
	bMeta       = []byte("meta")
	bSilences   = []byte("silences")
	bIMAP       = []byte("imap") // [[imap]] source name -> UIDVALIDITY and the last UID handled (imap.go)

	allBuckets = [][]byte{bSpool, bSeen, bIncidents, bKeys, bOpen, bOutbox, bOutboxIdx, bDead, bAudit, bTimers, bExpect, bQuarantine, bMeta, bSilences, bIMAP}
)

// ErrLocked is returned by Open when another process holds the database.
var ErrLocked = errors.New("database is in use by another process (is psagate serve running?)")

// Options tune Open.
type Options struct {
	ReadOnly bool
	// LockTimeout is how long to wait for the file lock. 0 means 2s.
	LockTimeout time.Duration
	// AuditMax caps the audit bucket (0 = 10000).
	AuditMax int
	// BatchDelay is the longest an accepted message waits for others to
	// share its commit (0 = 2ms).
	BatchDelay time.Duration
}

// DB is an open state database.
type DB struct {
	bolt     *bolt.DB
	instance string
	auditMax int
	path     string
	health   spoolHealth
}

// Open opens or creates the database at path, creating its directory.
func Open(path string, opt Options) (*DB, error) {
	if opt.LockTimeout == 0 {
		opt.LockTimeout = 2 * time.Second
	}
	if opt.AuditMax == 0 {
		opt.AuditMax = 10000
	}
	if opt.BatchDelay == 0 {
		opt.BatchDelay = 2 * time.Millisecond
	}
	if !opt.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("state: create directory: %w", err)
		}
	}
	// bbolt trusts the file: a truncated or bit-flipped one makes it panic
	// (exit status 2) or fault. Check it first, and say what to do.
	if err := Check(path, opt.LockTimeout); err != nil {
		return nil, err
	}
	bdb, err := openBolt(path, &bolt.Options{
		Timeout:        opt.LockTimeout,
		ReadOnly:       opt.ReadOnly,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("state %s: %w", path, ErrLocked)
		}
		if errors.Is(err, ErrDamaged) {
			return nil, err
		}
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	bdb.MaxBatchDelay = opt.BatchDelay
	d := &DB{bolt: bdb, auditMax: opt.AuditMax, path: path}
	if opt.ReadOnly {
		err = bdb.View(func(tx *bolt.Tx) error { return d.checkSchema(tx, false) })
	} else {
		err = bdb.Update(func(tx *bolt.Tx) error { return d.checkSchema(tx, true) })
	}
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	return d, nil
}

// openBolt is bolt.Open that turns a panic (damage Check cannot see)
// into a *DamagedError instead of a crash.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, &DamagedError{Path: path, Problem: fmt.Sprintf("the database library failed reading it: %v", p)}
		}
	}()
	return bolt.Open(path, 0o600, o)
}

// checkSchema creates the buckets of a new database, refuses a database
// written by a newer psagate, and migrates older layouts.
func (d *DB) checkSchema(tx *bolt.Tx, write bool) error {
	meta := tx.Bucket(bMeta)
	if meta == nil {
		if !write {
			return errors.New("not a psagate database (no meta bucket)")
		}
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta = tx.Bucket(bMeta)
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		if err := meta.Put([]byte("instance"), []byte(hex.EncodeToString(b[:]))); err != nil {
			return err
		}
		if err := meta.Put([]byte("schema"), u64(SchemaVersion)); err != nil {
			return err
		}
	}
	v := meta.Get([]byte("schema"))
	if len(v) != 8 {
		return errors.New("schema version missing")
	}
	ver := binary.BigEndian.Uint64(v)
	if ver > SchemaVersion {
		return fmt.Errorf("database schema %d is newer than this psagate understands (%d): upgrade psagate", ver, SchemaVersion)
	}
	// Migrations go here, each in this same transaction so a crash leaves
	// the old or the new layout. 1 -> 2 needs none: both record layouts are
	// read; the new number makes an older psagate refuse the file rather
	// than take the new records for damaged ones.
	if write && ver < SchemaVersion {
		if err := meta.Put([]byte("schema"), u64(SchemaVersion)); err != nil {
			return err
		}
	}
	if write {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		// The outbox index is derived data: rebuild it whenever it does not
		// match the outbox (a database from before it existed, or damage).
		if tx.Bucket(bOutboxIdx).Stats().KeyN != tx.Bucket(bOutbox).Stats().KeyN {
			if err := d.wrap(tx).rebuildOutboxIndex(); err != nil {
				return fmt.Errorf("rebuild outbox index: %w", err)
			}
		}
	}
	d.instance = string(meta.Get([]byte("instance")))
	return nil
}

// Close closes the database.
func (d *DB) Close() error { return d.bolt.Close() }

// Path is the database file.
func (d *DB) Path() string { return d.path }

// Instance is a random id made when the database was created. It makes the
// external references of this database's incidents unique in a PSA that
// other psagate instances also write to.
func (d *DB) Instance() string { return d.instance }

// Update runs fn in a read-write transaction.
func (d *DB) Update(fn func(tx *Tx) error) error {
	return d.bolt.Update(func(btx *bolt.Tx) error { return fn(d.wrap(btx)) })
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(tx *Tx) error) error {
	return d.bolt.View(func(btx *bolt.Tx) error { return fn(d.wrap(btx)) })
}

// Batch runs fn in a transaction shared with other concurrent Batch calls:
// one commit (one fsync) for all of them. fn may run more than once if
// another function in the batch fails, so it must only depend on tx.
func (d *DB) Batch(fn func(tx *Tx) error) error {
	return d.bolt.Batch(func(btx *bolt.Tx) error { return fn(d.wrap(btx)) })
}

// CopyTo writes a consistent copy of the database to path (for `try -state`).
func (d *DB) CopyTo(path string) error {
	return d.bolt.View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) })
}

// Tx is a transaction with psagate's typed operations.
type Tx struct {
	tx *bolt.Tx
	db *DB
}

func (d *DB) wrap(btx *bolt.Tx) *Tx { return &Tx{tx: btx, db: d} }

func (t *Tx) b(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func getU64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("decode %s %x: %w", b, key, err)
	}
	return true, nil
}

// Counts are the sizes the metrics and health checks report.
type Counts struct {
	Spool, Outbox, Dead, OpenIncidents, Quarantine int
}

// Counts returns the current bucket sizes.
func (d *DB) Counts() (Counts, error) {
	var c Counts
	err := d.bolt.View(func(tx *bolt.Tx) error {
		c.Spool = tx.Bucket(bSpool).Stats().KeyN
		c.Outbox = tx.Bucket(bOutbox).Stats().KeyN
		c.Dead = tx.Bucket(bDead).Stats().KeyN
		c.OpenIncidents = tx.Bucket(bOpen).Stats().KeyN
		c.Quarantine = tx.Bucket(bQuarantine).Stats().KeyN
		return nil
	})
	return c, err
}

// Backup streams a consistent copy of the database.
func (d *DB) Backup(w io.Writer) error {
	return d.bolt.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}
