package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"psagate/internal/auth/dnstest"
	"psagate/internal/testutil"
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

// TestCheckWarnsInternetWithoutRequireAuth: a listener open to 0.0.0.0/0
// with no require_auth anywhere passes the check with a warning; with
// require_auth on only some clients the others are named; the shipped
// internet profile passes without a warning.
func TestCheckWarnsInternetWithoutRequireAuth(t *testing.T) {
	open := "[smtp]\nallowed_networks = [\"0.0.0.0/0\"]\n"
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"none", writeConfigSMTP(t, open, ""), "warning: smtp.allowed_networks includes 0.0.0.0/0 (the whole internet) and no client or rule has require_auth"},
		{"some", writeConfigSMTP(t, open, "[[client]]\nname = \"b\"\nrecipients = [\"b@alerts.example.net\"]\nrequire_auth = [\"datto.com\"]\n"),
			"these clients have no require_auth: pinecrest"},
		{"lan only", writeConfigSMTP(t, "[smtp]\nallowed_networks = [\"10.0.0.0/8\"]\n", ""), ""},
	} {
		code, out, stderr := runCLI("check", "-config", tc.cfg)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s%s", tc.name, code, out, stderr)
		}
		if tc.want == "" && strings.Contains(out, "warning") || !strings.Contains(out, tc.want) {
			t.Errorf("%s: output %q, want %q", tc.name, out, tc.want)
		}
	}
	t.Chdir(testutil.RepoRoot(t)) // the profile's paths are relative to the repository
	code, out, _ := runCLI("check", "-config", filepath.Join("configs", "internet.toml"))
	if code != 0 || strings.Contains(out, "warning") {
		t.Errorf("configs/internet.toml: exit %d\n%s", code, out)
	}
}

// writeConfigSMTP is writeConfig with the [smtp] section replaced by smtp
// (accept_domains added) and extra appended.
func writeConfigSMTP(t *testing.T, smtp, extra string) string {
	t.Helper()
	p := writeConfig(t, "", extra)
	b, _ := os.ReadFile(p)
	s := strings.Replace(string(b), "[smtp]\n", smtp, 1)
	os.WriteFile(p, []byte(s), 0o600)
	return p
}
