package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"psagate/internal/psa"
	"psagate/internal/suggest"
)

// providerTables takes the [deliver.NAME] tables of registered providers
// out of doc: rawDeliver cannot name them (the registry decides which
// exist), so each is checked and decoded on its own.
func (l *loader) providerTables(doc map[string]any) (map[string]map[string]any, bool) {
	d, ok := doc["deliver"].(map[string]any)
	if !ok {
		return nil, false
	}
	out := map[string]map[string]any{}
	for _, name := range psa.Names() {
		t, ok := d[name].(map[string]any)
		if !ok {
			continue
		}
		delete(d, name)
		l.checkValues(t, reflect.TypeFor[ProviderLimits](), "deliver."+name)
		out[name] = t
	}
	return out, len(out) > 0
}

func (l *loader) decodeProviderTables(tables map[string]map[string]any) map[string]*ProviderLimits {
	out := map[string]*ProviderLimits{}
	for _, name := range slices.Sorted(maps.Keys(tables)) {
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(tables[name]); err != nil {
			l.errf("deliver."+name, "%v", err)
			continue
		}
		var p ProviderLimits
		md, err := toml.Decode(b.String(), &p)
		if err != nil {
			l.errf("deliver."+name, "%v", err)
			continue
		}
		for _, k := range md.Undecoded() {
			ks := "deliver." + name + "." + k.String()
			l.errs = append(l.errs, &Error{File: l.file, Line: l.ix.Line(ks), Key: ks, Msg: "unknown key" + l.suggest(ks)})
		}
		out[name] = &p
	}
	return out
}

// psa flattens a [psa]-shaped table ("connectwise": {"board": ...}) into
// "connectwise.board" keys, checking every key and resolving secrets.
func (l *loader) psa(base string, m map[string]any, org bool) psa.Settings {
	out := psa.Settings{}
	known := map[string]bool{}
	for _, k := range psa.GeneralKeys {
		known[k] = true
	}
	for _, d := range psa.Registered() {
		for _, k := range d.Keys {
			known[d.Name+"."+k] = true
		}
	}
	var walk func(prefix string, v map[string]any)
	walk = func(prefix string, v map[string]any) {
		for _, k := range slices.Sorted(maps.Keys(v)) {
			full := k
			if prefix != "" {
				full = prefix + "." + k
			}
			path := base + "." + full
			if sub, ok := v[k].(map[string]any); ok {
				if _, isProv := psa.KeysOf(full); isProv && prefix == "" {
					walk(full, sub)
					continue
				}
				if psa.IsTableSetting(prefix, k) {
					l.psaTable(path, full, sub, out)
					continue
				}
				l.errf(path, "unknown key")
				continue
			}
			if psa.IsTableSetting(prefix, k) && psa.CheckTableEntry(full, "\x00") == nil {
				// A table of tenant-defined names (autotask.fields) has no
				// single-value form.
				l.errf(path, `must be a table of names and values, e.g. %s = { "Backup Vault" = "VAULT-01" }`, k)
				continue
			}
			if !known[full] {
				msg := "unknown PSA setting"
				if prov, key, ok := strings.Cut(full, "."); ok {
					if keys, isProv := psa.KeysOf(prov); isProv {
						if c := suggest.Closest(key, keys); c != "" {
							msg += fmt.Sprintf(" (did you mean %q?)", prov+"."+c)
						} else {
							msg += " (" + prov + " settings are " + strings.Join(keys, ", ") + ")"
						}
					}
				}
				l.errf(path, "%s", msg)
				continue
			}
			s, err := scalar(v[k])
			if err != nil {
				l.errf(path, "%v", err)
				continue
			}
			if psa.IsSecretKey(full) {
				if s == "" || l.noSecrets {
					continue
				}
				r, err := resolveSecret(s)
				if err != nil {
					// Only an error if that provider is used: an example config
					// may carry ConnectWise and Autotask sections while running
					// on the log provider without any credentials.
					prov, _, _ := strings.Cut(full, ".")
					l.pending = append(l.pending, pendingSecret{provider: prov, err: &Error{File: l.file, Line: l.ix.Line(path), Key: path, Msg: err.Error()}})
					continue
				}
				s = r
			}
			switch full {
			case "provider":
				if _, ok := psa.Lookup(s); !ok {
					hint := ""
					if c := suggest.Closest(s, psa.Names()); c != "" {
						hint = fmt.Sprintf(" (did you mean %q?)", c)
					}
					l.errf(path, "provider must be one of %s, not %q%s", strings.Join(psa.Names(), ", "), s, hint)
				}
			case "auto_close":
				if _, err := strconv.ParseBool(s); err != nil {
					l.errf(path, "auto_close must be true or false")
				}
			case "after_manual_close":
				if s != AfterCloseNew && s != AfterCloseReopen {
					l.errf(path, "after_manual_close must be %q or %q, not %q", AfterCloseNew, AfterCloseReopen, s)
				}
			}
			out[full] = s
			l.lines[path] = l.ix.Line(path)
		}
	}
	walk("", m)
	return out
}

// psaTable flattens a table setting (autotask.note_publish = { close =
// "All Autotask Users" }) into "autotask.note_publish.close" keys.
func (l *loader) psaTable(path, setting string, m map[string]any, out psa.Settings) {
	for _, e := range slices.Sorted(maps.Keys(m)) {
		ep := path + "." + e
		if err := psa.CheckTableEntry(setting, e); err != nil {
			l.errf(ep, "%v", err)
			continue
		}
		s, err := scalar(m[e])
		if err != nil {
			l.errf(ep, "%v", err)
			continue
		}
		out[setting+"."+e] = s
		l.lines[ep] = l.ix.Line(ep)
	}
}

// scalar renders a TOML scalar as settings text.
func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Duration:
		return x.String(), nil
	}
	return "", fmt.Errorf("must be a string, number or boolean, not %T", v)
}
