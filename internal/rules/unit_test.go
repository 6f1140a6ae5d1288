package rules

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/text/cases"
)

func TestTemplate(t *testing.T) {
	fields := map[string]string{"device": "PC-1", "client": "acme", "x_1": "v", "empty": ""}
	tests := []struct{ src, want string }{
		{"", ""},
		{"plain text", "plain text"},
		{"{device}: backup failed", "PC-1: backup failed"},
		{"{client}/{device}/{device}", "acme/PC-1/PC-1"},
		{"{{literal}} {device}", "{literal} PC-1"},
		{"{{{device}}}", "{PC-1}"},
		{"}} and {{", "} and {"},
		{"{missing}|{empty}|{x_1}", "||v"},
		{"Ümlaut {device} ✓", "Ümlaut PC-1 ✓"},
	}
	for _, tt := range tests {
		tp, err := ParseTemplate(tt.src)
		if err != nil {
			t.Errorf("%q: %v", tt.src, err)
			continue
		}
		if got := tp.Render(fields); got != tt.want {
			t.Errorf("%q renders %q, want %q", tt.src, got, tt.want)
		}
		if tp.String() != tt.src {
			t.Errorf("String() = %q, want %q", tp.String(), tt.src)
		}
	}
	// Render adds and cuts nothing, even line breaks and control characters:
	// sanitising is the caller's job.
	tp, _ := ParseTemplate("[{body}]")
	if got := tp.Render(map[string]string{"body": "a\nb\x00c"}); got != "[a\nb\x00c]" {
		t.Errorf("render changed the value: %q", got)
	}
	if got := strings.Join(mustTemplate("{a}{b}{a}").Fields(), ","); got != "a,b" {
		t.Errorf("Fields %s", got)
	}
	var nilT *Template
	if nilT.Render(fields) != "" || nilT.String() != "" || nilT.Fields() != nil {
		t.Error("nil template")
	}
	for _, bad := range []string{"{", "{device", "}", "a}b", "{}", "{dev-ice}", "{ device }", "{a{b}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestFoldTable checks the rune-by-rune fold against x/text for every rune
// that has a case in Unicode (planes 0 and 1; the others have none), and
// that folding strings rune by rune is what x/text does with whole strings.
func TestFoldTable(t *testing.T) {
	c := cases.Fold()
	for r := rune(0); r <= 0x1FFFF; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		s := string(r)
		if got, want := fold(s), c.String(s); got != want {
			t.Fatalf("fold(%U %q) = %q, x/text says %q", r, s, got, want)
		}
	}
	for _, s := range []string{"ΣΑΣ", "İıI", "ßẞ STRASSE", "ǅǄ", "Ꭰꭰ", "oﬃce", "aͅΣ", "ᾀͅ", "Büro\xffX\xc3", "\u212a\u017f"} {
		if got, want := fold(s), c.String(s); got != want {
			t.Errorf("fold(%q) = %q, x/text says %q", s, got, want)
		}
	}
}

// TestAutomaton checks the Aho-Corasick scan against strings.Contains over
// folded text, for random literals and texts mixing ASCII case and
// non-ASCII letters whose folding changes length.
func TestAutomaton(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "A", "B", "s", "S", "ß", "ẞ", "ü", "Ü", "k", "\u212a", " ", "İ", "i", "ﬃ", "f"}
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for round := range 200 {
		b := newACBuilder()
		var lits []string
		for range 1 + rng.IntN(20) {
			l := fold(word(1 + rng.IntN(4)))
			lits = append(lits, l)
			b.add(l)
		}
		m := b.build()
		for range 20 {
			text := word(rng.IntN(30))
			hits := make([]uint64, (m.npat+63)/64)
			m.scan(text, hits)
			ft := fold(text)
			for _, l := range lits {
				id := b.ids[l]
				if hasBit(hits, id) != strings.Contains(ft, l) {
					t.Fatalf("round %d: literal %q in %q (folded %q): automaton says %v", round, l, text, ft, hasBit(hits, id))
				}
			}
		}
	}
	// No literals at all.
	m := newACBuilder().build()
	m.scan("anything", nil)
}

