package message

import (
	"bytes"
	"encoding/base64"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
)

// transferDecode returns the part's body without its transfer encoding.
// Encoded bodies are decoded once into a buffer sized from the encoded
// length. A 7bit/8bit body is returned as the sub-slice of raw for text
// (converted to a string later, which copies it) and copied once for an
// attachment, so that attachment data never aliases the caller's buffer.
func (d *decoder) transferDecode(e *entity, own bool) []byte {
	switch e.cte {
	case "quoted-printable":
		out, bad := decodeQP(e.body)
		if bad {
			d.problem(ProblemMalformed, "%s: invalid quoted-printable escapes kept as they are", where(e.path))
		}
		return out
	case "base64":
		out, bad := decodeBase64(e.body)
		if bad {
			d.problem(ProblemMalformed, "%s: broken base64; decoded as far as possible", where(e.path))
		}
		return out
	case "", "7bit", "8bit", "binary":
	default:
		d.problem(ProblemMalformed, "%s: unknown Content-Transfer-Encoding %q; body kept as is", where(e.path), e.cte)
	}
	if own {
		return bytes.Clone(e.body)
	}
	return e.body
}

// decodeQP decodes quoted-printable leniently: unlike mime/quotedprintable it
// never stops at a bad byte. An "=" not followed by two hex digits is kept
// literally (bad is then true); transport padding at line ends is removed;
// line breaks are kept as they were (CRLF or LF).
func decodeQP(src []byte) (dst []byte, bad bool) {
	dst = make([]byte, 0, len(src))
	for len(src) > 0 {
		var line, eol []byte
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, eol, src = src[:i], src[i:i+1], src[i+1:]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line, eol = line[:len(line)-1], []byte("\r\n")
			}
		} else {
			line, src = src, nil
		}
		line = bytes.TrimRight(line, " \t")
		if len(line) > 0 && line[len(line)-1] == '=' {
			line, eol = line[:len(line)-1], nil // soft line break
		}
		for len(line) > 0 {
			i := bytes.IndexByte(line, '=')
			if i < 0 {
				dst = append(dst, line...)
				break
			}
			dst = append(dst, line[:i]...)
			if i+2 < len(line) && isHex(line[i+1]) && isHex(line[i+2]) {
				dst = append(dst, unhex(line[i+1])<<4|unhex(line[i+2]))
				line = line[i+3:]
				continue
			}
			bad = true
			dst = append(dst, '=')
			line = line[i+1:]
		}
		dst = append(dst, eol...)
	}
	return dst, bad
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return (c | 0x20) - 'a' + 10
}

// decodeBase64 decodes a base64 body. The fast path is the standard decoder,
// which skips CR and LF; the output buffer is sized from the length without
// line breaks. On any error the body is decoded again leniently: bytes
// outside the alphabet are skipped, padding ends a chunk, and a dangling
// character is dropped. bad reports junk or a dangling character; plain
// spaces and tabs (seen in the wild) do not count.
func decodeBase64(src []byte) (dst []byte, bad bool) {
	n := len(src) - bytes.Count(src, []byte{'\n'}) - bytes.Count(src, []byte{'\r'})
	dst = make([]byte, base64.RawStdEncoding.DecodedLen(n))
	if m, err := base64.StdEncoding.Decode(dst, src); err == nil {
		return dst[:m], false
	}
	out := dst[:0]
	chunk := make([]byte, 0, n)
	flush := func() {
		if len(chunk)%4 == 1 {
			chunk = chunk[:len(chunk)-1]
			bad = true
		}
		m, err := base64.RawStdEncoding.Decode(out[len(out):cap(out)], chunk)
		out = out[:len(out)+m]
		if err != nil {
			bad = true
		}
		chunk = chunk[:0]
	}
	for _, c := range src {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
			chunk = append(chunk, c)
		case c == '=':
			if len(chunk) > 0 {
				flush()
			}
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		default:
			bad = true
		}
	}
	flush()
	return out, bad
}

// toUTF8 converts text in the named charset to UTF-8, at most limit bytes
// of it (cut at a rune boundary; cut reports it). Known charsets go through
// go-message/charset. Text in an unknown charset, or 8-bit text labelled
// US-ASCII or not labelled at all, is kept if it is valid UTF-8 and otherwise
// read as Windows-1252, which keeps it readable; both are recorded as
// ProblemCharset, as is invalid UTF-8 in text labelled UTF-8.
func (d *decoder) toUTF8(b []byte, cs string, limit int) (string, bool) {
	var w strings.Builder
	cut := d.writeUTF8(&w, "", b, cs, limit, false)
	return w.String(), cut
}

// writeUTF8 is toUTF8 writing into w, preceded by sep. With lines set, CRLF
// line ends become LF on the way and nothing is written (not even sep) when
// the text is blank: this is how body parts are joined with a single copy.
func (d *decoder) writeUTF8(w *strings.Builder, sep string, b []byte, cs string, limit int, lines bool) (cut bool) {
	cs = normCharset(cs)
	switch cs {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
		if len(b) > limit {
			b, cut = cutRunes(b, limit), true
		}
		if utf8.Valid(b) {
			emit(w, sep, b, lines)
			return cut
		}
		if cs == "utf-8" || cs == "utf8" {
			d.problem(ProblemCharset, "%s: invalid UTF-8 repaired", d.ctx)
			emit(w, sep, []byte(strings.ToValidUTF8(string(b), "\uFFFD")), lines)
			return cut
		}
		d.problem(ProblemCharset, "%s: 8-bit text without a charset read as Windows-1252", d.ctx)
		emit(w, sep, []byte(windows1252(string(b))), lines)
		return cut
	}
	r, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		d.problem(ProblemCharset, "%s: unknown charset %q; text shown as best guess", d.ctx, cs)
		if len(b) > limit {
			b, cut = cutRunes(b, limit), true
		}
		if !utf8.Valid(b) {
			b = []byte(windows1252(string(b)))
		}
		emit(w, sep, b, lines)
		return cut
	}
	out, cut := readLimit(r, len(b)+len(b)/2, limit)
	if !utf8.Valid(out) {
		// x/text decoders emit U+FFFD for bad input, but be sure.
		out = []byte(strings.ToValidUTF8(string(out), "\uFFFD"))
	}
	emit(w, sep, out, lines)
	return cut
}

