package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// spool accepts n messages and returns their sequence numbers.
func spool(t *testing.T, db *DB, n int) []uint64 {
	t.Helper()
	now := time.Now()
	for i := range n {
		e := &SpoolEntry{ID: fmt.Sprintf("m%d", i), Received: now, RcptTo: []string{"a@x.example"}, Raw: []byte(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i))}
		if _, _, err := db.Accept(e, []byte(fmt.Sprintf("k%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint64
	_ = db.View(func(tx *Tx) error {
		c := tx.b(bSpool).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			seqs = append(seqs, getU64(k))
		}
		return nil
	})
	if len(seqs) != n {
		t.Fatalf("spool holds %d, want %d", len(seqs), n)
	}
	return seqs
}

// A record that no longer decodes stops SpoolHead and SpoolBatch at its
// sequence number with a CorruptSpoolError; SetAsideCorrupt moves its bytes,
// unchanged, to the quarantine so the messages behind it go on.
func TestCorruptSpoolRecordIsSetAside(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	seqs := spool(t, db, 3)
	damaged := []byte{0xff, 0xff, 0xff, 0xff, 'x'} // a header length past the end
	if err := db.Update(func(tx *Tx) error { return tx.b(bSpool).Put(u64(seqs[1]), damaged) }); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func(tx *Tx) ([]*SpoolEntry, error){
		"SpoolHead":  func(tx *Tx) ([]*SpoolEntry, error) { return tx.SpoolHead(10) },
		"SpoolBatch": func(tx *Tx) ([]*SpoolEntry, error) { return tx.SpoolBatch(10) },
	} {
		var got []*SpoolEntry
		err := db.View(func(tx *Tx) (err error) { got, err = read(tx); return err })
		var ce *CorruptSpoolError
		if !errors.As(err, &ce) || ce.Seq != seqs[1] {
			t.Fatalf("%s: err = %v, want a CorruptSpoolError at %d", name, err, seqs[1])
		}
		if len(got) != 1 || got[0].ID != "m0" {
			t.Fatalf("%s returned %d entries before the damage, want m0 alone", name, len(got))
		}
	}

	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	var aside *SpoolEntry
	err := db.Update(func(tx *Tx) (err error) {
		aside, err = tx.SetAsideCorrupt(seqs[1], "spool record could not be decoded", now)
		return err
	})
	if err != nil || aside == nil || aside.ID != fmt.Sprintf("corrupt-%d", seqs[1]) {
		t.Fatalf("SetAsideCorrupt = %+v, %v", aside, err)
	}
	_ = db.View(func(tx *Tx) error {
		rest, err := tx.SpoolHead(10)
		if err != nil || len(rest) != 2 || rest[0].ID != "m0" || rest[1].ID != "m2" {
			t.Errorf("spool after set-aside: %d entries, err %v", len(rest), err)
		}
		q, err := tx.Quarantined(10)
		if err != nil || len(q) != 1 {
			t.Fatalf("quarantine holds %d, err %v", len(q), err)
		}
		if q[0].Reason != "spool record could not be decoded" || string(q[0].Raw) != string(damaged) || !q[0].Received.Equal(now) {
			t.Errorf("quarantined %+v: the damaged bytes and the reason must be kept as they were", q[0])
		}
		return nil
	})
	// Set aside twice (two workers racing, a retried transaction): a no-op.
	err = db.Update(func(tx *Tx) (err error) {
		aside, err = tx.SetAsideCorrupt(seqs[1], "again", now)
		return err
	})
	if err != nil || aside != nil {
		t.Fatalf("second SetAsideCorrupt = %+v, %v, want nil, nil", aside, err)
	}
}

func heads(t *testing.T, db *DB) []JobHead {
	t.Helper()
	var out []JobHead
	if err := db.View(func(tx *Tx) error {
		return tx.JobHeads(func(h JobHead) bool { out = append(out, h); return true })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The outbox index (what the dispatcher scans instead of decoding every
// job) follows every change of the outbox: add, retry time, delete, kill
// and revive.
func TestJobHeadsFollowTheOutbox(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	now := time.Now().Truncate(time.Millisecond)
	var ids []uint64
	_ = db.Update(func(tx *Tx) error {
		for i, prov := range []string{"connectwise", "autotask", "log"} {
			j := &Job{Incident: uint64(10 + i), Op: OpCreate, Created: now, Provider: prov}
			if err := tx.AddJob(j); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, j.ID)
		}
		return nil
	})
	h := heads(t, db)
	if len(h) != 3 || h[0].ID != ids[0] || h[1].Provider != "autotask" || h[2].Incident != 12 || !h[0].NextTry.IsZero() {
		t.Fatalf("heads after add: %+v", h)
	}

	later := now.Add(5 * time.Minute)
	_ = db.Update(func(tx *Tx) error {
		j, _ := tx.Job(ids[1])
		j.NextTry = later
		return tx.PutJob(j)
	})
	if h := heads(t, db); !h[1].NextTry.Equal(later) {
		t.Fatalf("NextTry in the index = %v, want %v", h[1].NextTry, later)
	}

	_ = db.Update(func(tx *Tx) error {
		if err := tx.DeleteJob(ids[0]); err != nil {
			return err
		}
		j, _ := tx.Job(ids[2])
		return tx.Kill(j, "HTTP 400", now)
	})
	if h := heads(t, db); len(h) != 1 || h[0].ID != ids[1] {
		t.Fatalf("heads after delete and kill: %+v", h)
	}
	_ = db.Update(func(tx *Tx) error { _, err := tx.Revive(ids[2], now); return err })
	got := heads(t, db)
	if len(got) != 2 || !slices.ContainsFunc(got, func(h JobHead) bool { return h.ID == ids[2] && h.Provider == "log" }) {
		t.Fatalf("heads after revive: %+v", got)
	}
}

// The index is derived data: when it does not match the outbox (an older
// database, a lost bucket, a crash in a tool that edited the file), Open
// rebuilds it from the jobs themselves.
func TestOutboxIndexRebuiltOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db := open(t, path, Options{})
	next := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	_ = db.Update(func(tx *Tx) error {
		for i := range 5 {
			j := &Job{Incident: uint64(i + 1), Op: OpNote, Created: next, NextTry: next, Provider: "autotask"}
			if err := tx.AddJob(j); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	})
	want := heads(t, db)
	for name, damage := range map[string]func(tx *Tx) error{
		"entries lost": func(tx *Tx) error {
			c := tx.b(bOutboxIdx).Cursor()
			k, _ := c.First()
			return tx.b(bOutboxIdx).Delete(k)
		},
		"bucket gone": func(tx *Tx) error { return tx.tx.DeleteBucket(bOutboxIdx) },
		"stray entry": func(tx *Tx) error { return tx.b(bOutboxIdx).Put(u64(999), make([]byte, 16)) },
	} {
		t.Run(name, func(t *testing.T) {
			if err := db.Update(damage); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db = open(t, path, Options{})
			got := heads(t, db)
			if !slices.Equal(got, want) {
				t.Fatalf("after reopen: %+v\nwant %+v", got, want)
			}
		})
	}
	db.Close()
}

// A damaged index entry is reported, not read as a job of incident 0.
func TestDamagedIndexEntryIsAnError(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	var id uint64
	_ = db.Update(func(tx *Tx) error {
		j := &Job{Incident: 1, Op: OpCreate, Created: time.Now()}
		err := tx.AddJob(j)
		id = j.ID
		return err
	})
	_ = db.Update(func(tx *Tx) error { return tx.b(bOutboxIdx).Put(u64(id), []byte{1, 2}) })
	err := db.View(func(tx *Tx) error { return tx.JobHeads(func(JobHead) bool { return true }) })
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("JobHeads over a damaged entry: %v", err)
	}
}
