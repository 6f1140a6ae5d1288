// Package version says which build of psagate is running. A release build
// sets Version (and Revision) with -ldflags "-X"; any other build takes what
// the Go toolchain recorded in the binary (debug.ReadBuildInfo): the module
// version for `go install psagate@vX`, and the VCS revision and dirty flag of
// a build from a git checkout, so even `go build` from a clone can be told
// apart from the commit it claims to be.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Set at link time by `make dist`:
//
//	-X psagate/internal/version.version=v0.1.0
//	-X psagate/internal/version.revision=<full commit hash>
var (
	version  string
	revision string
)

// Info describes the running binary.
type Info struct {
	Version   string // "v0.1.0", "v0.0.0-20261207020355-6dc456a", or "devel"
	Revision  string // VCS commit, "" when unknown
	Time      string // commit time (RFC 3339) when the toolchain recorded it
	Dirty     bool   // built from a work tree with uncommitted changes
	GoVersion string
}

var (
	once sync.Once
	info Info
)

// Get returns the build information, computed once.
func Get() Info {
	once.Do(func() {
		bi, ok := debug.ReadBuildInfo()
		info = resolve(version, revision, bi, ok)
	})
	return info
}

// resolve merges the link-time values with the toolchain's record; the
// link-time ones win because a release build sets them on purpose.
func resolve(ldVersion, ldRevision string, bi *debug.BuildInfo, ok bool) Info {
	i := Info{Version: ldVersion, Revision: ldRevision, GoVersion: runtime.Version()}
	if ok && bi != nil {
		if bi.GoVersion != "" {
			i.GoVersion = bi.GoVersion
		}
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Revision == "" {
					i.Revision = s.Value
				}
			case "vcs.time":
				i.Time = s.Value
			case "vcs.modified":
				i.Dirty = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

// ShortRevision is the first 12 characters of the revision, or "unknown".
func (i Info) ShortRevision() string {
	switch {
	case i.Revision == "":
		return "unknown"
	case len(i.Revision) > 12:
		return i.Revision[:12]
	}
	return i.Revision
}

// String is the one line `psagate version` prints.
func (i Info) String() string {
	s := fmt.Sprintf("psagate %s (revision %s", i.Version, i.ShortRevision())
	if i.Dirty {
		s += ", modified"
	}
	if i.Time != "" {
		s += ", committed " + i.Time
	}
	return s + ", " + i.GoVersion + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
