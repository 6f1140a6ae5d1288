package message

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlToText renders an HTML document as readable text of at most limit
// bytes (cut reports that it was longer). golang.org/x/net/html's Tokenizer
// splits the markup the way the HTML5 tokenizer does; the layout on top is
// ours and knows what alert mail uses. Scripts, styles, titles, templates and
// comments produce nothing; images produce their alt text unless they are
// tracking pixels; links keep their text and add " (url)" for an http(s)
// target that differs from it; block elements and <br> break lines; table
// cells are separated by " | " and rows by line breaks; entities are decoded
// and white space collapsed outside <pre>.
//
// Where HTML5 and alert mail disagree, the mail wins: an element whose
// content HTML reads as raw text (<title>, <textarea>, ...) but which is
// never closed is taken as an ordinary tag, so a sloppy template does not
// lose the alert text after it; only an unclosed <script> or <style> hides
// the rest, as in a browser. <noscript> is markup, as in a mail reader,
// which runs no scripts.
func htmlToText(s string, limit int) (text string, cut bool) {
	r := htmlRenderer{src: s, limit: limit, hideTo: -1}
	r.out = make([]byte, 0, min(len(s)/4, limit)+16)
	r.render()
	return string(r.out), r.full
}

// minTokenBuf is the least the tokenizer may buffer for one token (a tag
// with a data: URI image, a long <style>). The buffer is max(limit,
// minTokenBuf), so memory follows the output limit, not the input: a text
// run or raw-text element longer than that is rendered or skipped from the
// source instead (see recoverToken), and only a longer tag or comment ends
// the rendering, as a cut.
const minTokenBuf = 256 << 10

// textChunk is the piece size in which an over-long text run is rendered.
const textChunk = 64 << 10

type htmlRenderer struct {
	src   string
	out   []byte // the text, never longer than limit
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

	// rawNext is the element whose content the tokenizer reads next as raw
	// text (0 if none), and rawHidden whether that content is not shown.
	rawNext   atom.Atom
	rawHidden bool
	// hideTo is the offset in src of the end tag that closes a hidden
	// element (<title>, <template>, ...): tokens starting at or before it
	// produce nothing. -1 when nothing is hidden.
	hideTo int

	noEndTag map[atom.Atom]int // element -> offset after which it has no end tag

	linkHref  string // http(s) target of the open <a>, "" if none
	linkStart int    // length of the output when the <a> opened
}

// blockBreaks returns the line breaks an element's start and end owe: 1
// for those that break the line, 2 for those that leave a blank line.
func blockBreaks(a atom.Atom) int {
	switch a {
	case atom.Div, atom.Li, atom.Tr, atom.Dt, atom.Dd, atom.Section,
		atom.Article, atom.Header, atom.Footer, atom.Nav, atom.Aside,
		atom.Main, atom.Center, atom.Caption, atom.Details, atom.Summary,
		atom.Figcaption, atom.Legend, atom.Table, atom.Tbody, atom.Thead,
		atom.Tfoot, atom.Form, atom.Option, atom.Body, atom.Html:
		return 1
	case atom.P, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6,
		atom.Ul, atom.Ol, atom.Dl, atom.Blockquote, atom.Pre, atom.Xmp,
		atom.Hr, atom.Address, atom.Figure, atom.Fieldset:
		return 2
	}
	return 0
}

// isHidden reports the elements that are never shown. All but <template>
// are raw text to the tokenizer (so are <script> and <style>, handled on
// their own).
func isHidden(a atom.Atom) bool {
	switch a {
	case atom.Title, atom.Iframe, atom.Noembed, atom.Noframes, atom.Template:
		return true
	}
	return false
}

// isRaw reports the elements whose content the tokenizer reads as raw text
// (x/net/html's readStartTag).
func isRaw(a atom.Atom) bool {
	switch a {
	case atom.Iframe, atom.Noembed, atom.Noframes, atom.Noscript, atom.Plaintext,
		atom.Script, atom.Style, atom.Textarea, atom.Title, atom.Xmp:
		return true
	}
	return false
}

