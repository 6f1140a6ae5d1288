package rules

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"psagate/internal/psa"
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

func (rc *ruleCtx) then(v any) {
	m, ok := v.(map[string]any)
	if !ok {
		rc.errf("then", "must be a table ([rule.then]), not %s", typeName(v))
		return
	}
	th := &Then{}
	av, ok := m["action"]
	if !ok {
		rc.errf("then", "action is missing (one of %s)", actionList())
		return
	}
	as, ok := av.(string)
	if !ok {
		rc.errf("then.action", "must be a string (one of %s), not %s", actionList(), typeName(av))
		return
	}
	th.Action = Action(as)
	if !slices.Contains(Actions, th.Action) {
		names := make([]string, len(Actions))
		for i, a := range Actions {
			names[i] = string(a)
		}
		rc.errf("then.action", "unknown action %q (one of %s)%s", as, actionList(), didYouMean(as, names))
		return
	}
	rc.r.Then = th

	var priority, dueIn string
	for _, k := range sortedKeys(m) {
		if k == "action" {
			continue
		}
		path := "then." + k
		val := m[k]
		applies, known := thenApplies[k]
		if !known {
			rc.errf(path, "unknown key in [rule.then]%s; the keys are %s", didYouMean(k, thenKeys), strings.Join(thenKeys, ", "))
			continue
		}
		if !slices.Contains(applies, th.Action) {
			rc.errf(path, "has no effect with action %q; it applies to %s", th.Action, joinActions(applies))
			continue
		}
		switch k {
		case "text":
			s, ok := rc.str(path, val)
			switch {
			case !ok:
			case strings.TrimSpace(s) == "":
				rc.errf(path, "is empty")
			case !isOneLine(s) || len(s) > 400:
				rc.errf(path, "must be one line of at most 400 characters (it is the SMTP reply)")
			default:
				th.Text = s
			}
		case "key", "summary", "description", "note":
			s, ok := rc.str(path, val)
			if !ok {
				continue
			}
			t, err := ParseTemplate(s)
			if err != nil {
				rc.errf(path, "%v", err)
				continue
			}
			switch k {
			case "key":
				th.Key = t
			case "summary":
				th.Summary = t
			case "description":
				th.Description = t
			case "note":
				th.Note = t
			}
			rc.r.tpls = append(rc.r.tpls, namedTemplate{path: path, line: rc.line(path), t: t})
		case "check":
			s, ok := rc.str(path, val)
			switch {
			case !ok:
			case strings.TrimSpace(s) == "":
				rc.errf(path, "is empty")
			case strings.ContainsAny(s, "{}/") || !isOneLine(s):
				rc.errf(path, "must be a plain word such as \"backup\" (no braces, slashes or line breaks)")
			default:
				th.Check = strings.TrimSpace(s)
			}
		case "delay", "reopen", "expect":
			s, ok := rc.str(path, val)
			if !ok {
				continue
			}
			d, err := parseDuration(s)
			if err != nil {
				rc.errf(path, "%v", err)
				continue
			}
			switch k {
			case "delay":
				th.Delay = d
			case "reopen":
				th.Reopen = d
			case "expect":
				th.Expect = d
			}
		case "repeat":
			s, ok := rc.str(path, val)
			if !ok {
				continue
			}
			if s != RepeatNote && s != RepeatIgnore && s != RepeatNew {
				rc.errf(path, "must be %q, %q or %q, not %q", RepeatNote, RepeatIgnore, RepeatNew, s)
				continue
			}
			th.Repeat = s
		case "after_manual_close":
			s, ok := rc.str(path, val)
			if !ok {
				continue
			}
			if s != "new" && s != "reopen" {
				rc.errf(path, "must be \"new\" or \"reopen\", not %q", s)
				continue
			}
			th.AfterManualClose = s
		case "severity":
			s, ok := rc.str(path, val)
			if !ok {
				continue
			}
			if SeverityRank(s) == 0 {
				rc.errf(path, "must be one of %s, not %q", strings.Join(Severities, ", "), s)
				continue
			}
			th.Severity = s
		case "escalate_priority":
			b, ok := val.(bool)
			if !ok {
				rc.errf(path, "must be true or false, not %s", typeName(val))
				continue
			}
			th.EscalatePriority = b
		case "attach":
			b, ok := val.(bool)
			if !ok {
				rc.errf(path, "must be true or false, not %s", typeName(val))
				continue
			}
			th.Attach = b
		case "priority":
			s, ok := rc.str(path, val)
			if ok && strings.TrimSpace(s) == "" {
				rc.errf(path, "is empty")
			} else if ok {
				priority = s
			}
		case "due_in":
			s, ok := rc.str(path, val)
			if !ok {
				continue
			}
			if d, err := time.ParseDuration(strings.TrimSpace(s)); err != nil || d <= 0 {
				rc.errf(path, "must be a positive duration such as \"4h\", not %q", s)
				continue
			}
			dueIn = strings.TrimSpace(s)
		case "psa":
			th.PSA = rc.psaOverrides(path, val)
		}
	}
	// due_in is the shorthand of every provider's due_in (the ticket's
	// due date) unless [rule.then.psa] sets one.
	fillShorthand(th, "due_in", dueIn)

	// The shorthand fills the providers' priority unless [rule.then.psa]
	// sets one explicitly.
	fillShorthand(th, "priority", priority)
	rc.r.keyLine = rc.line("then.action")
	if th.Key == nil {
		th.Key = mustTemplate("{client}/{device}/{check}")
	} else {
		rc.r.keyLine = rc.line("then.key")
	}
	if th.Summary == nil {
		th.Summary = mustTemplate("{subject}")
	}
	if th.Check == "" {
		th.Check = rc.r.Name
	}
	if th.Action == ActionReject && th.Text == "" {
		th.Text = "Rejected by rule " + rc.r.Name
	}
	if th.Action == ActionTicket && th.Repeat == "" {
		th.Repeat = RepeatNote
	}
}

