package rules

import (
	"fmt"
	"strconv"
	"strings"

	"psagate/internal/sanitize"
)

// explain evaluates a condition the plain way (no automaton, no
// prefilter, no memo) and says why it holds or not. It must agree with
// holds; the tests and the fuzz target check that it does.
func (st *state) explain(c *cond) (bool, string) {
	a := st.a
	switch c.kind {
	case kClient:
		if st.client == "" {
			return false, "the message was routed to no client"
		}
		for _, v := range c.values {
			if strings.EqualFold(v, st.client) {
				return true, fmt.Sprintf("client %q is listed", st.client)
			}
		}
		return false, fmt.Sprintf("client %q is not listed", st.client)
	case kHasAttachment:
		n := len(a.Attachments)
		return (n > 0) == c.b, fmt.Sprintf("the message has %d attachment(s)", n)
	case kExtracted:
		if ok, f := st.extracted(c); ok {
			return true, fmt.Sprintf("field %q was extracted", f)
		}
		return false, fmt.Sprintf("none of %s was extracted", quoteList(c.values))
	case kSizeOver:
		if int64(a.Size) > c.n {
			return true, fmt.Sprintf("size %d bytes > %d", a.Size, c.n)
		}
		return false, fmt.Sprintf("size %d bytes ≤ %d", a.Size, c.n)
	case kAuthenticated:
		got := a.Auth != nil && a.Auth.Authenticated
		switch {
		case a.Auth == nil:
			return got == c.b, "sender authentication did not run ([auth] is off)"
		case got:
			return got == c.b, "authenticated: " + a.Auth.Header
		}
		return got == c.b, "not authenticated: " + a.Auth.Header
	case kDKIMDomain:
		if a.Auth == nil {
			return false, "sender authentication did not run ([auth] is off)"
		}
		if d := dkimDomain(a, c.lits); d != "" {
			return true, fmt.Sprintf("a signature of %s verified", d)
		}
		if len(a.Auth.DKIMDomains) == 0 {
			return false, "no DKIM signature verified"
		}
		return false, fmt.Sprintf("verified signatures are of %s, none of %s", strings.Join(a.Auth.DKIMDomains, ", "), quoteList(c.values))
	case kSenderIP:
		ip := a.RemoteIP.Unmap().WithZone("")
		if !ip.IsValid() {
			return false, "no sender IP address"
		}
		for _, p := range c.prefixes {
			if p.Contains(ip) {
				return true, fmt.Sprintf("%s is in %s", ip, p)
			}
		}
		return false, fmt.Sprintf("%s is in none of %s", ip, quoteList(c.values))
	case kFrom, kTo:
		var cands []addr
		if c.kind == kFrom {
			cands = appendAddr(appendAddr(nil, a.From, "From header"), a.MailFrom, "envelope sender")
		} else {
			for _, r := range a.RcptTo {
				cands = appendAddr(cands, r, "envelope recipient")
			}
			for _, t := range a.To {
				cands = appendAddr(cands, t, "To/Cc header")
			}
		}
		if len(cands) == 0 {
			return false, "the message has no such address"
		}
		var seen []string
		for _, cd := range cands {
			for i, p := range c.addrs {
				if matchAddr(p, cd) {
					return true, fmt.Sprintf("%q matched %s %q", c.values[i], cd.src, cd.full)
				}
			}
			seen = append(seen, fmt.Sprintf("%q (%s)", cd.full, cd.src))
		}
		return false, "no value matched " + strings.Join(seen, " or ")
	case kSubjectContains, kBodyContains, kHeader:
		where, texts := "subject", []string{a.Subject}
		switch c.kind {
		case kBodyContains:
			where, texts = "body", []string{a.Text}
		case kHeader:
			where, texts = "header "+c.key[len("header."):], a.Header[c.header]
			if len(texts) == 0 {
				return false, where + " is absent"
			}
		}
		for _, t := range texts {
			ft := fold(t)
			for i, lit := range c.lits {
				if strings.Contains(ft, lit) {
					return true, fmt.Sprintf("%q found in %s", c.values[i], where)
				}
			}
		}
		return false, fmt.Sprintf("none of %s found in %s", quoteList(c.values), where)
	case kSubjectMatches, kBodyMatches:
		where, text := "subject", a.Subject
		if c.kind == kBodyMatches {
			where, text = "body", a.Text
		}
		for _, e := range c.res {
			if loc := e.re.FindStringIndex(text); loc != nil {
				return true, fmt.Sprintf("%q matched %q in %s", e.src, clip(text[loc[0]:loc[1]]), where)
			}
		}
		return false, fmt.Sprintf("none of %s matched the %s", quoteList(c.values), where)
	case kAttachName:
		if len(a.Attachments) == 0 {
			return false, "the message has no attachments"
		}
		for _, e := range c.res {
			for _, at := range a.Attachments {
				if e.re.MatchString(at.Name) {
					return true, fmt.Sprintf("%q matched attachment %q", e.src, at.Name)
				}
			}
		}
		return false, fmt.Sprintf("none of %s matched an attachment name", quoteList(c.values))
	}
	return false, "unknown condition"
}

func quoteList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}

// clip shortens a matched text for a trace line.
func clip(s string) string {
	return sanitize.Truncate(sanitize.Line(s), 80, "…")
}

// trace evaluates every condition of r (and, when they all hold, every
// exception) for the trace. Held comes from the fast path, so the trace
// shows exactly what Evaluate does; Detail from the plain one.
func (st *state) trace(r *Rule) (string, []CondTrace) {
	var ct []CondTrace
	all := true
	for _, c := range r.ifs {
		h := st.holds(c)
		_, detail := st.explain(c)
		ct = append(ct, CondTrace{Section: "if", Key: c.key, Held: h, Detail: detail})
		all = all && h
	}
	if !all {
		return OutcomeNoMatch, ct
	}
	exc := false
	for _, c := range r.excepts {
		h := st.holds(c)
		_, detail := st.explain(c)
		ct = append(ct, CondTrace{Section: "except", Key: c.key, Held: h, Detail: detail})
		exc = exc || h
	}
	if exc {
		return OutcomeExcepted, ct
	}
	return OutcomeMatched, ct
}
