package app

import (
	"fmt"
	"strings"
	"testing"

	"psagate/internal/store"
	"psagate/internal/testutil"
)

// whereIs looks a psagate message id up in one read transaction: in the
// spool (accepted, not yet processed), or in the audit trail (processed;
// the spool entry leaves in the transaction that writes the audit entry,
// so one snapshot always shows the message in one of the two). It returns
// "spool", "audit" or "".
func whereIs(t *testing.T, db *store.DB, id string) string {
	t.Helper()
	where := ""
	err := db.View(func(tx *store.Tx) error {
		spool, err := tx.SpoolHead(1 << 30)
		if err != nil {
			return err
		}
		for _, e := range spool {
			if e.ID == id {
				where = "spool"
				return nil
			}
		}
		return tx.Audit(func(e *store.AuditEntry) bool {
			if e.Message == id {
				where = "audit"
				return false
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return where
}

// TestQueuedReplyOnlyAfterSpoolCommit sends alerts over SMTP to the full
// gateway and, the moment each "250 Queued as <id>" arrives and before
// anything else, reads the database: the message must already be there
// (spooled, or processed and audited). A 250 sent before the spool commit
// would let a crash lose a message the sender has already forgotten.
func TestQueuedReplyOnlyAfterSpoolCommit(t *testing.T) {
	h := startApp(t, baseConfig(t, t.TempDir(), ""), Options{})
	c, greet := testutil.Dial(t, h.app.SMTPAddr())
	if !strings.HasPrefix(greet, "220") {
		t.Fatalf("greeting %q", greet)
	}
	if r := c.Cmd("EHLO intake.test"); !strings.HasPrefix(r, "250") {
		t.Fatalf("EHLO: %q", r)
	}
	const n = 25
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		reply := c.Send("bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, failureMail(fmt.Sprintf("PVC-SRV-Q%02d", i)))
		id := testutil.QueuedID(reply)
		if !strings.HasPrefix(reply, "250 2.0.0 Queued as ") || id == "" {
			t.Fatalf("message %d: reply %q, want 250 Queued as <id>", i, reply)
		}
		where := whereIs(t, h.app.DB, id)
		if where == "" {
			t.Fatalf("message %d: got %q but %s is neither in the spool nor in the audit trail", i, strings.TrimSpace(reply), id)
		}
		counts[where]++
	}
	c.Cmd("QUIT")
	t.Logf("at the moment of the 250: %d in the spool, %d already processed", counts["spool"], counts["audit"])
}

// TestStoreThatCannotCommitAnswers4xx makes the state database unusable
// under a running gateway (closed, as when its disk goes away) and sends
// an alert: the client must get a temporary failure, so it keeps the
// message and retries, never a 250.
func TestStoreThatCannotCommitAnswers4xx(t *testing.T) {
	h := startApp(t, baseConfig(t, t.TempDir(), ""), Options{})
	// A first message proves the gateway was accepting before the failure.
	if r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, failureMail("PVC-SRV-OK1")); !strings.HasPrefix(r, "250 2.0.0 Queued as ") {
		t.Fatalf("before the failure: %q", r)
	}
	if err := h.app.DB.Close(); err != nil {
		t.Fatal(err)
	}
	reply := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, failureMail("PVC-SRV-LOST1"))
	if want := "451 4.3.0 Temporary failure while storing the message; please retry\r\n"; reply != want {
		t.Fatalf("with a store that cannot commit the reply is %q, want %q", reply, want)
	}
}
