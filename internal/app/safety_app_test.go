package app

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"psagate/internal/store"
	"psagate/internal/testutil"
)

// TestAmbiguousMailNeverClosesOverSMTP opens a ticket with a real Datto
// failure sample, then sends over SMTP to the running gateway (shipped
// rule packs, bbolt, log provider) the ambiguous variants of its recovery
// that the safety checks exist for: two Subject headers (success and
// failed), a null envelope sender with a "[Success]" subject, a success
// subject over a failure body, and a failure from a look-alike sender of
// the client that pins its senders. None may close the incident or reach
// the PSA; each is quarantined with its reason in the audit trail. The
// genuine recovery sent last then closes it, so the checks did not simply
// break closing.
func TestAmbiguousMailNeverClosesOverSMTP(t *testing.T) {
	h := startApp(t, baseConfig(t, t.TempDir(), ""), Options{})
	dir := filepath.Join(testutil.RepoRoot(t), "testdata", "samples")
	failure := string(readAll(t, filepath.Join(dir, "datto_failure_PVC-SRV-PIMS_01.eml")))
	recovery := string(readAll(t, filepath.Join(dir, "datto_recovery_PVC-SRV-PIMS_03.eml")))
	const (
		siris   = "siris1@pinecrest-vet.example"
		rcpt    = "pinecrest@alerts.example.net"
		key     = "pinecrest/PVC-SRV-PIMS/backup"
		okSubj  = "Subject: Datto Notice: Backup Succeeded for PVC-SRV-PIMS on PVC-SIRIS1\r\n"
		badSubj = "Subject: Datto Alert: Backup Failed for PVC-SRV-PIMS on PVC-SIRIS1\r\n"
	)
	// variant gives the recovery its own Message-ID (else it is an SMTP
	// retry of the same message) and applies the replacements.
	variant := func(id string, repl ...string) []byte {
		s := strings.Replace(recovery, "<1741024852.backup.pims@pvc-siris1.pinecrest.lan>", "<"+id+"@safety.test>", 1)
		for i := 0; i+1 < len(repl); i += 2 {
			if !strings.Contains(s, repl[i]) {
				t.Fatalf("sample changed: %q not found", repl[i])
			}
			s = strings.Replace(s, repl[i], repl[i+1], 1)
		}
		return []byte(s)
	}
	send := func(from string, raw []byte) string {
		t.Helper()
		r := testutil.SendMail(t, h.app.SMTPAddr(), from, []string{rcpt}, raw)
		if !strings.HasPrefix(r, "250") {
			t.Fatalf("reply %q", r)
		}
		waitFor(t, "processing", 10*time.Second, func() bool { return idle(h.app.DB) })
		return testutil.QueuedID(r)
	}
	state := func() string {
		var st string
		if err := h.app.DB.View(func(tx *store.Tx) error {
			inc, err := tx.IncidentByKey(key)
			if inc != nil {
				st = inc.State
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return st
	}

	send(siris, []byte(failure))
	if st := state(); st != store.StateOpen {
		t.Fatalf("after the failure the incident is %q, want open", st)
	}
	ambiguous := []struct {
		name, from string
		raw        []byte
		reason     string
	}{
		{"duplicate Subject", siris, variant("dup", okSubj, okSubj+badSubj),
			`unsafe to close (rule datto backup succeeded): 2 Subject: headers`},
		{"null sender [Success]", "", variant("null", okSubj, strings.Replace(okSubj, "Subject: ", "Subject: [Success] ", 1)),
			"null envelope sender"},
		{"subject/body contradiction", siris, variant("contra",
			"Alert:        Backup Succeeded", "Alert:        Backup Failed",
			"Backup of PVC-SRV-PIMS completed;", "Backup of PVC-SRV-PIMS failed;"),
			"the subject says success but the body says failure"},
		{"look-alike sender", "siris1@datto-backup.com.evil", []byte(strings.NewReplacer(
			"<"+siris+">", "<siris1@datto-backup.com.evil>",
			"PVC-SRV-PIMS", "PVC-SRV-LOOK",
			"<1741017641.backup.pims@", "<lookalike@").Replace(failure)),
			"sender siris1@datto-backup.com.evil is not one of client pinecrest's senders"},
	}
	for _, a := range ambiguous {
		id := send(a.from, a.raw)
		if st := state(); st != store.StateOpen {
			t.Fatalf("%s: the incident is %q after it, want still open", a.name, st)
		}
		var e *store.AuditEntry
		var kept bool
		if err := h.app.DB.View(func(tx *store.Tx) error {
			q, err := tx.Quarantined(100)
			for _, m := range q {
				kept = kept || m.ID == id
			}
			if err != nil {
				return err
			}
			return tx.Audit(func(x *store.AuditEntry) bool {
				if x.Message == id {
					e = x
				}
				return true
			})
		}); err != nil {
			t.Fatal(err)
		}
		if !kept || e == nil || e.Decision != "quarantine" || !strings.Contains(e.Detail, a.reason) {
			t.Fatalf("%s: kept in quarantine %v, audit %+v; want quarantine with %q", a.name, kept, e, a.reason)
		}
	}
	send(siris, []byte(recovery))
	if st := state(); st != store.StateClosed {
		t.Fatalf("the genuine recovery left the incident %q, want closed", st)
	}
	var ops []string
	for _, l := range logLines(t, h.out) {
		ops = append(ops, l.Op+" "+l.Key+" "+l.Ticket)
	}
	lines := logLines(t, h.out)
	if len(lines) != 2 || lines[0].Op != "create" || lines[0].Key != key || lines[1].Op != "close" || lines[1].Ticket != lines[0].Ticket {
		t.Fatalf("the PSA saw %q; want only the failure's ticket and the genuine recovery's close of it", ops)
	}
}
