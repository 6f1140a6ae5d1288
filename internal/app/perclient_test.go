package app

import (
	"slices"
	"strings"
	"testing"
	"time"

	"psagate/internal/testutil"
)

// TestMailToTwoClientsTicketsEach sends, over SMTP, one failure addressed
// to a recipient of each of two clients: each client gets its own
// incident and ticket, the audit says the mail was decided once per
// client, and an SMTP retry of the same transaction is recognised for both.
func TestMailToTwoClientsTicketsEach(t *testing.T) {
	h := startApp(t, baseConfig(t, t.TempDir(), secondClient), Options{})
	rcpts := []string{"pinecrest@alerts.example.net", "birchwood@alerts.example.net"}
	raw := failureMail("SHARED-NAS1")
	reply := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", rcpts, raw)
	if !strings.HasPrefix(reply, "250 2.0.0 Queued as ") || !strings.Contains(reply, "(one per client: pinecrest, birchwood)") {
		t.Fatalf("reply %q", reply)
	}
	waitFor(t, "delivery", 10*time.Second, func() bool { return idle(h.app.DB) })
	var clients []string
	for _, l := range logLines(t, h.out) {
		if l.Op == "create" {
			clients = append(clients, l.Client)
		}
	}
	slices.Sort(clients)
	if !slices.Equal(clients, []string{"birchwood", "pinecrest"}) {
		t.Errorf("tickets created for %q, want one for each client", clients)
	}
	incs, err := ReadIncidents(h.app.DB, true, 0)
	if err != nil || len(incs) != 2 || incs[0].Key == incs[1].Key {
		t.Errorf("open incidents %d (%v), want 2 with distinct keys", len(incs), err)
	}
	entries, err := ReadAudit(h.app.DB, AuditFilter{Decision: "ticket", Limit: 10})
	if err != nil || len(entries) != 2 {
		t.Fatalf("audit: %d ticket entries (%v), want 2", len(entries), err)
	}
	for _, e := range entries {
		if !strings.Contains(e.Detail, "addressed to clients pinecrest, birchwood: decided once per client") {
			t.Errorf("audit entry for %s does not record the per-client decision: %q", e.Client, e.Detail)
		}
	}
	retry := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", rcpts, raw)
	if !strings.HasPrefix(retry, "250 2.0.0 Already queued as ") {
		t.Errorf("retry of the same transaction: %q", retry)
	}
}
