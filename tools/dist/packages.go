package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// Where the packages put things.
const (
	pkgBin     = "/usr/bin/psagate"
	pkgConfig  = "/etc/psagate/psagate.toml"
	pkgRules   = "/etc/psagate/rules"
	pkgState   = "/var/lib/psagate/psagate.db"
	pkgUnit    = "/usr/lib/systemd/system/psagate.service"
	pkgDoc     = "/usr/share/doc/psagate"
	maintainer = "psagate maintainers <maintainers@psagate.invalid>"
)

// packageConfig is configs/example.toml with the two relative paths made
// the packaged ones. It is derived rather than kept as a second file so it
// cannot drift from the example; a change to those two lines fails here.
func packageConfig(example []byte) ([]byte, error) {
	out := example
	for _, r := range []struct{ re, repl string }{
		{`(?m)^path = "data/psagate\.db"`, `path = "` + pkgState + `"`},
		{`(?m)^dir = "rules"`, `dir = "` + pkgRules + `"`},
	} {
		re := regexp.MustCompile(r.re)
		if len(re.FindAll(out, -1)) != 1 {
			return nil, fmt.Errorf("configs/example.toml: expected exactly one line matching %s to make the packaged config", r.re)
		}
		out = re.ReplaceAll(out, []byte(r.repl))
	}
	return out, nil
}

// packageUnit is configs/psagate.service with the packaged binary's path.
func packageUnit(unit []byte) ([]byte, error) {
	if !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/psagate serve")) {
		return nil, fmt.Errorf("configs/psagate.service: ExecStart no longer names /usr/local/bin/psagate")
	}
	s := strings.ReplaceAll(string(unit), "/usr/local/bin/psagate", pkgBin)
	s = strings.ReplaceAll(s, "/usr/local/share/doc/psagate", pkgDoc)
	return []byte(s), nil
}

// Maintainer scripts, POSIX sh, for deb and rpm alike: deb passes
// "configure [old-version]", "remove", "upgrade", "purge"; rpm passes the
// number of versions installed after the operation (1 install, 2 upgrade,
// 0 erase).
const postinst = `#!/bin/sh
set -e
# The gateway runs as its own system user (the unit's User=psagate).
if ! getent group psagate >/dev/null; then
    groupadd --system psagate
fi
if ! getent passwd psagate >/dev/null; then
    useradd --system --gid psagate --home-dir /var/lib/psagate --no-create-home \
        --shell /usr/sbin/nologin --comment "psagate SMTP-to-PSA gateway" psagate
fi
install -d -o psagate -g psagate -m 0750 /var/lib/psagate
first=no
if { [ "$1" = configure ] && [ -z "$2" ]; } || [ "$1" = 1 ]; then
    first=yes
    # The config may hold secrets: root writes it, the service reads it.
    chgrp psagate /etc/psagate/psagate.toml
    chmod 0640 /etc/psagate/psagate.toml
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    # An upgrade restarts a running gateway; a first install starts nothing.
    systemctl try-restart psagate.service >/dev/null 2>&1 || true
fi
if [ "$first" = yes ]; then
    echo "psagate: edit /etc/psagate/psagate.toml (psagate check -config /etc/psagate/psagate.toml), then: systemctl enable --now psagate"
fi
`

const prerm = `#!/bin/sh
set -e
case "$1" in
remove|0)
    if [ -d /run/systemd/system ]; then
        systemctl disable --now psagate.service >/dev/null 2>&1 || true
    fi
    ;;
esac
`

const postrm = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
    # The database holds the open incidents and undelivered tickets: never
    # deleted by a package operation.
    echo "psagate: /var/lib/psagate (state) and the psagate user are kept; remove them by hand when no longer needed"
