package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The release is built once, for this machine's architecture only (the
// cross builds differ only in GOARCH; `make dist` does both), and shared by
// the tests below.
var (
	buildOnce sync.Once
	built     struct {
		dir   string
		files []string
		err   error
	}
)

func release(t *testing.T) (string, []string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "psagate-dist-test-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		built.files, built.err = build(context.Background(), options{
			repo: "../..", out: filepath.Join(dir, "a"), targets: []target{{runtime.GOOS, runtime.GOARCH}}, packages: true,
		})
	})
	if built.err != nil {
		t.Fatalf("dist: %v", built.err)
	}
	return filepath.Join(built.dir, "a"), built.files
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

func find(t *testing.T, files []string, suffix string) string {
	t.Helper()
	for _, f := range files {
		if strings.HasSuffix(f, suffix) {
			return f
		}
	}
	t.Fatalf("no *%s among %v", suffix, files)
	return ""
}

// TestTarballRunsVersionAndCheck unpacks the tarball as a user would and
// runs `psagate version` and `psagate check` from it.
func TestTarballRunsVersionAndCheck(t *testing.T) {
	dir, files := release(t)
	tgz := find(t, files, ".tar.gz")
	top := strings.TrimSuffix(filepath.Base(tgz), ".tar.gz")
	unpack := t.TempDir()
	names := untar(t, tgz, unpack)
	for _, want := range []string{"psagate", "README.md", "LICENSE", "CHANGELOG.md", "configs/example.toml",
		"configs/psagate.service", "rules/generic.toml", "rules/veeam.toml", "docs/operations.md", "docs/man/psagate.1",
		"completions/psagate.bash", "completions/_psagate", "completions/psagate.fish"} {
		if !names[top+"/"+want] {
			t.Errorf("the tarball has no %s/%s", top, want)
		}
	}
	for n := range names {
		if strings.HasSuffix(n, ".go") {
			t.Errorf("the tarball carries Go source %s", n)
		}
	}
	root := filepath.Join(unpack, top)
	bin := filepath.Join(root, "psagate")

	out, err := exec.Command(bin, "version", "-json").Output()
	if err != nil {
		t.Fatalf("psagate version: %v", err)
	}
	var v struct{ Version, Revision, Goversion string }
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("version -json: %q", out)
	}
	rev, _ := exec.Command("git", "-C", "../..", "rev-parse", "HEAD").Output()
	if !strings.Contains(top, strings.TrimPrefix(v.Version, "v")) || v.Revision != strings.TrimSpace(string(rev)) || v.Goversion != runtime.Version() {
		t.Errorf("version %+v does not match the archive %s at revision %s", v, top, rev)
	}

	// The example config's paths are relative to the unpacked directory.
	cmd := exec.Command(bin, "check", "-config", "configs/example.toml")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psagate check from the tarball: %v\n%s", err, out)
	}

	// Static: no interpreter, so it runs on any Linux and in scratch.
	if out, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("not a static binary: %s", out)
	}
	checkSums(t, dir)
}

// TestDistIsReproducible builds again into another directory: every file
// must come out byte for byte the same.
func TestDistIsReproducible(t *testing.T) {
	dir, _ := release(t)
	again := filepath.Join(t.TempDir(), "b")
	if _, err := build(context.Background(), options{
		repo: "../..", out: again, targets: []target{{runtime.GOOS, runtime.GOARCH}}, packages: true,
	}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	b, _ := os.ReadFile(filepath.Join(again, "SHA256SUMS"))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("two builds of the same commit differ:\n%s\n---\n%s", a, b)
	}
}

func TestPackagesLookRight(t *testing.T) {
	_, files := release(t)
	rpm, err := os.ReadFile(find(t, files, ".rpm"))
	if err != nil || !bytes.HasPrefix(rpm, []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Errorf("the .rpm does not start with the RPM lead magic (%v)", err)
	}
	deb := find(t, files, ".deb")
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed: the .deb's contents are not inspected here")
	}
	out, err := exec.Command("dpkg-deb", "--contents", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/bin/psagate", "./etc/psagate/psagate.toml", "./etc/psagate/rules/generic.toml",
		"./usr/lib/systemd/system/psagate.service", "./usr/share/man/man1/psagate.1.gz",
		"./usr/share/bash-completion/completions/psagate", "./usr/share/doc/psagate/copyright"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the .deb has no %s", want)
		}
	}
	conf, err := exec.Command("dpkg-deb", "--info", deb, "conffiles").Output()
	if err != nil || !strings.Contains(string(conf), "/etc/psagate/psagate.toml") || !strings.Contains(string(conf), "/etc/psagate/rules/veeam.toml") {
		t.Errorf("conffiles: %q (%v)", conf, err)
	}
}

