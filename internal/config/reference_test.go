package config

import (
	"encoding"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"psagate/internal/psa"
)

var updateReference = flag.Bool("update", false, "rewrite docs/config-reference.md from the config code")

// The reference is generated from the code: the keys from the structs the
// loader decodes into (rawConfig, by reflection), their meaning from the
// fields' doc comments (go/ast, this package's sources), their defaults
// from loading a minimal config. A key added without a comment, or a
// docs/config-reference.md that was not regenerated, fails the test.

// keyNotes are meanings for fields whose Go comment is missing or speaks
// of code rather than configuration. Keyed by the TOML path.
var keyNotes = map[string]string{
	"smtp.listen":                       "address and port of the SMTP server; port 25 in production",
	"smtp.hostname":                     "the name in the greeting and in Received headers",
	"smtp.max_message_bytes":            "larger messages get 552 (enforced while reading; EHLO advertises SIZE)",
	"smtp.max_recipients":               "more RCPT get 452",
	"smtp.read_timeout":                 "per command line; a command not finished in time gets 421 and the connection closes",
	"smtp.write_timeout":                "per reply",
	"smtp.data_timeout":                 "the whole DATA phase; then 421 and close",
	"smtp.max_sessions":                 "concurrent sessions, then 421",
	"smtp.max_sessions_per_ip":          "concurrent sessions from one address, then 421",
	"smtp.max_commands":                 "commands outside a mail transaction, then 421 and close",
	"smtp.max_auth_failures":            "failed AUTH attempts before the address is refused for auth_failure_pause",
	"smtp.auth_failure_pause":           "how long an address is refused after max_auth_failures",
	"smtp.max_line_length":              "a longer line gets 500 and the connection closes",
	"smtp.max_headers":                  "MIME decoding limit: header fields (the rest is skipped and recorded)",
	"smtp.max_mime_parts":               "MIME decoding limit: parts",
	"smtp.max_mime_depth":               "MIME decoding limit: nesting",
	"smtp.shutdown_timeout":             "how long sessions in DATA may finish on SIGTERM",
	"smtp.max_inflight_bytes":           "memory all messages in transfer may take (a message counts about twice its size while stored); one that does not fit gets 452 4.3.1 and the sender retries; at least max_message_bytes",
	"client.disabled_until":             "turns the client's ticketing back on by itself at this time (enabled = false is implied until then)",
	"client.require_auth":               "vendor domains whose mail to this client must pass sender authentication (aligned DKIM or SPF); a mail claiming one without it is quarantined",
	"smtp.session_timeout":              "a whole connection",
	"smtp.bare_lf":                      "`normalize`: bare LF/CR become CRLF but the SMTP-smuggling shapes get 550; `reject`: any bare LF/CR gets 550",
	"smtp.require_auth":                 "MAIL only after AUTH (default: true when [[smtp.user]] accounts exist)",
	"smtp.allowed_networks":             "client networks (CIDR) that may connect; others get 554 at connect",
	"smtp.accept_domains":               "recipient domains accepted; other RCPT domains get 550 (never an open relay). Required",
	"smtp.require_tls":                  "AUTH and MAIL only after STARTTLS",
	"smtp.tls_cert":                     "certificate file (PEM); STARTTLS is offered when tls_cert and tls_key are set",
	"smtp.tls_key":                      "private key file (PEM)",
	"smtp.user.name":                    "AUTH PLAIN/LOGIN account name",
	"smtp.user.password":                "its password (a secret: \"env:NAME\", \"file:/path\" or a literal)",
	"state.path":                        "the bbolt database (spool, outbox, incidents, audit)",
	"state.audit_max":                   "audit trail entries kept",
	"state.seen_ttl":                    "how long messages are remembered for dedupe",
	"http.listen":                       "/metrics, /healthz, /readyz over TCP; \"\" turns them off",
	"rules.dir":                         "every *.toml in it, in name order; edits apply without a restart",
	"rules.default_action":              "for mail no rule decides: ticket, quarantine or drop",
	"rules.watch_interval":              "how often the rules directory is checked for changes",
	"rules.on_header_injection":         "a decoded header holding CR/LF/NUL: quarantine, reject or ignore",
	"deliver.max_age":                   "transient PSA failures are retried this long, then the job goes to the dead letters",
	"deliver.backoff_min":               "first retry delay (exponential with jitter; Retry-After wins when longer)",
	"deliver.backoff_max":               "longest retry delay",
	"deliver.probe_interval":            "how often a provider paused after an authentication failure is probed",
	"deliver.attach_types":              "media types a rule's attach = true may upload (\"image/*\" allowed); executables and scripts never",
	"deliver.attach_max_bytes":          "largest file uploaded to a ticket",
	"log.level":                         "debug, info, warn or error",
	"log.format":                        "text or json",
	"client.name":                       "the client's name (unique); the {client} of keys and templates",
	"client.enabled":                    "false: mail is still decided and audited, but no PSA call is made",
	"client.recipients":                 "recipient addresses that select this client",
	"client.senders":                    "sender addresses or \"@domain\" that select (and pin) this client",
	"client.devices":                    "globs on the device name a rule extracted",
	"client.psa":                        "PSA settings for this client, key by key over [psa] (same keys)",
	"client.device.name":                "device (vault/appliance) name",
	"client.device.psa":                 "PSA settings for this device, over the client's",
	"psa":                               "organisation-wide PSA settings; see the keys below and docs/connectwise.md, docs/autotask.md",
	"deliver.PROVIDER.concurrency":      "concurrent calls to the provider",
	"deliver.PROVIDER.rate_per_minute":  "calls a minute (0: unlimited)",
	"deliver.PROVIDER.attach_types":     "overrides [deliver] attach_types for this provider",
	"deliver.PROVIDER.attach_max_bytes": "overrides [deliver] attach_max_bytes for this provider",
}

