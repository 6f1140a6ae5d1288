package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// markedLine returns the 1-based line of src that contains "#!".
func markedLine(t *testing.T, src string) int {
	t.Helper()
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, "#!") {
			return i + 1
		}
	}
	t.Fatalf("no #! marker in\n%s", src)
	return 0
}

func TestCompileErrors(t *testing.T) {
	const then = "[rule.then]\naction = \"ticket\"\n"
	tests := []struct {
		name string
		src  string // the error is on the line marked #!
		rule string // "" when the error names no rule
		msg  string // the message after `file:line: rule "name": `
	}{
		{"toml syntax", "[[rule]]\nname = \"x\"\npriority = = 3 #!\n", "",
			"TOML syntax error: "},
		{"unknown top-level key", "[[rules]] #!\nname = \"x\"\n", "",
			`unknown key "rules": a rule file holds only [[rule]] tables (did you mean "rule"?)`},
		{"single bracket rule", "[rule] #!\nname = \"x\"\n", "",
			"rule must be a list of tables: write each rule as a [[rule]] table, not [rule]"},
		{"unknown rule key", "[[rule]]\nname = \"x\"\nprioriy = 3 #!\n" + then, "x",
			`prioriy: unknown key in [[rule]] (did you mean "priority"?); the keys are name, priority, mode, stop, require_auth, if, except, extract, then`},
		{"unknown condition", "[[rule]]\nname = \"x\"\n[rule.if]\nsubjct_contains = [\"a\"] #!\n" + then, "x",
			`if.subjct_contains: unknown condition in [rule.if] (did you mean "subject_contains"?)`},
		{"unknown except condition", "[[rule]]\nname = \"x\"\n[rule.except]\nbody_contain = \"a\" #!\n" + then, "x",
			`except.body_contain: unknown condition in [rule.except] (did you mean "body_contains"?)`},
		{"unknown then key", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\nsumary = \"s\" #!\n", "x",
			`then.sumary: unknown key in [rule.then] (did you mean "summary"?)`},
		{"unknown psa key", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nconnectwise.bord = \"B\" #!\n", "x",
			`then.psa.connectwise.bord: is not a connectwise setting (did you mean "connectwise.board"?)`},
		{"unknown psa provider", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nhalo.board = \"B\" #!\n", "x",
			`then.psa.halo.board: unknown PSA "halo": write <provider>.<setting> with a provider of autotask, connectwise`},
		{"bad subject regex", "[[rule]]\nname = \"x\"\n[rule.if]\nsubject_matches = ['ok', '(unclosed'] #!\n" + then, "x",
			"if.subject_matches: bad regular expression \"(unclosed\": missing closing ): `(unclosed`"},
		{"bad body regex in except", "[[rule]]\nname = \"x\"\n[rule.except]\nbody_matches = 'a{2,1}' #!\n" + then, "x",
			"except.body_matches: bad regular expression \"a{2,1}\": invalid repeat count: `{2,1}`"},
		{"bad attachment regex", "[[rule]]\nname = \"x\"\n[rule.if]\nattachment_name_matches = '*.png' #!\n" + then, "x",
			"if.attachment_name_matches: bad regular expression \"*.png\": missing argument to repetition operator: `*`"},
		{"bad extract regex", "[[rule]]\nname = \"x\"\n[rule.extract]\ndevice = '(?P<device>[a-' #!\n" + then, "x",
			"extract.device: bad regular expression \"(?P<device>[a-\": missing closing ]: `[a-`"},
		{"empty regex", "[[rule]]\nname = \"x\"\n[rule.if]\nsubject_matches = '' #!\n" + then, "x",
			"if.subject_matches: item 1 is empty, so it would match every message"},
		{"unknown action", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"tiket\" #!\n", "x",
			`then.action: unknown action "tiket" (one of drop, reject, ticket, note, close, quarantine) (did you mean "ticket"?)`},
		{"action not a string", "[[rule]]\nname = \"x\"\n[rule.then]\naction = 1 #!\n", "x",
			"then.action: must be a string (one of drop, reject, ticket, note, close, quarantine), not an integer"},
		{"missing action", "[[rule]]\nname = \"x\"\n[rule.then] #!\nsummary = \"s\"\n", "x",
			"then: action is missing (one of drop, reject, ticket, note, close, quarantine)"},
		{"missing then", "[[rule]] #!\nname = \"x\"\n[rule.if]\nfrom = \"@a.example\"\n", "x",
			"[rule.then] is missing: every rule needs an action (drop, reject, ticket, note, close, quarantine)"},
		{"bad delay", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\ndelay = \"15x\" #!\n", "x",
			`then.delay: bad duration "15x": write e.g. "90s", "15m", "4h" or "2d"`},
		{"bad reopen", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\nreopen = \"1 day\" #!\n", "x",
			`then.reopen: bad duration "1 day": write e.g. "90s", "15m", "4h" or "2d"`},
		{"negative expect", "[[rule]]\nname = \"x\"\n[rule.extract]\ndevice = 'on (\\S+)'\n[rule.then]\naction = \"close\"\nexpect = \"-5m\" #!\n", "x",
			`then.expect: duration "-5m" is negative`},
		{"duration not a string", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\ndelay = 15 #!\n", "x",
			`then.delay: must be a string, not an integer`},
		{"bad size unit", "[[rule]]\nname = \"x\"\n[rule.if]\nsize_over = \"12XB\" #!\n" + then, "x",
			`if.size_over: bad size "12XB": give bytes as an integer, or a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. "512KiB" or "1.5 MB"`},
		{"negative size", "[[rule]]\nname = \"x\"\n[rule.if]\nsize_over = -1 #!\n" + then, "x",
			`if.size_over: -1 is negative`},
		{"float size", "[[rule]]\nname = \"x\"\n[rule.if]\nsize_over = 1.5 #!\n" + then, "x",
			`if.size_over: must be an integer (bytes) or a string such as "2MB", not a decimal number`},
		{"bad cidr", "[[rule]]\nname = \"x\"\n[rule.if]\nsender_ip = [\"10.0.0.0/8\", \"10.0.0.0/33\"] #!\n" + then, "x",
			`if.sender_ip: "10.0.0.0/33" is not an IP address or CIDR network (e.g. "10.0.0.0/8", "192.0.2.7", "2001:db8::/32")`},
		{"bad ip", "[[rule]]\nname = \"x\"\n[rule.if]\nsender_ip = \"mail.example.com\" #!\n" + then, "x",
			`if.sender_ip: "mail.example.com" is not an IP address or CIDR network`},
		{"from bare domain", "[[rule]]\nname = \"x\"\n[rule.if]\nfrom = \"axcient.net\" #!\n" + then, "x",
			`if.from: "axcient.net" is neither an address, "@domain" nor a glob; for the whole domain write "@axcient.net"`},
		{"to two addresses in one", "[[rule]]\nname = \"x\"\n[rule.if]\nto = \"a@b.example, c@d.example\" #!\n" + then, "x",
			`if.to: "a@b.example, c@d.example" is not an address pattern: give one address, "@domain" or glob per list item`},
		{"template unknown field", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\nsummary = \"{devcie}: failed\" #!\n", "x",
			`then.summary: unknown field {devcie} in template (did you mean "device"?); built-in fields are client, device, check, rule, subject, from, from_name, to, sender_ip, date, message_id, size, body; fields extracted by [rule.extract] of this rule or of an earlier stop = false rule are available too`},
		{"template field of another rule", "[[rule]]\nname = \"a\"\n[rule.extract]\nresult = '(ok|failed)'\n" + then +
			"[[rule]]\nname = \"x\"\n[rule.then]\naction = \"note\"\nnote = \"{result}\" #!\n", "x",
			`then.note: unknown field {result} in template`},
		{"template field of a later stop=false rule", "[[rule]]\nname = \"x\"\npriority = 1\n[rule.then]\naction = \"note\"\nnote = \"{result}\" #!\n" +
			"[[rule]]\nname = \"a\"\npriority = 2\nstop = false\n[rule.extract]\nresult = '(ok|failed)'\n" + then, "x",
			`then.note: unknown field {result} in template`},
		{"template field of an audit stop=false rule", "[[rule]]\nname = \"a\"\nmode = \"audit\"\nstop = false\n[rule.extract]\nresult = '(ok|failed)'\n" + then +
			"[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\nkey = \"{client}/{result}\" #!\n", "x",
			`then.key: unknown field {result} in template`},
		{"template syntax", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\nkey = \"{client/{device}\" #!\n", "x",
			`then.key: bad placeholder "{client/{device}" at character 1: field names are letters, digits and "_" (write "{{" and "}}" for literal braces)`},
		{"template single brace", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\ndescription = \"a } b\" #!\n", "x",
			`then.description: single "}" at character 3 (write "}}" for a literal brace)`},
		{"template unclosed", "[[rule]]\nname = \"x\"\n[rule.extract]\ndevice = 'on (\\S+)'\n[rule.then]\naction = \"close\"\nnote = \"{device\" #!\n", "x",
			`then.note: unclosed "{" at character 1 (write "{{" for a literal brace)`},
		{"drop without condition", "[[rule]] #!\nname = \"x\"\n[rule.then]\naction = \"drop\"\n", "x",
			"a drop rule without [rule.if] conditions would drop every message; add a condition"},
		{"drop with only exceptions", "[[rule]] #!\nname = \"x\"\n[rule.except]\nfrom = \"@a.example\"\n[rule.then]\naction = \"drop\"\n", "x",
			"a drop rule without [rule.if] conditions would drop every message; add a condition"},
		{"reject without condition", "[[rule]] #!\nname = \"x\"\n[rule.if]\n[rule.then]\naction = \"reject\"\n", "x",
			"a reject rule without [rule.if] conditions would reject every message; add a condition"},
		{"drop with a misspelt condition", "[[rule]]\nname = \"x\"\n[rule.if]\nfrom_address = \"@a.example\" #!\n[rule.then]\naction = \"drop\"\n", "x",
			`if.from_address: unknown condition in [rule.if]`},
		{"missing name", "[[rule]]\nname = \"a\"\n" + then + "[[rule]] #!\npriority = 3\n" + then, "",
			"[[rule]] number 2 of the file has no name: every rule needs a unique name"},
		{"empty name", "[[rule]]\nname = \"  \" #!\n" + then, "",
			"name: is empty: every rule needs a unique name"},
		{"duplicate name in one file", "[[rule]]\nname = \"x\"\n" + then + "[[rule]] #!\nname = \"x\"\n" + then, "x",
			"duplicate rule name: it is also defined at t.toml:1; rule names must be unique across all rule files"},
		{"delay on note", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"note\"\ndelay = \"5m\" #!\n", "x",
			`then.delay: has no effect with action "note"; it applies to ticket only`},
		{"repeat on close", "[[rule]]\nname = \"x\"\n[rule.extract]\ndevice = 'on (\\S+)'\n[rule.then]\naction = \"close\"\nrepeat = \"note\" #!\n", "x",
			`then.repeat: has no effect with action "close"; it applies to ticket only`},
		{"reopen on drop", "[[rule]]\nname = \"x\"\n[rule.if]\nfrom = \"@a.example\"\n[rule.then]\naction = \"drop\"\nreopen = \"1h\" #!\n", "x",
			`then.reopen: has no effect with action "drop"; it applies to ticket only`},
		{"text on ticket", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\ntext = \"go away\" #!\n", "x",
			`then.text: has no effect with action "ticket"; it applies to reject only`},
		{"attach on quarantine", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"quarantine\"\nattach = true #!\n", "x",
			`then.attach: has no effect with action "quarantine"; it applies to ticket, note, close`},
		{"summary on reject", "[[rule]]\nname = \"x\"\n[rule.if]\nfrom = \"@a.example\"\n[rule.then]\naction = \"reject\"\nsummary = \"s\" #!\n", "x",
			`then.summary: has no effect with action "reject"; it applies to ticket, note, close, quarantine`},
		{"bad repeat", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\nrepeat = \"again\" #!\n", "x",
			`then.repeat: must be "note", "ignore" or "new", not "again"`},
		{"multi-line reject text", "[[rule]]\nname = \"x\"\n[rule.if]\nfrom = \"@a.example\"\n[rule.then]\naction = \"reject\"\ntext = \"a\\nb\" #!\n", "x",
			`then.text: must be one line of at most 400 characters (it is the SMTP reply)`},
		{"check with braces", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\ncheck = \"{device}\" #!\n", "x",
			`then.check: must be a plain word such as "backup" (no braces, slashes or line breaks)`},
		{"psa credential", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nconnectwise.private_key = \"SECRETVALUE123\" #!\n", "x",
			`then.psa.connectwise.private_key: is a credential and cannot be set by a rule; credentials belong in the config's [psa.connectwise] section`},
		{"psa autotask credential", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\npsa = { \"autotask.secret\" = \"SECRETVALUE123\" } #!\n", "x",
			`then.psa.autotask.secret: is a credential and cannot be set by a rule`},
		{"psa site", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nconnectwise.site = \"evil.example\" #!\n", "x",
			`then.psa.connectwise.site: is a connection setting and cannot be set by a rule; rules may set ticket fields (connectwise: company, board`},
		{"psa connectwise login company", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nconnectwise.company_id = \"other\" #!\n", "x",
			`then.psa.connectwise.company_id: is a connection setting`},
		{"psa endpoint", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa.connectwise]\nendpoint = \"http://evil.example\" #!\n", "x",
			`then.psa.connectwise.endpoint: is a connection setting`},
		{"psa username", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nautotask.username = \"u\" #!\n", "x",
			`then.psa.autotask.username: is a connection setting`},
		{"psa zone url", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nautotask.zone_url = \"http://evil.example/\" #!\n", "x",
			`then.psa.autotask.zone_url: is a connection setting`},
		{"psa general key", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nprovider = \"log\" #!\n", "x",
			`then.psa.provider: cannot be set by a rule; it is a setting of the config's [psa] section`},
		{"psa float", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\n[rule.then.psa]\nautotask.queue_id = 1.5 #!\n", "x",
			`then.psa.autotask.queue_id: must be a string, an integer or a boolean`},
		{"empty list", "[[rule]]\nname = \"x\"\n[rule.if]\nsubject_contains = [] #!\n" + then, "x",
			"if.subject_contains: the list is empty, so it would never hold; remove the key or give values"},
		{"empty string", "[[rule]]\nname = \"x\"\n[rule.if]\nbody_contains = [\"a\", \" \"] #!\n" + then, "x",
			"if.body_contains: item 2 is empty, so it would match every message"},
		{"list of numbers", "[[rule]]\nname = \"x\"\n[rule.if]\nclient = [\"a\", 2] #!\n" + then, "x",
			"if.client: must be a list of strings, but item 2 is an integer"},
		{"bool as string", "[[rule]]\nname = \"x\"\n[rule.if]\nhas_attachment = \"yes\" #!\n" + then, "x",
			"if.has_attachment: must be true or false, not a string"},
		{"priority not int", "[[rule]]\nname = \"x\"\npriority = \"high\" #!\n" + then, "x",
			"priority: must be an integer (lower runs first), not a string"},
		{"bad mode", "[[rule]]\nname = \"x\"\nmode = \"test\" #!\n" + then, "x",
			`mode: must be "enforce" or "audit", not "test"`},
		{"stop not bool", "[[rule]]\nname = \"x\"\nstop = \"no\" #!\n" + then, "x",
			"stop: must be true or false, not a string"},
		{"header not a table", "[[rule]]\nname = \"x\"\n[rule.if]\nheader = [\"X-Mailer\"] #!\n" + then, "x",
			`if.header: must be a table of header name → strings, e.g. header = { "X-Mailer" = ["Veeam"] }, not a list`},
		{"header bad name", "[[rule]]\nname = \"x\"\n[rule.if.header]\n\"X Mailer\" = \"v\" #!\n" + then, "x",
			`if.header.X Mailer: "X Mailer" is not a header field name`},
		{"extract built-in field", "[[rule]]\nname = \"x\"\n[rule.extract]\nsubject = '(\\w+)' #!\n" + then, "x",
			`extract.subject: field "subject" is built in and cannot be extracted; choose another name`},
		{"extract field twice", "[[rule]]\nname = \"x\"\n[rule.extract]\na = '(?P<device>\\w+)'\nb = '(?P<device>\\d+)' #!\n" + then, "x",
			`extract.b: field "device" is also extracted by extract.a; each field may be extracted once per rule`},
		{"extract bad key", "[[rule]]\nname = \"x\"\n[rule.extract]\n\"dev-ice\" = '(\\w+)' #!\n" + then, "x",
			`extract.dev-ice: "dev-ice" cannot name a field: use letters, digits and _`},
		{"close without extract", "[[rule]]\nname = \"x\"\n[rule.then]\naction = \"close\" #!\n", "x",
			`a close rule must extract the device or job it closes: key "{client}/{device}/{check}" names {device}, which neither this rule's [rule.extract] nor an earlier stop = false rule sets`},
		{"close key without device", "[[rule]]\nname = \"x\"\n[rule.extract]\ndevice = 'on (\\S+)'\n[rule.then]\naction = \"close\"\nkey = \"{client}/{check}/{subject}\" #!\n", "x",
			`a close rule must extract the device or job it closes: key "{client}/{check}/{subject}" names no device or job field`},
		{"close key on device not extracted", "[[rule]]\nname = \"y\"\n[rule.extract]\njob = 'job (\\S+)'\n[rule.then]\naction = \"close\"\nkey = \"{client}/{device}/backup\" #!\n", "y",
			`a close rule must extract the device or job it closes: key "{client}/{device}/backup" names {device}, which neither`},
		{"if not a table", "[[rule]]\nname = \"x\"\nif = \"from\" #!\n" + then, "x",
			"if: must be a table of conditions ([rule.if]), not a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compileErrs(t, []File{{Name: "t.toml", Data: []byte(tt.src)}}, Options{})
			prefix := fmt.Sprintf("t.toml:%d: ", markedLine(t, tt.src))
			if tt.rule != "" {
				prefix += fmt.Sprintf("rule %q: ", tt.rule)
			}
			if len(got) != 1 {
				t.Fatalf("want one error starting %q, got %d:\n%s", prefix+tt.msg, len(got), strings.Join(got, "\n"))
			}
			if !strings.HasPrefix(got[0], prefix+tt.msg) {
				t.Errorf("error\n  %s\nwant it to start with\n  %s", got[0], prefix+tt.msg)
			}
			if strings.Contains(got[0], "SECRETVALUE") {
				t.Errorf("error echoes a secret: %s", got[0])
			}
		})
	}
}

