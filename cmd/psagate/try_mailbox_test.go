package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"psagate/internal/testutil"
)

// mailboxFixtures are the exported-mailbox fixtures of testdata/mailbox:
// an mboxrd file (a Datto failure, a newsletter whose body has escaped
// "From " lines, a repeat, a recovery with two Subject headers, the real
// recovery) and a Maildir (an SPX failure in new/, its repeat and recovery
// in cur/, and a Dovecot dot file that is not a message). The fixture
// names leave out the ":2,S" info part: a colon is not allowed in a Go
// module's file names (TestEachMaildirOrderAndSkips covers it).
func mailboxFixtures(t *testing.T) (mbox, maildir string) {
	dir := filepath.Join(testutil.RepoRoot(t), "testdata", "mailbox")
	return filepath.Join(dir, "alerts.mbox"), filepath.Join(dir, "Maildir")
}

func tryJSON(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	code, out, stderr := runCLI(append([]string{"try", "-json"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		lines = append(lines, m)
	}
	return lines
}

func TestTryReadsMboxAndMaildir(t *testing.T) {
	mbox, maildir := mailboxFixtures(t)
	lines := tryJSON(t, "-config", writeConfig(t, "", ""), mbox, maildir)
	want := []struct{ file, decision, effect, key string }{
		{"alerts.mbox#1", "ticket", "opened", "pinecrest/PVC-SRV-PIMS/backup"},
		{"alerts.mbox#2", "", "", ""}, // the newsletter: whatever the unknown-mail policy says
		{"alerts.mbox#3", "note", "noted", "pinecrest/PVC-SRV-PIMS/backup"},
		{"alerts.mbox#4", "quarantine", "kept", ""},
		{"alerts.mbox#5", "close", "closed", "pinecrest/PVC-SRV-PIMS/backup"},
		{"new/1741190414.M101P2001.mailhost", "ticket", "opened", ""},
		{"cur/1741194012.M102P2002.mailhost", "note", "noted", ""},
		{"cur/1741197612.M103P2003.mailhost", "close", "closed", ""},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d messages, want %d: %v", len(lines), len(want), lines)
	}
	for i, w := range want {
		l := lines[i]
		if l["file"] != w.file {
			t.Errorf("message %d is %v, want %s", i+1, l["file"], w.file)
		}
		if w.decision != "" && (l["decision"] != w.decision || l["effect"] != w.effect) {
			t.Errorf("%s: %v (%v), want %s (%s)", w.file, l["decision"], l["effect"], w.decision, w.effect)
		}
		if w.key != "" && l["key"] != w.key {
			t.Errorf("%s: key %v, want %s", w.file, l["key"], w.key)
		}
	}
	if g, _ := lines[3]["guard"].(string); !strings.Contains(g, "2 Subject: headers") || lines[3]["was"] != "close" {
		t.Errorf("the two-subject recovery: guard %q, was %v", g, lines[3]["was"])
	}
	if s := lines[1]["summary"]; s != "Clinic newsletter, March" {
		t.Errorf("newsletter summary %v", s)
	}
}

// A mailbox export keeps the envelope sender in Return-Path: "<>" is the
// null sender, and a "[Success]" from it must not close anything.
func TestTryNullSenderFromReturnPath(t *testing.T) {
	mbox, _ := mailboxFixtures(t)
	raw, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(string(raw), "\nFrom ", 2)[0]
	dir := t.TempDir()
	fail := filepath.Join(dir, "1-fail.eml")
	ok := filepath.Join(dir, "2-ok.eml")
	body := strings.SplitN(first, "\n", 2)[1]
	os.WriteFile(fail, []byte(body), 0o644)
	os.WriteFile(ok, []byte("Return-Path: <>\n"+strings.NewReplacer(
		"Subject: Datto Alert: Backup Failed", "Subject: [Success] Datto Notice: Backup Succeeded",
		"Alert:        Backup Failed", "Alert:        Backup Succeeded",
		"could not be completed:", "completed:", "unable to create", "created",
		"Message-ID: <", "Message-ID: <null.").Replace(body)), 0o644)
	code, out, stderr := runCLI("try", "-config", writeConfig(t, "", ""), fail, ok)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	part := out[strings.Index(out, "2-ok.eml"):]
	for _, want := range []string{"decision: quarantine (kept)", "safety:   not close, because null envelope sender", "rule:     datto backup succeeded"} {
		if !strings.Contains(part, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "incident 1 open: pinecrest/PVC-SRV-PIMS/backup") {
		t.Errorf("the failure's incident is not open after the run:\n%s", out)
	}
}

func TestTrySummary(t *testing.T) {
	mbox, maildir := mailboxFixtures(t)
	cfg := writeConfig(t, "", "")
	code, out, stderr := runCLI("try", "-config", cfg, "-summary", mbox, maildir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"8 message(s)", "  decisions:\n", "  rules:\n", "  clients:\n", "8  pinecrest",
		"2  datto backup failed", "quarantined by a safety check (1):\n    alerts.mbox#4: "} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "decision:") {
		t.Errorf("-summary printed the messages one by one:\n%s", out)
	}
	lines := tryJSON(t, "-config", cfg, "-summary", mbox, maildir)
	if len(lines) != 1 {
		t.Fatalf("-summary -json printed %d objects, want 1", len(lines))
	}
	s := lines[0]
	dec, _ := s["decisions"].(map[string]any)
	if s["messages"] != 8.0 || dec["close"] != 2.0 || dec["note"] != 2.0 || dec["quarantine"] != 1.0 {
		t.Errorf("summary %v", s)
	}
	// default_action counts the mails the rules left to it and lists them.
	defaulted, _ := s["defaulted"].([]any)
	if s["default_action"] != float64(len(defaulted)) {
		t.Errorf("default_action %v, but %d listed", s["default_action"], len(defaulted))
	}
	for _, d := range defaulted {
		if !strings.HasPrefix(d.(string), "alerts.mbox#2: Clinic newsletter") {
			t.Errorf("unexpected default_action mail %q", d)
		}
	}
}

// -rules runs a candidate rule set beside the configured one and prints
// only what changes; its -summary lists the mails left to a rule named
// "fallback...".
func TestTryRulesPrintsOnlyChanges(t *testing.T) {
	mbox, maildir := mailboxFixtures(t)
	cand := t.TempDir()
	shipped, _ := filepath.Glob(filepath.Join(testutil.RepoRoot(t), "rules", "*.toml"))
	for _, f := range shipped {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(cand, filepath.Base(f)), b, 0o644)
	}
	os.WriteFile(filepath.Join(cand, "zz-newsletter.toml"), []byte("[[rule]]\nname = \"fallback/newsletter\"\npriority = 5\n"+
		"[rule.if]\nsubject_contains = [\"newsletter\"]\n[rule.then]\naction = \"drop\"\n"), 0o644)
	cfg := writeConfig(t, "", "")
	code, out, stderr := runCLI("try", "-config", cfg, "-rules", cand, mbox, maildir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := "alerts.mbox#2: Clinic newsletter, March\n  old: "
	if !strings.HasPrefix(out, want) || !strings.Contains(out, "\n  new: drop, rule \"fallback/newsletter\"\n1 of 8 message(s) change decision") {
		t.Fatalf("output:\n%s\nwant only the newsletter's change", out)
	}
	if strings.Count(out, "  old: ") != 1 {
		t.Errorf("more than one change:\n%s", out)
	}
	lines := tryJSON(t, "-config", cfg, "-rules", cand, "-summary", mbox, maildir)
	if len(lines) != 3 || lines[0]["file"] != "alerts.mbox#2" {
		t.Fatalf("want the change and two summaries, got %v", lines)
	}
	if fb, _ := lines[2]["fallback"].([]any); len(fb) != 1 || !strings.Contains(fb[0].(string), "(fallback/newsletter)") {
		t.Errorf("candidate summary's fallback list %v", lines[2]["fallback"])
	}
	code, _, stderr = runCLI("try", "-config", cfg, "-rules", t.TempDir()+"/missing", mbox)
	if code != 1 || !strings.Contains(stderr, "-rules") {
		t.Errorf("a missing candidate directory: exit %d, %q", code, stderr)
	}
}

func TestTryUnreadableMailboxIsReported(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCLI("try", "-config", writeConfig(t, "", ""), dir)
	if code != 1 || !strings.Contains(stderr, "not a Maildir") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
