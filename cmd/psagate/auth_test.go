package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"psagate/internal/auth/dnstest"
)

// TestTryExplainShowsAuthenticationResults: try runs the same sender
// authentication as serve (through [auth] dns, here a stub) and shows the
// Authentication-Results view; a require_auth client's unsigned mail is
// quarantined, the signed one is ticketed.
func TestTryExplainShowsAuthenticationResults(t *testing.T) {
	dns, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dns.Close)
	sg := dnstest.NewSigner("pinecrest-vet.example", "sel")
	sg.Publish(dns)
	cfg := writeConfig(t, "[auth]\ndns = \""+dns.Addr+"\"\n[psa]\nprovider = \"log\"\n", "require_auth = [\"pinecrest-vet.example\"]\n")
	mail := []byte("From: PVC-BDR1 <bdr1@pinecrest-vet.example>\r\nTo: pinecrest@alerts.example.net\r\n" +
		"Subject: [PVC-BDR1] Failed Backup: PVC-SRV-DB2\r\nDate: Tue, 11 Feb 2025 13:00:26 -0700\r\nMessage-ID: <a1@pvc>\r\n\r\n" +
		"x360Recover alert from appliance PVC-BDR1\r\n")
	dir := t.TempDir()
	unsigned, signed := filepath.Join(dir, "unsigned.eml"), filepath.Join(dir, "signed.eml")
	os.WriteFile(unsigned, mail, 0o644)
	os.WriteFile(signed, sg.Sign(mail), 0o644)

	code, out, stderr := runCLI("try", "-config", cfg, "-explain", unsigned, signed)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	parts := strings.SplitN(out, "\nsigned.eml\n", 2)
	if len(parts) != 2 {
		t.Fatalf("output:\n%s", out)
	}
	for _, want := range []string{"decision: quarantine", "rule:     (sender authentication)",
		"auth:     Authentication-Results: ", "spf=none", "dkim=none", "dmarc=none header.from=pinecrest-vet.example"} {
		if !strings.Contains(parts[0], want) {
			t.Errorf("unsigned: output lacks %q:\n%s", want, parts[0])
		}
	}
	for _, want := range []string{"decision: ticket (opened)", "dkim=pass header.d=pinecrest-vet.example", "dmarc=pass"} {
		if !strings.Contains(parts[1], want) {
			t.Errorf("signed: output lacks %q:\n%s", want, parts[1])
		}
	}
}
