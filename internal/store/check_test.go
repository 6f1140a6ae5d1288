package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// filledDB writes a real state file with enough records for a tree of
// branch, leaf and overflow pages, closes it and returns its bytes.
func filledDB(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	db := open(t, path, Options{})
	now := time.Now()
	for i := range 60 {
		e := &SpoolEntry{ID: fmt.Sprintf("m%03d", i), Received: now, Raw: []byte(strings.Repeat(fmt.Sprintf("alert %d ", i), 10+i%20*60))}
		if _, _, err := db.Accept(e, []byte(fmt.Sprintf("k%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Update(func(tx *Tx) error {
		for i := range 120 {
			id, _ := tx.NewIncidentID()
			if err := tx.PutIncident(&Incident{ID: id, Key: fmt.Sprintf("acme/dev%03d/backup", i), State: StateOpen, Summary: "s"}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// openDamaged writes data to a fresh file and opens it. A panic inside
// bbolt ends the test binary, which is the failure this test is about.
func openDamaged(t *testing.T, data []byte) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	defer db.Close()
	// It opened: every record must be readable without a panic (damaged
	// values are decode errors, which the callers handle).
	_ = db.View(func(tx *Tx) error {
		_, _ = tx.SpoolHead(1 << 20)
		_ = tx.Incidents(func(*Incident) bool { return true })
		_, _ = tx.OpenIncidents()
		return nil
	})
	return nil
}

func wantDamaged(t *testing.T, err error, what string) {
	t.Helper()
	var de *DamagedError
	if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
		t.Fatalf("open: %v; want a *DamagedError (%s)", err, what)
	}
	for _, advice := range []string{"/admin/backup", "-fresh-state", what} {
		if !strings.Contains(err.Error(), advice) {
			t.Errorf("the error does not say %q:\n%s", advice, err)
		}
	}
}

// TestDamagedStateFileIsRefusedNotPanicking opens real bbolt files that
// were emptied, truncated or bit-flipped. Each must be refused with an
// error that says what to do, never a Go panic, and a 0-byte file must not
// silently become an empty database.
func TestDamagedStateFileIsRefusedNotPanicking(t *testing.T) {
	good := filledDB(t)
	if err := openDamaged(t, good); err != nil {
		t.Fatalf("the undamaged file: %v", err)
	}
	ps := int(ne.Uint32(good[pageHeaderSize+8:]))
	hwm := int(ne.Uint64(good[pageHeaderSize+40:])) // pages in use, by meta page 0
	if m1 := int(ne.Uint64(good[ps+pageHeaderSize+40:])); m1 > hwm {
		hwm = m1
	}
	t.Run("empty", func(t *testing.T) {
		wantDamaged(t, openDamaged(t, nil), "empty (0 bytes)")
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{100, ps + 100, hwm * ps / 2, hwm / 2 * ps, (hwm - 1) * ps} {
			wantDamaged(t, openDamaged(t, good[:n]), "")
		}
		// Space past the pages in use (bbolt grows the file ahead) may go.
		if err := openDamaged(t, good[:hwm*ps]); err != nil {
			t.Errorf("cut after the last page in use: %v", err)
		}
	})
	t.Run("both meta pages", func(t *testing.T) {
		bad := append([]byte(nil), good...)
		bad[pageHeaderSize+20] ^= 0x40
		bad[ps+pageHeaderSize+20] ^= 0x40
		wantDamaged(t, openDamaged(t, bad), "meta")
	})
	t.Run("one meta page", func(t *testing.T) {
		// bbolt keeps two meta pages for this: the other one is used.
		bad := append([]byte(nil), good...)
		bad[pageHeaderSize+20] ^= 0x40
		if err := openDamaged(t, bad); err != nil {
			t.Fatalf("with one good meta page: %v", err)
		}
	})
	t.Run("bit flips in page structure", func(t *testing.T) {
		// Every structural field of every page (id, flags, count,
		// overflow, the first elements' offsets, sizes and child ids),
		// one high bit at a time.
		refused, tried := 0, 0
		for p := 2; p < hwm; p++ {
			if ne.Uint64(good[p*ps:]) != uint64(p) {
				continue // free, or the overflow of a large page: data, not structure
			}
			for _, off := range []int{0, 8, 10, 11, 12, 19, 23, 27, 31, 36} {
				bad := append([]byte(nil), good...)
				bad[p*ps+off] ^= 0x80
				tried++
				if err := openDamaged(t, bad); err != nil {
					if !errors.Is(err, ErrDamaged) {
						t.Fatalf("page %d offset %d: %v, want ErrDamaged", p, off, err)
					}
					refused++
				}
			}
		}
		if refused == 0 {
			t.Fatal("no bit flip was refused")
		}
		t.Logf("%d of %d structural bit flips refused, the others harmless (free pages, unused bytes)", refused, tried)
	})
}

// TestCheckOfflineMatchesOpen: Check alone says the same as Open.
func TestCheckOfflineMatchesOpen(t *testing.T) {
	good := filledDB(t)
	path := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(path, time.Second); err != nil {
		t.Fatalf("good file: %v", err)
	}
	if err := os.WriteFile(path, good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	wantDamaged(t, Check(path, time.Second), "truncated")
	to, err := SetAside(path, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil || to != path+".damaged-20260102T030405Z" {
		t.Fatalf("SetAside: %q, %v", to, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the damaged file is still at %s", path)
	}
}
