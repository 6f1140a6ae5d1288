package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "psagate", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "6dc456a0123456789abcdef0123456789abcdef0"},
			{Key: "vcs.time", Value: "2026-12-07T02:03:55Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name            string
		ldV, ldR        string
		bi              *debug.BuildInfo
		ok              bool
		version, rev    string
		dirty           bool
		wantInString    string
		notWantInString string
	}{
		{"git checkout, go build", "", "", vcs, true, "devel", "6dc456a0123456789abcdef0123456789abcdef0", true, "revision 6dc456a01234, modified", ""},
		{"release via ldflags", "v0.1.0", "abc", vcs, true, "v0.1.0", "abc", true, "psagate v0.1.0 (revision abc,", ""},
		{"go install module@version", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.2.0"}}, true, "v0.2.0", "", false, "revision unknown", "modified"},
		{"no build info", "", "", nil, false, "devel", "", false, "psagate devel", "committed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := resolve(tc.ldV, tc.ldR, tc.bi, tc.ok)
			if i.Version != tc.version || i.Revision != tc.rev || i.Dirty != tc.dirty {
				t.Fatalf("got %+v, want version %q revision %q dirty %v", i, tc.version, tc.rev, tc.dirty)
			}
			if i.GoVersion == "" {
				t.Error("no Go version")
			}
			s := i.String()
			if !strings.Contains(s, tc.wantInString) {
				t.Errorf("String() = %q, want it to contain %q", s, tc.wantInString)
			}
			if tc.notWantInString != "" && strings.Contains(s, tc.notWantInString) {
				t.Errorf("String() = %q, should not contain %q", s, tc.notWantInString)
			}
		})
	}
}

// A test binary is built by the toolchain too: Get must never come back
// empty-handed.
func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" || i.GoVersion == "" {
		t.Fatalf("Get() = %+v", i)
	}
}
