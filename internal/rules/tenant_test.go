package rules

import (
	"strings"
	"testing"
)

// A rule may set the Autotask due date (due_in shorthand) and a per-kind
// note publish or a UDF in [rule.then.psa] (issue 13).
func TestRuleDueInAndTableOverrides(t *testing.T) {
	s := compileOne(t, `
[[rule]]
name = "urgent"
[rule.then]
action = "ticket"
due_in = "1h"
[rule.then.psa]
autotask.note_publish.close = "Internal Only"
autotask.fields."Backup Vault" = "V1"
`)
	got := s.Rules()[0].Then.PSA
	for k, want := range map[string]string{"autotask.due_in": "1h", "autotask.note_publish.close": "Internal Only", "autotask.fields.Backup Vault": "V1"} {
		if got[k] != want {
			t.Errorf("psa %s = %q, want %q (all: %v)", k, got[k], want, got)
		}
	}
	errs := compileErrs(t, []File{{Name: "t.toml", Data: []byte(`
[[rule]]
name = "bad"
[rule.then]
action = "ticket"
due_in = "soon"
[rule.then.psa]
autotask.note_publish.heartbeat = "x"
`)}}, Options{})
	all := strings.Join(errs, "\n")
	if !strings.Contains(all, `then.due_in: must be a positive duration`) || !strings.Contains(all, `has no entry "heartbeat"`) {
		t.Errorf("errors:\n%s", all)
	}
}