// emit writes sep and b to w. With lines set it writes nothing for blank b
// and normalises line ends while copying, exactly as lineEnds does.
func emit(w *strings.Builder, sep string, b []byte, lines bool) {
	if !lines {
		w.WriteString(sep)
		w.Write(b)
		return
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	w.Grow(len(sep) + len(b))
	w.WriteString(sep)
	for {
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			w.Write(b)
			return
		}
		w.Write(b[:i])
		w.WriteByte('\n')
		b = b[i+1:]
		if len(b) > 0 && b[0] == '\n' {
			b = b[1:]
		}
	}
}

// normCharset lower-cases a charset label and strips what surrounds it in
// the wild: quotes, spaces and an RFC 2231 language suffix ("utf-8*en").
func normCharset(cs string) string {
	cs = strings.Trim(strings.TrimSpace(cs), `"'`)
	if i := strings.IndexByte(cs, '*'); i >= 0 {
		cs = cs[:i]
	}
	return strings.ToLower(cs)
}

// readLimit reads r into a buffer of initial capacity hint, returning at
// most limit bytes, cut at a rune boundary.
func readLimit(r io.Reader, hint, limit int) ([]byte, bool) {
	buf := make([]byte, 0, min(hint, limit)+utf8.UTFMax)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				break
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	if len(buf) > limit {
		return cutRunes(buf, limit), true
	}
	return buf, false
}

// cutRunes cuts b to at most n bytes without splitting a UTF-8 sequence.
func cutRunes(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			return b[:i]
		}
	}
	return b[:n]
}

// windows1252 keeps the valid UTF-8 in s and reads every other byte as
// Windows-1252: the best guess for raw 8-bit text from old mailers, and it
// never loses a character the sender meant.
func windows1252(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/2)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(charmap.Windows1252.DecodeByte(s[i]))
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// wordCharset is the mime.WordDecoder's CharsetReader. It never fails: a
// word in an unknown charset is kept readable and the problem recorded, so
// one odd word does not leave the whole header undecoded. The result is a
// strings.Reader so that the decoder's io.Copy needs no buffer of its own.
func (d *decoder) wordCharset(cs string, input io.Reader) (io.Reader, error) {
	b, _ := io.ReadAll(input)
	s, _ := d.toUTF8(b, cs, len(b)*utf8.UTFMax+utf8.UTFMax)
	return strings.NewReader(s), nil
}

// rfc2231 stitches an RFC 2231 parameter (key*=charset'lang'%xx or the
// key*0*, key*1 continuations) from the raw header value v, converting it
// from any charset go-message/charset knows.
func (d *decoder) rfc2231(v, key string) (string, bool) {
	if !strings.Contains(v, key+"*") {
		return "", false
	}
	_, params := looseParams(v)
	var cs string
	var val []byte
	if ext, ok := params[key+"*"]; ok {
		cs, val = split2231(ext)
	} else {
		for i := 0; ; i++ {
			k := key + "*" + strconv.Itoa(i)
			if p, ok := params[k]; ok {
				val = append(val, p...)
				continue
			}
			p, ok := params[k+"*"]
			if !ok {
				if i == 0 {
					return "", false
				}
				break
			}
			if i == 0 {
				cs, val = split2231(p)
			} else {
				val = append(val, percentDecode(p)...)
			}
		}
	}
	s, _ := d.toUTF8(val, cs, maxNameBytes*utf8.UTFMax)
	return s, true
}

// split2231 splits charset'language'percent-encoded.
func split2231(v string) (string, []byte) {
	cs, rest, ok := strings.Cut(v, "'")
	if !ok {
		return "", percentDecode(v)
	}
	_, rest, _ = strings.Cut(rest, "'")
	return cs, percentDecode(rest)
}

func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

// metaCharset finds a charset declared in the first KiB of an HTML document
// (<meta charset=...> or the http-equiv form), as a browser's prescan does,
// for HTML parts whose MIME header names none.
func metaCharset(b []byte) string {
	b = b[:min(len(b), 1024)]
	for i := 0; ; {
		j := indexFold(b[i:], "charset=")
		if j < 0 {
			return ""
		}
		i += j + len("charset=")
		v := b[i:]
		if len(v) > 0 && (v[0] == '"' || v[0] == '\'') {
			v = v[1:]
		}
		n := 0
		for n < len(v) && n < 40 && (isLetter(v[n]) || '0' <= v[n] && v[n] <= '9' || strings.IndexByte("-_.:", v[n]) >= 0) {
			n++
		}
		if n > 0 {
			return string(v[:n])
		}
	}
}

// indexFold is bytes.Index for an ASCII lower-case needle, ignoring ASCII
// case.
func indexFold(b []byte, needle string) int {
next:
	for i := 0; i+len(needle) <= len(b); i++ {
		for j := 0; j < len(needle); j++ {
			c := b[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != needle[j] {
				continue next
			}
		}
		return i
	}
	return -1
}
