// Package suggest finds the likely intended word for a typo, so that
// config and rule errors can say `did you mean "board"?`.
package suggest

// Closest returns the candidate closest to s when it is close enough to be
// a likely typo (edit distance at most 2, or 3 for words longer than 8),
// or "".
func Closest(s string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := Distance(s, c)
		if best == "" || d < bestD {
			best, bestD = c, d
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

// Distance is the Levenshtein distance of a and b, bytewise. Strings longer
// than 64 bytes are not key names: they are reported as far apart.
func Distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
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
