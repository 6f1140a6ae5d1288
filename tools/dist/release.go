package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// file is one file of a release, with its path inside the tarball.
type file struct {
	path string // relative, slash-separated
	data []byte
	mode fs.FileMode
}

// sourceTree is what every archive carries from the repository: the
// tracked files of README.md, LICENSE, CHANGELOG.md, configs/, rules/ and
// docs/, without Go sources (the tests that live beside them).
func sourceTree(ctx context.Context, repo string) ([]file, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "ls-files", "-z", "--",
		"README.md", "LICENSE", "CHANGELOG.md", "configs", "rules", "docs").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	var files []file
	for _, p := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if p == "" || strings.HasSuffix(p, ".go") || strings.Contains(p, "/testdata/") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(repo, p))
		if err != nil {
			return nil, err
		}
		files = append(files, file{path: p, data: data, mode: 0o644})
	}
	for _, must := range []string{"README.md", "LICENSE", "CHANGELOG.md", "configs/example.toml", "configs/psagate.service", "rules/generic.toml", "docs/man/psagate.1"} {
		if !slices.ContainsFunc(files, func(f file) bool { return f.path == must }) {
			return nil, fmt.Errorf("%s is not tracked in git: commit it before `make dist`", must)
		}
	}
	return files, nil
}

// generated are the files made by the binary itself: shell completions.
func generated(ctx context.Context, host string, o options) ([]file, error) {
	var out []file
	for _, sh := range []struct{ shell, path string }{
		{"bash", "completions/psagate.bash"},
		{"zsh", "completions/_psagate"},
		{"fish", "completions/psagate.fish"},
	} {
		data, err := exec.CommandContext(ctx, host, "completion", sh.shell).Output()
		if err != nil {
			return nil, fmt.Errorf("psagate completion %s: %w", sh.shell, err)
		}
		out = append(out, file{path: sh.path, data: data, mode: 0o644})
	}
	// The man page is committed (docs/man/psagate.1, kept current by a
	// test); make sure the binary being shipped agrees with it.
	man, err := exec.CommandContext(ctx, host, "man").Output()
	if err != nil {
		return nil, fmt.Errorf("psagate man: %w", err)
	}
	committed, err := os.ReadFile(filepath.Join(o.repo, "docs", "man", "psagate.1"))
	if err != nil || !bytes.Equal(man, committed) {
		return nil, fmt.Errorf("docs/man/psagate.1 differs from `psagate man`: run `go test ./cmd/psagate -run TestManPageIsCurrent -update`")
	}
	return out, nil
}

func archiveName(o options, t target) string {
	return fmt.Sprintf("psagate-%s-%s-%s", strings.TrimPrefix(o.version, "v"), t.goos, t.goarch)
}

// tarball writes psagate-VERSION-linux-ARCH.tar.gz: one top directory,
// entries sorted, every time the epoch, owner root (0), modes 0755/0644.
func tarball(o options, t target, bin string, tree, gen []file) (string, error) {
	binData, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	all := append([]file{{path: "psagate", data: binData, mode: 0o755}}, tree...)
	all = append(all, gen...)
	slices.SortFunc(all, func(a, b file) int { return strings.Compare(a.path, b.path) })

	top := archiveName(o, t)
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	zw.ModTime = o.epoch // the gzip header's own time, not "now"
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	hdr := func(name string, mode int64, size int64, typ byte) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: o.epoch,
			Uid: 0, Gid: 0, Uname: "root", Gname: "root", Format: tar.FormatPAX}
	}
	for _, f := range all {
		// Parent directories first, once each.
		parts := strings.Split(top+"/"+f.path, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(hdr(d, 0o755, 0, tar.TypeDir)); err != nil {
					return "", err
				}
			}
		}
		if err := tw.WriteHeader(hdr(top+"/"+f.path, int64(f.mode), int64(len(f.data)), tar.TypeReg)); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	path := filepath.Join(o.out, top+".tar.gz")
	return path, os.WriteFile(path, buf.Bytes(), 0o644)
}

// writeSums writes SHA256SUMS in the format `sha256sum -c` reads.
func writeSums(dir string, paths []string) (string, error) {
	names := make([]string, 0, len(paths))
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	path := filepath.Join(dir, "SHA256SUMS")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}