// keyDefaults describe defaults that depend on the machine or another key.
var keyDefaults = map[string]string{
	"smtp.hostname":     "the host name",
	"http.admin_socket": "`psagate-admin.sock` beside [state] path",
}

// fieldDocs reads the doc and line comments of every struct field in this
// package's sources, keyed "Type.Field".
func fieldDocs(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, fl := range st.Fields.List {
				text := strings.TrimSpace(fl.Doc.Text() + " " + fl.Comment.Text())
				for _, name := range fl.Names {
					docs[ts.Name.Name+"."+name.Name] = strings.Join(strings.Fields(text), " ")
				}
			}
			return false
		})
	}
	return docs
}

type refRow struct{ key, typ, def, doc string }

type refSection struct {
	header string
	rows   []refRow
}

func typeWord(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return "duration"
	case t == reflect.TypeFor[Secret]():
		return "secret"
	case t == reflect.TypeFor[Deadline]():
		return "time"
	case t.Kind() == reflect.Slice:
		return "list of " + typeWord(t.Elem()) + "s"
	case t.Kind() == reflect.Float64 || t.Kind() == reflect.Float32:
		return "number"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	}
	return t.Kind().String()
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// defaultOf finds the loaded value of key in the config built from a
// minimal file: the field with the same TOML name, else the same Go name.
func defaultOf(v reflect.Value, f reflect.StructField) string {
	if !v.IsValid() {
		return ""
	}
	for i := range v.NumField() {
		vf := v.Type().Field(i)
		if (tomlName(vf) == tomlName(f) && tomlName(f) != "") || vf.Name == f.Name {
			return show(v.Field(i))
		}
	}
	return ""
}

func show(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Type() == reflect.TypeFor[Duration]() {
		d := time.Duration(v.Interface().(Duration))
		switch {
		case d == 0:
			return ""
		case d%time.Hour == 0:
			return fmt.Sprintf("`%dh`", d/time.Hour)
		case d%time.Minute == 0:
			return fmt.Sprintf("`%dm`", d/time.Minute)
		}
		return "`" + d.String() + "`"
	}
	if v.IsZero() {
		return ""
	}
	switch v.Kind() {
	case reflect.Slice:
		var parts []string
		for i := range v.Len() {
			parts = append(parts, fmt.Sprintf("%q", fmt.Sprint(v.Index(i).Interface())))
		}
		return "`[" + strings.Join(parts, ", ") + "]`"
	case reflect.String:
		return fmt.Sprintf("`%q`", v.String())
	case reflect.Struct:
		return ""
	}
	return fmt.Sprintf("`%v`", v.Interface())
}

