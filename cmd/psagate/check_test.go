package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkFiles writes a rules directory holding rule (when not "") and a
// config made of cfg with %[1]s replaced by that directory; it returns the
// config's path and the directory.
func checkFiles(t *testing.T, cfg, rule string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.Mkdir(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if rule != "" {
		if err := os.WriteFile(filepath.Join(rulesDir, "a.toml"), []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "psagate.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(cfg, rulesDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, rulesDir
}

const goodRule = "[[rule]]\nname = \"x\"\n[rule.if]\nsubject_contains = [\"x\"]\n[rule.then]\naction = \"drop\"\n"

// checkOutput runs check and insists on exit 1, exactly the lines want on
// stdout, and the count of them on stderr.
func checkOutput(t *testing.T, cfg string, want []string) {
	t.Helper()
	code, out, stderr := runCLI("check", "-config", cfg)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if w := fmt.Sprintf("psagate: %d problem(s) found\n", len(want)); stderr != w {
		t.Errorf("stderr %q, want %q", stderr, w)
	}
}

// A bad duration used to end the decode, hiding the unknown keys.
func TestCheckReportsUnknownKeysAndBadDurationTogether(t *testing.T) {
	cfg, _ := checkFiles(t, `[smtp]
accept_domains = ["a.example"]
listen_adress = "127.0.0.1:25"
read_timeout = "5q"
[http]
listen = ""
[rules]
dir = %q
wach_interval = "2s"
`, goodRule)
	checkOutput(t, cfg, []string{
		cfg + ":3: smtp.listen_adress: unknown key",
		cfg + `:4: smtp.read_timeout: "5q" is not a duration (write it like "60s", "15m" or "24h")`,
		cfg + ":9: rules.wach_interval: unknown key",
	})
}

// A config error used to stop check before the rule files were read.
func TestCheckReportsConfigAndRuleErrorsTogether(t *testing.T) {
	cfg, rulesDir := checkFiles(t, `[smtp]
accept_domains = ["a.example"]
max_sessions = -5
[rules]
dir = %q
`, "[[rule]]\nname = \"x\"\n[rule.if]\nsubject_matches = ['(']\n[rule.then]\naction = \"ticket\"\n")
	code, out, stderr := runCLI("check", "-config", cfg)
	if code != 1 || stderr != "psagate: 2 problem(s) found\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got:\n%s", out)
	}
	if want := cfg + ":3: smtp.max_sessions: must be at least 1, not -5"; !strings.HasPrefix(lines[0], want) {
		t.Errorf("line 1 %q, want %q...", lines[0], want)
	}
	if want := filepath.Join(rulesDir, "a.toml") + ":4:"; !strings.HasPrefix(lines[1], want) || !strings.Contains(lines[1], "subject_matches") {
		t.Errorf("line 2 %q, want %s ... subject_matches ...", lines[1], want)
	}
}

// When [rules] dir itself is bad, the default would stand in for it: check
// must not then report the state of some other directory.
func TestCheckSkipsRulesWhenTheirDirIsBad(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./rules here, which the default would name
	cfg, _ := checkFiles(t, `[smtp]
accept_domains = ["a.example"]
[rules]
dir = 5
# %s
`, goodRule)
	checkOutput(t, cfg, []string{cfg + ":4: rules.dir: must be a string, not 5"})
}

// The OK line and exit 0 are unchanged for a clean config.
func TestCheckOK(t *testing.T) {
	cfg, _ := checkFiles(t, "[smtp]\naccept_domains = [\"a.example\"]\n[rules]\ndir = %q\n", goodRule)
	code, out, stderr := runCLI("check", "-config", cfg)
	if want := "OK: " + cfg + ": 1 rules in 1 files, 0 clients, provider log\n"; code != 0 || out != want || stderr != "" {
		t.Fatalf("exit %d\nstdout %q\nwant   %q\nstderr %q", code, out, want, stderr)
	}
}

// A close rule whose key names no extracted device or job would close
// every machine's incident of a client with one machine's success: check
// refuses it, at the line of its key (or of its action when the key is the
// default one).
func TestCheckRefusesCloseRuleWithoutDevice(t *testing.T) {
	cfg, rulesDir := checkFiles(t, "[smtp]\naccept_domains = [\"a.example\"]\n[rules]\ndir = %q\n",
		"[[rule]]\nname = \"ok\"\n[rule.if]\nsubject_contains = [\"Succeeded\"]\n[rule.then]\naction = \"close\"\n\n"+
			"[[rule]]\nname = \"ok2\"\n[rule.if]\nsubject_contains = [\"OK\"]\n[rule.extract]\njob = 'Job (\\S+)'\n[rule.then]\naction = \"close\"\nkey = \"{client}/backup\"\n")
	file := filepath.Join(rulesDir, "a.toml")
	checkOutput(t, cfg, []string{
		file + `:6: rule "ok": a close rule must extract the device or job it closes: key "{client}/{device}/{check}" names {device}, which neither this rule's [rule.extract] nor an earlier stop = false rule sets, so one machine's success would close another machine's incident; extract device (or job) in [rule.extract] and name it in the key`,
		file + `:16: rule "ok2": a close rule must extract the device or job it closes: key "{client}/backup" names no device or job field, so one machine's success would close another machine's incident; extract device (or job) in [rule.extract] and name it in the key`,
	})
}
