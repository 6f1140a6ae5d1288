package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The record is built in the spare capacity after the message when there
// is room (no second copy of a large alert), and reads back the same
// either way.
func TestSpoolRecordUsesRoomAfterTheMessage(t *testing.T) {
	msg := []byte("Subject: s\r\n\r\nbody\r\n")
	roomy := append(make([]byte, 0, len(msg)+4096), msg...)
	tight := bytes.Clone(msg)
	for _, tc := range []struct {
		name   string
		raw    []byte
		inside bool
	}{{"room after the message", roomy, true}, {"no room", tight, false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := &SpoolEntry{ID: "m1", Received: time.Unix(1e9, 0).UTC(), MailFrom: "a@b", RcptTo: []string{"x@y"}, Raw: tc.raw}
			v, err := encodeSpool(e)
			if err != nil {
				t.Fatal(err)
			}
			if got := &v[0] == &tc.raw[0]; got != tc.inside {
				t.Fatalf("record built in the message's buffer: %v, want %v", got, tc.inside)
			}
			if !bytes.Equal(e.Raw, msg) {
				t.Fatalf("message changed: %q", e.Raw)
			}
			d, err := decodeSpool(7, v)
			if err != nil || d.ID != "m1" || d.Seq != 7 || !bytes.Equal(d.Raw, msg) || d.RcptTo[0] != "x@y" {
				t.Fatalf("decoded %+v, %v", d, err)
			}
		})
	}
}

// A schema 1 file (records: length, header, message) is still read, and
// opening it for writing records schema 2 so an older psagate refuses it.
func TestSchema1SpoolRecordsAreRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(&SpoolEntry{ID: "old1", Received: time.Unix(1e9, 0).UTC()})
	// A message that ends like a new record would, to show the layouts are
	// told apart by more than the last bytes.
	raw := []byte("Subject: old\r\n\r\nends with \x00ps2")
	rec := binary.BigEndian.AppendUint32(nil, uint32(len(meta)))
	rec = append(append(rec, meta...), raw...)
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		if err := m.Put([]byte("schema"), u64(1)); err != nil {
			return err
		}
		if err := m.Put([]byte("instance"), []byte("abcdef")); err != nil {
			return err
		}
		return tx.Bucket(bSpool).Put(u64(1), rec)
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	db := open(t, path, Options{})
	defer db.Close()
	var got []*SpoolEntry
	if err := db.View(func(tx *Tx) error { got, err = tx.SpoolHead(10); return err }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "old1" || !bytes.Equal(got[0].Raw, raw) {
		t.Fatalf("schema 1 record read as %+v", got)
	}
	var ver []byte
	_ = db.View(func(tx *Tx) error { ver = bytes.Clone(tx.b(bMeta).Get([]byte("schema"))); return nil })
	if binary.BigEndian.Uint64(ver) != 2 {
		t.Fatalf("schema %v after opening for writing, want 2", ver)
	}
}

// SpoolHead stops at about spoolHeadBytes of messages, but always returns
// the first, however large.
func TestSpoolHeadIsBoundedInBytes(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	big := bytes.Repeat([]byte("x"), spoolHeadBytes/3+1)
	for i := range 5 {
		if _, _, err := db.Accept(&SpoolEntry{ID: string(rune('a' + i)), Received: time.Now(), Raw: big}, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []*SpoolEntry
	var err error
	_ = db.View(func(tx *Tx) error { got, err = tx.SpoolHead(100); return err })
	if err != nil || len(got) != 3 {
		t.Fatalf("SpoolHead returned %d messages (%v), want 3", len(got), err)
	}
	huge := bytes.Repeat([]byte("y"), spoolHeadBytes+1)
	db2 := open(t, filepath.Join(t.TempDir(), "h.db"), Options{})
	defer db2.Close()
	if _, _, err := db2.Accept(&SpoolEntry{ID: "h", Received: time.Now(), Raw: huge}, []byte("h")); err != nil {
		t.Fatal(err)
	}
	_ = db2.View(func(tx *Tx) error { got, err = tx.SpoolHead(100); return err })
	if err != nil || len(got) != 1 || len(got[0].Raw) != len(huge) {
		t.Fatalf("a message over the bound: %d returned, %v", len(got), err)
	}
}

// SpoolBatch leaves the message in the database; SpoolRaw and Quarantine
// read it when needed.
func TestSpoolBatchReadsTheMessageOnDemand(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	defer db.Close()
	msg := []byte("Subject: lazy\r\n\r\nbody\r\n")
	if _, _, err := db.Accept(&SpoolEntry{ID: "l1", Received: time.Now(), Raw: msg}, []byte("k")); err != nil {
		t.Fatal(err)
	}
	err := db.Update(func(tx *Tx) error {
		batch, err := tx.SpoolBatch(10)
		if err != nil || len(batch) != 1 || batch[0].ID != "l1" || batch[0].Raw != nil {
			t.Fatalf("batch %+v, %v", batch, err)
		}
		if err := tx.Quarantine(batch[0], "test"); err != nil {
			return err
		}
		raw, err := tx.SpoolRaw(batch[0])
		if err != nil || !bytes.Equal(raw, msg) {
			t.Fatalf("SpoolRaw = %q, %v", raw, err)
		}
		return tx.DeleteSpool(batch[0].Seq)
	})
	if err != nil {
		t.Fatal(err)
	}
	var q []*SpoolEntry
	_ = db.View(func(tx *Tx) error { q, err = tx.Quarantined(10); return err })
	if err != nil || len(q) != 1 || !bytes.Equal(q[0].Raw, msg) || q[0].Reason != "test" {
		t.Fatalf("quarantined %+v, %v", q, err)
	}
}
