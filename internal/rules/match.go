package rules

import (
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
)

// fold returns s under Unicode full case folding ("BÜRO" → "büro",
// "STRASSE" and "straße" → "strasse"), as golang.org/x/text/cases.Fold
// does. Full case folding is defined per character (CaseFolding.txt has no
// context rules), so it is computed rune by rune from a table; the
// automaton scan folds on the fly with the same table, which keeps the two
// in agreement by construction. ASCII text, by far the most common, takes a
// path that allocates only when there is an upper-case letter. Invalid
// UTF-8 bytes are kept as they are.
func fold(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/8)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
			i++
			continue
		}
		f, n := foldAt(s, i)
		b.WriteString(f)
		i += n
	}
	return b.String()
}

var (
	foldOnce sync.Once
	foldLow  [0x800]string   // fold of every rune below U+0800
	foldBits []uint64        // runes from U+0800 whose fold differs from themselves
	foldHigh map[rune]string // and their folds
)

// foldAt returns the fold of the non-ASCII rune (or invalid byte) at s[i]
// and its length in s.
func foldAt(s string, i int) (string, int) {
	foldOnce.Do(initFold)
	r, n := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && n == 1:
		return s[i : i+1], 1
	case r < 0x800:
		return foldLow[r], n
	case int(r>>6) < len(foldBits) && foldBits[r>>6]&(1<<(uint(r)&63)) != 0:
		return foldHigh[r], n
	}
	return s[i : i+n], n
}

// initFold builds the fold table with x/text. Only runes that have a case
// mapping (unicode.CaseRanges) or a special full folding (the ranges below)
// can fold; TestFoldTable checks that against x/text for every rune.
func initFold() {
	c := cases.Fold()
	for r := rune(0x80); r < 0x800; r++ {
		foldLow[r] = c.String(string(r))
	}
	foldHigh = map[rune]string{}
	add := func(r rune) {
		if r < 0x800 || !utf8.ValidRune(r) {
			return
		}
		if f := c.String(string(r)); f != string(r) {
			foldHigh[r] = f
			for int(r>>6) >= len(foldBits) {
				foldBits = append(foldBits, 0)
			}
			foldBits[r>>6] |= 1 << (uint(r) & 63)
		}
	}
	for _, cr := range unicode.CaseRanges {
		for r := rune(cr.Lo); r <= rune(cr.Hi); r++ {
			add(r)
		}
	}
	for _, rg := range [][2]rune{{0x1E96, 0x1E9E}, {0x1F50, 0x1FFF}, {0xFB00, 0xFB17}} {
		for r := rg[0]; r <= rg[1]; r++ {
			add(r)
		}
	}
}

// acMachine is an Aho-Corasick automaton, compiled to a DFA over byte
// classes, that finds every one of a set of folded literals in a text in
// one pass. The literals of all rules' `_contains` lists and the required
// literals of their regular expressions go into one machine per text
// (subject, body), so 1,000 rules cost one scan of the subject and at most
// one of the body, instead of one strings.Contains per literal.
//
// The literals are folded, and the scan folds the text as it reads it
// (ASCII upper-case letters simply share the class of their lower-case
// letter), so no folded copy of a long body is ever made.
type acMachine struct {
	class  [256]uint16
	ncls   int
	next   []int32 // next[state*ncls+class], while building
	trans  []int32 // the same as offsets, for scanning (see step)
	emits  []bool  // the state, or a state on its fail chain, ends a literal
	own    [][]int32
	dict   []int32 // nearest state on the fail chain with its own literals; 0 = none
	npat   int
	states int
}

// acBuilder collects distinct literals and gives each an id.
type acBuilder struct {
	ids  map[string]int32
	pats []string
}

func newACBuilder() *acBuilder { return &acBuilder{ids: map[string]int32{}} }

// add registers a folded, non-empty literal and returns its id.
func (b *acBuilder) add(lit string) int32 {
	if id, ok := b.ids[lit]; ok {
		return id
	}
	id := int32(len(b.pats))
	b.ids[lit] = id
	b.pats = append(b.pats, lit)
	return id
}

