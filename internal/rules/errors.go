package rules

import (
	"fmt"
	"sort"
	"strings"

	"psagate/internal/suggest"
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

// didYouMean is suggest as a message suffix.
func didYouMean(s string, known []string) string {
	if k := suggest.Closest(s, known); k != "" {
		return fmt.Sprintf(" (did you mean %q?)", k)
	}
	return ""
}
