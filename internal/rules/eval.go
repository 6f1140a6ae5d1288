package rules

import (
	"math/bits"
	"net/netip"
	"regexp"
	"strings"

	"psagate/internal/glob"
	"psagate/internal/message"
	"psagate/internal/sanitize"
)

// Input is what a rule set decides on.
type Input struct {
	Alert *message.Alert
	// Client is the client the message was routed to from its recipients
	// and senders before the rules run; "" when none.
	Client string
}

// Decision is the outcome of evaluating a rule set for one message.
type Decision struct {
	// Rule is the rule that decided, nil when none did and the default
	// action applies.
	Rule   *Rule
	Action Action
	// Then is the deciding rule's Then, or the default's when Rule is nil;
	// never nil. It is shared: do not modify it.
	Then *Then
	// Fields are the extracted fields of the deciding rule and of the
	// stop = false rules that matched before it (never nil).
	Fields map[string]string
	// Audit lists the audit-mode rules that matched, in order.
	Audit []*Rule
	// Matched lists the enforce-mode rules that matched, in order: the
	// stop = false rules of the chain, then the deciding rule.
	Matched []*Rule
}

// Outcomes of a rule in a Trace.
const (
	OutcomeMatched    = "matched"
	OutcomeAuditMatch = "audit-match"
	OutcomeNoMatch    = "no-match"
	OutcomeExcepted   = "excepted"
	OutcomeNotReached = "not-reached"
)

// Trace is what happened to one rule while a message was evaluated.
type Trace struct {
	Rule    *Rule
	Outcome string // matched, audit-match, no-match, excepted, not-reached
	Decided bool   // this rule's decision is the final one
	Conds   []CondTrace
}

// CondTrace is the result of one condition. Conditions are listed in the
// order they are evaluated (cheapest first); exceptions only when every
// condition held.
type CondTrace struct {
	Section string // "if" or "except"
	Key     string // "subject_contains", "header.X-Mailer", ...
	Held    bool
	Detail  string // e.g. `"Connection:" found in subject`
}

type condKind uint8

// Condition kinds, in the order a rule evaluates them: cheap comparisons
// first, then the automaton lookups, then regular expressions.
const (
	kClient condKind = iota
	kHasAttachment
	kSizeOver
	kAuthenticated
	kDKIMDomain
	kSenderIP
	kFrom
	kTo
	kSubjectContains
	kHeader
	kBodyContains
	kSubjectMatches
	kAttachName
	kBodyMatches
	kExtracted // last: it runs the rule's extract expressions
)

const (
	targetSubject uint8 = iota
	targetBody
	targetAttach
)

// cond is one compiled condition.
type cond struct {
	kind     condKind
	key      string
	line     int
	values   []string // as written, for traces
	addrs    []addrPat
	prefixes []netip.Prefix
	lits     []string // folded (contains, header)
	ids      []int32  // automaton ids of lits
	target   uint8
	res      []*regexEntry
	header   string // lower-case header name
	b        bool
	n        int64
	rule     *Rule // kExtracted: the rule whose extraction it tests
}

type addrKind uint8

const (
	addrExact addrKind = iota
	addrDomain
	addrGlob
)

type addrPat struct {
	kind addrKind
	s    string // lower-case; the domain without "@" for addrDomain
	// For globs: the literal text before the first and after the last
	// wildcard, which a candidate must start and end with. Checking them
	// first rejects nearly every address without running the matcher.
	prefix, suffix string
}

// regexEntry is one distinct expression over one text. Its result is
// computed at most once per message.
type regexEntry struct {
	id     int
	re     *regexp.Regexp
	src    string
	target uint8
	pre    [][]int32 // prefilter: each inner list needs one literal present
}

type extractor struct {
	key    string
	re     *regexp.Regexp
	fields []string
	named  bool
}

// addr is one address of the message, lower-cased, with its domain.
type addr struct {
	full, domain, src string
}

// state is the per-evaluation scratch space: lazily computed views of the
// message (addresses, automaton hits, regex results). States are pooled per
// Set so that an evaluation does not allocate them.
type state struct {
	a        *message.Alert
	client   string
	addrDone bool
	from     []addr
	to       []addr
	subjDone bool
	bodyDone bool
	subjBits []uint64
	bodyBits []uint64
	memo     []uint8  // per regexEntry: 0 unknown, 1 no match, 2 match
	cand     []uint64 // candidate rules (index.go)
	set      *Set
}

func newState(s *Set) *state {
	return &state{
		set:      s,
		subjBits: make([]uint64, (s.subjAC.npat+63)/64),
		bodyBits: make([]uint64, (s.bodyAC.npat+63)/64),
		memo:     make([]uint8, s.nre),
		cand:     make([]uint64, (len(s.rules)+63)/64),
	}
}

