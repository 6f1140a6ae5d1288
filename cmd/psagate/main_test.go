package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"psagate/internal/psa"
	atfake "psagate/internal/psa/autotask/fake"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/testutil"
)

// runCLI runs the command in-process and returns exit code, stdout, stderr.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// writeConfig writes a config using the repository's rules and the log
// provider, with extra TOML appended.
func writeConfig(t *testing.T, psaSection, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if psaSection == "" {
		psaSection = "[psa]\nprovider = \"log\"\n"
	}
	cfg := fmt.Sprintf(`[smtp]
listen = "127.0.0.1:0"
accept_domains = ["alerts.example.net"]
[state]
path = %q
[http]
listen = ""
[rules]
dir = %q
%s
[[client]]
name = "pinecrest"
recipients = ["pinecrest@alerts.example.net"]
devices = ["PVC-*"]
%s`, filepath.Join(dir, "state.db"), filepath.Join(testutil.RepoRoot(t), "rules"), psaSection, extra)
	path := filepath.Join(dir, "psagate.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUnknownCommandPrintsUsageAndExits2(t *testing.T) {
	code, _, stderr := runCLI("frobnicate")
	if code != 2 || !strings.Contains(stderr, "unknown command \"frobnicate\"") || !strings.Contains(stderr, "psagate serve") {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(); code != 2 {
		t.Fatalf("no arguments: exit %d", code)
	}
	if code, _, stderr := runCLI("try", "x.eml"); code != 2 || !strings.Contains(stderr, "-config FILE is required") {
		t.Fatalf("missing -config: %d %q", code, stderr)
	}
}

// TestTryJSONOverSamples is the check of the rule packs against the sample
// sets: `psagate try -json` over the messages in EXPECTED.tsv order gives,
// for every row, the expected decision or one of its also_ok values.
func TestTryJSONOverSamples(t *testing.T) {
	cfg := writeConfig(t, "", "")
	for _, set := range testutil.SampleSets(t) {
		t.Run(filepath.Base(set), func(t *testing.T) {
			rows := testutil.ReadExpected(t, set)
			args := []string{"try", "-config", cfg, "-json"}
			for _, r := range rows {
				args = append(args, filepath.Join(set, r.File))
			}
			code, out, stderr := runCLI(args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var lines []map[string]any
			sc := bufio.NewScanner(strings.NewReader(out))
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("not JSON: %q", sc.Text())
				}
				lines = append(lines, m)
			}
			if len(lines) != len(rows) {
				t.Fatalf("%d lines for %d messages", len(lines), len(rows))
			}
			for i, r := range rows {
				l := lines[i]
				for _, k := range []string{"file", "decision", "rule", "client", "key", "summary"} {
					if _, ok := l[k]; !ok {
						t.Errorf("%s: field %q missing", r.File, k)
					}
				}
				dec, _ := l["decision"].(string)
				eff, _ := l["effect"].(string)
				if l["file"] != r.File {
					t.Errorf("line %d is for %v, want %s", i, l["file"], r.File)
				}
				if !r.Accepts(dec, eff) {
					t.Errorf("%s: decision %s (%s), want %s or %v", r.File, dec, eff, r.Decision, r.AlsoOK)
				}
			}
		})
	}
}

func TestTryExplainShowsConditions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fail.eml")
	os.WriteFile(file, []byte("From: PVC-BDR1 <bdr1@pinecrest-vet.example>\r\nTo: pinecrest@alerts.example.net\r\n"+
		"Subject: [PVC-BDR1] Failed Backup: PVC-SRV-DB2\r\nDate: Tue, 11 Feb 2025 13:00:26 -0700\r\n\r\n"+
		"x360Recover alert from appliance PVC-BDR1\r\n"), 0o644)
	code, out, stderr := runCLI("try", "-config", writeConfig(t, "", ""), "-explain", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"decision: ticket (opened)", "x360recover backup failed", "subject_matches", "key:      pinecrest/PVC-SRV-DB2/backup"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	os.MkdirAll(rulesDir, 0o755)
	os.WriteFile(filepath.Join(rulesDir, "a.toml"), []byte("[[rule]]\nname = \"x\"\n[rule.if]\nsubject_matches = ['(']\n[rule.then]\naction = \"ticket\"\n"), 0o644)
	os.WriteFile(filepath.Join(rulesDir, "b.toml"), []byte("[[rule]]\nname = \"y\"\n[rule.then]\naction = \"drop\"\n"), 0o644)
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[smtp]\naccept_domains = [\"a.example\"]\n[rules]\ndir = %q\n", rulesDir)), 0o644)
	code, out, _ := runCLI("check", "-config", cfg)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{filepath.Join(rulesDir, "a.toml") + ":4:", filepath.Join(rulesDir, "b.toml") + ":"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	// A config error is reported with file:line.
	os.WriteFile(cfg, []byte("[smtp]\naccept_domains = [\"a.example\"]\nlisten_addr = \"x\"\n"), 0o644)
	code, out, _ = runCLI("check", "-config", cfg)
	if code != 1 || !strings.Contains(out, cfg+":3: smtp.listen_addr: unknown key") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// The shipped example passes (its paths are relative to the repository,
	// where `make run` starts it).
	t.Chdir(testutil.RepoRoot(t))
	code, out, stderr := runCLI("check", "-config", filepath.Join("configs", "example.toml"))
	if code != 0 || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("example config: exit %d\n%s%s", code, out, stderr)
	}
}

func psaSection(s psa.Settings) string {
	var b strings.Builder
	b.WriteString("[psa]\n")
	for _, k := range slices.Sorted(maps.Keys(s)) {
		fmt.Fprintf(&b, "%s = %q\n", k, s[k])
	}
	return b.String()
}

