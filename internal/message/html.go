package message

import (
	"html"
	"strings"
	"unicode/utf8"
)

// htmlToText renders an HTML document as readable text of at most limit
// bytes (cut reports that it was longer). It is a small tokenizer, not a
// browser: it knows what alert mail uses. Scripts, styles, titles and
// comments produce nothing; images produce their alt text unless they are
// tracking pixels; links keep their text and add " (url)" for an http(s)
// target that differs from it; block elements and <br> break lines; table
// cells are separated by " | " and rows by line breaks; entities are decoded
// and white space collapsed outside <pre>.
func htmlToText(s string, limit int) (text string, cut bool) {
	r := htmlRenderer{limit: limit}
	r.b.Grow(min(len(s)/4, limit) + 16)
	r.render(s)
	return r.b.String(), r.full
}

type htmlRenderer struct {
	b     strings.Builder
	limit int
	full  bool

	nl     int    // line breaks owed before the next text (at most 2 are written)
	space  bool   // a space is owed before the next text
	seps   int    // table cell separators owed before the next text
	prefix string // list bullet owed before the next text
	pre    int    // depth of <pre>

	cells  int   // cells started in the current table row
	tables []int // cells of the enclosing rows, for nested tables

	tableEnded bool // a nested table ended and nothing was written since

	noEndTag map[string]int // element name -> offset after which it has no end tag

	linkHref  string // http(s) target of the open <a>, "" if none
	linkStart int    // length of the output when the <a> opened
}

// Elements that break the line, and those that leave a blank line.
var (
	lineBlocks = map[string]bool{
		"div": true, "li": true, "tr": true, "dt": true, "dd": true, "section": true,
		"article": true, "header": true, "footer": true, "nav": true, "aside": true,
		"main": true, "center": true, "caption": true, "details": true, "summary": true,
		"figcaption": true, "legend": true, "table": true, "tbody": true, "thead": true,
		"tfoot": true, "form": true, "option": true, "body": true, "html": true,
	}
	paraBlocks = map[string]bool{
		"p": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true,
		"ul": true, "ol": true, "dl": true, "blockquote": true, "pre": true, "hr": true,
		"address": true, "figure": true, "fieldset": true,
	}
	// rawText elements hold text that is not markup; of these, script,
	// style and friends are never shown.
	hiddenRaw = map[string]bool{
		"script": true, "style": true, "title": true, "xmp": true, "iframe": true,
		"noembed": true, "noframes": true, "template": true,
	}
)

func (r *htmlRenderer) render(s string) {
	i := 0
	for i < len(s) && !r.full {
		lt := strings.IndexByte(s[i:], '<')
		if lt < 0 {
			r.text(s[i:])
			return
		}
		r.text(s[i : i+lt])
		i += lt
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "<!--"):
			i += commentLen(rest)
		case len(rest) > 1 && (rest[1] == '!' || rest[1] == '?'):
			// doctype, CDATA or a processing instruction: a bogus comment
			i += skipPast(rest, '>')
		case len(rest) > 2 && rest[1] == '/' && isLetter(rest[2]):
			t := parseTag(rest, 2)
			r.endTag(t.name)
			i += t.n
		case len(rest) > 1 && rest[1] == '/':
			i += skipPast(rest, '>') // "</>" or "</ junk>"
		case len(rest) > 1 && isLetter(rest[1]):
			t := parseTag(rest, 1)
			i += t.n
			if hiddenRaw[t.name] && !t.selfClosing {
				if end := r.indexEndTag(s, i, t.name); end >= 0 {
					i += end
					continue
				}
				if t.name == "script" || t.name == "style" {
					return // unclosed: a browser would hide the rest too
				}
				continue // an unclosed <title> hides nothing
			}
			r.startTag(&t)
		default:
			r.text("<")
			i++
		}
	}
}

// commentLen returns the length of the comment at the start of s, which
// begins with "<!--"; an unclosed comment runs to the end.
func commentLen(s string) int {
	for _, short := range [...]string{"<!-->", "<!--->"} {
		if strings.HasPrefix(s, short) {
			return len(short)
		}
	}
	if end := strings.Index(s[4:], "-->"); end >= 0 {
		return 4 + end + 3
	}
	return len(s)
}

// skipPast returns the length up to and including the first c, or len(s).
func skipPast(s string, c byte) int {
	if i := strings.IndexByte(s, c); i >= 0 {
		return i + 1
	}
	return len(s)
}

