package fake

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file implements the part of ConnectWise's "conditions" query language
// that clients send: comparisons (= != < <= > >= contains like in, with an
// optional "not"), "and"/"or" in any case, parentheses, double-quoted strings
// with backslash escapes, integers, true/false/null and [datetimes]. Fields
// are JSON names of the returned objects, nested with "/", matched without
// regard to case. Comparisons are type-checked like the real server does
// ("Expected a boolean value, not a numeric value"), so a client that quotes a
// number or compares a flag with 1 gets the same 400 it would get in production.

type cond interface {
	eval(m map[string]any) (bool, error)
}

type andCond struct{ l, r cond }
type orCond struct{ l, r cond }

func (c andCond) eval(m map[string]any) (bool, error) {
	a, err := c.l.eval(m)
	if err != nil || !a {
		return false, err
	}
	return c.r.eval(m)
}

func (c orCond) eval(m map[string]any) (bool, error) {
	a, err := c.l.eval(m)
	if err != nil {
		return false, err
	}
	if a {
		return true, nil
	}
	return c.r.eval(m)
}

type dateLit struct{ t time.Time }

type cmpCond struct {
	field string
	op    string // = != < <= > >= contains like in
	not   bool
	val   any   // string, float64, bool, nil or dateLit
	vals  []any // for in
}

func (c cmpCond) eval(m map[string]any) (bool, error) {
	fv, ok := lookupField(m, c.field)
	if !ok {
		return false, fmt.Errorf("cannot find field %q", c.field)
	}
	var res bool
	var err error
	if c.op == "in" {
		for _, v := range c.vals {
			var eq bool
			eq, err = compareOne(fv, "=", v, c.field)
			if err != nil {
				return false, err
			}
			if eq {
				res = true
				break
			}
		}
	} else {
		res, err = compareOne(fv, c.op, c.val, c.field)
		if err != nil {
			return false, err
		}
	}
	if c.not {
		res = !res
	}
	return res, nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case dateLit:
		return "datetime"
	default:
		return "numeric"
	}
}

func compareOne(fv any, op string, lit any, field string) (bool, error) {
	if lit == nil {
		switch op {
		case "=":
			return fv == nil, nil
		case "!=":
			return fv != nil, nil
		}
		return false, fmt.Errorf("operator %s cannot be used with null", op)
	}
	if f, ok := toFloat(fv); ok {
		fv = f
	}
	if fv == nil {
		return op == "!=", nil
	}
	switch l := lit.(type) {
	case string:
		s, ok := fv.(string)
		if !ok {
			return false, fmt.Errorf("Expected a %s value, not a string value for field %s", typeName(fv), field)
		}
		a, b := strings.ToLower(s), strings.ToLower(l)
		switch op {
		case "contains":
			return strings.Contains(a, b), nil
		case "like":
			return likeMatch(a, b), nil
		}
		return ordered(strings.Compare(a, b), op)
	case float64:
		f, ok := fv.(float64)
		if !ok {
			return false, fmt.Errorf("Expected a %s value, not a numeric value for field %s", typeName(fv), field)
		}
		if op == "contains" || op == "like" {
			return false, fmt.Errorf("operator %s needs a string value", op)
		}
		return ordered(cmp.Compare(f, l), op)
	case bool:
		b, ok := fv.(bool)
		if !ok {
			return false, fmt.Errorf("Expected a %s value, not a boolean value for field %s", typeName(fv), field)
		}
		switch op {
		case "=":
			return b == l, nil
		case "!=":
			return b != l, nil
		}
		return false, fmt.Errorf("operator %s cannot be used with a boolean", op)
	case dateLit:
		s, ok := fv.(string)
		if !ok {
			return false, fmt.Errorf("Expected a %s value, not a datetime value for field %s", typeName(fv), field)
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return false, fmt.Errorf("field %s is not a datetime", field)
		}
		return ordered(t.Compare(l.t), op)
	}
	return false, fmt.Errorf("unsupported value for field %s", field)
}

func ordered(c int, op string) (bool, error) {
	switch op {
	case "=":
		return c == 0, nil
	case "!=":
		return c != 0, nil
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	case ">=":
		return c >= 0, nil
	}
	return false, fmt.Errorf("operator %s is not valid here", op)
}

func likeMatch(s, pattern string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$"
	ok, _ := regexp.MatchString("(?s)"+re, s)
	return ok
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// lookupField walks a "/"-separated field path, ignoring case. A path
// through a null object yields null; a name the object does not have is
// unknown (ok false).
func lookupField(m map[string]any, field string) (any, bool) {
	var cur any = m
	for part := range strings.SplitSeq(field, "/") {
		if cur == nil {
			return nil, true
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		found := false
		for k, v := range obj {
			if strings.EqualFold(k, part) {
				cur, found = v, true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return cur, true
}

// --- tokenizer and parser ---

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tDate
	tOp
	tLParen
	tRParen
	tComma
)

type token struct {
	kind tokKind
	s    string
}

func tokenize(s string) ([]token, error) {
	var out []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{tLParen, "("})
			i++
		case c == ')':
			out = append(out, token{tRParen, ")"})
			i++
		case c == ',':
			out = append(out, token{tComma, ","})
			i++
		case c == '"':
			var b strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) {
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated string in conditions")
			}
			out = append(out, token{tString, b.String()})
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [datetime] in conditions")
			}
			out = append(out, token{tDate, s[i+1 : i+j]})
			i += j + 1
		case c == '=' || c == '<' || c == '>' || c == '!':
			op := string(c)
			if i+1 < len(s) && s[i+1] == '=' {
				op += "="
			}
			if op == "!" {
				return nil, fmt.Errorf("unexpected '!' in conditions")
			}
			out = append(out, token{tOp, op})
			i += len(op)
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			out = append(out, token{tNumber, s[i:j]})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] == '/' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			out = append(out, token{tIdent, s[i:j]})
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q in conditions", c)
		}
	}
	return append(out, token{kind: tEOF}), nil
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *parser) keyword(word string) bool {
	t := p.peek()
	if t.kind == tIdent && strings.EqualFold(t.s, word) {
		p.pos++
		return true
	}
	return false
}