func (b *acBuilder) build() *acMachine {
	m := &acMachine{npat: len(b.pats)}
	n := 1
	for _, p := range b.pats {
		for i := 0; i < len(p); i++ {
			if m.class[p[i]] == 0 {
				m.class[p[i]] = uint16(n)
				n++
			}
		}
	}
	for c := 'A'; c <= 'Z'; c++ {
		m.class[c] = m.class[c+'a'-'A']
	}
	m.ncls = n

	// Trie.
	newState := func() int32 {
		for range m.ncls {
			m.next = append(m.next, -1)
		}
		m.own = append(m.own, nil)
		m.states++
		return int32(m.states - 1)
	}
	newState()
	for id, p := range b.pats {
		s := int32(0)
		for i := 0; i < len(p); i++ {
			c := int(m.class[p[i]])
			t := m.next[int(s)*m.ncls+c]
			if t < 0 {
				t = newState()
				m.next[int(s)*m.ncls+c] = t
			}
			s = t
		}
		m.own[s] = append(m.own[s], int32(id))
	}

	// Fail links, breadth first, turning the trie into a DFA.
	fail := make([]int32, m.states)
	m.dict = make([]int32, m.states)
	m.emits = make([]bool, m.states)
	queue := make([]int32, 0, m.states)
	for c := 0; c < m.ncls; c++ {
		if t := m.next[c]; t < 0 {
			m.next[c] = 0
		} else {
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		f := fail[u]
		if len(m.own[f]) > 0 {
			m.dict[u] = f
		} else {
			m.dict[u] = m.dict[f]
		}
		m.emits[u] = len(m.own[u]) > 0 || m.dict[u] != 0
		row := int(u) * m.ncls
		frow := int(f) * m.ncls
		for c := 0; c < m.ncls; c++ {
			t := m.next[row+c]
			if t < 0 {
				m.next[row+c] = m.next[frow+c]
				continue
			}
			if u == 0 {
				fail[t] = 0
			} else {
				fail[t] = m.next[frow+c]
			}
			queue = append(queue, t)
		}
	}
	m.trans = make([]int32, len(m.next))
	for i, t := range m.next {
		off := t * int32(m.ncls)
		if m.emits[t] {
			off = -off - 1
		}
		m.trans[i] = off
	}
	m.next, m.emits = nil, nil // only needed while building
	return m
}

// scan sets the bit of every literal found in the folded text, folding
// as it goes: an ASCII byte costs one table lookup, a non-ASCII rune a
// table lookup of its fold. Nothing is allocated.
func (m *acMachine) scan(text string, hits []uint64) {
	if m.npat == 0 {
		return
	}
	s := int32(0)
	for i := 0; i < len(text); {
		if c := text[i]; c < utf8.RuneSelf {
			s = m.step(s, c, hits)
			i++
			continue
		}
		f, n := foldAt(text, i)
		for j := 0; j < len(f); j++ {
			s = m.step(s, f[j], hits)
		}
		i += n
	}
}

// step moves from state offset s on byte c. Transitions hold the target's
// offset (state × classes), negated minus one when the target ends a literal.
func (m *acMachine) step(s int32, c byte, hits []uint64) int32 {
	t := m.trans[s+int32(m.class[c])]
	if t >= 0 {
		return t
	}
	t = -t - 1
	for u := t / int32(m.ncls); u != 0; u = m.dict[u] {
		for _, id := range m.own[u] {
			hits[id>>6] |= 1 << (uint(id) & 63)
		}
	}
	return t
}

func hasBit(hits []uint64, id int32) bool { return hits[id>>6]&(1<<(uint(id)&63)) != 0 }

// minPrefilterLit is the shortest literal worth a place in the prefilter:
// shorter ones are found in nearly every text and only cost scan time.
const minPrefilterLit = 3

// requiredLiterals analyses a parsed regular expression and returns
// literals a text must contain for it to match: every inner list must have
// at least one member in the (folded) text. It is a prefilter only; an
// empty result means "no requirement known", never "cannot match".
//
// The literals are made of ASCII characters only, lower-cased. That keeps
// the prefilter sound under case-insensitive matching: every rune RE2's
// (?i) equates with an ASCII letter (k, K and the Kelvin sign; s, S and
// long s) folds to that ASCII letter, so if the expression matches, the
// folded text contains the literal. Non-ASCII runes split literals.
func requiredLiterals(re *syntax.Regexp) [][]string {
	req := required(re, 0)
	// Keep the few most selective requirements: each costs a bit test at
	// evaluation and a place in the automaton.
	slices.SortStableFunc(req, func(a, b []string) int { return minLen(b) - minLen(a) })
	if len(req) > 4 {
		req = req[:4]
	}
	return req
}

func required(re *syntax.Regexp, depth int) [][]string {
	if depth > 100 { // deep nesting: give up rather than recurse without bound
		return nil
	}
	switch re.Op {
	case syntax.OpLiteral:
		var out [][]string
		for _, p := range asciiPieces(re.Rune) {
			out = append(out, []string{p})
		}
		return out
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0], depth+1)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0], depth+1)
		}
	case syntax.OpConcat:
		var out [][]string
		for _, sub := range re.Sub {
			out = append(out, required(sub, depth+1)...)
		}
		return out
	case syntax.OpAlternate:
		var set []string
		for _, sub := range re.Sub {
			r := required(sub, depth+1)
			if len(r) == 0 {
				return nil // this branch can match without any known literal
			}
			best := r[0]
			for _, alt := range r[1:] {
				if minLen(alt) > minLen(best) {
					best = alt
				}
			}
			set = append(set, best...)
		}
		slices.Sort(set)
		set = slices.Compact(set)
		if len(set) > 32 {
			return nil
		}
		return [][]string{set}
	}
	return nil
}

// asciiPieces splits runes at non-ASCII runes and returns the lower-cased
// ASCII runs long enough to be useful.
func asciiPieces(rs []rune) []string {
	var out []string
	var b strings.Builder
	end := func() {
		if b.Len() >= minPrefilterLit {
			out = append(out, b.String())
		}
		b.Reset()
	}
	for _, r := range rs {
		if r >= utf8.RuneSelf {
			end()
			continue
		}
		if r >= 'A' && r <= 'Z' {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	end()
	return out
}

func minLen(set []string) int {
	m := -1
	for _, s := range set {
		if m < 0 || len(s) < m {
			m = len(s)
		}
	}
	return m
}
