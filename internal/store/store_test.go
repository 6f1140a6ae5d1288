package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, path string, o Options) *DB {
	t.Helper()
	db, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestAcceptDedupeAndOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db := open(t, path, Options{})
	now := time.Now()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := &SpoolEntry{ID: fmt.Sprintf("m%02d", i), Received: now, Raw: []byte(fmt.Sprintf("body %d", i))}
			if _, dup, err := db.Accept(e, []byte(fmt.Sprintf("key-%02d", i))); err != nil || dup {
				t.Errorf("accept %d: dup=%v err=%v", i, dup, err)
			}
		}()
	}
	wg.Wait()
	// The same message again (an SMTP client retrying after a lost reply).
	orig, dup, err := db.Accept(&SpoolEntry{ID: "again", Received: now, Raw: []byte("body 7")}, []byte("key-07"))
	if err != nil || !dup || orig != "m07" {
		t.Fatalf("retry: orig=%q dup=%v err=%v", orig, dup, err)
	}
	db.Close()

	db = open(t, path, Options{})
	defer db.Close()
	var entries []*SpoolEntry
	_ = db.View(func(tx *Tx) error { entries, err = tx.SpoolHead(100); return err })
	if len(entries) != 50 {
		t.Fatalf("spool holds %d after reopen, want 50", len(entries))
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Seq <= entries[i-1].Seq {
			t.Fatal("spool not in acceptance order")
		}
	}
	if !strings.HasPrefix(string(entries[0].Raw), "body ") {
		t.Fatalf("raw = %q", entries[0].Raw)
	}
	n, err := db.PruneSeen(now.Add(time.Second))
	if err != nil || n != 50 {
		t.Fatalf("pruned %d, %v", n, err)
	}
}

func TestLockedAndNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db := open(t, path, Options{})
	if _, err := Open(path, Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	db.Close()

	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put([]byte("schema"), u64(SchemaVersion+1)) })
	b.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "newer than this psagate understands") {
		t.Fatalf("newer schema: %v", err)
	}
}

