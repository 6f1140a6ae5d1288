package rules

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"psagate/internal/tomlpos"
)

var (
	ruleKeys = []string{"name", "priority", "mode", "stop", "require_auth", "if", "except", "extract", "then"}
	condKeys = []string{"from", "to", "sender_ip", "subject_contains", "subject_matches", "body_contains",
		"body_matches", "header", "has_attachment", "attachment_name_matches", "size_over", "client",
		"authenticated", "dkim_domain", "extracted"}
	thenKeys = []string{"action", "text", "key", "check", "summary", "description", "note", "delay",
		"repeat", "reopen", "expect", "attach", "priority", "due_in", "psa", "after_manual_close", "severity", "escalate_priority"}

	// thenApplies lists, for each key of [rule.then] besides action, the
	// actions it has an effect with. A key that does nothing with the rule's
	// action is refused: the admin meant something else.
	thenApplies = map[string][]Action{
		"text":        {ActionReject},
		"key":         {ActionTicket, ActionNote, ActionClose, ActionQuarantine},
		"check":       {ActionTicket, ActionNote, ActionClose, ActionQuarantine},
		"summary":     {ActionTicket, ActionNote, ActionClose, ActionQuarantine},
		"description": {ActionTicket, ActionNote, ActionClose, ActionQuarantine},
		"note":        {ActionTicket, ActionNote, ActionClose},
		"delay":       {ActionTicket},
		"repeat":      {ActionTicket},
		"reopen":      {ActionTicket},
		"expect":      {ActionTicket, ActionNote, ActionClose},
		"attach":      {ActionTicket, ActionNote, ActionClose},
		"priority":    {ActionTicket, ActionNote, ActionClose},
		"due_in":      {ActionTicket},
		"psa":         {ActionTicket, ActionNote, ActionClose},

		"after_manual_close": {ActionTicket},
		"severity":           {ActionTicket},
		"escalate_priority":  {ActionTicket},
	}
)

type compiler struct {
	errs    []*Error
	rules   []*Rule
	subj    *acBuilder
	body    *acBuilder
	reIDs   map[string]*regexEntry
	regexes []*regexEntry
}

func newCompiler() *compiler {
	return &compiler{subj: newACBuilder(), body: newACBuilder(), reIDs: map[string]*regexEntry{}}
}

// ruleCtx carries what error messages of one rule need.
type ruleCtx struct {
	c    *compiler
	file string
	ix   *tomlpos.Index
	base string // "rule[3]", the tomlpos path of the rule
	r    *Rule
}

// line returns the line of the key at path inside the rule (or of the
// nearest enclosing table that is in the file).
func (rc *ruleCtx) line(path string) int {
	if path == "" {
		return rc.r.Line
	}
	if l := rc.ix.Line(rc.base + "." + path); l > 0 {
		return l
	}
	return rc.r.Line
}

// errf records a problem with the key at path ("if.from"); the message
// is prefixed with the path.
func (rc *ruleCtx) errf(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	rc.c.errs = append(rc.c.errs, &Error{File: rc.file, Line: rc.line(path), Rule: rc.r.Name, Msg: msg})
}

func (c *compiler) file(idx int, f File) {
	var doc map[string]any
	if _, err := toml.Decode(string(f.Data), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			c.errs = append(c.errs, &Error{File: f.Name, Line: max(pe.Position.Line, 0), Msg: "TOML syntax error: " + pe.Message})
		} else {
			c.errs = append(c.errs, &Error{File: f.Name, Msg: "TOML syntax error: " + err.Error()})
		}
		return
	}
	ix := tomlpos.New(f.Data)
	for _, k := range sortedKeys(doc) {
		if k != "rule" {
			c.errs = append(c.errs, &Error{File: f.Name, Line: topLine(ix, k),
				Msg: fmt.Sprintf("unknown key %q: a rule file holds only [[rule]] tables%s", k, didYouMean(k, []string{"rule"}))})
		}
	}
	rv, ok := doc["rule"]
	if !ok {
		return
	}
	var tables []map[string]any
	switch v := rv.(type) {
	case []map[string]any:
		tables = v
	case []any:
		for _, x := range v {
			m, ok := x.(map[string]any)
			if !ok {
				c.errs = append(c.errs, &Error{File: f.Name, Line: ix.Line("rule"), Msg: "rule must be a list of tables: write each rule as a [[rule]] table"})
				return
			}
			tables = append(tables, m)
		}
	default:
		c.errs = append(c.errs, &Error{File: f.Name, Line: ix.Line("rule"), Msg: "rule must be a list of tables: write each rule as a [[rule]] table, not [rule]"})
		return
	}
	for i, m := range tables {
		c.rule(idx, f.Name, ix, i, m)
	}
}