func isTableKey(k string) bool {
	_, _, ok := psa.TableKey(k)
	return ok
}

// psaOverrides reads [rule.then.psa]. Values never appear in messages: an
// admin who pasted a key where it does not belong must not see it echoed
// into a log.
func (rc *ruleCtx) psaOverrides(path string, v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok {
		rc.errf(path, `must be a table of PSA settings, e.g. connectwise.board = "Vault Alerts"`)
		return nil
	}
	flat := map[string]any{}
	flatten("", m, flat)
	out := map[string]string{}
	for _, k := range sortedKeys(flat) {
		kp := path + "." + k
		prov, name, _ := strings.Cut(k, ".")
		keys, known := psa.KeysOf(prov)
		switch {
		case !known && slices.Contains(psa.GeneralKeys, k):
			rc.errf(kp, "cannot be set by a rule; it is a setting of the config's [psa] section")
			continue
		case !known:
			var withKeys []string
			for _, d := range psa.Registered() {
				if len(d.Keys) > 0 {
					withKeys = append(withKeys, d.Name)
				}
			}
			rc.errf(kp, "unknown PSA %q: write <provider>.<setting> with a provider of %s", prov, strings.Join(withKeys, ", "))
			continue
		case psa.IsSecretKey(k):
			rc.errf(kp, "is a credential and cannot be set by a rule; credentials belong in the config's [psa.%s] section", prov)
			continue
		case psa.IsConnectionKey(k):
			// They select the PSA instance and log in to it.
			d, _ := psa.Lookup(prov)
			rc.errf(kp, "is a connection setting and cannot be set by a rule; rules may set ticket fields (%s: %s)", prov, strings.Join(d.TicketKeys(), ", "))
			continue
		case isTableKey(k):
			setting, entry, _ := psa.TableKey(k)
			if err := psa.CheckTableEntry(setting, entry); err != nil {
				rc.errf(kp, "%v", err)
				continue
			}
		case !slices.Contains(keys, name):
			var full []string
			for _, x := range keys {
				full = append(full, prov+"."+x)
			}
			rc.errf(kp, "is not a %s setting%s", prov, didYouMean(k, full))
			continue
		}
		switch x := flat[k].(type) {
		case string:
			out[k] = x
		case int64:
			out[k] = strconv.FormatInt(x, 10)
		case bool:
			out[k] = strconv.FormatBool(x)
		default:
			rc.errf(kp, "must be a string, an integer or a boolean")
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			flatten(name, sub, out)
			continue
		}
		out[name] = v
	}
}