func TestJobsDeadRevive(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	now := time.Now()
	var ids []uint64
	err := db.Update(func(tx *Tx) error {
		for _, op := range []string{OpCreate, OpNote, OpClose} {
			j := &Job{Incident: 1, Op: op, Created: now}
			if err := tx.AddJob(j); err != nil {
				return err
			}
			ids = append(ids, j.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *Tx) error {
		j, _ := tx.Job(ids[0])
		if j.Marker != "" {
			t.Error("create job got a marker")
		}
		n, _ := tx.Job(ids[1])
		if !strings.HasPrefix(n.Marker, db.Instance()+"-") {
			t.Errorf("note marker = %q", n.Marker)
		}
		j.Attempts, j.Started = 3, true // the last attempt's outcome is unknown
		return tx.Kill(j, "HTTP 400: bad board", now)
	})
	_ = db.View(func(tx *Tx) error {
		if j, _ := tx.Job(ids[0]); j != nil {
			t.Error("killed job still in outbox")
		}
		d, _ := tx.DeadJob(ids[0])
		if d == nil || d.Reason != "HTTP 400: bad board" {
			t.Errorf("dead = %+v", d)
		}
		return nil
	})
	_ = db.Update(func(tx *Tx) error {
		j, err := tx.Revive(ids[0], now)
		if err != nil || j == nil || j.Attempts != 0 {
			t.Errorf("revive: %+v %v", j, err)
		}
		// It may have reached the PSA: the revived job must search before
		// it creates, or a retry makes a second ticket.
		if j != nil && !j.Started {
			t.Error("revive forgot that the job may have reached the PSA")
		}
		return nil
	})
	var order []uint64
	_ = db.View(func(tx *Tx) error {
		return tx.Jobs(func(j *Job) bool { order = append(order, j.ID); return true })
	})
	if len(order) != 3 || order[0] != ids[0] {
		t.Fatalf("revived job lost its place: %v", order)
	}
}

func TestAuditCap(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{AuditMax: 10})
	defer db.Close()
	for i := range 25 {
		_ = db.Update(func(tx *Tx) error { return tx.AddAudit(&AuditEntry{Decision: "drop", Subject: fmt.Sprint(i)}) })
	}
	var got []string
	_ = db.View(func(tx *Tx) error {
		return tx.Audit(func(e *AuditEntry) bool { got = append(got, e.Subject); return true })
	})
	if len(got) != 10 || got[0] != "24" || got[9] != "15" {
		t.Fatalf("audit = %v", got)
	}
}

func TestTimersAndIncidentIndexes(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	_ = db.Update(func(tx *Tx) error {
		for i, d := range []time.Duration{3 * time.Hour, time.Hour, 2 * time.Hour} {
			if err := tx.AddTimer(Timer{At: t0.Add(d), Kind: "holddown", Ref: fmt.Sprint(i)}); err != nil {
				return err
			}
		}
		inc := &Incident{ID: 7, Key: "k", State: StateOpen}
		if err := tx.PutIncident(inc); err != nil {
			return err
		}
		inc.State = StateClosed
		return tx.PutIncident(inc)
	})
	_ = db.View(func(tx *Tx) error {
		due := tx.DueTimers(t0.Add(2 * time.Hour))
		if len(due) != 2 || due[0].Ref != "1" || due[1].Ref != "2" {
			t.Errorf("due = %+v", due)
		}
		if next, ok := tx.NextTimer(); !ok || !next.Equal(t0.Add(time.Hour)) {
			t.Errorf("next = %v", next)
		}
		open, _ := tx.OpenIncidents()
		if len(open) != 0 {
			t.Errorf("closed incident still indexed as open")
		}
		inc, _ := tx.IncidentByKey("k")
		if inc == nil || inc.ID != 7 {
			t.Errorf("by key = %+v", inc)
		}
		return nil
	})
}

// TestLongKeysAreBounded stores an incident, an expect record and a timer
// under keys far over bbolt's 32 KiB key limit, in a real database file.
func TestLongKeysAreBounded(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	long := "acme/nas@x/" + strings.Repeat("é subject ", 4000) // 44 KB, multi-byte runes
	other := long + "2"
	if b := BoundKey(long); len(b) > MaxKeyLen || BoundKey(b) != b || b == BoundKey(other) || !strings.HasPrefix(b, "acme/nas@x/") {
		t.Fatalf("BoundKey: %d bytes, idempotent %v, distinct %v", len(b), BoundKey(b) == b, b != BoundKey(other))
	}
	at := time.Unix(1_700_000_000, 0)
	err := db.Update(func(tx *Tx) error {
		id, err := tx.NewIncidentID()
		if err != nil {
			return err
		}
		if err := tx.PutIncident(&Incident{ID: id, Key: long, State: StateOpen}); err != nil {
			return err
		}
		if err := tx.PutExpect(long, map[string]string{"k": "v"}); err != nil {
			return err
		}
		return tx.AddTimer(Timer{At: at, Kind: "expect", Ref: long})
	})
	if err != nil {
		t.Fatalf("writing long keys: %v", err)
	}
	_ = db.View(func(tx *Tx) error {
		if inc, err := tx.IncidentByKey(long); err != nil || inc == nil || inc.Key != long {
			t.Errorf("IncidentByKey(long) = %v, %v", inc, err)
		}
		if inc, _ := tx.IncidentByKey(other); inc != nil {
			t.Errorf("another long key with the same start found incident %d", inc.ID)
		}
		var v map[string]string
		if ok, err := tx.GetExpect(long, &v); !ok || err != nil || v["k"] != "v" {
			t.Errorf("GetExpect(long) = %v %v %v", ok, err, v)
		}
		due := tx.DueTimers(at)
		if len(due) != 1 {
			t.Fatalf("due timers %v", due)
		}
		// The timer's Ref comes back bounded, and finds the same record.
		if ok, _ := tx.GetExpect(due[0].Ref, &v); !ok {
			t.Errorf("the expect record is not found by the timer's Ref")
		}
		return nil
	})
}

// TestAcceptAllCopiesShareRaw spools two copies of one mail whose Raw has
// spare capacity (as the SMTP side hands it over): each must keep its own
// header.
func TestAcceptAllCopiesShareRaw(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	raw := make([]byte, 0, 4096)
	raw = append(raw, "Subject: x\r\n\r\nbody\r\n"...)
	a := &SpoolEntry{ID: "a", RcptTo: []string{"a@x"}, Received: time.Now(), Raw: raw}
	b := &SpoolEntry{ID: "b", RcptTo: []string{"b@x"}, Received: time.Now(), Raw: raw}
	res, err := db.AcceptAll([]*SpoolEntry{a, b}, [][]byte{[]byte("ka"), []byte("kb")})
	if err != nil || len(res) != 2 || res[0].Dup || res[1].Dup {
		t.Fatalf("AcceptAll: %+v, %v", res, err)
	}
	_ = db.View(func(tx *Tx) error {
		got, err := tx.SpoolHead(10)
		if err != nil || len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" || got[0].RcptTo[0] != "a@x" ||
			string(got[0].Raw) != string(raw) || string(got[1].Raw) != string(raw) {
			t.Fatalf("spool: %v %+v", err, got)
		}
		return nil
	})
}
