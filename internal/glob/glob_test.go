package glob

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"*@*.axcient.net", "a@mail.axcient.net", true},
		{"*@*.axcient.net", "a@axcient.net", false},
		{"*@*.axcient.net", "a@x.axcient.net.evil.example", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aüc", true},
		{"*ü*", "xüy", true},
		{"?", "ü", true},
		{"a*b*c", "a-b-b-c", true},
		{"a*b*c", "a-b-b-", false},
		{"**x", "yyx", true},
		{"x*", "y", false},
		// One behaviour for config and rules: "/" is an ordinary
		// character and "[" is literal (filepath.Match differed in both).
		{"ACME-*", "ACME-SITE/SRV1", true},
		{"SRV[01]", "SRV[01]", true},
		{"SRV[01]", "SRV0", false},
		{"SRV\\*", "SRV\\x", true},
	}
	for _, tt := range tests {
		if got := Match(tt.p, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v", tt.p, tt.s, got)
		}
	}
	if !MatchFold("acme-*", "ACME-SRV1") || MatchFold("acme-?", "ACME-SRV1") {
		t.Error("MatchFold does not ignore case")
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("*@*.axcient.net", "a@mail.axcient.net")
	f.Add("a?c*", "aüc")
	f.Fuzz(func(t *testing.T, p, s string) {
		// Never panics, and a pattern matches itself when it has no wildcards.
		_ = Match(p, s)
		if !strings.ContainsAny(p, "*?") && !Match(p, p) {
			t.Errorf("literal pattern %q does not match itself", p)
		}
	})
}