func (s *Set) acquire(a *message.Alert, client string) *state {
	st := s.pool.Get().(*state)
	st.a, st.client = a, client
	return st
}

func (s *Set) release(st *state) {
	st.a, st.client = nil, ""
	if st.addrDone {
		clear(st.from)
		clear(st.to)
		st.from, st.to = st.from[:0], st.to[:0]
		st.addrDone = false
	}
	if st.subjDone {
		clear(st.subjBits)
		st.subjDone = false
	}
	if st.bodyDone {
		clear(st.bodyBits)
		st.bodyDone = false
	}
	clear(st.memo)
	s.pool.Put(st)
}

func (st *state) addrs() {
	if st.addrDone {
		return
	}
	st.addrDone = true
	a := st.a
	st.from = appendAddr(st.from, a.From, "From header")
	st.from = appendAddr(st.from, a.MailFrom, "envelope sender")
	for _, r := range a.RcptTo {
		st.to = appendAddr(st.to, r, "envelope recipient")
	}
	for _, t := range a.To {
		st.to = appendAddr(st.to, t, "To/Cc header")
	}
}

func appendAddr(dst []addr, s, src string) []addr {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return dst
	}
	s = strings.ToLower(s)
	dom := ""
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		dom = s[i+1:]
	}
	return append(dst, addr{full: s, domain: dom, src: src})
}

func (st *state) subjectHits() []uint64 {
	if !st.subjDone {
		st.subjDone = true
		st.set.subjAC.scan(st.a.Subject, st.subjBits)
	}
	return st.subjBits
}

func (st *state) bodyHits() []uint64 {
	if !st.bodyDone {
		st.bodyDone = true
		st.set.bodyAC.scan(st.a.Text, st.bodyBits)
	}
	return st.bodyBits
}

func anyBit(hits []uint64, ids []int32) bool {
	for _, id := range ids {
		if hasBit(hits, id) {
			return true
		}
	}
	return false
}

// regex returns whether e matches its text, running it at most once per
// message and only when the literals it needs are present.
func (st *state) regex(e *regexEntry) bool {
	switch st.memo[e.id] {
	case 1:
		return false
	case 2:
		return true
	}
	ok := false
	switch e.target {
	case targetAttach:
		for i := range st.a.Attachments {
			if e.re.MatchString(st.a.Attachments[i].Name) {
				ok = true
				break
			}
		}
	case targetSubject, targetBody:
		text, hits := st.a.Subject, []uint64(nil)
		if e.target == targetBody {
			text = st.a.Text
		}
		ok = true
		for _, set := range e.pre {
			if hits == nil {
				if e.target == targetBody {
					hits = st.bodyHits()
				} else {
					hits = st.subjectHits()
				}
			}
			if !anyBit(hits, set) {
				ok = false
				break
			}
		}
		ok = ok && e.re.MatchString(text)
	}
	st.memo[e.id] = 1
	if ok {
		st.memo[e.id] = 2
	}
	return ok
}

func matchAddr(p addrPat, c addr) bool {
	switch p.kind {
	case addrExact:
		return c.full == p.s
	case addrDomain:
		return c.domain == p.s
	default:
		return len(c.full) >= len(p.prefix)+len(p.suffix) &&
			strings.HasSuffix(c.full, p.suffix) && strings.HasPrefix(c.full, p.prefix) &&
			glob.Match(p.s, c.full) // both lower-case already
	}
}

// holds is the fast evaluation of a condition.
func (st *state) holds(c *cond) bool {
	a := st.a
	switch c.kind {
	case kClient:
		if st.client == "" {
			return false
		}
		for _, v := range c.values {
			if strings.EqualFold(v, st.client) {
				return true
			}
		}
	case kHasAttachment:
		return (len(a.Attachments) > 0) == c.b
	case kSizeOver:
		return int64(a.Size) > c.n
	case kAuthenticated:
		return (a.Auth != nil && a.Auth.Authenticated) == c.b
	case kDKIMDomain:
		return dkimDomain(a, c.lits) != ""
	case kSenderIP:
		ip := a.RemoteIP.Unmap().WithZone("")
		if !ip.IsValid() {
			return false
		}
		for _, p := range c.prefixes {
			if p.Contains(ip) {
				return true
			}
		}
	case kFrom, kTo:
		st.addrs()
		cands := st.from
		if c.kind == kTo {
			cands = st.to
		}
		for i := range cands {
			for _, p := range c.addrs {
				if matchAddr(p, cands[i]) {
					return true
				}
			}
		}
	case kSubjectContains:
		return anyBit(st.subjectHits(), c.ids)
	case kBodyContains:
		return anyBit(st.bodyHits(), c.ids)
	case kHeader:
		for _, v := range a.Header[c.header] {
			fv := fold(v)
			for _, lit := range c.lits {
				if strings.Contains(fv, lit) {
					return true
				}
			}
		}
	case kSubjectMatches, kBodyMatches, kAttachName:
		for _, e := range c.res {
			if st.regex(e) {
				return true
			}
		}
	case kExtracted:
		ok, _ := st.extracted(c)
		return ok
	}
	return false
}

