package message

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"psagate/internal/sanitize"
)

// cleanBodyText is sanitize.Text with a fast path. sanitize.Text builds every
// line afresh, which made it most of the cost of decoding a plain alert; but
// typical alert text, once its CRLFs are LFs, is already what sanitize.Text
// would return. textIsClean recognises exactly that case (FuzzCleanBodyText
// checks the equivalence), and anything else still goes through
// sanitize.Text, which stays the single definition of clean text.
func cleanBodyText(s string) string {
	if strings.IndexByte(s, '\r') >= 0 {
		s = lineEnds.Replace(s)
	}
	s = strings.Trim(s, "\n")
	if textIsClean(s) {
		return s
	}
	return sanitize.Text(s)
}

// lineEnds normalises line ends as sanitize.Text does (CRLF, then any other
// CR, become LF) in one pass. Normalising only CRLF and leaving the rest to
// sanitize.Text would not be the same: "\r\r\n" is two line ends to it.
var lineEnds = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// textIsClean reports whether sanitize.Text(s) == s, conservatively: valid
// UTF-8 without CR, control or format characters (TAB and LF aside), no
// white space before a line end, at most two blank lines in a row, and no
// line break at either end.
func textIsClean(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == '\n' || s[len(s)-1] == '\n' {
		return false
	}
	newlines := 0
	var prev rune
	for i := 0; i < len(s); {
		c := s[i]
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return false
			}
			if r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0xFEFF ||
				unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				return false
			}
		} else if c == '\n' {
			if prev == ' ' || prev == '\t' || prev == '\u00a0' {
				return false
			}
			if newlines++; newlines > 3 {
				return false
			}
		} else if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
		if c != '\n' {
			newlines = 0
		}
		prev = r
		i += size
	}
	return prev != ' ' && prev != '\t' && prev != '\u00a0'
}