func isLetter(c byte) bool {
	return 'a' <= c|0x20 && c|0x20 <= 'z'
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

// indexEndTag returns the offset from s[from:] to just past "</name ...>",
// or -1. A failed search is remembered: without it, a document of unclosed
// <title> tags would be rescanned to its end once per tag.
func (r *htmlRenderer) indexEndTag(s string, from int, name string) int {
	if at, ok := r.noEndTag[name]; ok && from >= at {
		return -1
	}
	end := indexEndTag(s[from:], name)
	if end < 0 {
		if r.noEndTag == nil {
			r.noEndTag = make(map[string]int)
		}
		r.noEndTag[name] = from
	}
	return end
}

// indexEndTag returns the offset just past "</name ...>" in s (ASCII case
// insensitive), or -1.
func indexEndTag(s, name string) int {
	for i := 0; ; {
		j := strings.Index(s[i:], "</")
		if j < 0 {
			return -1
		}
		i += j
		k := i + 2 + len(name)
		if k <= len(s) && strings.EqualFold(s[i+2:k], name) && (k == len(s) || isSpaceByte(s[k]) || s[k] == '>' || s[k] == '/') {
			return k + skipPast(s[k:], '>')
		}
		i += 2
	}
}

type htmlTag struct {
	name        string // lower-case
	n           int    // bytes consumed, '>' included
	selfClosing bool
	href, alt   string
	width       string
	height      string
}

// parseTag parses the tag starting at s[0] == '<', whose name starts at
// s[from]. Attribute values are entity-decoded; only the attributes the
// renderer uses are kept. A tag without '>' runs to the end.
func parseTag(s string, from int) htmlTag {
	var t htmlTag
	i := from
	for i < len(s) && !isSpaceByte(s[i]) && s[i] != '/' && s[i] != '>' {
		i++
	}
	t.name = asciiLower(s[from:i])
	for {
		for i < len(s) && (isSpaceByte(s[i]) || s[i] == '/') {
			t.selfClosing = s[i] == '/'
			i++
		}
		if i >= len(s) {
			t.n = len(s)
			return t
		}
		if s[i] == '>' {
			t.n = i + 1
			return t
		}
		t.selfClosing = false
		start := i
		i++ // the first character may be '=' (HTML treats it as part of the name)
		for i < len(s) && !isSpaceByte(s[i]) && s[i] != '/' && s[i] != '>' && s[i] != '=' {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpaceByte(s[i]) {
			i++
		}
		var val string
		hasVal := false
		if i < len(s) && s[i] == '=' {
			hasVal = true
			i++
			for i < len(s) && isSpaceByte(s[i]) {
				i++
			}
			if i < len(s) && (s[i] == '"' || s[i] == '\'') {
				q := s[i]
				end := strings.IndexByte(s[i+1:], q)
				if end < 0 {
					val, i = s[i+1:], len(s)
				} else {
					val, i = s[i+1:i+1+end], i+2+end
				}
			} else {
				start := i
				for i < len(s) && !isSpaceByte(s[i]) && s[i] != '>' {
					i++
				}
				val = s[start:i]
			}
		}
		switch {
		case strings.EqualFold(key, "href"):
			t.href = html.UnescapeString(val)
		case strings.EqualFold(key, "alt") && hasVal:
			t.alt = html.UnescapeString(val)
		case strings.EqualFold(key, "width"):
			t.width = val
		case strings.EqualFold(key, "height"):
			t.height = val
		}
	}
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func (r *htmlRenderer) startTag(t *htmlTag) {
	switch t.name {
	case "br":
		r.nl++
		r.space = false
		return
	case "td", "th":
		if r.cells > 0 && !r.tableEnded {
			// A line break owed by the previous cell's content (a <div> in
			// it) gives way to the separator: the row stays one line. After
			// a nested table the break stays, or the next cell would look
			// like one of the inner table's.
			r.nl, r.space = 0, false
			r.seps++
		}
		r.cells++
		return
	case "tr":
		r.cells, r.seps = 0, 0
	case "table":
		r.tables = append(r.tables, r.cells)
		r.cells = 0
	case "li":
		r.block(1)
		r.prefix = "- "
		return
	case "pre":
		r.pre++
	case "a":
		r.closeLink()
		href := strings.TrimSpace(t.href)
		if hasPrefixFold(href, "http://") || hasPrefixFold(href, "https://") {
			r.linkHref, r.linkStart = href, r.b.Len()
		}
		return
	case "img":
		if strings.TrimSpace(t.alt) != "" && !isPixel(t.width) && !isPixel(t.height) {
			r.space = true
			r.text(t.alt)
			r.space = true
		}
		return
	}
	r.blockFor(t.name)
}

func (r *htmlRenderer) endTag(name string) {
	switch name {
	case "br": // browsers treat </br> as <br>
		r.nl++
		r.space = false
		return
	case "td", "th":
		return
	case "table":
		if n := len(r.tables); n > 0 {
			r.cells, r.tables = r.tables[n-1], r.tables[:n-1]
			r.block(1)
			r.tableEnded = true
			return
		}
	case "pre":
		if r.pre > 0 {
			r.pre--
		}
	case "a":
		r.closeLink()
		return
	case "li":
		r.block(1)
		return
	}
	r.blockFor(name)
}

func (r *htmlRenderer) blockFor(name string) {
	switch {
	case paraBlocks[name]:
		r.block(2)
	case lineBlocks[name]:
		r.block(1)
	}
}

// block owes n line breaks, unless more are owed already.
func (r *htmlRenderer) block(n int) {
	r.nl = max(r.nl, n)
	r.space = false
	r.seps = 0
}

// closeLink adds the URL of the open link after its text when the text does
// not already say it.
func (r *htmlRenderer) closeLink() {
	href := r.linkHref
	if href == "" {
		return
	}
	r.linkHref = ""
	label := strings.TrimSpace(r.b.String()[min(r.linkStart, r.b.Len()):])
	if label == "" || sameURL(label, href) {
		return
	}
	r.space = true
	r.text("(" + href + ")")
}

// sameURL reports whether a link's text is its target, give or take the
// scheme and a trailing slash.
func sameURL(label, href string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		for _, p := range [...]string{"https://", "http://", "mailto:"} {
			s = strings.TrimPrefix(s, p)
		}
		return strings.TrimSuffix(s, "/")
	}
	return norm(label) == norm(href)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// isPixel reports whether a width or height attribute makes an image a
// tracking pixel.
func isPixel(v string) bool {
	v = strings.TrimSuffix(strings.TrimSpace(v), "px")
	return v == "0" || v == "1"
}

// text writes character data: entities decoded, white space collapsed
// (kept inside <pre>), owed breaks, separators and bullets written first.
func (r *htmlRenderer) text(s string) {
	if s == "" || r.full {
		return
	}
	if strings.IndexByte(s, '&') >= 0 {
		s = html.UnescapeString(s)
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if isSpaceByte(c) || c == '\v' {
				if r.pre > 0 && (c == '\n' || c == '\r') {
					if c == '\r' && i+1 < len(s) && s[i+1] == '\n' {
						i++
					}
					r.nl++
				} else if r.pre > 0 {
					r.flush()
					r.b.WriteByte(c)
				} else {
					r.space = true
				}
				i++
				continue
			}
			// a run of printable ASCII
			j := i + 1
			for j < len(s) && s[j] < utf8.RuneSelf && !isSpaceByte(s[j]) && s[j] != '\v' {
				j++
			}
			r.flush()
			r.b.WriteString(s[i:j])
			i = j
		} else {
			ru, size := utf8.DecodeRuneInString(s[i:])
			if ru == '\u00a0' { // &nbsp; is a space to a reader (and to rules)
				if r.pre > 0 {
					r.flush()
					r.b.WriteByte(' ')
				} else {
					r.space = true
				}
			} else {
				r.flush()
				r.b.WriteString(s[i : i+size])
			}
			i += size
		}
		if r.b.Len() > r.limit {
			r.full = true
			return
		}
	}
}

// flush writes what is owed before the next visible character.
func (r *htmlRenderer) flush() {
	if r.b.Len() > 0 {
		switch {
		case r.nl > 0:
			r.b.WriteString("\n\n"[:min(r.nl, 2)])
		case r.seps > 0:
			r.b.WriteString(strings.Repeat(" |", r.seps))
			r.b.WriteByte(' ')
		case r.space:
			r.b.WriteByte(' ')
		}
	}
	if r.prefix != "" {
		r.b.WriteString(r.prefix)
		r.prefix = ""
	}
	r.nl, r.seps, r.space, r.tableEnded = 0, 0, false, false
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
