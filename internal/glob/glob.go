// Package glob is the one wildcard matcher of psagate: device globs in the
// config ([[client]] devices, [[client.device]] name) and address globs in
// rules (from = "*@*.axcient.net") match the same way.
//
// "*" matches any run of characters, including none and including "/" and
// "."; "?" matches exactly one character (a rune, not a byte). Every other
// character, "[" and "\" included, stands for itself: device names such as
// "SRV[01]" are literal, and no pattern is ever malformed.
package glob

import (
	"strings"
	"unicode/utf8"
)

// Match reports whether s matches pattern p, comparing characters exactly.
// Callers that compare case-insensitively and already hold lower-case text
// (the rules engine) use it directly to avoid copying.
func Match(p, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					_, n := utf8.DecodeRuneInString(s[sx:])
					px++
					sx += n
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		// Backtrack: let the last "*" swallow one more character.
		if starP >= 0 && starS < len(s) {
			_, n := utf8.DecodeRuneInString(s[starS:])
			starS += n
			px, sx = starP+1, starS
			continue
		}
		return false
	}
	return true
}

// MatchFold is Match ignoring case.
func MatchFold(p, s string) bool {
	return Match(strings.ToLower(p), strings.ToLower(s))
}