// topLine returns the line of the first occurrence of top-level key k,
// written as a key, a [table] or an [[array]] table.
func topLine(ix *tomlpos.Index, k string) int {
	for _, e := range ix.Entries() {
		if len(e.Path) > 0 && (e.Path[0] == k || strings.HasPrefix(e.Path[0], k+"[")) {
			return e.Line
		}
	}
	return 0
}

func (c *compiler) rule(fileIdx int, file string, ix *tomlpos.Index, pos int, m map[string]any) {
	r := &Rule{File: file, Priority: DefaultPriority, Mode: ModeEnforce, Stop: true, pos: pos, fileIdx: fileIdx}
	rc := &ruleCtx{c: c, file: file, ix: ix, base: fmt.Sprintf("rule[%d]", pos), r: r}
	r.Line = ix.Line(rc.base)
	if r.Line == 0 {
		r.Line = ix.Line("rule")
	}

	switch v, ok := m["name"]; {
	case !ok:
		rc.errf("", "[[rule]] number %d of the file has no name: every rule needs a unique name", pos+1)
	default:
		s, ok := v.(string)
		name := strings.TrimSpace(s)
		switch {
		case !ok:
			rc.errf("name", "must be a string, not %s", typeName(v))
		case name == "":
			rc.errf("name", "is empty: every rule needs a unique name")
		case !isOneLine(name):
			rc.errf("name", "must be one line of printable text")
		default:
			r.Name = name
		}
	}

	for _, k := range sortedKeys(m) {
		v := m[k]
		switch k {
		case "name":
		case "priority":
			n, ok := v.(int64)
			switch {
			case !ok:
				rc.errf(k, "must be an integer (lower runs first), not %s", typeName(v))
			case n < math.MinInt32 || n > math.MaxInt32:
				rc.errf(k, "%d is out of range", n)
			default:
				r.Priority = int(n)
			}
		case "mode":
			s, ok := v.(string)
			switch {
			case !ok:
				rc.errf(k, "must be a string, not %s", typeName(v))
			case s == ModeEnforce || s == ModeAudit:
				r.Mode = s
			default:
				rc.errf(k, "must be %q or %q, not %q", ModeEnforce, ModeAudit, s)
			}
		case "stop":
			b, ok := v.(bool)
			if !ok {
				rc.errf(k, "must be true or false, not %s", typeName(v))
			} else {
				r.Stop = b
			}
		case "require_auth":
			vals, ok := rc.list(k, v)
			if ok {
				r.RequireAuth = rc.domains(k, vals)
			}
		case "if":
			r.ifs = rc.conds("if", v)
		case "except":
			r.excepts = rc.conds("except", v)
		case "extract":
			rc.extract(v)
		case "then":
			rc.then(v)
		default:
			rc.errf(k, "unknown key in [[rule]]%s; the keys are %s", didYouMean(k, ruleKeys), strings.Join(ruleKeys, ", "))
		}
	}
	for _, c := range slices.Concat(r.ifs, r.excepts) {
		if c.kind != kExtracted {
			continue
		}
		for _, f := range c.values {
			if !slices.Contains(r.Fields, f) {
				rc.errf("if.extracted", "field %q is not extracted by this rule's [rule.extract] (it extracts %s), so the condition could never hold", f, quoteList(r.Fields))
			}
		}
	}
	if _, ok := m["then"]; !ok {
		rc.errf("", "[rule.then] is missing: every rule needs an action (%s)", actionList())
	}
	// A drop or reject rule that matches everything would silently eat or
	// bounce all mail. (An [rule.if] whose keys all have errors is reported
	// by those errors, not again here.)
	ifTable, _ := m["if"].(map[string]any)
	if r.Then != nil && len(ifTable) == 0 && (r.Then.Action == ActionDrop || r.Then.Action == ActionReject) {
		rc.errf("", "a %s rule without [rule.if] conditions would %s every message; add a condition", r.Then.Action, r.Then.Action)
	}
	c.rules = append(c.rules, r)
}

