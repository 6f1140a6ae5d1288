package rules

import "math/bits"

// The rule index: evaluating 1,000 rules one by one costs tens of
// microseconds even when each fails at its first condition, so every rule
// gets a gate where possible, an `if` condition that must hold for the rule
// to match and that an index answers for all rules at once:
//
//   - from / to with addresses, @domains and globs ending in a literal
//     "@domain" or ".domain": a few map lookups per address of the message;
//   - subject_contains, or subject_matches whose expressions all require
//     literals: the subject automaton scan says which literals are present.
//
// Before the rules run, the rules whose gate may hold (plus those without a
// gate) are marked as candidates; only candidates are evaluated, in order.
// The gate marks a superset of the rules where it holds, and the candidate
// then evaluates all its conditions, so the decision is the same as
// evaluating every rule (Explain does that; the tests compare the two).

// addrIndex maps address patterns to the rules gated on them.
type addrIndex struct {
	exact  map[string][]int32
	domain map[string][]int32
	suffix map[string][]int32 // the literal tail of a glob, starting at "@" or "."
}

func newAddrIndex() *addrIndex {
	return &addrIndex{exact: map[string][]int32{}, domain: map[string][]int32{}, suffix: map[string][]int32{}}
}

func (ix *addrIndex) empty() bool {
	return len(ix.exact) == 0 && len(ix.domain) == 0 && len(ix.suffix) == 0
}

// indexable reports whether every pattern of an address condition can be
// looked up.
func indexable(c *cond) bool {
	for _, p := range c.addrs {
		if p.kind == addrGlob && (p.suffix == "" || p.suffix[0] != '@' && p.suffix[0] != '.') {
			return false
		}
	}
	return len(c.addrs) > 0
}

func (ix *addrIndex) add(c *cond, rule int32) {
	for _, p := range c.addrs {
		switch p.kind {
		case addrExact:
			ix.exact[p.s] = appendRule(ix.exact[p.s], rule)
		case addrDomain:
			ix.domain[p.s] = appendRule(ix.domain[p.s], rule)
		default:
			ix.suffix[p.suffix] = appendRule(ix.suffix[p.suffix], rule)
		}
	}
}

func appendRule(rs []int32, r int32) []int32 {
	if n := len(rs); n > 0 && rs[n-1] == r {
		return rs
	}
	return append(rs, r)
}

// mark sets the candidate bit of every rule whose gate the address a may
// satisfy.
func (ix *addrIndex) mark(a addr, cand []uint64) {
	markAll(ix.exact[a.full], cand)
	markAll(ix.domain[a.domain], cand)
	if len(ix.suffix) == 0 {
		return
	}
	for i := 0; i < len(a.full); i++ {
		if c := a.full[i]; c == '@' || c == '.' {
			markAll(ix.suffix[a.full[i:]], cand)
		}
	}
}

func markAll(rs []int32, cand []uint64) {
	for _, r := range rs {
		cand[r>>6] |= 1 << (uint(r) & 63)
	}
}

// buildIndex chooses each rule's gate and fills the indexes.
func (s *Set) buildIndex() {
	n := len(s.rules)
	s.ungated = make([]uint64, (n+63)/64)
	s.fromIx, s.toIx = newAddrIndex(), newAddrIndex()
	s.subjGate = make([][]int32, s.subjAC.npat)
	for i, r := range s.rules {
		ri := int32(i)
		if g := gateOf(r); g != nil {
			switch g.kind {
			case kFrom:
				s.fromIx.add(g, ri)
			case kTo:
				s.toIx.add(g, ri)
			case kSubjectContains:
				for _, id := range g.ids {
					s.subjGate[id] = appendRule(s.subjGate[id], ri)
				}
			case kSubjectMatches:
				for _, e := range g.res {
					for _, id := range e.pre[0] {
						s.subjGate[id] = appendRule(s.subjGate[id], ri)
					}
				}
			}
			s.gated++
			continue
		}
		s.ungated[i>>6] |= 1 << (uint(i) & 63)
	}
	for _, rs := range s.subjGate {
		if len(rs) > 0 {
			s.hasSubjGate = true
			break
		}
	}
}

// gateOf picks the condition of r that gates it: sender addresses are the
// most selective and need no scan, then subject literals, then recipients
// (which many rules share). nil when r has none.
func gateOf(r *Rule) *cond {
	var subj, to *cond
	for _, c := range r.ifs {
		switch c.kind {
		case kFrom:
			if indexable(c) {
				return c
			}
		case kTo:
			if to == nil && indexable(c) {
				to = c
			}
		case kSubjectContains:
			if subj == nil {
				subj = c
			}
		case kSubjectMatches:
			ok := len(c.res) > 0
			for _, e := range c.res {
				ok = ok && len(e.pre) > 0
			}
			if subj == nil && ok {
				subj = c
			}
		}
	}
	if subj != nil {
		return subj
	}
	return to
}

// candidates returns the rules to evaluate for the message of st.
func (st *state) candidates() []uint64 {
	s := st.set
	cand := st.cand
	copy(cand, s.ungated)
	if s.gated == 0 {
		return cand
	}
	if !s.fromIx.empty() || !s.toIx.empty() {
		st.addrs()
		for _, a := range st.from {
			s.fromIx.mark(a, cand)
		}
		if !s.toIx.empty() {
			for _, a := range st.to {
				s.toIx.mark(a, cand)
			}
		}
	}
	if s.hasSubjGate {
		for w, x := range st.subjectHits() {
			for x != 0 {
				id := w*64 + bits.TrailingZeros64(x)
				x &= x - 1
				markAll(s.subjGate[id], cand)
			}
		}
	}
	return cand
}
