package app

import (
	"fmt"
	"strings"
	"testing"

	"psagate/internal/testutil"
)

// secondClient is a [[client]] block for tests that need two clients.
const secondClient = `
[[client]]
name = "birchwood"
recipients = ["birchwood@alerts.example.net"]
`

// templateMail is an alert from an appliance whose mail template reuses one
// Message-ID and one body for every device: only the Subject differs.
func templateMail(subject string) []byte {
	return []byte("From: NAS <nas@storage.example>\r\nTo: alerts@alerts.example.net\r\nSubject: " + subject +
		"\r\nMessage-ID: <template-0001@nas>\r\nDate: Tue, 11 Feb 2025 13:00:26 -0700\r\n\r\n" +
		"A backup job failed. Log in to the console for details.\r\n")
}

// TestDedupeKeysOnTheWholeMessage sends, over SMTP, mails that share a
// Message-ID and a body but differ in Subject or in recipient (client):
// each is a different alert and must be queued. Only a true redelivery is
// answered "Already queued".
func TestDedupeKeysOnTheWholeMessage(t *testing.T) {
	h := startApp(t, baseConfig(t, t.TempDir(), secondClient), Options{})
	send := func(rcpt, subject string) string {
		return testutil.SendMail(t, h.app.SMTPAddr(), "nas@storage.example", []string{rcpt}, templateMail(subject))
	}
	const pine, birch = "pinecrest@alerts.example.net", "birchwood@alerts.example.net"
	first := send(pine, "Backup job Failed on SRV1")
	if !strings.HasPrefix(first, "250 2.0.0 Queued as ") {
		t.Fatalf("first mail: %q", first)
	}
	for _, tc := range []struct{ name, rcpt, subject string }{
		{"another Subject (another device)", pine, "Backup job Failed on SRV2"},
		{"another recipient (another client)", birch, "Backup job Failed on SRV1"},
	} {
		if r := send(tc.rcpt, tc.subject); !strings.HasPrefix(r, "250 2.0.0 Queued as ") {
			t.Errorf("%s: reply %q, want it queued as a new message", tc.name, strings.TrimSpace(r))
		}
	}
	// A relay's retry: the same mail with one more Received line.
	retry := append([]byte("Received: from relay2.example by psagate; Tue, 11 Feb 2025 13:05:00 -0700\r\n"), templateMail("Backup job Failed on SRV1")...)
	r := testutil.SendMail(t, h.app.SMTPAddr(), "nas@storage.example", []string{pine}, retry)
	if want := fmt.Sprintf("250 2.0.0 Already queued as %s (duplicate delivery ignored)\r\n", testutil.QueuedID(first)); r != want {
		t.Errorf("true redelivery: reply %q, want %q", r, want)
	}
}
