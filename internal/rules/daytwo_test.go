package rules

import (
	"strings"
	"testing"
)

// TestDayTwoThenKeys: after_manual_close, severity and escalate_priority
// compile onto Then and are checked like every other key.
func TestDayTwoThenKeys(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "failed"
[rule.if]
subject_contains = ["Failed"]
[rule.then]
action = "ticket"
after_manual_close = "reopen"
severity = "failure"
escalate_priority = true
`)
	th := s.Rules()[0].Then
	if th.AfterManualClose != "reopen" || th.Severity != "failure" || !th.EscalatePriority {
		t.Fatalf("then = %+v", th)
	}
	if SeverityRank("warning") >= SeverityRank("failure") || SeverityRank("nonsense") != 0 {
		t.Fatal("severity order")
	}
	for _, tc := range []struct{ then, want string }{
		{`action = "ticket"` + "\nafter_manual_close = \"ignore\"", `must be "new" or "reopen", not "ignore"`},
		{`action = "ticket"` + "\nseverity = \"bad\"", `must be one of info, warning, failure, critical, not "bad"`},
		{`action = "ticket"` + "\nescalate_priority = \"yes\"", `must be true or false`},
		{`action = "drop"` + "\nseverity = \"failure\"", `then.severity: has no effect with action "drop"`},
	} {
		errs := compileErrs(t, []File{{Name: "t.toml", Data: []byte("[[rule]]\nname = \"r\"\n[rule.if]\nsubject_contains = [\"x\"]\n[rule.then]\n" + tc.then + "\n")}}, Options{})
		if len(errs) != 1 || !strings.Contains(errs[0], tc.want) {
			t.Errorf("%q: errors %q, want one with %q", tc.then, errs, tc.want)
		}
	}
}
