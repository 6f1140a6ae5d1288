package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestPruneQuarantine: the cap removes the oldest first; max_age removes
// what was quarantined before the limit, whatever the count.
func TestPruneQuarantine(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := db.Update(func(tx *Tx) error {
		for i := range 5 {
			e := &SpoolEntry{ID: fmt.Sprintf("m%d", i), Received: t0.Add(time.Duration(i) * time.Hour), Raw: []byte("x")}
			if err := tx.Quarantine(e, "test"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := func() string {
		var s string
		_ = db.View(func(tx *Tx) error {
			l, err := tx.QuarantineList()
			for _, e := range l {
				s += e.ID + " "
			}
			return err
		})
		return s
	}
	prune := func(max int, before time.Time) int {
		var n []*SpoolEntry
		if err := db.Update(func(tx *Tx) error {
			var err error
			n, err = tx.PruneQuarantine(max, before)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return len(n)
	}
	if n := prune(3, time.Time{}); n != 2 || ids() != "m2 m3 m4 " {
		t.Fatalf("cap 3: pruned %d, left %q", n, ids())
	}
	if n := prune(10, t0.Add(3*time.Hour)); n != 1 || ids() != "m3 m4 " {
		t.Fatalf("max_age: pruned %d, left %q", n, ids())
	}
	if n := prune(10, time.Time{}); n != 0 {
		t.Fatalf("nothing over the limits: pruned %d", n)
	}
}
