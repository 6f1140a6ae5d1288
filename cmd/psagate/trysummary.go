package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"psagate/internal/gateway"
	"psagate/internal/rules"
)

// trySummary is what `psagate try -summary` reports about a run: what an
// admin reads before pointing their appliances at the gateway.
type trySummary struct {
	total     int
	decisions map[string]int
	rules     map[string]int
	clients   map[string]int
	// Mails no vendor rule decided: left to the outcome-wording fallback
	// (rules named "fallback...") or to [rules] default_action.
	fallback, defaulted []string
	safety              []string // quarantined by a safety check
}

func newTrySummary() *trySummary {
	return &trySummary{decisions: map[string]int{}, rules: map[string]int{}, clients: map[string]int{}}
}

func (s *trySummary) add(name string, r *gateway.TrialResult) {
	v := r.Verdict
	s.total++
	s.decisions[string(r.Decision)]++
	s.rules[v.Rule]++
	s.clients[v.Client]++
	line := name + ": " + v.Subject
	switch {
	case v.Rule == gateway.BuiltinDefault:
		s.defaulted = append(s.defaulted, line+" → "+string(r.Decision))
	case strings.HasPrefix(v.Rule, "fallback"):
		s.fallback = append(s.fallback, line+" → "+string(r.Decision)+" ("+v.Rule+")")
	}
	if v.Guard != "" {
		s.safety = append(s.safety, line+": not "+string(v.Was)+", because "+v.Guard)
	}
}

// trySummaryJSON is the -summary -json form.
type trySummaryJSON struct {
	Summary       string         `json:"summary"`
	Messages      int            `json:"messages"`
	Decisions     map[string]int `json:"decisions"`
	Rules         map[string]int `json:"rules"`
	Clients       map[string]int `json:"clients"`
	DefaultAction int            `json:"default_action"`
	Defaulted     []string       `json:"defaulted,omitempty"`
	Fallback      []string       `json:"fallback,omitempty"`
	Safety        []string       `json:"safety,omitempty"`
}

func (s *trySummary) print(w io.Writer, enc *json.Encoder, asJSON bool, title string) error {
	if asJSON {
		return enc.Encode(trySummaryJSON{Summary: title, Messages: s.total, Decisions: s.decisions, Rules: s.rules,
			Clients: s.clients, DefaultAction: len(s.defaulted), Defaulted: s.defaulted, Fallback: s.fallback, Safety: s.safety})
	}
	fmt.Fprintf(w, "summary (%s): %d message(s)\n", title, s.total)
	counts(w, "decisions", s.decisions)
	counts(w, "rules", s.rules)
	counts(w, "clients", s.clients)
	fmt.Fprintf(w, "  default_action fired: %d\n", len(s.defaulted))
	list(w, "left to default_action", s.defaulted)
	list(w, "left to the fallback", s.fallback)
	list(w, "quarantined by a safety check", s.safety)
	return nil
}

// counts prints a table of counts, largest first, then by name.
func counts(w io.Writer, title string, m map[string]int) {
	fmt.Fprintf(w, "  %s:\n", title)
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		fmt.Fprintf(w, "    %6d  %s\n", m[k], k)
	}
}

func list(w io.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(w, "  %s (%d):\n", title, len(items))
	for _, it := range items {
		fmt.Fprintf(w, "    %s\n", it)
	}
}

// decisionChanged reports whether two runs of a message did different
// things: another decision or effect, or the same one on another incident.
func decisionChanged(a, b *gateway.TrialResult) bool {
	return a.Decision != b.Decision || a.Effect != b.Effect || (a.Verdict.Key != b.Verdict.Key && keyMatters(a.Decision))
}

// keyMatters: a drop or reject has no incident, so its key says nothing.
func keyMatters(decision rules.Action) bool {
	return decision != rules.ActionDrop && decision != rules.ActionReject
}

// tryChange is one line of `try -rules -json`.
type tryChange struct {
	File    string     `json:"file"`
	Subject string     `json:"subject"`
	Old     tryOutcome `json:"old"`
	New     tryOutcome `json:"new"`
}

type tryOutcome struct {
	Decision string `json:"decision"`
	Effect   string `json:"effect,omitempty"`
	Rule     string `json:"rule"`
	Key      string `json:"key,omitempty"`
	Guard    string `json:"guard,omitempty"`
}

func outcomeOf(r *gateway.TrialResult) tryOutcome {
	o := tryOutcome{Decision: string(r.Decision), Effect: string(r.Effect), Rule: r.Verdict.Rule, Guard: r.Verdict.Guard}
	if keyMatters(r.Decision) {
		o.Key = r.Verdict.Key
	}
	return o
}

func (o tryOutcome) String() string {
	s := o.Decision
	if o.Effect != "" {
		s += " (" + o.Effect + ")"
	}
	s += fmt.Sprintf(", rule %q", o.Rule)
	if o.Key != "" {
		s += ", key " + o.Key
	}
	if o.Guard != "" {
		s += ", safety: " + o.Guard
	}
	return s
}

func printChange(w io.Writer, enc *json.Encoder, asJSON bool, name string, old, cand *gateway.TrialResult) error {
	c := tryChange{File: name, Subject: old.Verdict.Subject, Old: outcomeOf(old), New: outcomeOf(cand)}
	if asJSON {
		return enc.Encode(c)
	}
	fmt.Fprintf(w, "%s: %s\n  old: %s\n  new: %s\n", c.File, c.Subject, c.Old, c.New)
	return nil
}