// conds compiles a [rule.if] or [rule.except] table.
func (rc *ruleCtx) conds(section string, v any) []*cond {
	m, ok := v.(map[string]any)
	if !ok {
		rc.errf(section, "must be a table of conditions ([rule.%s]), not %s", section, typeName(v))
		return nil
	}
	var out []*cond
	for _, k := range sortedKeys(m) {
		path := section + "." + k
		val := m[k]
		c := &cond{key: k, line: rc.line(path)}
		switch k {
		case "from", "to":
			c.kind = kFrom
			if k == "to" {
				c.kind = kTo
			}
			vals, ok := rc.list(path, val)
			if !ok {
				continue
			}
			for _, s := range vals {
				p, err := parseAddrPattern(s)
				if err != nil {
					rc.errf(path, "%v", err)
					continue
				}
				c.addrs = append(c.addrs, p)
			}
			c.values = vals
		case "sender_ip":
			c.kind = kSenderIP
			vals, ok := rc.list(path, val)
			if !ok {
				continue
			}
			for _, s := range vals {
				p, err := parseNet(s)
				if err != nil {
					rc.errf(path, "%v", err)
					continue
				}
				c.prefixes = append(c.prefixes, p)
			}
			c.values = vals
		case "subject_contains", "body_contains":
			c.kind, c.target = kSubjectContains, targetSubject
			b := rc.c.subj
			if k == "body_contains" {
				c.kind, c.target, b = kBodyContains, targetBody, rc.c.body
			}
			vals, ok := rc.list(path, val)
			if !ok {
				continue
			}
			c.values = vals
			for _, s := range vals {
				f := fold(s)
				c.lits = append(c.lits, f)
				c.ids = append(c.ids, b.add(f))
			}
		case "subject_matches", "body_matches", "attachment_name_matches":
			c.kind, c.target = kSubjectMatches, targetSubject
			switch k {
			case "body_matches":
				c.kind, c.target = kBodyMatches, targetBody
			case "attachment_name_matches":
				c.kind, c.target = kAttachName, targetAttach
			}
			vals, ok := rc.list(path, val)
			if !ok {
				continue
			}
			c.values = vals
			for _, s := range vals {
				e, err := rc.c.regex(c.target, s)
				if err != nil {
					rc.errf(path, "%v", err)
					continue
				}
				c.res = append(c.res, e)
			}
		case "header":
			out = append(out, rc.headerConds(path, val)...)
			continue
		case "has_attachment", "authenticated":
			c.kind = kHasAttachment
			if k == "authenticated" {
				c.kind = kAuthenticated
			}
			b, ok := val.(bool)
			if !ok {
				rc.errf(path, "must be true or false, not %s", typeName(val))
				continue
			}
			c.b = b
		case "size_over":
			c.kind = kSizeOver
			n, err := parseSize(val)
			if err != nil {
				rc.errf(path, "%v", err)
				continue
			}
			c.n = n
		case "dkim_domain":
			c.kind = kDKIMDomain
			vals, ok := rc.list(path, val)
			if !ok {
				continue
			}
			c.values = vals
			c.lits = rc.domains(path, vals)
		case "client":
			c.kind = kClient
			vals, ok := rc.list(path, val)
			if !ok {
				continue
			}
			for i := range vals {
				vals[i] = strings.TrimSpace(vals[i])
			}
			c.values = vals
		case "extracted":
			// Holds when the rule's own [rule.extract] sets one of these
			// fields; checked against the rule's fields once it is compiled.
			c.kind = kExtracted
			vals, ok := rc.list(path, val)
			if !ok {
				continue
			}
			c.values = vals
			c.rule = rc.r
		default:
			rc.errf(path, "unknown condition in [rule.%s]%s; the conditions are %s", section, didYouMean(k, condKeys), strings.Join(condKeys, ", "))
			continue
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].kind < out[j].kind })
	return out
}

func (rc *ruleCtx) headerConds(path string, v any) []*cond {
	m, ok := v.(map[string]any)
	if !ok {
		rc.errf(path, `must be a table of header name → strings, e.g. header = { "X-Mailer" = ["Veeam"] }, not %s`, typeName(v))
		return nil
	}
	if len(m) == 0 {
		rc.errf(path, "names no header")
		return nil
	}
	var out []*cond
	for _, name := range sortedKeys(m) {
		hp := path + "." + name
		if !isHeaderName(name) {
			rc.errf(hp, "%q is not a header field name", name)
			continue
		}
		vals, ok := rc.list(hp, m[name])
		if !ok {
			continue
		}
		c := &cond{kind: kHeader, key: "header." + name, line: rc.line(hp), header: strings.ToLower(name), values: vals}
		for _, s := range vals {
			c.lits = append(c.lits, fold(s))
		}
		out = append(out, c)
	}
	return out
}