// tagAtom returns the element of a start or end tag token from its raw
// bytes, by the tokenizer's rule for the name ("<" or "</", then up to white
// space, '/' or '>'); 0 for a name that is no HTML element. Tokenizer.TagName
// would copy the name for every tag, the largest cost of rendering.
func tagAtom(raw []byte) atom.Atom {
	i := 1
	if len(raw) > 1 && raw[1] == '/' {
		i = 2
	}
	var buf [16]byte // longer than any element name the layout knows
	n := 0
	for ; i < len(raw) && !isSpaceByte(raw[i]) && raw[i] != '/' && raw[i] != '>'; i++ {
		if n == len(buf) {
			return 0
		}
		c := raw[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	return atom.Lookup(buf[:n])
}

func newTokenizer(s string, maxBuf int) *html.Tokenizer {
	z := html.NewTokenizer(strings.NewReader(s))
	z.SetMaxBuf(maxBuf)
	return z
}

func (r *htmlRenderer) render() {
	maxBuf := max(r.limit, minTokenBuf)
	z := newTokenizer(r.src, maxBuf)
	pos := 0 // offset in src of the next token: the tokens' Raw bytes partition it
	for !r.full {
		start := pos
		tt := z.Next()
		n := len(z.Raw())
		pos += n
		raw, rawHidden := r.rawNext, r.rawHidden
		r.rawNext, r.rawHidden = 0, false
		hidden := start <= r.hideTo
		if n >= maxBuf || tt == html.ErrorToken && errors.Is(z.Err(), html.ErrBufferExceeded) {
			// The tokenizer stopped inside this token: it returns what it
			// has of a text or comment and an error for a tag; the error
			// stays. Go on from the source, with a new tokenizer.
			next := r.recoverToken(start, tt, raw, rawHidden || hidden)
			if next < 0 || next >= len(r.src) {
				return
			}
			pos = next
			z = newTokenizer(r.src[pos:], maxBuf)
			continue
		}
		switch tt {
		case html.ErrorToken:
			return // io.EOF
		case html.TextToken:
			if !rawHidden && !hidden {
				text(r, z.Text())
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			r.startTagToken(z, pos, hidden)
		case html.EndTagToken:
			if !hidden {
				r.endTag(tagAtom(z.Raw()))
			}
		}
	}
}

// startTagToken handles a start tag ending at pos: it decides how the
// tokenizer reads what follows, hides what must not be shown, and renders
// the rest.
func (r *htmlRenderer) startTagToken(z *html.Tokenizer, pos int, hidden bool) {
	a := tagAtom(z.Raw())
	switch {
	case a == atom.Noscript:
		z.NextIsNotRawText() // a mail reader runs no scripts: it shows this
	case a == atom.Script || a == atom.Style:
		r.rawNext, r.rawHidden = a, true
		return
	case a == atom.Template || isRaw(a) && a != atom.Plaintext:
		end := r.indexEndTag(pos, a)
		if end < 0 {
			// Unclosed: HTML would read the rest of the document as this
			// element's content; alert mail keeps it as markup.
			if isRaw(a) {
				z.NextIsNotRawText()
			}
			return
		}
		if isRaw(a) {
			r.rawNext, r.rawHidden = a, isHidden(a)
		}
		if isHidden(a) {
			r.hideTo = max(r.hideTo, pos+end)
			return
		}
	case isRaw(a): // plaintext: the rest of the document is text
		r.rawNext = a
	}
	if hidden {
		return
	}
	var t htmlTag
	if a == atom.A || a == atom.Img {
		for more := true; more; {
			var k, v []byte
			k, v, more = z.TagAttr()
			switch string(k) {
			case "href":
				t.href = string(v)
			case "alt":
				t.alt = string(v)
			case "width":
				t.pixel = t.pixel || isPixel(v)
			case "height":
				t.pixel = t.pixel || isPixel(v)
			}
		}
	}
	r.startTag(a, &t)
}

// recoverToken goes on after token tt, which starts at start and is longer
// than the tokenizer may buffer. A text run, the content of raw element raw
// (0 if none) included, is rendered straight from the source, or skipped if
// hidden; a comment or doctype is skipped. It returns the offset to tokenize
// from next, or -1 when rendering ends: in an unclosed <script>, <style> or
// comment (which hide the rest), or at a tag that long, which cuts the
// output.
func (r *htmlRenderer) recoverToken(start int, tt html.TokenType, raw atom.Atom, hidden bool) int {
	s := r.src[start:]
	end := len(s) // where the token ends, or -1 if it hides the rest
	switch {
	case tt == html.TextToken && raw == atom.Plaintext:
	case tt == html.TextToken && raw != 0:
		end = indexEndTag(s, raw.String())
	case tt == html.TextToken:
		// up to the next '<', where markup may start
		if i := strings.IndexByte(s[1:], '<'); i >= 0 {
			end = 1 + i
		}
	case (tt == html.CommentToken || tt == html.DoctypeToken) && strings.HasPrefix(s, "<!--"):
		// Closed by "-->" or "--!>"; the short forms ("<!-->") never get here.
		end = -1
		for _, close := range [...]string{"-->", "--!>"} {
			if i := strings.Index(s[4:], close); i >= 0 && (end < 0 || 4+i+len(close) < end) {
				end = 4 + i + len(close)
			}
		}
		hidden = true
	case tt == html.CommentToken || tt == html.DoctypeToken:
		// "<!DOCTYPE", or a bogus comment ("<!x", "<?x", "</ x") up to ">"
		if end = strings.IndexByte(s, '>'); end >= 0 {
			end++
		}
		hidden = true
	default: // a start or end tag
		r.full = true
		return -1
	}
	if end < 0 {
		return -1
	}
	if !hidden {
		r.textString(s[:end], raw == 0 || raw == atom.Textarea)
	}
	return start + end
}

// indexEndTag returns the offset from src[from:] of the end tag of element
// a, or -1. A failed search is remembered: without it, a document of
// unclosed <title> tags would be rescanned to its end once per tag.
func (r *htmlRenderer) indexEndTag(from int, a atom.Atom) int {
	if at, ok := r.noEndTag[a]; ok && from >= at {
		return -1
	}
	end := indexEndTag(r.src[from:], a.String())
	if end < 0 {
		if r.noEndTag == nil {
			r.noEndTag = make(map[atom.Atom]int)
		}
		r.noEndTag[a] = from
	}
	return end
}

// indexEndTag returns the offset of the first "</name" in s (ASCII case
// insensitive) followed by what ends a tag name, or -1: where the tokenizer
// ends raw text.
func indexEndTag(s, name string) int {
	for i := 0; ; {
		j := strings.Index(s[i:], "</")
		if j < 0 {
			return -1
		}
		i += j
		k := i + 2 + len(name)
		if k < len(s) && strings.EqualFold(s[i+2:k], name) && (isSpaceByte(s[k]) || s[k] == '>' || s[k] == '/') {
			return i
		}
		i += 2
	}
}

func isLetter(c byte) bool {
	return 'a' <= c|0x20 && c|0x20 <= 'z'
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

// htmlTag holds the attributes of a start tag that the layout uses.
type htmlTag struct {
	href, alt string
	pixel     bool // width or height make an image a tracking pixel
}

func (r *htmlRenderer) startTag(a atom.Atom, t *htmlTag) {
	switch a {
	case atom.Br:
		r.nl++
		r.space = false
		return
	case atom.Td, atom.Th:
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
	case atom.Tr:
		r.cells, r.seps = 0, 0
	case atom.Table:
		r.tables = append(r.tables, r.cells)
		r.cells = 0
	case atom.Li:
		r.block(1)
		r.prefix = "- "
		return
	case atom.Pre, atom.Xmp:
		r.pre++
	case atom.A:
		r.closeLink()
		href := strings.TrimSpace(t.href)
		if hasPrefixFold(href, "http://") || hasPrefixFold(href, "https://") {
			r.linkHref, r.linkStart = href, len(r.out)
		}
		return
	case atom.Img:
		if strings.TrimSpace(t.alt) != "" && !t.pixel {
			r.space = true
			text(r, t.alt)
			r.space = true
		}
		return
	}
	r.blockFor(a)
}

func (r *htmlRenderer) endTag(a atom.Atom) {
	switch a {
	case atom.Br: // browsers treat </br> as <br>
		r.nl++
		r.space = false
		return
	case atom.Td, atom.Th:
		return
	case atom.Table:
		if n := len(r.tables); n > 0 {
			r.cells, r.tables = r.tables[n-1], r.tables[:n-1]
			r.block(1)
			r.tableEnded = true
			return
		}
	case atom.Pre, atom.Xmp:
		if r.pre > 0 {
			r.pre--
		}
	case atom.A:
		r.closeLink()
		return
	case atom.Li:
		r.block(1)
		return
	}
	r.blockFor(a)
}

func (r *htmlRenderer) blockFor(a atom.Atom) {
	if n := blockBreaks(a); n > 0 {
		r.block(n)
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
	label := bytes.TrimSpace(r.out[min(r.linkStart, len(r.out)):])
	if len(label) == 0 || sameURL(label, href) {
		return
	}
	r.space = true
	text(r, "(")
	text(r, href)
	text(r, ")")
}

// sameURL reports whether a link's text is its target, give or take the
// scheme and a trailing slash.
func sameURL(label []byte, href string) bool {
	norm := func(s string) string {
		for _, p := range [...]string{"https://", "http://", "mailto:"} {
			if hasPrefixFold(s, p) {
				s = s[len(p):]
			}
		}
		return strings.TrimSuffix(s, "/")
	}
	return strings.EqualFold(norm(string(label)), norm(href))
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// isPixel reports whether a width or height attribute makes an image a
// tracking pixel.
func isPixel(v []byte) bool {
	s := strings.TrimSuffix(strings.TrimSpace(string(v)), "px")
	return s == "0" || s == "1"
}

// textString renders a text run taken from the source rather than from the
// tokenizer (one too long for its buffer), in pieces so that no copy of it
// is made whole. A piece ends after white space where it can, so that an
// entity is not split.
func (r *htmlRenderer) textString(s string, escaped bool) {
	for len(s) > 0 && !r.full {
		n := len(s)
		if n > textChunk {
			n = textChunk
			if i := strings.LastIndexAny(s[:n], " \t\n\r\f"); i > 0 {
				n = i + 1
			}
		}
		piece := s[:n]
		s = s[n:]
		if escaped && strings.IndexByte(piece, '&') >= 0 {
			piece = html.UnescapeString(piece)
		}
		text(r, piece)
	}
}

// text writes character data, entities already decoded, from the
// tokenizer ([]byte) or from the source and attributes (string): white
// space collapsed (kept inside <pre>), owed breaks, separators and bullets
// written first, the output never longer than the limit.
func text[T string | []byte](r *htmlRenderer, s T) {
	for i := 0; i < len(s) && !r.full; {
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
					put(r, s[i:i+1])
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
			put(r, s[i:j])
			i = j
			continue
		}
		ru, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if ru == '\u00a0' { // &nbsp; is a space to a reader (and to rules)
			if r.pre > 0 {
				r.flush()
				put(r, " ")
			} else {
				r.space = true
			}
		} else if r.flush(); len(r.out)+size <= r.limit {
			r.out = append(r.out, s[i:i+size]...)
		} else {
			r.full = true
		}
		i += size
	}
}

// put writes ASCII, as much as the limit leaves room for.
func put[T string | []byte](r *htmlRenderer, p T) {
	if room := r.limit - len(r.out); len(p) > room {
		p, r.full = p[:max(room, 0)], true
	}
	r.out = append(r.out, p...)
}

// flush writes what is owed before the next visible character.
func (r *htmlRenderer) flush() {
	if len(r.out) > 0 {
		switch {
		case r.nl > 0:
			put(r, "\n\n"[:min(r.nl, 2)])
		case r.seps > 0:
			for range r.seps {
				if put(r, " |"); r.full {
					break
				}
			}
			put(r, " ")
		case r.space:
			put(r, " ")
		}
	}
	if r.prefix != "" {
		put(r, r.prefix)
		r.prefix = ""
	}
	r.nl, r.seps, r.space, r.tableEnded = 0, 0, false, false
}
