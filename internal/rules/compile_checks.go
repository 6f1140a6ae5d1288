package rules

import (
	"fmt"
	"slices"
	"strings"
)

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