func buildReference(t *testing.T) string {
	t.Helper()
	docs := fieldDocs(t)
	dir := t.TempDir()
	min := filepath.Join(dir, "psagate.toml")
	if err := os.WriteFile(min, []byte("[smtp]\naccept_domains = [\"alerts.example.net\"]\n[psa]\nprovider = \"log\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadWithoutSecrets(min)
	if err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	cv := reflect.ValueOf(cfg).Elem()
	// Decoded under another name than it is kept.
	keyDefaults["deliver.attach_max_bytes"] = fmt.Sprintf("`%d`", cfg.Deliver.AttachMaxBytes)

	var sections []*refSection
	var missing []string
	var walk func(t reflect.Type, prefix, header string, loaded reflect.Value)
	walk = func(rt reflect.Type, prefix, header string, loaded reflect.Value) {
		sec := &refSection{header: header}
		sections = append(sections, sec)
		var nested []func()
		for i := range rt.NumField() {
			f := rt.Field(i)
			name := tomlName(f)
			if name == "" || name == "-" {
				continue
			}
			key := prefix + name
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			doc := keyNotes[key]
			if doc == "" {
				doc = docs[rt.Name()+"."+f.Name]
			}
			isTable := ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(reflect.TypeFor[encoding.TextUnmarshaler]())
			isList := ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct
			isPSA := ft.Kind() == reflect.Map
			switch {
			case isPSA:
				nested = append(nested, func() { psaSection(&sections, key, doc) })
			case isTable:
				var lv reflect.Value
				if loaded.IsValid() {
					for j := range loaded.NumField() {
						if tomlName(loaded.Type().Field(j)) == name {
							lv = loaded.Field(j)
						}
					}
				}
				if doc != "" && header == "" {
					keyNotes["§"+key] = doc
				}
				nested = append(nested, func() { walk(ft, key+".", "["+key+"]", lv) })
			case isList:
				nested = append(nested, func() { walk(ft.Elem(), key+".", "[["+key+"]]", reflect.Value{}) })
			default:
				if doc == "" {
					missing = append(missing, key)
				}
				def := keyDefaults[key]
				if def == "" {
					def = defaultOf(loaded, f)
				}
				// A comment that starts with the Go name speaks of the key.
				if strings.HasPrefix(doc, f.Name+" ") || strings.HasPrefix(doc, f.Name+",") {
					doc = "`" + name + "`" + strings.TrimPrefix(doc, f.Name)
				}
				sec.rows = append(sec.rows, refRow{key: name, typ: typeWord(ft), def: def, doc: doc})
			}
		}
		for _, n := range nested {
			n()
		}
	}
	walk(reflect.TypeFor[rawConfig](), "", "", cv)
	// [deliver.PROVIDER] tables are taken out of the document before the
	// decode (one per registered provider).
	pl := &refSection{header: "[deliver.PROVIDER]"}
	for i := range reflect.TypeFor[ProviderLimits]().NumField() {
		f := reflect.TypeFor[ProviderLimits]().Field(i)
		key := "deliver.PROVIDER." + tomlName(f)
		doc := keyNotes[key]
		if doc == "" {
			missing = append(missing, key)
		}
		pl.rows = append(pl.rows, refRow{key: tomlName(f), typ: typeWord(f.Type), doc: doc})
	}
	var provs []string
	for _, d := range psa.Registered() {
		provs = append(provs, fmt.Sprintf("`%s` %d/%s", d.Name, d.Limits.Concurrency, rate(d.Limits.RatePerMinute)))
	}
	pl.rows[0].def = "per provider: " + strings.Join(provs, ", ") + " (concurrency/rate)"
	sections = append(sections, pl)

	if len(missing) > 0 {
		t.Errorf("config keys without a meaning (add a doc comment to the field, or a keyNotes entry): %s", strings.Join(missing, ", "))
	}

	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("<!-- Generated from internal/config by `go test ./internal/config -run TestConfigReference -update`; do not edit by hand. -->\n\n")
	b.WriteString("Every key psagate's TOML configuration accepts, with its type and default. Unknown keys are\n" +
		"errors; every error names the file, line and key. A `secret` may be `\"env:NAME\"`, `\"file:/path\"` or\n" +
		"a literal. Durations are written like `\"60s\"`, `\"15m\"`, `\"24h\"`. `configs/example.toml` is a\n" +
		"commented example; `psagate check -config FILE` validates a file.\n")
	for _, s := range sections {
		if len(s.rows) == 0 {
			continue
		}
		if s.header == "" {
			continue
		}
		fmt.Fprintf(&b, "\n## `%s`\n\n", s.header)
		if n := keyNotes["§"+strings.Trim(s.header, "[]")]; n != "" {
			fmt.Fprintf(&b, "%s\n\n", n)
		}
		b.WriteString("| key | type | default | meaning |\n| --- | --- | --- | --- |\n")
		for _, r := range s.rows {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.key, r.typ, r.def, strings.ReplaceAll(r.doc, "|", "\\|"))
		}
	}
	return b.String()
}

func rate(r float64) string {
	if r == 0 {
		return "unlimited"
	}
	return fmt.Sprint(r)
}

// psaSection lists the keys of a [psa]-shaped table from the provider
// registry.
func psaSection(sections *[]*refSection, key, doc string) {
	sec := &refSection{header: "[" + key + "]"}
	if key != "psa" {
		// The same keys as [psa], each overriding the level above it.
		sec.rows = append(sec.rows, refRow{key: "(every key of [psa])", typ: "", doc: doc})
		*sections = append(*sections, sec)
		return
	}
	for _, k := range psa.GeneralKeys {
		sec.rows = append(sec.rows, refRow{key: k, typ: "string", doc: "shared by every provider (see README, \"Connecting a PSA\")"})
	}
	sec.rows[0].doc = "which PSA: " + strings.Join(psa.Names(), ", ")
	for _, d := range psa.Registered() {
		for _, k := range d.Keys {
			typ := "string"
			if slices.Contains(d.Secrets, k) {
				typ = "secret"
			}
			sec.rows = append(sec.rows, refRow{key: d.Name + "." + k, typ: typ, doc: d.Title + " setting (docs/" + d.Name + ".md)"})
		}
	}
	*sections = append(*sections, sec)
}

func TestConfigReference(t *testing.T) {
	got := buildReference(t)
	path := filepath.Join("..", "..", "docs", "config-reference.md")
	if *updateReference {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, err := os.ReadFile(path)
	if err != nil || string(old) != got {
		t.Fatalf("docs/config-reference.md is stale: run `go test ./internal/config -run TestConfigReference -update` (%v)", err)
	}
	for _, want := range []string{"`accept_domains`", "`[deliver.PROVIDER]`", "`connectwise.board`", "`shutdown_timeout`", "`[[client]]`"} {
		if !strings.Contains(got, want) {
			t.Errorf("the reference has no %s", want)
		}
	}
}