func (rc *ruleCtx) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		rc.errf(path, "must be a string, not %s", typeName(v))
	}
	return s, ok
}

// checkNames refuses duplicate names, pointing at both definitions.
func (c *compiler) checkNames() {
	first := map[string]*Rule{}
	for _, r := range c.rules {
		if r.Name == "" {
			continue
		}
		if f, dup := first[r.Name]; dup {
			c.errs = append(c.errs, &Error{File: r.File, Line: r.Line, Rule: r.Name,
				Msg: fmt.Sprintf("duplicate rule name: it is also defined at %s:%d; rule names must be unique across all rule files", f.File, f.Line)})
			continue
		}
		first[r.Name] = r
	}
}

// checkTemplates checks, in evaluation order, that every template names
// only fields that can exist when the rule decides: built-ins, the rule's
// own extracted fields and those of the enforce-mode stop = false rules
// that run before it.
func (c *compiler) checkTemplates() {
	chain := map[string]bool{}
	for _, r := range c.rules {
		for _, nt := range r.tpls {
			for _, f := range nt.t.Fields() {
				if slices.Contains(Builtins, f) || slices.Contains(r.Fields, f) || chain[f] {
					continue
				}
				avail := slices.Clone(Builtins)
				avail = append(avail, r.Fields...)
				for k := range chain {
					avail = append(avail, k)
				}
				extra := ""
				if len(r.Fields) == 0 {
					extra = "; fields extracted by [rule.extract] of this rule or of an earlier stop = false rule are available too"
				} else {
					extra = fmt.Sprintf("; this rule extracts %s", strings.Join(r.Fields, ", "))
				}
				c.errs = append(c.errs, &Error{File: r.File, Line: nt.line, Rule: r.Name,
					Msg: fmt.Sprintf("%s: unknown field {%s} in template%s; built-in fields are %s%s",
						nt.path, f, didYouMean(f, avail), strings.Join(Builtins, ", "), extra)})
			}
		}
		c.checkCloseKey(r, chain)
		if r.Mode == ModeEnforce && !r.Stop {
			for _, f := range r.Fields {
				chain[f] = true
			}
		}
	}
}

// checkCloseKey refuses a close rule whose key names nothing the rule
// extracts: such a key is the same for every machine of a client, so one
// machine's success would close another machine's open incident, which
// is the worst thing a ticketing gateway can do (a real problem silently
// marked solved). chain holds the fields of the stop = false rules before r.
func (c *compiler) checkCloseKey(r *Rule, chain map[string]bool) {
	if r.Then == nil || r.Then.Action != ActionClose || r.Then.Key == nil {
		return
	}
	parts := KeyParts(r.Then.Key)
	for _, f := range parts {
		if slices.Contains(r.Fields, f) || chain[f] {
			return
		}
		if f != "device" {
			return // an unknown field: the template check above reported it
		}
	}
	what := "names no device or job field"
	if len(parts) > 0 {
		what = fmt.Sprintf("names {%s}, which neither this rule's [rule.extract] nor an earlier stop = false rule sets", strings.Join(parts, "}, {"))
	}
	c.errs = append(c.errs, &Error{File: r.File, Line: r.keyLine, Rule: r.Name,
		Msg: fmt.Sprintf("a close rule must extract the device or job it closes: key %q %s, so one machine's success would close another machine's incident; extract device (or job) in [rule.extract] and name it in the key",
			r.Then.Key.String(), what)})
}

// KeyParts returns the fields of a key template that say which device or
// job an incident is about: device, and every field that is not built in
// (client, check, subject, ... identify no machine). A close needs one of
// them non-empty, or it could close another machine's incident.
func KeyParts(key *Template) []string {
	var out []string
	for _, f := range key.Fields() {
		if f == "device" || !slices.Contains(Builtins, f) {
			out = append(out, f)
		}
	}
	return out
}

type namedTemplate struct {
	path string
	line int
	t    *Template
}

