package testutil

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// LeakFragment is the length of the pieces of a raw secret that must not
// appear either: a secret cut short (by a truncation before the scrub)
// still gives most of it away.
const LeakFragment = 12

// NamedText is a string to look for, with what it is.
type NamedText struct{ Name, Text string }

// Secrets knows every secret of a secret-leak test and every form in which
// one could leak: the value, its encodings (base64, URL, userinfo, JSON,
// Go quoting), values derived from it (tokens) and 12-character pieces.
type Secrets struct {
	raw   []NamedText // the secrets themselves
	forms []NamedText // derived values, then encodings (whole strings)
}

// Add registers a secret and its encoded forms.
func (s *Secrets) Add(name, v string) {
	s.raw = append(s.raw, NamedText{name, v})
	seen := map[string]bool{v: true}
	form := func(kind, f string) {
		if f != "" && !seen[f] {
			seen[f] = true
			s.forms = append(s.forms, NamedText{name + " (" + kind + ")", f})
		}
	}
	// Unpadded base64 is a prefix of the padded one, so it finds both.
	form("base64", base64.RawStdEncoding.EncodeToString([]byte(v)))
	form("base64url", base64.RawURLEncoding.EncodeToString([]byte(v)))
	form("query-escaped", url.QueryEscape(v))
	form("path-escaped", url.PathEscape(v))
	form("userinfo-escaped", url.UserPassword("u", v).String()[2:])
	j, _ := json.Marshal(v)
	form("JSON-escaped", string(j[1:len(j)-1]))
	form("Go-quoted", strings.Trim(strconv.Quote(v), `"`))
}

// Derived adds a value built from secrets (an Authorization token, an AUTH
// PLAIN response) that must not appear as a whole.
func (s *Secrets) Derived(name, v string) {
	s.forms = append([]NamedText{{name, v}}, s.forms...)
}

// Forms returns the derived values and encodings looked for.
func (s *Secrets) Forms() []NamedText { return s.forms }

// All returns the secrets and then every form looked for.
func (s *Secrets) All() []NamedText { return append(append([]NamedText{}, s.raw...), s.forms...) }

// Find returns a description of every secret form in data, with a little
// context in which the secret itself is masked. Whole derived values and
// encodings are looked for first and masked once found, so that a token is
// reported once and not again as the pieces it is made of.
func (s *Secrets) Find(data string) []string {
	var out []string
	report := func(name, needle string) {
		i := strings.Index(data, needle)
		lo, hi := max(0, i-60), min(len(data), i+len(needle)+60)
		ctx := strings.ReplaceAll(data[lo:i]+"‹"+name+"›"+data[i+len(needle):hi], "\n", "⏎")
		ctx = strings.ToValidUTF8(ctx, "")
		out = append(out, fmt.Sprintf("%s, in …%s…", name, ctx))
		data = strings.ReplaceAll(data, needle, "‹"+name+"›")
	}
	for _, f := range s.forms {
		if strings.Contains(data, f.Text) {
			report(f.Name, f.Text)
		}
	}
	for _, r := range s.raw {
		if strings.Contains(data, r.Text) {
			report(r.Name, r.Text)
			continue
		}
		for i := 0; i+LeakFragment <= len(r.Text); i++ {
			if piece := r.Text[i : i+LeakFragment]; strings.Contains(data, piece) {
				report(fmt.Sprintf("%s (the piece %q)", r.Name, piece), piece)
				break
			}
		}
	}
	return out
}

// Check fails the test for every secret form found in data.
func (s *Secrets) Check(t testing.TB, where, data string) {
	t.Helper()
	for _, leak := range s.Find(data) {
		t.Errorf("LEAK in %s: %s", where, leak)
	}
}
