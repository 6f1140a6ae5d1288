package rules

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"psagate/internal/psa"
)

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
