package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzStateCheck feeds damaged state files to Check and Open: neither may
// panic, and a file Check accepts must open and read without a panic
// (bbolt's own walk of the tree at open time panics on what Check missed).
func FuzzStateCheck(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	db, err := Open(path, Options{})
	if err != nil {
		f.Fatal(err)
	}
	_ = db.Update(func(tx *Tx) error {
		for i := range 40 {
			id, _ := tx.NewIncidentID()
			if err := tx.PutIncident(&Incident{ID: id, Key: string(rune('a'+i%26)) + "/dev/backup" + string(rune('0'+i/26)), State: StateOpen}); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "s.db")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Check(p, time.Second); err != nil {
			return
		}
		db, err := Open(p, Options{LockTimeout: time.Second})
		if err != nil {
			return
		}
		defer db.Close()
		_ = db.View(func(tx *Tx) error {
			_, _ = tx.SpoolHead(1 << 20)
			_ = tx.Incidents(func(*Incident) bool { return true })
			_, _ = tx.OpenIncidents()
			_ = tx.Audit(func(*AuditEntry) bool { return true })
			return nil
		})
	})
}