// parseConditions parses a conditions string.
func parseConditions(s string) (cond, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	c, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tEOF {
		return nil, fmt.Errorf("unexpected %q in conditions", p.peek().s)
	}
	return c, nil
}

func (p *parser) parseOr() (cond, error) {
	l, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		r, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		l = orCond{l, r}
	}
	return l, nil
}

func (p *parser) parseAnd() (cond, error) {
	l, err := p.parseTerm()
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		r, err := p.parseTerm()
		if err != nil {
			return nil, err
		}
		l = andCond{l, r}
	}
	return l, nil
}

var keywords = []string{"and", "or", "not", "contains", "like", "in", "true", "false", "null"}

func isKeyword(s string) bool {
	return slices.ContainsFunc(keywords, func(k string) bool { return strings.EqualFold(k, s) })
}

func (p *parser) parseTerm() (cond, error) {
	if p.peek().kind == tLParen {
		p.next()
		c, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.next().kind != tRParen {
			return nil, fmt.Errorf("missing ')' in conditions")
		}
		return c, nil
	}
	f := p.next()
	if f.kind != tIdent || isKeyword(f.s) {
		return nil, fmt.Errorf("expected a field name in conditions, found %q", f.s)
	}
	c := cmpCond{field: f.s}
	c.not = p.keyword("not")
	switch t := p.peek(); {
	case t.kind == tOp && !c.not:
		c.op = p.next().s
	case p.keyword("contains"):
		c.op = "contains"
	case p.keyword("like"):
		c.op = "like"
	case p.keyword("in"):
		c.op = "in"
		if p.next().kind != tLParen {
			return nil, fmt.Errorf("expected '(' after in")
		}
		for {
			v, err := p.parseLiteral()
			if err != nil {
				return nil, err
			}
			c.vals = append(c.vals, v)
			t := p.next()
			if t.kind == tRParen {
				break
			}
			if t.kind != tComma {
				return nil, fmt.Errorf("expected ',' or ')' in an in list")
			}
		}
		return c, nil
	default:
		return nil, fmt.Errorf("expected an operator after %s, found %q", f.s, t.s)
	}
	v, err := p.parseLiteral()
	if err != nil {
		return nil, err
	}
	c.val = v
	return c, nil
}

func (p *parser) parseLiteral() (any, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return t.s, nil
	case tNumber:
		f, err := strconv.ParseFloat(t.s, 64)
		if err != nil {
			return nil, fmt.Errorf("bad number %q in conditions", t.s)
		}
		return f, nil
	case tDate:
		d, err := time.Parse(time.RFC3339, strings.TrimSpace(t.s))
		if err != nil {
			return nil, fmt.Errorf("bad datetime [%s] in conditions", t.s)
		}
		return dateLit{d}, nil
	case tIdent:
		switch strings.ToLower(t.s) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		case "null":
			return nil, nil
		}
	}
	return nil, fmt.Errorf("expected a value in conditions, found %q (strings need double quotes)", t.s)
}

// sortItems orders items by an orderBy parameter ("name", "id desc, name asc").
func sortItems(items []map[string]any, orderBy string) error {
	type key struct {
		field string
		desc  bool
	}
	var keys []key
	for part := range strings.SplitSeq(orderBy, ",") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		k := key{field: f[0]}
		if len(f) > 1 {
			switch strings.ToLower(f[1]) {
			case "asc":
			case "desc":
				k.desc = true
			default:
				return fmt.Errorf("orderBy direction must be asc or desc, not %q", f[1])
			}
		}
		if len(items) > 0 {
			if _, ok := lookupField(items[0], k.field); !ok {
				return fmt.Errorf("cannot order by unknown field %q", k.field)
			}
		}
		keys = append(keys, k)
	}
	slices.SortStableFunc(items, func(a, b map[string]any) int {
		for _, k := range keys {
			av, _ := lookupField(a, k.field)
			bv, _ := lookupField(b, k.field)
			c := compareAny(av, bv)
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	return nil
}

func compareAny(a, b any) int {
	if a == nil || b == nil {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return -1
		}
		return 1
	}
	if fa, ok := toFloat(a); ok {
		if fb, ok := toFloat(b); ok {
			return cmp.Compare(fa, fb)
		}
	}
	if ba, ok := a.(bool); ok {
		if bb, ok := b.(bool); ok {
			switch {
			case ba == bb:
				return 0
			case !ba:
				return -1
			}
			return 1
		}
	}
	return strings.Compare(strings.ToLower(fmt.Sprint(a)), strings.ToLower(fmt.Sprint(b)))
}
