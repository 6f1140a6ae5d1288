package rules

import (
	"strings"
	"testing"

	"psagate/internal/message"
)

// TestExtractList checks that a list of extract expressions is tried in
// order, each on the subject and then the body, and that the first one
// that sets a field wins even when a later one would match earlier text.
func TestExtractList(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "r"
[rule.if]
subject_contains = ["failed"]
[rule.extract]
device = ['(?m)^Computer:\s*(?P<device>\S+)', '\bon\s+(?P<device>\S+)']
job = '(?m)^Job:\s*(\S+)'
[rule.then]
action = "ticket"
`)
	cases := []struct{ subject, body, device, job string }{
		{"Backup failed on schedule", "Computer: SRV-1\nJob: nightly\n", "SRV-1", "nightly"}, // the labelled line wins over "on schedule"
		{"Backup failed on SRV-2", "no labels here\n", "SRV-2", ""},                          // the second expression
		{"Backup failed", "nothing\n", "", ""},                                               // none
	}
	for _, c := range cases {
		d := s.Evaluate(Input{Alert: &message.Alert{Subject: c.subject, Text: c.body}})
		if d.Fields["device"] != c.device || d.Fields["job"] != c.job {
			t.Errorf("%q: fields %v, want device %q job %q", c.subject, d.Fields, c.device, c.job)
		}
	}
}

// TestExtractedCondition checks [rule.if] extracted: the rule matches only
// when its own extraction sets one of the fields; otherwise evaluation goes
// on to the next rule, and the trace says why.
func TestExtractedCondition(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "with device"
priority = 1
[rule.if]
subject_contains = ["succeeded"]
extracted = ["device"]
[rule.extract]
device = 'on (?P<device>[\w-]+)'
[rule.then]
action = "close"

[[rule]]
name = "without device"
priority = 2
[rule.if]
subject_contains = ["succeeded"]
[rule.then]
action = "drop"
`)
	for subject, want := range map[string]string{
		"Backup succeeded on SRV-1": "with device",
		"Backup succeeded":          "without device",
	} {
		in := Input{Alert: &message.Alert{Subject: subject}}
		if d := s.Evaluate(in); d.Rule == nil || d.Rule.Name != want {
			t.Errorf("%q: decided by %v, want %q", subject, d.Rule, want)
		}
		d, tr := s.Explain(in)
		if d.Rule == nil || d.Rule.Name != want {
			t.Errorf("%q: Explain decided by %v, want %q", subject, d.Rule, want)
		}
		var detail string
		for _, c := range tr[0].Conds {
			if c.Key == "extracted" {
				detail = c.Detail
			}
		}
		if wantHeld := want == "with device"; !strings.Contains(detail, map[bool]string{true: `field "device" was extracted`, false: "none of"}[wantHeld]) {
			t.Errorf("%q: trace detail %q", subject, detail)
		}
	}
}

func TestExtractErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`extracted = ["job"]
[rule.extract]
device = 'x(?P<device>y)'`, `field "job" is not extracted by this rule`},
		{`subject_contains = ["a"]
[rule.extract]
device = []`, "the list is empty"},
		{`subject_contains = ["a"]
[rule.extract]
device = ['(?P<device>a)', 3]`, "item 2 is"},
		{`subject_contains = ["a"]
[rule.extract]
device = ['(?P<device>a)', '(?P<subject>b)']`, `field "subject" is built in`},
	} {
		src := "[[rule]]\nname = \"r\"\n[rule.if]\n" + c.src + "\n[rule.then]\naction = \"ticket\"\n"
		errs := compileErrs(t, []File{{Name: "t.toml", Data: []byte(src)}}, Options{})
		if !strings.Contains(strings.Join(errs, "\n"), c.want) {
			t.Errorf("%s\n→ %q, want an error containing %q", c.src, errs, c.want)
		}
	}
}