// TestPrefilterSound checks that whenever an expression matches a text,
// the literals the prefilter requires are in the folded text.
func TestPrefilterSound(t *testing.T) {
	exprs := []string{
		`Failed Backup`, `(Failed|Missed|Cancell?ed) Backup`, `^\[(Failed|Warning|Error)\]\s+.+\(\d+\s+(VMs?|machines?)\)`,
		`Boot ?VM (Check|Verification) Failed`, `(?-i)Backup`, `kelvin`, `strasse|straße`, `x{3,}yz`, `(abc)+def`,
		`(?:abc)*def`, `[Ff]ailed job`, `büro\s+(nord|süd)`, `Replication (Failed|Error|Behind|Stalled)`, `a.c`,
		`(?s)start.*end`, `\QA+B\E`, `KSK`, `long sſ text`,
	}
	texts := []string{
		"[Failed] Nightly SQL (2 VMs) 1 failed", "FAILED BACKUP: PC", "Missed backup", "cancelled Backup of X",
		"Boot VM check failed", "BootVM Verification Failed", "backup", "Backup", "\u212aELVIN", "STRASSE",
		"Straße", "xxxyz", "XXXXYZ", "abcabcDEF", "def", "FAILED JOB", "BÜRO  SÜD", "Replication BEHIND",
		"start\nend", "a+b", "ksk", "\u212aS\u212a", "LONG SS TEXT", "long ſſ text", "LONG Sſ TEXT",
	}
	for _, src := range exprs {
		re := regexp.MustCompile("(?i)" + src)
		parsed, err := syntax.Parse(re.String(), syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		req := requiredLiterals(parsed)
		for _, text := range texts {
			if !re.MatchString(text) {
				continue
			}
			ft := fold(text)
			for _, set := range req {
				found := false
				for _, lit := range set {
					found = found || strings.Contains(ft, lit)
				}
				if !found {
					t.Errorf("%q matches %q but the prefilter requires one of %q", src, text, set)
				}
			}
		}
	}
	// The prefilter finds something useful for typical alert expressions.
	parsed, _ := syntax.Parse(`(?i)(Failed|Missed|Cancell?ed) Backup`, syntax.Perl)
	if req := requiredLiterals(parsed); len(req) == 0 {
		t.Error("no literals required for a typical expression")
	}
}

func TestFormatTrace(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "audit"
priority = 1
mode = "audit"
[rule.if]
from = "@axcient.net"
[rule.then]
action = "drop"

[[rule]]
name = "chain"
priority = 2
stop = false
[rule.if]
subject_contains = "backup"
[rule.then]
action = "note"

[[rule]]
name = "miss"
priority = 3
[rule.if]
subject_matches = '^Connection'
from = "@axcient.net"
[rule.then]
action = "drop"

[[rule]]
name = "skipped"
priority = 4
[rule.if]
from = "*@axcient.net"
[rule.except]
size_over = "1KB"
[rule.then]
action = "quarantine"

[[rule]]
name = "decides"
priority = 5
[rule.if]
sender_ip = "10.0.0.0/8"
[rule.then]
action = "ticket"

[[rule]]
name = "later"
priority = 6
[rule.then]
action = "ticket"
`)
	_, tr := s.Explain(Input{Alert: testAlert()})
	var b strings.Builder
	FormatTrace(&b, tr)
	out := b.String()
	for _, want := range []string{
		`audit-match  rule "audit" (t.toml:2, priority 1, audit mode) → would drop (audit mode: not acted on)`,
		`    if     from                     yes  "@axcient.net" matched From header "alerts@axcient.net"`,
		`matched      rule "chain" (t.toml:11, priority 2) → note: stop = false`,
		`    if     subject_contains         yes  "backup" found in subject`,
		`no-match     rule "miss" (t.toml:20, priority 3)`,
		`    if     subject_matches          no   none of "^Connection" matched the subject`,
		`excepted     rule "skipped"`,
		`    except size_over                yes  size 40000 bytes > 1000`,
		`matched      rule "decides" (t.toml:39, priority 5) → ticket: decides`,
		`    if     sender_ip                yes  10.1.2.3 is in 10.0.0.0/8`,
		`not-reached  1 later rule(s)`,
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want) {
			t.Errorf("trace lacks %q:\n%s", want, out)
		}
	}
	// The conditions are listed in evaluation order, cheapest first: from
	// before subject_matches although the file has them the other way round.
	miss := out[strings.Index(out, `rule "miss"`):]
	if i, j := strings.Index(miss, "if     from"), strings.Index(miss, "if     subject_matches"); i < 0 || j < 0 || i > j {
		t.Errorf("conditions of \"miss\" not in evaluation order:\n%s", miss)
	}
	_, tr = compileOne(t, "").Explain(Input{Alert: testAlert()})
	b.Reset()
	FormatTrace(&b, tr)
	if b.String() != "no rule decided: the default action applies\n" {
		t.Errorf("empty trace %q", b.String())
	}
}

func TestDebouncer(t *testing.T) {
	d := debouncer{last: "A"}
	steps := []struct {
		fp   string
		fire bool
	}{
		{"A", false}, // unchanged
		{"B", false}, // changed: wait for a second look
		{"C", false}, // still being written
		{"C", true},  // stable: report once
		{"C", false},
		{"D", false},
		{"C", false}, // changed back before it settled: nothing to report
		{"C", false},
		{"E", false},
		{"E", true},
	}
	for i, s := range steps {
		if got := d.observe(s.fp); got != s.fire {
			t.Fatalf("step %d (%s): fire = %v, want %v", i, s.fp, got, s.fire)
		}
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.toml")
	if err := os.WriteFile(path, []byte("# v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Files are replaced atomically (write, then rename), so each change is
	// one change however the polls fall.
	put := func(name, content string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp-"+name)
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	changed := make(chan struct{}, 10)
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch(ctx, dir, 5*time.Millisecond, func() { changed <- struct{}{} }, func() { close(ready) })
	}()
	<-ready
	deadline := time.After(10 * time.Second)
	expect := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no onChange after %s", what)
		}
	}
	// Same size, so only the content hash (or mtime) can tell.
	put("a.toml", "# v2\n")
	expect("editing a file")
	put("b.toml", "# new\n")
	expect("adding a file")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expect("removing a file")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after the context ended")
	}
	// Exactly one call per change: nothing else is queued.
	if n := len(changed); n != 0 {
		t.Errorf("%d extra onChange calls", n)
	}
}

func TestWatchPublicReturns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() { Watch(ctx, t.TempDir(), 0, func() { t.Error("onChange without a change") }); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return for an ended context")
	}
}

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	empty := fingerprint(dir)
	os.WriteFile(filepath.Join(dir, "x.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden.toml"), []byte("x"), 0o644)
	if fingerprint(dir) != empty {
		t.Error("files that are not rule files changed the fingerprint")
	}
	os.WriteFile(filepath.Join(dir, "r.toml"), []byte("x"), 0o644)
	one := fingerprint(dir)
	if one == empty {
		t.Error("a new rule file did not change the fingerprint")
	}
	if fingerprint(filepath.Join(dir, "gone")) == empty {
		t.Error("a missing directory looks like an empty one")
	}
}

// TestConcurrentEvaluate shares one Set between goroutines (run with -race):
// the pooled per-evaluation state must not leak between them.
func TestConcurrentEvaluate(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "fuzz.toml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile([]File{{Name: "fuzz.toml", Data: data}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	subjects := []string{"[BDR1] Connection: connection lost", "[BDR2] Failed Backup: SRV-9", "Sicherung fehlgeschlagen: BÜRO-1", "hello"}
	want := make([]string, len(subjects))
	for i, sub := range subjects {
		a := testAlert()
		a.Subject = sub
		want[i] = describe(s.Evaluate(Input{Alert: a}))
	}
	errc := make(chan string, 8)
	for g := range 8 {
		go func() {
			for n := range 300 {
				i := (g + n) % len(subjects)
				a := testAlert()
				a.Subject = subjects[i]
				if got := describe(s.Evaluate(Input{Alert: a})); got != want[i] {
					errc <- fmt.Sprintf("%q: %s, want %s", subjects[i], got, want[i])
					return
				}
			}
			errc <- ""
		}()
	}
	for range 8 {
		if msg := <-errc; msg != "" {
			t.Error(msg)
		}
	}
}
