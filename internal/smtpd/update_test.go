package smtpd

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"slices"
	"testing"
)

// A reload applies to sessions already open, at their next command: a
// revoked password stops working and a removed domain stops being taken.
// Settings go-smtp holds for itself are reported as needing a restart and
// keep their old values.
func TestUpdateAppliesToOpenSessions(t *testing.T) {
	t.Setenv("TEST_SMTP_PW", "old-pass")
	s, _, addr := start(t, testConfig(t, "[[smtp.user]]\nname = \"relay\"\npassword = \"env:TEST_SMTP_PW\"\n"), nil)
	cfg0 := testConfig(t, "[[smtp.user]]\nname = \"relay\"\npassword = \"env:TEST_SMTP_PW\"\n")
	cfg0.AcceptDomains = []string{"alerts.example.net", "old.example.net"}
	if restart, err := s.Update(cfg0); err != nil || len(restart) != 0 {
		t.Fatalf("first update: restart %v, err %v", restart, err)
	}

	rc := dial(t, addr)
	rc.hello()
	expectCode(t, rc.cmd("AUTH PLAIN "+plainAuth("relay", "old-pass")), "235")
	expectCode(t, rc.cmd("MAIL FROM:<a@b.example>"), "250")
	expectCode(t, rc.cmd("RCPT TO:<x@old.example.net>"), "250")

	t.Setenv("TEST_SMTP_PW", "new-pass")
	cfg1 := testConfig(t, "max_message_bytes = 2000\n[[smtp.user]]\nname = \"relay\"\npassword = \"env:TEST_SMTP_PW\"\n")
	cfg1.Listen = "127.0.0.1:1"
	restart, err := s.Update(cfg1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"smtp.listen", "smtp.max_message_bytes"}; !slices.Equal(restart, want) {
		t.Fatalf("restart needed for %v, want %v", restart, want)
	}
	if got := s.conf(); got.MaxMessageBytes == 2000 || got.Listen == "127.0.0.1:1" {
		t.Fatalf("restart-only keys changed in place: %+v", got)
	}

	// The open session: the dropped domain is refused now.
	expectCode(t, rc.cmd("RCPT TO:<y@old.example.net>"), "550")
	expectCode(t, rc.cmd("RCPT TO:<y@alerts.example.net>"), "250")

	// A new session: the old password no longer works, the new one does.
	rc2 := dial(t, addr)
	rc2.hello()
	expectCode(t, rc2.cmd("AUTH PLAIN "+plainAuth("relay", "old-pass")), "535")
	expectCode(t, rc2.cmd("AUTH PLAIN "+plainAuth("relay", "new-pass")), "235")
}

// A renewed certificate is served to the next STARTTLS; one that does not
// load fails the update and changes nothing.
func TestUpdateSwapsCertificate(t *testing.T) {
	cf1, kf1, _ := selfSigned(t, net.ParseIP("127.0.0.1"))
	s, _, addr := start(t, testConfig(t, "tls_cert = \""+cf1+"\"\ntls_key = \""+kf1+"\"\n"), nil)

	// The certificate STARTTLS serves (the test certificates share a
	// serial number, so compare the bytes).
	served := func() string {
		t.Helper()
		rc := dial(t, addr)
		rc.hello()
		expectCode(t, rc.cmd("STARTTLS"), "220")
		tc := tls.Client(rc.c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return string(tc.ConnectionState().PeerCertificates[0].Raw)
	}
	first := served()

	dir := t.TempDir()
	bad := testConfig(t, "tls_cert = \""+filepath.Join(dir, "missing.pem")+"\"\ntls_key = \""+kf1+"\"\n")
	bad.AcceptDomains = []string{"changed.example"}
	if _, err := s.Update(bad); err == nil {
		t.Fatal("an update with a certificate that does not load succeeded")
	}
	if s.conf().AcceptDomains[0] != "alerts.example.net" {
		t.Fatalf("a failed update changed the config: %v", s.conf().AcceptDomains)
	}
	if served() != first {
		t.Fatalf("a failed update changed the certificate")
	}

	cf2, kf2, _ := selfSigned(t, net.ParseIP("127.0.0.1"))
	if _, err := s.Update(testConfig(t, "tls_cert = \""+cf2+"\"\ntls_key = \""+kf2+"\"\n")); err != nil {
		t.Fatal(err)
	}
	if served() == first {
		t.Fatal("STARTTLS still serves the old certificate")
	}
}