// list reads a string or a list of strings. Empty lists and empty strings
// are refused: the first never holds, the second always does.
func (rc *ruleCtx) list(path string, v any) ([]string, bool) {
	var out []string
	switch x := v.(type) {
	case string:
		out = []string{x}
	case []any:
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				rc.errf(path, "must be a list of strings, but item %d is %s", i+1, typeName(e))
				return nil, false
			}
			out = append(out, s)
		}
	default:
		rc.errf(path, "must be a string or a list of strings, not %s", typeName(v))
		return nil, false
	}
	if len(out) == 0 {
		rc.errf(path, "the list is empty, so it would never hold; remove the key or give values")
		return nil, false
	}
	for i, s := range out {
		if strings.TrimSpace(s) == "" {
			rc.errf(path, "item %d is empty, so it would match every message", i+1)
			return nil, false
		}
	}
	return out, true
}

// regex compiles one expression of a _matches key; identical expressions
// over the same text share one entry, so they run once per message.
func (c *compiler) regex(target uint8, src string) (*regexEntry, error) {
	key := string(rune('0'+target)) + "\x00" + src
	if e, ok := c.reIDs[key]; ok {
		return e, nil
	}
	re, err := compileRegex(src)
	if err != nil {
		return nil, err
	}
	e := &regexEntry{id: len(c.regexes), re: re, src: src, target: target}
	if target != targetAttach {
		b := c.subj
		if target == targetBody {
			b = c.body
		}
		parsed, err := syntax.Parse(re.String(), syntax.Perl)
		if err == nil {
			for _, set := range requiredLiterals(parsed) {
				ids := make([]int32, len(set))
				for i, lit := range set {
					ids[i] = b.add(lit)
				}
				e.pre = append(e.pre, ids)
			}
		}
	}
	c.reIDs[key] = e
	c.regexes = append(c.regexes, e)
	return e, nil
}

// compileRegex compiles src case-insensitively, reporting errors in terms
// of what the admin wrote.
func compileRegex(src string) (*regexp.Regexp, error) {
	if src == "" {
		return nil, fmt.Errorf("empty regular expression: it would match every message")
	}
	if _, err := regexp.Compile(src); err != nil {
		return nil, fmt.Errorf("bad regular expression %q: %s", src, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	re, err := regexp.Compile("(?i)" + src)
	if err != nil {
		return nil, fmt.Errorf("bad regular expression %q: %s", src, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return re, nil
}

func (rc *ruleCtx) extract(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		rc.errf("extract", "must be a table of field = regular expression ([rule.extract]), not %s", typeName(v))
		return
	}
	setBy := map[string]string{}
	for _, k := range sortedKeys(m) {
		path := "extract." + k
		if !isFieldName(k) {
			rc.errf(path, "%q cannot name a field: use letters, digits and _", k)
			continue
		}
		// A list of expressions is tried in order: the first that matches
		// (on the subject, else the body) sets the fields, so a reliable
		// shape ("Device: X" line) can be preferred over a loose one.
		var srcs []string
		switch x := m[k].(type) {
		case string:
			srcs = []string{x}
		case []any:
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					rc.errf(path, "must be a list of regular expressions, but item %d is %s", i+1, typeName(e))
					srcs = nil
					break
				}
				srcs = append(srcs, s)
			}
			if len(x) == 0 {
				rc.errf(path, "the list is empty; give at least one regular expression")
			}
		default:
			rc.errf(path, "must be a regular expression (a string) or a list of them, not %s", typeName(m[k]))
		}
		keyFields := map[string]bool{}
		var exs []*extractor
		bad := false
		for _, src := range srcs {
			re, err := compileRegex(src)
			if err != nil {
				rc.errf(path, "%v", err)
				bad = true
				continue
			}
			ex := &extractor{key: k, re: re}
			for _, n := range re.SubexpNames() {
				if n != "" && !slices.Contains(ex.fields, n) {
					ex.fields = append(ex.fields, n)
				}
			}
			ex.named = len(ex.fields) > 0
			if !ex.named {
				ex.fields = []string{k}
			}
			for _, f := range ex.fields {
				keyFields[f] = true
			}
			exs = append(exs, ex)
		}
		for _, f := range slices.Sorted(maps.Keys(keyFields)) {
			if f != "device" && slices.Contains(Builtins, f) {
				rc.errf(path, "field %q is built in and cannot be extracted; choose another name", f)
				bad = true
			} else if prev, dup := setBy[f]; dup {
				rc.errf(path, "field %q is also extracted by extract.%s; each field may be extracted once per rule", f, prev)
				bad = true
			} else {
				setBy[f] = k
			}
		}
		if !bad {
			rc.r.extracts = append(rc.r.extracts, exs...)
		}
	}
	for f := range setBy {
		rc.r.Fields = append(rc.r.Fields, f)
	}
	sort.Strings(rc.r.Fields)
}

func (rc *ruleCtx) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		rc.errf(path, "must be a string, not %s", typeName(v))
	}
	return s, ok
}
