// Package sanitize makes text from untrusted mail safe to put in a PSA field,
// a log line or a template: it repairs invalid UTF-8, removes control
// characters and cuts text to a length at a rune boundary.
//
// Every value that leaves psagate for a ticket system passes through here, so
// that a crafted message cannot inject header lines, terminal escapes or
// broken encodings into a ticket that a human will read.
package sanitize

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s as one line of printable text: invalid UTF-8 is replaced by
// U+FFFD, CR, LF, TAB and other whitespace controls become a single space, every
// other control or format character (NUL, ESC, bidi overrides, ...) is removed,
// and runs of spaces are collapsed. Leading and trailing space is trimmed.
func Line(s string) string {
	if isCleanLine(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\r' || r == '\n' || r == '\t' || r == '\v' || r == '\f' || r == 0x85 || r == 0x2028 || r == 0x2029 || unicode.IsSpace(r):
			space = true
			continue
		case dropRune(r):
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// isCleanLine is the fast path: most subjects are plain printable ASCII.
func isCleanLine(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	prevSpace := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return false
		}
		if c == ' ' {
			if prevSpace {
				return false
			}
			prevSpace = true
		} else {
			prevSpace = false
		}
	}
	return true
}

// Text returns s as multi-line printable text: line ends are normalised to
// "\n", TAB is kept, other control and format characters are removed, invalid
// UTF-8 is replaced, trailing spaces on each line are trimmed and more than two
// consecutive blank lines are collapsed.
func Text(s string) string {
	if isCleanText(s) {
		return s
	}
	return textSlow(s)
}

func textSlow(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	var b strings.Builder
	b.Grow(len(s))
	blank := 0
	for line := range strings.SplitSeq(s, "\n") {
		var lb strings.Builder
		for _, r := range line {
			switch {
			case r == '\t':
				lb.WriteRune(r)
			case r == 0x2028 || r == 0x2029 || r == 0x85:
				lb.WriteByte(' ')
			case dropRune(r):
			default:
				lb.WriteRune(r)
			}
		}
		l := strings.TrimRight(lb.String(), " \t\u00a0")
		if l == "" {
			blank++
			if blank > 2 {
				continue
			}
		} else {
			blank = 0
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return strings.Trim(b.String(), "\n")
}

// isCleanText is Text's fast path: most alert bodies are already clean, and
// Text runs on every message while an SMTP DATA command is open.
func isCleanText(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == '\n' || s[len(s)-1] == '\n' {
		return false
	}
	newlines := 0 // consecutive line ends
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\n':
				if i > 0 && (s[i-1] == ' ' || s[i-1] == '\t') {
					return false
				}
				if newlines++; newlines > 3 {
					return false
				}
			case c == '\t':
				newlines = 0
			case c < 0x20 || c == 0x7f:
				return false
			default:
				newlines = 0
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || dropRune(r) || r == 0x2028 || r == 0x2029 || r == 0x85 || r == 0xa0 {
			return false
		}
		newlines = 0
		i += size
	}
	return s[len(s)-1] != ' ' && s[len(s)-1] != '\t'
}

// dropRune reports whether r is a control or format character that must not
// reach a PSA field. Format characters include the bidi overrides used to
// disguise text (U+202E) and zero-width characters.
func dropRune(r rune) bool {
	if r == utf8.RuneError {
		return false // kept as the visible replacement character
	}
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == 0xFEFF
}

// Truncate cuts s to at most max runes, never splitting a rune. When it cuts,
// it ends the text with marker (which counts towards max). A marker longer
// than max is itself cut.
func Truncate(s string, max int, marker string) string {
	if max <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	mr := utf8.RuneCountInString(marker)
	if mr >= max {
		return cutRunes(marker, max)
	}
	return cutRunes(s, max-mr) + marker
}

// TruncateBytes cuts s to at most max bytes at a rune boundary, adding marker
// (counted in max) when it cuts. Some PSA limits are in bytes of the stored
// encoding rather than characters; this is the safe choice for those.
func TruncateBytes(s string, max int, marker string) string {
	if len(s) <= max {
		return s
	}
	if len(marker) >= max {
		marker = ""
	}
	keep := max - len(marker)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + marker
}

func cutRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
