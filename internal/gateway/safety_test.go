package gateway

import (
	"strings"
	"testing"

	"psagate/internal/config"
	"psagate/internal/message"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// safetySnapshot has a client that pins its senders and one that does not,
// and Datto-shaped rules like the shipped pack's (kept here so that this
// test does not change when the pack does).
func safetySnapshot(t *testing.T) *Snapshot {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte(`
[smtp]
accept_domains = ["alerts.example.net"]
[[client]]
name = "pinecrest"
recipients = ["pinecrest@alerts.example.net"]
senders = ["@pinecrest-vet.example", "alerts@datto.com"]
[[client]]
name = "open"
recipients = ["open@alerts.example.net"]
`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile([]rules.File{{Name: "t.toml", Data: []byte(`
[[rule]]
name = "dsn"
priority = 10
[rule.if]
header = { "Content-Type" = ["report-type=delivery-status"] }
[rule.then]
action = "drop"

[[rule]]
name = "datto backup failed"
[rule.if]
body_contains = ["Datto"]
subject_matches = ['Backup Failed']
[rule.extract]
device = '\bfor\s+(?P<device>[\w.-]+)'
[rule.then]
action = "ticket"
check = "backup"

[[rule]]
name = "datto backup succeeded"
[rule.if]
body_contains = ["Datto"]
subject_matches = ['Backup Succeeded']
[rule.extract]
device = '\bfor\s+(?P<device>[\w.-]+)'
[rule.then]
action = "close"
check = "backup"

[[rule]]
name = "datto digest"
[rule.if]
body_contains = ["Datto"]
subject_matches = ['Daily Summary']
[rule.then]
action = "drop"
`)}}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return NewSnapshot(cfg, rs)
}

// dattoMail builds a Datto-shaped mail; extra header lines go before the body.
func dattoMail(from, to, subject, extra, body string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n" + extra +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@x>\r\nDate: Mon, 03 Mar 2025 09:00:41 -0700\r\n\r\n" + body)
}

const (
	siris      = "siris1@pinecrest-vet.example"
	pcRcpt     = "pinecrest@alerts.example.net"
	okSubject  = "Datto Notice: Backup Succeeded for PVC-SRV-PIMS on PVC-SIRIS1"
	badSubject = "Datto Alert: Backup Failed for PVC-SRV-PIMS on PVC-SIRIS1"
	okBody     = "Datto SIRIS alert\r\n  Alert: Backup Succeeded\r\n  Errors: 0\r\nNotify on failure: yes\r\n"
	badBody    = "Datto SIRIS alert\r\n  Alert: Backup Failed\r\n  The backup could not be completed.\r\n"
)

func TestSafetyChecks(t *testing.T) {
	s := safetySnapshot(t)
	dsn := "From: MAILER-DAEMON@relay.example\r\nTo: " + pcRcpt + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nDatto Notice: Backup Succeeded for X. Delivery failed.\r\n--b--\r\n"
	tests := []struct {
		name, mailFrom string
		raw            []byte
		action         rules.Action // the decision that must stand
		guard          string       // substring of the reason; "" when none
	}{
		{"plain success closes", siris, dattoMail(siris, pcRcpt, okSubject, "", okBody), rules.ActionClose, ""},
		{"plain failure tickets", siris, dattoMail(siris, pcRcpt, badSubject, "", badBody), rules.ActionTicket, ""},
		{"duplicate Subject success+failed", siris,
			dattoMail(siris, pcRcpt, okSubject, "Subject: "+badSubject+"\r\n", okBody), rules.ActionQuarantine,
			`2 Subject: headers ("Datto Notice: Backup Succeeded`},
		{"duplicate Subject failed first still tickets", siris,
			dattoMail(siris, pcRcpt, badSubject, "Subject: "+okSubject+"\r\n", badBody), rules.ActionTicket, ""},
		{"duplicate From", siris,
			dattoMail(siris, pcRcpt, okSubject, "From: other@pinecrest-vet.example\r\n", okBody), rules.ActionQuarantine, "2 From: headers"},
		{"null sender success", "", dattoMail(siris, pcRcpt, okSubject, "", okBody), rules.ActionQuarantine, "null envelope sender"},
		{"null sender delivery report still dropped", "", []byte(dsn), rules.ActionDrop, ""},
		{"subject success body failed", siris, dattoMail(siris, pcRcpt, "[Success] Datto Backup Succeeded for PVC-SRV-PIMS", "",
			"Datto SIRIS alert\r\nStatus: Failed\r\n"), rules.ActionQuarantine, "the subject says success but the body says failure"},
		{"subject success body with zero counts", siris, dattoMail(siris, pcRcpt, okSubject, "",
			"Datto SIRIS alert\r\nFailed: 0\r\n0 errors, no warnings\r\nThe job did not fail.\r\n"), rules.ActionClose, ""},
		{"drop whose body says failed", siris, dattoMail(siris, pcRcpt, "Datto Daily Summary: all backups successful", "",
			"Datto SIRIS alert\r\nBackup of PVC-SRV-PIMS failed\r\n"), rules.ActionQuarantine, "the body says failure"},
		{"close without device", siris, dattoMail(siris, pcRcpt, "Datto Notice: Backup Succeeded", "", okBody), rules.ActionQuarantine,
			`the key "pinecrest//backup" names no device or job`},
		{"look-alike sender failure", "alerts@datt0.com", dattoMail("alerts@datt0.com", pcRcpt, badSubject, "", badBody),
			rules.ActionQuarantine, "sender alerts@datt0.com is not one of client pinecrest's senders"},
		{"look-alike domain suffix", "alerts@datto.com.evil", dattoMail("alerts@datto.com.evil", pcRcpt, okSubject, "", okBody),
			rules.ActionQuarantine, "is not one of client pinecrest's senders"},
		{"pinned vendor address", "alerts@datto.com", dattoMail("alerts@datto.com", pcRcpt, badSubject, "", badBody), rules.ActionTicket, ""},
		{"pinned envelope, other header From", siris, dattoMail("noreply@datto.net", pcRcpt, badSubject, "", badBody), rules.ActionTicket, ""},
		{"client without senders, real sender", "alerts@example.com",
			dattoMail("alerts@example.com", "open@alerts.example.net", badSubject, "", badBody), rules.ActionTicket, ""},
		{"look-alike of a pinned sender routed to another client", "alerts@datt0.com",
			dattoMail("alerts@datt0.com", "open@alerts.example.net", badSubject, "", badBody), rules.ActionQuarantine,
			"sender alerts@datt0.com looks like client pinecrest's sender alerts@datto.com (look-alike domain)"},
		{"look-alike routed to no client", "alerts@datto-backup.com.evil",
			dattoMail("alerts@datto-backup.com.evil", "nobody@alerts.example.net", badSubject, "", badBody), rules.ActionQuarantine,
			"looks like client pinecrest's sender alerts@datto.com"},
		{"unknown mail of a pinned client keeps the default action", "someone@elsewhere.example",
			dattoMail("someone@elsewhere.example", pcRcpt, "hello", "", "hi"), rules.ActionTicket, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := message.Envelope{MailFrom: tt.mailFrom, RcptTo: []string{pcRcpt}}
			if i := strings.Index(string(tt.raw), "\r\nTo: "); i >= 0 {
				env.RcptTo = []string{strings.SplitN(string(tt.raw)[i+6:], "\r\n", 2)[0]}
			}
			v, _, _ := s.Decide("id", tt.raw, env)
			if v.Action != tt.action {
				t.Fatalf("action %s (rule %s, guard %q), want %s", v.Action, v.Rule, v.Guard, tt.action)
			}
			if tt.guard == "" && v.Guard != "" {
				t.Fatalf("unexpected guard %q", v.Guard)
			}
			if !strings.Contains(v.Guard, tt.guard) {
				t.Fatalf("guard %q, want it to contain %q", v.Guard, tt.guard)
			}
			if tt.guard != "" && (v.Was == "" || v.Was == rules.ActionQuarantine) {
				t.Fatalf("was = %q, want the rule's own decision", v.Was)
			}
		})
	}
}

// TestSafetyQuarantineKeepsIncidentOpen runs a failure and then an
// ambiguous success through the real pipeline (Trial, bbolt): the
// incident stays open, the message is in quarantine and the audit entry
// gives the reason.
func TestSafetyQuarantineKeepsIncidentOpen(t *testing.T) {
	tr, err := NewTrial(safetySnapshot(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	env := message.Envelope{MailFrom: siris, RcptTo: []string{pcRcpt}}
	if r, err := tr.Run("m1", dattoMail(siris, pcRcpt, badSubject, "", badBody), env, false); err != nil || r.Decision != rules.ActionTicket {
		t.Fatalf("failure: %v %+v", err, r)
	}
	r, err := tr.Run("m2", dattoMail(siris, pcRcpt, okSubject, "Subject: "+badSubject+"\r\n", okBody), env, false)
	if err != nil || r.Decision != rules.ActionQuarantine {
		t.Fatalf("ambiguous success: %v %+v", err, r)
	}
	_, open, err := tr.Pending()
	if err != nil || len(open) != 1 || open[0].Key != "pinecrest/PVC-SRV-PIMS/backup" {
		t.Fatalf("open incidents %+v (%v), want the failure's", open, err)
	}
	var detail string
	var quarantined int
	err = tr.DB.View(func(tx *store.Tx) error {
		q, err := tx.Quarantined(10)
		quarantined = len(q)
		if err != nil {
			return err
		}
		return tx.Audit(func(e *store.AuditEntry) bool {
			if e.Message == "m2" {
				detail = e.Detail
			}
			return true
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if quarantined != 1 {
		t.Errorf("%d quarantined messages, want 1", quarantined)
	}
	if !strings.Contains(detail, "unsafe to close (rule datto backup succeeded): 2 Subject: headers") {
		t.Errorf("audit detail %q does not give the reason", detail)
	}
}

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		text string
		body bool
		want outcome
	}{
		{"Backup Succeeded for X", false, outcomeSuccess},
		{"[Success] Job X", false, outcomeSuccess},
		{"Backup OK", false, outcomeSuccess},
		{"Click OK to continue", true, outcomeNone},
		{"Sicherung erfolgreich abgeschlossen", false, outcomeSuccess},
		{"Sauvegarde réussie", false, outcomeSuccess},
		{"Échec de la sauvegarde", false, outcomeFailure},
		{"Sicherung fehlgeschlagen", false, outcomeFailure},
		{"Backup unsuccessful", false, outcomeFailure},
		{"Backup completed with errors", false, outcomeMixed},
		{"Success 1, Warning 0, Error 0", true, outcomeSuccess},
		{"Errors: 0\nFailed: 0", true, outcomeNone},
		{"no errors were found", true, outcomeNone},
		{"The backup could not be completed.\nStatus: Failed", true, outcomeFailure},
		{"Backup nicht erfolgreich", false, outcomeNone},
		{"Send a notification if the backup fails\nResult: Success", true, outcomeSuccess},
		{"Heartbeat", false, outcomeNone},
	}
	for _, tt := range tests {
		if got := outcomeOf(tt.text, tt.body); got != tt.want {
			t.Errorf("outcomeOf(%q, body=%v) = %s, want %s", tt.text, tt.body, got, tt.want)
		}
	}
}

// The safety checks run while DATA is open: a huge body costs a bounded
// amount of work.
func TestOutcomeOfBounded(t *testing.T) {
	big := strings.Repeat("all fine here ", 1<<20) + "\nfailed"
	if got := outcomeOf(big, true); got != outcomeNone {
		t.Fatalf("outcome %s: text past the bound was read", got)
	}
}
