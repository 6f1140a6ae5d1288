package config

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"psagate/internal/tomlpos"
)

// rawClients is the [clients] section.
type rawClients struct {
	// Dir holds *.toml files of [[client]] tables (psagate clients import
	// writes there), read in name order after the config's own clients.
	Dir string `toml:"dir"`
}

// rawInclude is one file of the [clients] dir: only [[client]] tables.
type rawInclude struct {
	Client []rawClient `toml:"client"`
}

// includeClients reads every *.toml of dir (names starting with "." are
// skipped: editor and temporary files). Errors name the included file and
// its line.
func (l *loader) includeClients(dir string, names map[string]string) []*Client {
	entries, err := os.ReadDir(dir)
	if err != nil {
		l.errf("clients.dir", "cannot read the clients directory: %v", err)
		return nil
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".toml") && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	var out []*Client
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			l.errs = append(l.errs, &Error{File: path, Msg: err.Error()})
			continue
		}
		sub := &loader{file: path, ix: tomlpos.New(data), lines: map[string]int{}, bad: map[string]bool{}, noSecrets: l.noSecrets}
		var raw rawInclude
		md, err := toml.Decode(string(data), &raw)
		if err != nil {
			l.errs = append(l.errs, syntaxError(path, err, nil))
			continue
		}
		for _, k := range md.Undecoded() {
			ks := k.String()
			if sub.underFreeForm(ks) {
				continue
			}
			msg := "unknown key"
			if !strings.HasPrefix(ks, "client") {
				msg = "unknown key: a file of the clients directory holds only [[client]] tables"
			}
			for _, ln := range append(sub.ix.LinesOf(ks), 0)[:1] {
				l.errs = append(l.errs, &Error{File: path, Line: ln, Key: ks, Msg: msg})
			}
		}
		out = append(out, sub.clients(raw.Client, names)...)
		l.errs = append(l.errs, sub.errs...)
		l.pending = append(l.pending, sub.pending...)
	}
	return out
}
