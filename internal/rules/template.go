package rules

import (
	"fmt"
	"strings"
)

// Template is a text with {field} placeholders, such as
// "{device}: backup failed". "{{" and "}}" stand for literal braces. Field
// names are letters, digits and underscores, like the named groups of a
// regular expression.
type Template struct {
	src   string
	parts []tplPart
	size  int // bytes of literal text, to size the output
}

type tplPart struct {
	lit   string
	field string // placeholder when non-empty
}

// ParseTemplate parses s. It checks only the syntax; which field names are
// known is decided by the rule set (see Compile).
func ParseTemplate(s string) (*Template, error) {
	t := &Template{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, tplPart{lit: lit.String()})
			t.size += lit.Len()
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '{':
			if i+1 < len(s) && s[i+1] == '{' {
				lit.WriteByte('{')
				i++
				continue
			}
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return nil, fmt.Errorf(`unclosed "{" at character %d (write "{{" for a literal brace)`, i+1)
			}
			name := s[i+1 : i+1+end]
			if name == "" {
				return nil, fmt.Errorf(`empty placeholder "{}" at character %d (write "{{}}" for literal braces)`, i+1)
			}
			if !isFieldName(name) {
				return nil, fmt.Errorf(`bad placeholder %q at character %d: field names are letters, digits and "_" (write "{{" and "}}" for literal braces)`, "{"+name+"}", i+1)
			}
			flush()
			t.parts = append(t.parts, tplPart{field: name})
			i += end + 1
		case '}':
			if i+1 < len(s) && s[i+1] == '}' {
				lit.WriteByte('}')
				i++
				continue
			}
			return nil, fmt.Errorf(`single "}" at character %d (write "}}" for a literal brace)`, i+1)
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return t, nil
}

// mustTemplate is ParseTemplate for the package's own constant templates.
func mustTemplate(s string) *Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

// Render replaces every placeholder by its value in fields; a field absent
// from fields renders as "". Render cuts nothing and adds nothing: the
// caller sanitises the result for where it goes (one line for a summary,
// text for a description). A nil Template renders as "".
func (t *Template) Render(fields map[string]string) string {
	if t == nil {
		return ""
	}
	if len(t.parts) == 1 && t.parts[0].field == "" {
		return t.parts[0].lit
	}
	var b strings.Builder
	n := t.size
	for _, p := range t.parts {
		if p.field != "" {
			n += len(fields[p.field])
		}
	}
	b.Grow(n)
	for _, p := range t.parts {
		if p.field != "" {
			b.WriteString(fields[p.field])
		} else {
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// String returns the template as written in the rule file.
func (t *Template) String() string {
	if t == nil {
		return ""
	}
	return t.src
}

// Fields returns the placeholder names in order of appearance, each once.
func (t *Template) Fields() []string {
	if t == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range t.parts {
		if p.field != "" && !seen[p.field] {
			seen[p.field] = true
			out = append(out, p.field)
		}
	}
	return out
}

// isFieldName reports whether s can name a field: the characters RE2
// allows in a group name.
func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