// TestDebInstall installs the .deb with dpkg, checks the installed config
// with the installed binary (as the psagate user too), and purges it.
func TestDebInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP .deb install test: not root (dpkg -i needs root; CI runs as root)")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("SKIP .deb install test: dpkg not found (not a Debian-based machine)")
	}
	if exec.Command("dpkg-query", "-W", "-f=${Status}", "psagate").Run() == nil {
		t.Skip("SKIP .deb install test: a psagate package is already installed on this machine; not touching it")
	}
	_, files := release(t)
	deb := find(t, files, ".deb")
	_, userErr := user.Lookup("psagate")
	hadUser := userErr == nil
	_, stateErr := os.Stat("/var/lib/psagate")
	hadState := stateErr == nil

	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		if out, err := dpkg("--purge", "psagate"); err != nil {
			t.Errorf("dpkg --purge: %v\n%s", err, out)
		}
		if _, err := os.Stat("/usr/bin/psagate"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/usr/bin/psagate still there after purge (%v)", err)
		}
		if _, err := os.Stat("/etc/psagate/psagate.toml"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the conffile survived the purge (%v)", err)
		}
		// Leave the machine as it was: the package keeps the user and the
		// state on purge on purpose, the test does not.
		if !hadUser {
			_ = exec.Command("userdel", "psagate").Run()
			_ = exec.Command("groupdel", "psagate").Run()
		}
		if !hadState {
			os.RemoveAll("/var/lib/psagate")
		}
	})
	outb, err := dpkg("-i", deb)
	if err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", deb, err, outb)
	}
	out := string(outb)
	if !strings.Contains(out, "systemctl enable --now psagate") {
		t.Errorf("postinst did not say how to start the service:\n%s", out)
	}

	u, err := user.Lookup("psagate")
	if err != nil {
		t.Fatalf("postinst made no psagate user: %v", err)
	}
	if u.HomeDir != "/var/lib/psagate" {
		t.Errorf("psagate's home is %q", u.HomeDir)
	}
	st, err := os.Stat("/etc/psagate/psagate.toml")
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("/etc/psagate/psagate.toml: %v, mode %v; want 0640", err, st.Mode())
	}
	if conf := run("dpkg-query", "-W", "-f=${Conffiles}", "psagate"); !strings.Contains(conf, "/etc/psagate/psagate.toml") ||
		!strings.Contains(conf, "/etc/psagate/rules/generic.toml") {
		t.Errorf("dpkg does not list the config and rules as conffiles:\n%s", conf)
	}
	unit := run("cat", "/usr/lib/systemd/system/psagate.service")
	if !strings.Contains(unit, "ExecStart=/usr/bin/psagate serve -config /etc/psagate/psagate.toml") ||
		!strings.Contains(unit, "ExecReload=/usr/bin/psagate reload") || !strings.Contains(unit, "Type=notify") {
		t.Errorf("the installed unit does not run the installed binary:\n%s", unit)
	}

	if out := run("/usr/bin/psagate", "check", "-config", "/etc/psagate/psagate.toml"); !strings.HasPrefix(out, "OK: /etc/psagate/psagate.toml:") {
		t.Errorf("psagate check on the installed config said:\n%s", out)
	}
	// The service's user can read what the unit gives it.
	if _, err := exec.LookPath("runuser"); err == nil {
		run("runuser", "-u", "psagate", "--", "/usr/bin/psagate", "check", "-config", "/etc/psagate/psagate.toml")
	} else {
		t.Log("runuser not found: the check as user psagate is skipped")
	}
	if out := run("/usr/bin/psagate", "version"); !strings.HasPrefix(out, "psagate v") {
		t.Errorf("installed version: %q", out)
	}
}

// dpkg runs dpkg, waiting (up to two minutes) while another package
// operation on this machine holds dpkg's lock: dpkg itself fails at once.
func dpkg(args ...string) ([]byte, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := exec.Command("dpkg", args...).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("lock")) || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(2 * time.Second) // another process's apt/dpkg run, not ours to signal
	}
}

func untar(t *testing.T, tgz, dir string) map[string]bool {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(h.Name, "..") || h.Uid != 0 || h.Gid != 0 {
			t.Fatalf("entry %s: unsafe name or owner %d:%d", h.Name, h.Uid, h.Gid)
		}
		names[strings.TrimSuffix(h.Name, "/")] = true
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, os.FileMode(h.Mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return names
}

func checkSums(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Errorf("SHA256SUMS lists %d files, want tarball, deb and rpm:\n%s", len(lines), data)
	}
	for _, l := range lines {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", l)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s: checksum mismatch", name)
		}
	}
}
