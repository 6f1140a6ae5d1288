package app

import (
	"strings"
	"testing"
	"time"

	"psagate/internal/store"
	"psagate/internal/testutil"
)

// TestHugeSubjectIsTicketedAndAudited sends, over SMTP, an unknown alert
// whose Subject is 40 KB (folded over many lines, as a mailer would): its
// incident key (client/sender/subject) is over bbolt's 32 KiB key limit
// unless bounded. It must make a ticket like any other unknown alert, and
// its audit entry must name its subject and client.
func TestHugeSubjectIsTicketedAndAudited(t *testing.T) {
	h := startApp(t, baseConfig(t, t.TempDir(), ""), Options{})
	words := strings.Repeat("volume-check-status-unknown ", 1500) // ~42 KB
	var folded strings.Builder
	for i, w := range strings.Fields(words) {
		if i > 0 && i%30 == 0 {
			folded.WriteString("\r\n ")
		} else if i > 0 {
			folded.WriteString(" ")
		}
		folded.WriteString(w)
	}
	raw := []byte("From: Storage <storage@pinecrest-vet.example>\r\nTo: pinecrest@alerts.example.net\r\n" +
		"Subject: Storage report " + folded.String() + "\r\nMessage-ID: <huge-subject@storage>\r\n" +
		"Date: Tue, 11 Feb 2025 13:00:26 -0700\r\n\r\nSee the subject.\r\n")
	reply := testutil.SendMail(t, h.app.SMTPAddr(), "storage@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, raw)
	id := testutil.QueuedID(reply)
	if !strings.HasPrefix(reply, "250 2.0.0 Queued as ") {
		t.Fatalf("reply %q", reply)
	}
	var entry *store.AuditEntry
	waitFor(t, "the message's audit entry", 10*time.Second, func() bool {
		entries, err := ReadAudit(h.app.DB, AuditFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Message == id {
				entry = e
				return true
			}
		}
		return false
	})
	if entry.Decision != "ticket" || entry.Client != "pinecrest" || !strings.HasPrefix(entry.Subject, "Storage report volume-check") {
		t.Errorf("audit: decision %q (%s), client %q, subject %.40q; want a ticket for pinecrest with the subject",
			entry.Decision, entry.Detail, entry.Client, entry.Subject)
	}
	if len(entry.Key) > store.MaxKeyLen {
		t.Errorf("incident key is %d bytes, over the %d-byte bound", len(entry.Key), store.MaxKeyLen)
	}
	waitFor(t, "the ticket", 10*time.Second, func() bool { return idle(h.app.DB) })
	creates := 0
	for _, l := range logLines(t, h.out) {
		if l.Op == "create" {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("%d tickets created, want 1", creates)
	}
}