// extracted runs the extraction of c's rule and reports whether it set one
// of c's fields, and which.
func (st *state) extracted(c *cond) (bool, string) {
	fields := map[string]string{}
	st.extract(c.rule, fields)
	for _, f := range c.values {
		if fields[f] != "" {
			return true, f
		}
	}
	return false, ""
}

// Evaluate decides what to do with the message.
func (s *Set) Evaluate(in Input) Decision {
	return s.run(in, nil)
}

// Explain is Evaluate that also reports, for every rule, what happened and
// why: the message trace of `psagate try -explain`.
func (s *Set) Explain(in Input) (Decision, []Trace) {
	tr := make([]Trace, 0, len(s.rules))
	d := s.run(in, &tr)
	return d, tr
}

func (s *Set) run(in Input, tr *[]Trace) Decision {
	a := in.Alert
	if a == nil {
		a = &message.Alert{}
	}
	st := s.acquire(a, in.Client)
	defer s.release(st)

	d := Decision{Fields: map[string]string{}}
	if tr == nil {
		// Only the candidates of the index, in order.
	scan:
		for w, x := range st.candidates() {
			for x != 0 {
				i := w*64 + bits.TrailingZeros64(x)
				x &= x - 1
				r := s.rules[i]
				if st.outcome(r) == OutcomeMatched && d.accept(st, r) {
					break scan
				}
			}
		}
	} else {
		// Every rule, for the trace.
		decided := -1
		for i, r := range s.rules {
			out, conds := st.trace(r)
			stop := false
			if out == OutcomeMatched {
				stop = d.accept(st, r)
				if r.Mode == ModeAudit {
					out = OutcomeAuditMatch
				} else {
					decided = i
				}
			}
			*tr = append(*tr, Trace{Rule: r, Outcome: out, Conds: conds})
			if stop {
				for _, rest := range s.rules[i+1:] {
					*tr = append(*tr, Trace{Rule: rest, Outcome: OutcomeNotReached})
				}
				break
			}
		}
		if decided >= 0 {
			(*tr)[decided].Decided = true
		}
	}
	if d.Rule == nil {
		d.Then = s.def
	} else {
		d.Then = d.Rule.Then
	}
	d.Action = d.Then.Action
	return d
}

// accept records that r matched and reports whether evaluation stops.
func (d *Decision) accept(st *state, r *Rule) bool {
	if r.Mode == ModeAudit {
		d.Audit = append(d.Audit, r)
		return false
	}
	d.Matched = append(d.Matched, r)
	d.Rule = r
	st.extract(r, d.Fields)
	return r.Stop
}

// outcome is the fast path: conditions in cost order, stopping at the
// first that decides.
func (st *state) outcome(r *Rule) string {
	for _, c := range r.ifs {
		if !st.holds(c) {
			return OutcomeNoMatch
		}
	}
	for _, c := range r.excepts {
		if st.holds(c) {
			return OutcomeExcepted
		}
	}
	return OutcomeMatched
}

// extract runs r's [rule.extract] expressions against the subject, then
// the body, and stores what they captured in fields.
func (st *state) extract(r *Rule, fields map[string]string) {
	done := ""
	for _, ex := range r.extracts {
		if ex.key == done {
			continue // an earlier expression of the same list matched
		}
		text := st.a.Subject
		m := ex.re.FindStringSubmatchIndex(text)
		if m == nil {
			text = st.a.Text
			m = ex.re.FindStringSubmatchIndex(text)
		}
		if m == nil {
			continue
		}
		set1 := false
		set := func(name string, g int) {
			if m[2*g] < 0 {
				return
			}
			if v := strings.TrimSpace(sanitize.Line(text[m[2*g]:m[2*g+1]])); v != "" {
				fields[name] = v
				set1 = true
			}
		}
		switch {
		case ex.named:
			for g, name := range ex.re.SubexpNames() {
				if name != "" {
					set(name, g)
				}
			}
		case ex.re.NumSubexp() >= 1:
			set(ex.key, 1)
		default:
			set(ex.key, 0)
		}
		if set1 {
			done = ex.key
		}
	}
}
