package rules

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a rule file. Every field but Msg may be unknown
// (empty or 0); Error() leaves unknown parts out.
type Error struct {
	File string
	Line int
	Rule string
	Msg  string
}

// Error formats the problem as `file:line: rule "name": message`.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadError is every problem found in a set of rule files, sorted by file
// (in the order the files were given) and line. A set with any problem is
// refused whole: half a rule set could drop mail the admin meant to keep.
type LoadError struct {
	Errs []*Error
}

// Error lists every problem, one a line.
func (e *LoadError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, x := range e.Errs {
		parts[i] = x.Error()
	}
	return strings.Join(parts, "\n")
}

// sortErrors orders errs by the position of their file in files, then line.
// Errors that name no file (options) come first.
func sortErrors(errs []*Error, files []File) {
	order := map[string]int{}
	for i, f := range files {
		if _, ok := order[f.Name]; !ok {
			order[f.Name] = i + 1
		}
	}
	sort.SliceStable(errs, func(i, j int) bool {
		fi, fj := order[errs[i].File], order[errs[j].File]
		if fi != fj {
			return fi < fj
		}
		return errs[i].Line < errs[j].Line
	})
}

// suggest returns the known word closest to s when it is close enough to be
// a likely typo, or "".
func suggest(s string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := editDistance(s, k)
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	limit := 2
	if len(s) > 8 {
		limit = 3
	}
	if best != "" && bestD <= limit {
		return best
	}
	return ""
}

// didYouMean is suggest as a message suffix.
func didYouMean(s string, known []string) string {
	if k := suggest(s, known); k != "" {
		return fmt.Sprintf(" (did you mean %q?)", k)
	}
	return ""
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20 // not a typo of a key name
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
