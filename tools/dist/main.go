// Command dist builds psagate's release files into one directory:
//
//   - static (CGO_ENABLED=0) binaries for linux/amd64 and linux/arm64, built
//     reproducibly: -trimpath, -buildid= and -buildvcs=false, with the version
//     and revision passed by -ldflags -X instead;
//   - psagate-VERSION-linux-ARCH.tar.gz: the binary, README.md, LICENSE,
//     CHANGELOG.md, configs/, rules/, docs/ and shell completions, every entry
//     with the commit's time, owner 0, sorted;
//   - .deb and .rpm packages built with github.com/goreleaser/nfpm/v2 v2.48.0
//     used as a library (this module is separate from psagate's so that the
//     gateway never links it): /usr/bin/psagate, the systemd unit,
//     /etc/psagate/psagate.toml and /etc/psagate/rules/*.toml as conffiles,
//     the man page, completions, docs, and a postinst that creates the
//     psagate system user;
//   - SHA256SUMS over all of them.
//
// Same commit, same Go: the same bytes. The time stamped everywhere is
// $SOURCE_DATE_EPOCH or else the commit's time.
//
// Usage (from the repository root: `make dist`):
//
//	go -C tools/dist run . -repo ../.. -out ../../dist [-targets linux/amd64,linux/arm64] [-packages=true]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type target struct{ goos, goarch string }

func (t target) String() string { return t.goos + "/" + t.goarch }

type options struct {
	repo, out         string
	version, revision string
	epoch             time.Time
	targets           []target
	packages          bool
	log               func(format string, args ...any)
}

func main() {
	var o options
	var targets, epoch string
	flag.StringVar(&o.repo, "repo", "../..", "the psagate repository")
	flag.StringVar(&o.out, "out", "../../dist", "output directory (emptied first)")
	flag.StringVar(&o.version, "version", "", "version (default: from git describe, or a Go pseudo-version of the commit)")
	flag.StringVar(&targets, "targets", "linux/amd64,linux/arm64", "GOOS/GOARCH list; \"host\" for this machine's only")
	flag.StringVar(&epoch, "epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix time stamped on every file (default $SOURCE_DATE_EPOCH, else the commit's time)")
	flag.BoolVar(&o.packages, "packages", true, "build .deb and .rpm too")
	flag.Parse()
	o.log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "dist: "+format+"\n", args...) }
	for _, t := range strings.Split(targets, ",") {
		if t == "host" {
			t = runtime.GOOS + "/" + runtime.GOARCH
		}
		goos, goarch, ok := strings.Cut(strings.TrimSpace(t), "/")
		if !ok || goos != "linux" {
			fmt.Fprintf(os.Stderr, "dist: target %q: want linux/ARCH\n", t)
			os.Exit(2)
		}
		o.targets = append(o.targets, target{goos, goarch})
	}
	if epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dist: -epoch/SOURCE_DATE_EPOCH %q: %v\n", epoch, err)
			os.Exit(2)
		}
		o.epoch = time.Unix(sec, 0).UTC()
	}
	files, err := build(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
	for _, f := range files {
		fmt.Println(f)
	}
}

// build makes every release file and returns their paths.
func build(ctx context.Context, o options) ([]string, error) {
	if o.log == nil {
		o.log = func(string, ...any) {}
	}
	repo, err := filepath.Abs(o.repo)
	if err != nil {
		return nil, err
	}
	o.repo = repo
	if err := resolveVersion(ctx, &o); err != nil {
		return nil, err
	}
	o.log("psagate %s (revision %s), files dated %s", o.version, o.revision, o.epoch.Format(time.RFC3339))
	if err := os.RemoveAll(o.out); err != nil {
		return nil, err
	}
	work := filepath.Join(o.out, ".work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	bins := map[target]string{}
	for _, t := range o.targets {
		bin := filepath.Join(work, t.goos+"_"+t.goarch, "psagate")
		o.log("building %s", t)
		if err := goBuild(ctx, o, t, bin); err != nil {
			return nil, err
		}
		bins[t] = bin
	}
	host := bins[target{runtime.GOOS, runtime.GOARCH}]
	if host == "" {
		host = filepath.Join(work, "host", "psagate")
		if err := goBuild(ctx, o, target{runtime.GOOS, runtime.GOARCH}, host); err != nil {
			return nil, err
		}
	}
	gen, err := generated(ctx, host, o)
	if err != nil {
		return nil, err
	}
	tree, err := sourceTree(ctx, o.repo)
	if err != nil {
		return nil, err
	}

	var outputs []string
	for _, t := range o.targets {
		tgz, err := tarball(o, t, bins[t], tree, gen)
		if err != nil {
			return nil, err
		}
		outputs = append(outputs, tgz)
		if o.packages {
			pkgs, err := packages(o, t, bins[t], tree, gen, work)
			if err != nil {
				return nil, err
			}
			outputs = append(outputs, pkgs...)
		}
	}
	sums, err := writeSums(o.out, outputs)
	if err != nil {
		return nil, err
	}
	return append(outputs, sums), nil
}

// resolveVersion fills in the version, revision and epoch from git where
// the caller did not give them.
func resolveVersion(ctx context.Context, o *options) error {
	git := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "git", append([]string{"-C", o.repo}, args...)...).Output()
		return strings.TrimSpace(string(out)), err
	}
	rev, err := git("rev-parse", "HEAD")
	if err != nil {
		return fmt.Errorf("git rev-parse HEAD in %s: %w (dist builds from a git checkout)", o.repo, err)
	}
	dirty := false
	if st, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
		dirty = true
	}
	o.revision = rev
	if o.epoch.IsZero() {
		ct, err := git("log", "-1", "--format=%ct")
		if err != nil {
			return fmt.Errorf("git log: %w", err)
		}
		sec, err := strconv.ParseInt(ct, 10, 64)
		if err != nil {
			return fmt.Errorf("commit time %q: %w", ct, err)
		}
		o.epoch = time.Unix(sec, 0).UTC()
	}
	if o.version == "" {
		if tag, err := git("describe", "--tags", "--exact-match", "--match", "v[0-9]*"); err == nil && tag != "" {
			o.version = tag
		} else {
			// No release tag on this commit: a Go pseudo-version, which
			// sorts after the last release for dpkg and rpm as well.
			base := "v0.0.0"
			if t, err := git("describe", "--tags", "--abbrev=0", "--match", "v[0-9]*"); err == nil && t != "" {
				base = t
			}
			o.version = fmt.Sprintf("%s-%s-%s", base, o.epoch.Format("20060102150405"), rev[:12])
		}
		if dirty && strings.Contains(o.version, "-") {
			o.version += ".dirty"
		} else if dirty {
			o.version += "-dirty"
		}
	}
	if dirty {
		o.log("warning: the work tree has uncommitted changes; the files will not match the commit")
	}
	return nil
}

// goBuild builds ./cmd/psagate statically and reproducibly.
func goBuild(ctx context.Context, o options, t target, bin string) error {
	ldflags := strings.Join([]string{
		"-s", "-w", "-buildid=",
		"-X", "psagate/internal/version.version=" + o.version,
		"-X", "psagate/internal/version.revision=" + o.revision,
	}, " ")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", bin, "./cmd/psagate")
	cmd.Dir = o.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+t.goos, "GOARCH="+t.goarch, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", t, err, out)
	}
	return nil
}