func TestErrorsAllCollectedAndSorted(t *testing.T) {
	a := `[[rule]]
name = "dup"
[rule.if]
subject_matches = '('
[rule.then]
action = "tiket"

[[rule]]
name = "ok"
[rule.then]
action = "ticket"
delay = "soon"
`
	b := `# b comes first in the given order
[[rule]]
name = "b1"
[rule.if]
size_over = "big"
[rule.then]
action = "ticket"

[[rule]]
name = "dup"
[rule.then]
action = "note"
`
	got := compileErrs(t, []File{{"b.toml", []byte(b)}, {"a.toml", []byte(a)}}, Options{DefaultAction: "bogus"})
	want := []string{
		`default action "bogus" is not an action (one of drop, reject, ticket, note, close, quarantine)`,
		`b.toml:5: rule "b1": if.size_over: bad size "big"`,
		`a.toml:1: rule "dup": duplicate rule name: it is also defined at b.toml:9`,
		`a.toml:4: rule "dup": if.subject_matches: bad regular expression "("`,
		`a.toml:6: rule "dup": then.action: unknown action "tiket"`,
		`a.toml:12: rule "ok": then.delay: bad duration "soon"`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n  %s\nwant prefix\n  %s", i, got[i], want[i])
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "rules/a.toml", Line: 4, Rule: "r", Msg: "m"}, `rules/a.toml:4: rule "r": m`},
		{Error{File: "rules/a.toml", Rule: "r", Msg: "m"}, `rules/a.toml: rule "r": m`},
		{Error{File: "rules/a.toml", Line: 4, Msg: "m"}, `rules/a.toml:4: m`},
		{Error{Msg: "m"}, `m`},
		{Error{Line: 2, Msg: "m"}, `line 2: m`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
	le := &LoadError{Errs: []*Error{{File: "a", Line: 1, Msg: "x"}, {File: "b", Line: 2, Msg: "y"}}}
	if le.Error() != "a:1: x\nb:2: y" {
		t.Errorf("LoadError %q", le.Error())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("20-b.toml", "[[rule]]\nname = \"b\"\npriority = 5\n[rule.then]\naction = \"note\"\n")
	write("10-a.toml", "[[rule]]\nname = \"a\"\npriority = 5\n[rule.extract]\ndevice = 'on (\\S+)'\n[rule.then]\naction = \"close\"\n")
	write(".#10-a.toml", "not toml at all [[[")
	write("notes.txt", "not a rule file")
	if err := os.Mkdir(filepath.Join(dir, "old.toml"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rs := s.Rules()
	if len(rs) != 2 || rs[0].Name != "a" || rs[1].Name != "b" {
		t.Fatalf("rules %v", ruleNames(rs))
	}
	if rs[0].File != filepath.Join(dir, "10-a.toml") || rs[0].Line != 1 {
		t.Errorf("File %q Line %d", rs[0].File, rs[0].Line)
	}

	write("30-c.toml", "[[rule]]\nname = \"c\"\n[rule.then]\naction = \"drop\"\n")
	_, err = Load(dir, Options{})
	var le *LoadError
	if !errors.As(err, &le) || len(le.Errs) != 1 || !strings.HasPrefix(le.Errs[0].Error(), filepath.Join(dir, "30-c.toml")+`:1: rule "c": a drop rule`) {
		t.Fatalf("err %v", err)
	}

	_, err = Load(filepath.Join(dir, "missing"), Options{})
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "missing: cannot read the rule directory: no such file or directory") {
		t.Fatalf("missing dir: %v", err)
	}

	// An unreadable file (here a dangling symlink) is reported in file
	// order with the others.
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "00-broken.toml")); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir, Options{})
	if !errors.As(err, &le) || len(le.Errs) != 2 ||
		!strings.HasPrefix(le.Errs[0].Error(), filepath.Join(dir, "00-broken.toml")+": cannot read: no such file or directory") ||
		!strings.HasPrefix(le.Errs[1].Error(), filepath.Join(dir, "30-c.toml")+":1:") {
		t.Fatalf("unreadable file: %v", err)
	}

	empty := t.TempDir()
	s, err = Load(empty, Options{})
	if err != nil || len(s.Rules()) != 0 {
		t.Fatalf("empty dir: %v", err)
	}
}

// TestShippedRulePacks compiles the rule packs in the repository's rules/
// directory: they are what an admin gets, so they must load.
func TestShippedRulePacks(t *testing.T) {
	dir := filepath.Join("..", "..", "rules")
	names, err := ruleFiles(dir)
	if err != nil {
		t.Fatalf("rule packs: %v", err)
	}
	if len(names) == 0 {
		t.Fatal("no rule packs in rules/")
	}
	if _, err := Load(dir, Options{}); err != nil {
		t.Fatalf("the shipped rule packs do not compile:\n%v", err)
	}
}