fi
`

// packages builds the .deb and the .rpm for one target.
func packages(o options, t target, bin string, tree, gen []file, work string) ([]string, error) {
	stage := filepath.Join(work, "pkg-"+t.goarch)
	var contents files.Contents
	add := func(dst string, data []byte, mode fs.FileMode, typ, packager string) error {
		src := filepath.Join(stage, filepath.FromSlash(strings.TrimPrefix(dst, "/")))
		if packager != "" {
			src += "." + packager
		}
		if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(src, data, mode); err != nil {
			return err
		}
		contents = append(contents, &files.Content{
			Source: src, Destination: dst, Type: typ, Packager: packager,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: o.epoch},
		})
		return nil
	}
	get := func(p string) []byte {
		for _, f := range append(tree, gen...) {
			if f.path == p {
				return f.data
			}
		}
		return nil
	}

	binData, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	cfg, err := packageConfig(get("configs/example.toml"))
	if err != nil {
		return nil, err
	}
	unit, err := packageUnit(get("configs/psagate.service"))
	if err != nil {
		return nil, err
	}
	man, err := gzipped(get("docs/man/psagate.1"), o)
	if err != nil {
		return nil, err
	}
	steps := []struct {
		dst      string
		data     []byte
		mode     fs.FileMode
		typ      string
		packager string
	}{
		{pkgBin, binData, 0o755, "", ""},
		{pkgUnit, unit, 0o644, "", ""},
		{pkgConfig, cfg, 0o640, files.TypeConfigNoReplace, ""},
		{"/usr/share/man/man1/psagate.1.gz", man, 0o644, "", ""},
		{"/usr/share/bash-completion/completions/psagate", get("completions/psagate.bash"), 0o644, "", ""},
		{"/usr/share/zsh/vendor-completions/_psagate", get("completions/_psagate"), 0o644, "", "deb"},
		{"/usr/share/zsh/site-functions/_psagate", get("completions/_psagate"), 0o644, "", "rpm"},
		{"/usr/share/fish/vendor_completions.d/psagate.fish", get("completions/psagate.fish"), 0o644, "", ""},
		{pkgDoc + "/copyright", get("LICENSE"), 0o644, "", "deb"},
		{"/usr/share/licenses/psagate/LICENSE", get("LICENSE"), 0o644, files.TypeRPMLicense, "rpm"},
	}
	for _, f := range tree {
		switch {
		case strings.HasPrefix(f.path, "rules/") && strings.HasSuffix(f.path, ".toml"):
			steps = append(steps, struct {
				dst      string
				data     []byte
				mode     fs.FileMode
				typ      string
				packager string
			}{pkgRules + "/" + path.Base(f.path), f.data, 0o644, files.TypeConfigNoReplace, ""})
		case f.path == "README.md" || f.path == "CHANGELOG.md" || strings.HasPrefix(f.path, "docs/") && strings.HasSuffix(f.path, ".md") ||
			f.path == "configs/example.toml" || f.path == "configs/prometheus-alerts.yml" || f.path == "configs/prometheus-alerts.test.yml" ||
			f.path == "configs/grafana-dashboard.json":
			steps = append(steps, struct {
				dst      string
				data     []byte
				mode     fs.FileMode
				typ      string
				packager string
			}{pkgDoc + "/" + path.Base(f.path), f.data, 0o644, "", ""})
		}
	}
	for _, s := range steps {
		if s.data == nil {
			return nil, fmt.Errorf("no content for %s", s.dst)
		}
		if err := add(s.dst, s.data, s.mode, s.typ, s.packager); err != nil {
			return nil, err
		}
	}
	scripts := map[string]string{"postinst": postinst, "prerm": prerm, "postrm": postrm}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(stage, name), []byte(body), 0o755); err != nil {
			return nil, err
		}
	}

	var out []string
	for _, format := range []string{"deb", "rpm"} {
		info := nfpm.WithDefaults(&nfpm.Info{
			Name:        "psagate",
			Arch:        t.goarch,
			Platform:    t.goos,
			Version:     o.version,
			Section:     "mail",
			Priority:    "optional",
			Maintainer:  maintainer,
			Vendor:      "psagate",
			License:     "Apache-2.0",
			Description: "SMTP-to-PSA alert gateway\nReceives the alert mail of backup appliances over SMTP, filters it with TOML rules\nand keeps one ConnectWise Manage or Autotask ticket per ongoing problem.",
			MTime:       o.epoch,
			Overridables: nfpm.Overridables{
				Contents: cloneContents(contents),
				Scripts: nfpm.Scripts{
					PostInstall: filepath.Join(stage, "postinst"),
					PreRemove:   filepath.Join(stage, "prerm"),
					PostRemove:  filepath.Join(stage, "postrm"),
				},
				// A fixed build host: rpm records one, and it must not vary.
				RPM: nfpm.RPM{BuildHost: "psagate-dist", Group: "System Environment/Daemons", Summary: "SMTP-to-PSA alert gateway"},
			},
		})
		if err := nfpm.PrepareForPackager(info, format); err != nil {
			return nil, fmt.Errorf("%s: %w", format, err)
		}
		p, err := nfpm.Get(format)
		if err != nil {
			return nil, err
		}
		name := filepath.Join(o.out, p.ConventionalFileName(info))
		var buf bytes.Buffer
		if err := p.Package(info, &buf); err != nil {
			return nil, fmt.Errorf("%s: %w", format, err)
		}
		if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

func cloneContents(c files.Contents) files.Contents {
	out := make(files.Contents, 0, len(c))
	for _, x := range c {
		y := *x
		fi := *x.FileInfo
		y.FileInfo = &fi
		out = append(out, &y)
	}
	return out
}

// gzipped compresses with a fixed header (no name, the epoch as time).
func gzipped(data []byte, o options) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.ModTime = o.epoch
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
