package app

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"psagate/internal/imapin/imaptest"
	"psagate/internal/store"
)

var msgIDRe = regexp.MustCompile(`(?im)^Message-ID:\s*<([^>]+)>`)

func imapMail(i int) []byte {
	dev := fmt.Sprintf("PVC-IMAP-%02d", i)
	return []byte(fmt.Sprintf("Return-Path: <bdr1@pinecrest-vet.example>\r\nFrom: PVC-BDR1 <bdr1@pinecrest-vet.example>\r\n"+
		"To: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: %s\r\nMessage-ID: <imap-%02d@pvc-bdr1>\r\n"+
		"Date: Tue, 11 Feb 2025 13:00:26 -0700\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\n\r\n  Protected system:  %s\r\n", dev, i, dev))
}

// durableIDs opens the state database (no server may hold it) and returns
// how often each Message-ID is there: in the spool (accepted, not yet
// processed) or in the audit trail (processed).
func durableIDs(t *testing.T, path string) map[string]int {
	t.Helper()
	db, err := store.Open(path, store.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open state after the kill: %v", err)
	}
	defer db.Close()
	ids := map[string]int{}
	err = db.View(func(tx *store.Tx) error {
		spool, err := tx.SpoolHead(1 << 30)
		if err != nil {
			return err
		}
		for _, e := range spool {
			if m := msgIDRe.FindSubmatch(e.Raw); m != nil {
				ids[string(m[1])]++
			}
		}
		return tx.Audit(func(e *store.AuditEntry) bool {
			if e.MsgID != "" {
				ids[e.MsgID]++
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestIMAPIntakeExactlyOnceAcrossKill: 50 alerts wait in an IMAP INBOX (an
// in-process go-imap server). `psagate serve` reads them with move_to; when
// it asks to move the 20th, the server refuses and the test SIGKILLs the
// gateway: that mail is spooled but still in the INBOX, the worst moment.
// At every move the mails moved so far must already be durable in the
// state database; after the kill the database is checked directly. A
// restarted gateway finishes the mailbox, and then every one of the 50
// mails is in the state exactly once and in the move_to folder exactly once.
func TestIMAPIntakeExactlyOnceAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs psagate serve")
	}
	srv, err := imaptest.Start("Processed")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.FetchDelay(5 * time.Millisecond)
	const total = 50
	for i := range total {
		if err := srv.Append("INBOX", imapMail(i)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cfg := baseConfig(t, dir, fmt.Sprintf(`
[[imap]]
name = "alerts-box"
host = "127.0.0.1"
port = %s
tls = "none"
user = %q
password = %q
folder = "INBOX"
move_to = "Processed"
poll_interval = "200ms"
timeout = "5s"
`, srv.Addr[strings.LastIndexByte(srv.Addr, ':')+1:], imaptest.User, imaptest.Password))

	// startChild waits for the "psagate started" line, logged at info.
	os.WriteFile(cfg, []byte(strings.Replace(string(readAll(t, cfg)), `level = "warn"`, `level = "info"`, 1)), 0o600)
	var (
		mu        sync.Mutex
		moves     int
		child1    atomic.Pointer[child]
		killed    atomic.Bool
		atKill    map[string]int
		movedWhen []string // Message-IDs in the order they were moved
	)
	srv.OnMove(func(dest string, raws [][]byte) error {
		mu.Lock()
		defer mu.Unlock()
		for _, raw := range raws {
			m := msgIDRe.FindSubmatch(raw)
			if m == nil {
				return errors.New("moved mail without Message-ID")
			}
			moves++
			if moves == 20 && !killed.Load() {
				// Spooled (the move is asked only after Accept), not moved.
				child1.Load().kill()
				killed.Store(true)
				atKill = durableIDs(t, cfgStatePath(dir))
				atKill["(refused move)"] = 0
				return errors.New("test: the gateway died before this move")
			}
			movedWhen = append(movedWhen, string(m[1]))
		}
		return nil
	})
	child1.Store(startChild(t, cfg))
	waitFor(t, "the kill at the 20th move", 60*time.Second, killed.Load)

	mu.Lock()
	for _, id := range movedWhen {
		if atKill[id] != 1 {
			t.Errorf("%s was moved on the server but is in the state %d times at the kill", id, atKill[id])
		}
	}
	inboxIDs := map[string]bool{}
	for _, raw := range srv.Messages("INBOX") {
		inboxIDs[string(msgIDRe.FindSubmatch(raw)[1])] = true
	}
	spooledNotMoved := 0
	for id, n := range atKill {
		if n > 0 && inboxIDs[id] {
			spooledNotMoved++
		}
	}
	if len(movedWhen) != 19 || spooledNotMoved < 1 {
		t.Errorf("at the kill: %d moved, %d spooled but still in the INBOX; want 19 and at least 1", len(movedWhen), spooledNotMoved)
	}
	mu.Unlock()

	c2 := startChild(t, cfg)
	waitFor(t, "the INBOX emptied by the restarted gateway", 60*time.Second, func() bool {
		return len(srv.Messages("INBOX")) == 0 && len(srv.Messages("Processed")) == total
	})
	c2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c2.exited:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("SIGTERM exit: %v", err)
		}
		c2.exited <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}

	final := durableIDs(t, cfgStatePath(dir))
	processed := map[string]int{}
	for _, raw := range srv.Messages("Processed") {
		processed[string(msgIDRe.FindSubmatch(raw)[1])]++
	}
	for i := range total {
		id := fmt.Sprintf("imap-%02d@pvc-bdr1", i)
		if final[id] != 1 {
			t.Errorf("%s is in the state %d times, want exactly 1", id, final[id])
		}
		if processed[id] != 1 {
			t.Errorf("%s is in move_to %d times, want exactly 1", id, processed[id])
		}
	}
}

func cfgStatePath(dir string) string { return dir + string(os.PathSeparator) + "state.db" }