func TestPSATestConnectWise(t *testing.T) {
	fk := cwfake.Start(cwfake.DefaultConfig())
	defer fk.Close()
	good := fk.Settings()
	good["connectwise.company"] = "PVC01"
	code, out, stderr := runCLI("psa", "test", "-config", writeConfig(t, psaSection(good), ""))
	if code != 0 || !strings.Contains(out, "Connection Succeeded") {
		t.Fatalf("good settings: exit %d\n%s%s", code, out, stderr)
	}
	for _, tc := range []struct {
		name, key, value, want string
	}{
		{"wrong key", "connectwise.private_key", "not-the-key", "FAIL credentials: HTTP 401: The supplied authentication is incorrect. ConnectWise refused the API key: check connectwise.public_key and connectwise.private_key"},
		{"unknown company id", "connectwise.company_id", "nosuchco", `FAIL company info: company ID "nosuchco" (connectwise.company_id) is not known at 127.0.0.1`},
		{"unknown board", "connectwise.board", "No Such Board", `FAIL board: connectwise.board "No Such Board" does not exist in ConnectWise; valid boards: "Help Desk", "Backup Alerts", "Vault Alerts"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := maps.Clone(good)
			s[tc.key] = tc.value
			code, out, stderr := runCLI("psa", "test", "-config", writeConfig(t, psaSection(s), ""))
			all := out + stderr
			if code != 1 || strings.Contains(all, "Connection Succeeded") || !strings.Contains(all, tc.want) {
				t.Fatalf("exit %d, output lacks %q:\n%s", code, tc.want, all)
			}
			for _, secret := range []string{good["connectwise.private_key"], good["connectwise.public_key"]} {
				if strings.Contains(all, secret) {
					t.Fatalf("output shows a secret")
				}
			}
		})
	}
	t.Run("bad site format", func(t *testing.T) {
		s := maps.Clone(good)
		delete(s, "connectwise.endpoint")
		s["connectwise.site"] = "https://na.myconnectwise.net/v4_6_release"
		code, out, stderr := runCLI("psa", "test", "-config", writeConfig(t, psaSection(s), ""))
		if all := out + stderr; code != 1 || !strings.Contains(all, "api-na.myconnectwise.net") {
			t.Fatalf("exit %d, the message does not show the correct form:\n%s", code, all)
		}
	})
	code, out, _ = runCLI("psa", "lookup", "-config", writeConfig(t, psaSection(good), ""), "boards")
	if code != 0 || !strings.Contains(out, "Backup Alerts") {
		t.Fatalf("lookup boards: exit %d\n%s", code, out)
	}
}

func TestPSATestAutotask(t *testing.T) {
	fk := atfake.Start(atfake.DefaultConfig())
	defer fk.Close()
	good := fk.Settings()
	code, out, stderr := runCLI("psa", "test", "-config", writeConfig(t, psaSection(good), ""))
	if code != 0 || !strings.Contains(out, "Connection Succeeded") {
		t.Fatalf("good settings: exit %d\n%s%s", code, out, stderr)
	}
	for _, tc := range []struct{ key, value, want string }{
		{"autotask.username", "nobody@example.com", `Zone discovery: FAILED: Autotask does not know the API user "nobody@example.com" (zone information could not be determined): check autotask.username`},
		{"autotask.secret", "wrong-secret", "Authentication: FAILED: Autotask refused the username or secret (HTTP 401): check autotask.username and autotask.secret"},
		{"autotask.integration_code", "WRONGCODE", "Authentication: FAILED: Autotask rejected the API tracking identifier (IntegrationCode is invalid): check autotask.integration_code"},
		{"autotask.company_id", "99999", "Company: FAILED: there is no Autotask company with id 99999 (autotask.company_id)"},
		{"autotask.queue_id", "No Such Queue", `Queue (autotask.queue_id): FAILED: autotask.queue_id "No Such Queue" is not a queue in Autotask; valid queues: 29683482 (Backup Alerts), 29683483 (Monitoring)`},
	} {
		t.Run(tc.key, func(t *testing.T) {
			s := maps.Clone(good)
			s[tc.key] = tc.value
			code, out, stderr := runCLI("psa", "test", "-config", writeConfig(t, psaSection(s), ""))
			all := out + stderr
			if code != 1 || strings.Contains(all, "Connection Succeeded") {
				t.Fatalf("exit %d:\n%s", code, all)
			}
			// The message says what is wrong and names the setting to fix.
			if !strings.Contains(all, tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, all)
			}
			for _, secret := range []string{good["autotask.secret"], good["autotask.integration_code"], "wrong-secret", "WRONGCODE"} {
				if strings.Contains(all, secret) {
					t.Fatalf("output shows secret %q:\n%s", secret, all)
				}
			}
		})
	}
}

func TestClientsShowsOrigins(t *testing.T) {
	cfg := writeConfig(t, "[psa]\nprovider = \"connectwise\"\n[psa.connectwise]\nboard = \"Backup Alerts\"\npriority = \"P3\"\n",
		"[client.psa]\nconnectwise.priority = \"P1\"\n[[client.device]]\nname = \"PVC-VAULT\"\n[client.device.psa]\nconnectwise.board = \"Vault\"\n")
	code, out, stderr := runCLI("clients", "-config", cfg, "pinecrest")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	out = strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		`connectwise.priority = "P1" (client pinecrest)`,
		`connectwise.board = "Backup Alerts" (org)`,
		`connectwise.board = "Vault" (device PVC-VAULT)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("clients output lacks %q:\n%s", want, out)
		}
	}
}
