package rules

import (
	"fmt"
	"io"
)

// FormatTrace writes a message trace for humans, one line per rule that was
// evaluated and one per condition, like:
//
//	matched      rule "veeam job failed" (rules/veeam.toml:10, priority 300) → ticket: decides
//	    if     subject_matches          yes  "^\[(Failed|Warning)\]" matched "[Failed]" in subject
//	no-match     rule "veeam job succeeded" (rules/veeam.toml:24, priority 300)
//	    if     subject_matches          no   none of "^\[Success\]" matched the subject
//	not-reached  3 later rule(s)
//
// Write errors are ignored: the trace is advice for a terminal.
func FormatTrace(w io.Writer, tr []Trace) {
	notReached, decided := 0, false
	for _, t := range tr {
		if t.Outcome == OutcomeNotReached {
			notReached++
			continue
		}
		r := t.Rule
		mode := ""
		if r.Mode == ModeAudit {
			mode = ", audit mode"
		}
		fmt.Fprintf(w, "%-12s rule %q (%s:%d, priority %d%s)", t.Outcome, r.Name, r.File, r.Line, r.Priority, mode)
		switch {
		case t.Decided:
			decided = true
			fmt.Fprintf(w, " → %s: decides", r.Then.Action)
		case t.Outcome == OutcomeMatched:
			fmt.Fprintf(w, " → %s: stop = false, its fields are kept and a later match decides instead", r.Then.Action)
		case t.Outcome == OutcomeAuditMatch:
			fmt.Fprintf(w, " → would %s (audit mode: not acted on)", r.Then.Action)
		}
		fmt.Fprintln(w)
		for _, c := range t.Conds {
			held := "no"
			if c.Held {
				held = "yes"
			}
			fmt.Fprintf(w, "    %-6s %-24s %-3s  %s\n", c.Section, c.Key, held, c.Detail)
		}
	}
	if notReached > 0 {
		fmt.Fprintf(w, "not-reached  %d later rule(s)\n", notReached)
	}
	if !decided {
		fmt.Fprintln(w, "no rule decided: the default action applies")
	}
}