// parseAddrPattern reads a value of from or to.
func parseAddrPattern(s string) (addrPat, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if strings.ContainsAny(v, " \t<>,;\"") {
		return addrPat{}, fmt.Errorf("%q is not an address pattern: give one address, \"@domain\" or glob per list item", s)
	}
	switch {
	case strings.ContainsAny(v, "*?"):
		return addrPat{kind: addrGlob, s: v,
			prefix: v[:strings.IndexAny(v, "*?")], suffix: v[strings.LastIndexAny(v, "*?")+1:]}, nil
	case strings.HasPrefix(v, "@"):
		if len(v) == 1 || strings.Contains(v[1:], "@") {
			return addrPat{}, fmt.Errorf("%q is not a domain: write \"@example.com\"", s)
		}
		return addrPat{kind: addrDomain, s: v[1:]}, nil
	case strings.Contains(v, "@"):
		i := strings.LastIndexByte(v, '@')
		if i == 0 || i == len(v)-1 {
			return addrPat{}, fmt.Errorf("%q is not an address", s)
		}
		return addrPat{kind: addrExact, s: v}, nil
	}
	return addrPat{}, fmt.Errorf("%q is neither an address, \"@domain\" nor a glob; for the whole domain write \"@%s\"", s, v)
}

// parseNet reads a value of sender_ip: a CIDR network or one address.
func parseNet(s string) (netip.Prefix, error) {
	v := strings.TrimSpace(s)
	bad := fmt.Errorf("%q is not an IP address or CIDR network (e.g. \"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\")", s)
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, bad
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, bad
	}
	a = a.WithZone("").Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}

// parseSize reads size_over: an integer number of bytes, or a string such
// as "512KiB", "2MB" or "1.5 MB".
func parseSize(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("%d is negative", x)
		}
		return x, nil
	case string:
		s := strings.TrimSpace(x)
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
		f, err := strconv.ParseFloat(num, 64)
		mult, okUnit := sizeUnits[unit]
		if num == "" || err != nil || !okUnit {
			return 0, fmt.Errorf("bad size %q: give bytes as an integer, or a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. \"512KiB\" or \"1.5 MB\"", x)
		}
		n := f * mult
		if n >= 1<<53 {
			return 0, fmt.Errorf("size %q is too large", x)
		}
		return int64(n), nil
	}
	return 0, fmt.Errorf("must be an integer (bytes) or a string such as \"2MB\", not %s", typeName(v))
}

// parseDuration reads a Go duration ("90s", "15m", "4h30m") or a number of
// days ("2d").
func parseDuration(s string) (time.Duration, error) {
	v := strings.TrimSpace(s)
	d, err := time.ParseDuration(v)
	if err != nil {
		if n, ok := strings.CutSuffix(v, "d"); ok {
			if days, err2 := strconv.Atoi(n); err2 == nil && days >= 0 && days <= 3650 {
				return time.Duration(days) * 24 * time.Hour, nil
			}
		}
		return 0, fmt.Errorf("bad duration %q: write e.g. \"90s\", \"15m\", \"4h\" or \"2d\"", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}

func joinActions(as []Action) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = string(a)
	}
	if len(parts) == 1 {
		return parts[0] + " only"
	}
	return strings.Join(parts, ", ")
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a decimal number"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date"
	}
	return fmt.Sprintf("a %T", v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// isOneLine reports whether s is valid UTF-8 without control characters
// or line breaks.
func isOneLine(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == 0x2028 || r == 0x2029 {
			return false
		}
	}
	return true
}

func isHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// fillShorthand sets key (a then-level shorthand such as priority) for
// every registered provider that has that setting, unless the rule's
// [rule.then.psa] sets it for that provider.
func fillShorthand(th *Then, key, value string) {
	if value == "" {
		return
	}
	for _, d := range psa.Registered() {
		if !slices.Contains(d.Keys, key) {
			continue
		}
		if th.PSA == nil {
			th.PSA = map[string]string{}
		}
		if k := d.Name + "." + key; !hasKey(th.PSA, k) {
			th.PSA[k] = value
		}
	}
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// domains reads a list of mail domains (require_auth, dkim_domain):
// lower-cased, a leading "@" removed.
func (rc *ruleCtx) domains(path string, vals []string) []string {
	var out []string
	for _, d := range vals {
		d2 := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(d), "@")))
		if d2 == "" || strings.ContainsAny(d2, " @/:") || !strings.Contains(d2, ".") {
			rc.errf(path, "%q is not a domain (write it like \"datto.com\")", d)
			continue
		}
		out = append(out, d2)
	}
	return out
}
