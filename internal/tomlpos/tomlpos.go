// Package tomlpos finds the line of every key in a TOML document, so that
// config and rule errors can say "rules/veeam.toml:42" rather than only the
// key. BurntSushi/toml reports positions for syntax errors but not for the
// keys it decoded, and an admin needs the line for a typo or a bad regex too.
//
// It is a line scanner, not a parser: it runs only on documents that
// BurntSushi/toml has already accepted, and it understands exactly what it
// needs to (table headers, array tables, dotted and quoted keys, strings,
// comments and values spanning lines).
package tomlpos

import (
	"fmt"
	"strings"
)

// Entry is one key or table header and the line (1-based) it is on.
// Path elements of array tables carry their index: ["rule[2]", "if", "from"].
type Entry struct {
	Path []string
	Line int
}

// Index maps key paths to lines.
type Index struct {
	entries []Entry
	lines   map[string]int
}

// New indexes data.
func New(data []byte) *Index {
	ix := &Index{lines: map[string]int{}}
	counts := map[string]int{} // array-table path (with parent indexes) -> entries seen
	arrays := map[string]bool{}
	var current []string
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimSpace(strings.TrimSuffix(lines[i], "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "[[") {
			name := splitKey(strings.TrimSpace(headerBody(line[2:], "]]")))
			parent := resolve(name[:len(name)-1], arrays, counts)
			arrPath := strings.Join(append(append([]string{}, parent...), name[len(name)-1]), ".")
			arrays[stripIndexes(arrPath)] = true
			idx := counts[arrPath]
			counts[arrPath] = idx + 1
			current = append(parent, fmt.Sprintf("%s[%d]", name[len(name)-1], idx))
			ix.add(current, lineNo)
			continue
		}
		if line[0] == '[' {
			name := splitKey(strings.TrimSpace(headerBody(line[1:], "]")))
			current = resolve(name, arrays, counts)
			ix.add(current, lineNo)
			continue
		}
		key, rest, ok := splitAssign(line)
		if !ok {
			continue
		}
		path := append(append([]string{}, current...), splitKey(key)...)
		ix.add(path, lineNo)
		// Skip the continuation lines of a multi-line value.
		i += continuation(rest, lines[i+1:])
	}
	return ix
}

func (ix *Index) add(path []string, line int) {
	p := append([]string(nil), path...)
	ix.entries = append(ix.entries, Entry{Path: p, Line: line})
	k := strings.Join(p, ".")
	if _, ok := ix.lines[k]; !ok {
		ix.lines[k] = line
	}
}

// Entries returns every key and table header in document order.
func (ix *Index) Entries() []Entry { return ix.entries }

// Line returns the line of the key at path (elements as in Entry.Path, or a
// single dotted string). When the exact key is absent it returns the line of
// its longest present prefix (the table it would be in), or 0.
func (ix *Index) Line(path ...string) int {
	var parts []string
	for _, p := range path {
		parts = append(parts, strings.Split(p, ".")...)
	}
	for n := len(parts); n > 0; n-- {
		if l, ok := ix.lines[strings.Join(parts[:n], ".")]; ok {
			return l
		}
	}
	return 0
}

// LinesOf returns the lines of every entry whose path, with array indexes
// removed, equals key (e.g. "rule.if.subjct" for a typo in any rule).
func (ix *Index) LinesOf(key string) []int {
	var out []int
	for _, e := range ix.entries {
		if stripIndexes(strings.Join(e.Path, ".")) == key {
			out = append(out, e.Line)
		}
	}
	return out
}

// EntriesOf is LinesOf returning the entries, so callers see the indexes.
func (ix *Index) EntriesOf(key string) []Entry {
	var out []Entry
	for _, e := range ix.entries {
		if stripIndexes(strings.Join(e.Path, ".")) == key {
			out = append(out, e)
		}
	}
	return out
}

// resolve turns a table name into a path with the current index of every
// array table along it.
func resolve(name []string, arrays map[string]bool, counts map[string]int) []string {
	var out []string
	for _, n := range name {
		plain := stripIndexes(strings.Join(append(append([]string{}, out...), n), "."))
		if arrays[plain] {
			arrPath := strings.Join(append(append([]string{}, out...), n), ".")
			idx := counts[arrPath] - 1
			if idx < 0 {
				idx = 0
			}
			out = append(out, fmt.Sprintf("%s[%d]", n, idx))
			continue
		}
		out = append(out, n)
	}
	return out
}

func stripIndexes(p string) string {
	if !strings.Contains(p, "[") {
		return p
	}
	var b strings.Builder
	skip := false
	for _, r := range p {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// headerBody returns the text of a table header up to its closing bracket,
// ignoring brackets inside quoted keys.
func headerBody(s, closing string) string {
	inQ := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inQ != 0 {
			if c == inQ {
				inQ = 0
			}
			continue
		}
		if c == '"' || c == '\'' {
			inQ = c
			continue
		}
		if strings.HasPrefix(s[i:], closing) {
			return s[:i]
		}
	}
	return s
}

// splitKey splits a dotted key, honouring quoted parts.
func splitKey(k string) []string {
	var parts []string
	var cur strings.Builder
	inQ := byte(0)
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case inQ != 0:
			if c == '\\' && inQ == '"' && i+1 < len(k) {
				i++
				cur.WriteByte(k[i])
				continue
			}
			if c == inQ {
				inQ = 0
				continue
			}
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			inQ = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, strings.TrimSpace(cur.String()))
	return parts
}

// splitAssign splits "key = value" at the first '=' outside quotes.
func splitAssign(line string) (key, rest string, ok bool) {
	inQ := byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		if inQ != 0 {
			if c == inQ {
				inQ = 0
			}
			continue
		}
		switch c {
		case '"', '\'':
			inQ = c
		case '=':
			return strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:]), true
		case '#':
			return "", "", false
		}
	}
	return "", "", false
}

// continuation returns how many of the following lines belong to a value
// that starts with rest: an unclosed array or inline table, or a multi-line
// string.
func continuation(rest string, next []string) int {
	st := scanState{}
	st.feed(rest)
	n := 0
	for st.open() && n < len(next) {
		st.feed(next[n])
		n++
	}
	return n
}

type scanState struct {
	depth int    // [ and { nesting
	multi string // `"""` or `'''` while inside a multi-line string
}

func (s *scanState) open() bool { return s.depth > 0 || s.multi != "" }

func (s *scanState) feed(line string) {
	for i := 0; i < len(line); i++ {
		if s.multi != "" {
			if strings.HasPrefix(line[i:], s.multi) {
				i += 2
				s.multi = ""
			} else if line[i] == '\\' && s.multi == `"""` {
				i++
			}
			continue
		}
		c := line[i]
		switch {
		case strings.HasPrefix(line[i:], `"""`), strings.HasPrefix(line[i:], `'''`):
			s.multi = line[i : i+3]
			i += 2
		case c == '"':
			i++
			for i < len(line) && line[i] != '"' {
				if line[i] == '\\' {
					i++
				}
				i++
			}
		case c == '\'':
			i++
			for i < len(line) && line[i] != '\'' {
				i++
			}
		case c == '#':
			return
		case c == '[' || c == '{':
			s.depth++
		case c == ']' || c == '}':
			if s.depth > 0 {
				s.depth--
			}
		}
	}
}
