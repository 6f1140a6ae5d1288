package message

import (
	"bytes"
	"mime"
	"strconv"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// entity is one node of the MIME tree. Its body is a sub-slice of the raw
// message, still transfer-encoded; nothing is decoded until collect decides
// the part is wanted.
type entity struct {
	path      string // "1.2" for the second part of the first part; "" for the message
	mediaType string // lower-case; defaults applied
	params    map[string]string
	ctRaw     string // Content-Type value, for RFC 2231 names the standard library drops
	disp      string // lower-case disposition type, "" when absent
	dparams   map[string]string
	cdRaw     string
	cte       string // lower-case transfer encoding
	body      []byte
	children  []*entity
	skipped   bool // a multipart nested beyond MaxDepth: nothing of it is decoded
}

func where(path string) string {
	if path == "" {
		return "message"
	}
	return "part " + path
}

// readHeader splits b into header fields and body without copying. It is
// more forgiving than textproto.ReadHeader, which stops at the first bad line
// and loses it: a line without a colon ends the header (the body started
// without the blank line), a line with an invalid field name is skipped, and
// fields beyond MaxHeaders are skipped. The fields are then stored in a
// go-message textproto.Header, which unfolds them.
func (d *decoder) readHeader(b []byte, path string) (textproto.Header, []byte) {
	fields := d.fields[:0]
	var body []byte
	pos, cur := 0, -1 // cur: start of the field being read, or -1
	garbage, over, noSep, skipping := 0, false, false, false
	for pos < len(b) {
		next := len(b)
		if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		line := trimEOL(b[pos:next])
		if len(line) == 0 {
			if cur >= 0 {
				fields = append(fields, b[cur:pos])
				cur = -1
			}
			body = b[next:]
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur < 0 && !skipping {
				garbage++ // a continuation with nothing to continue
				skipping = true
			}
			pos = next
			continue
		}
		if cur >= 0 {
			fields = append(fields, b[cur:pos])
			cur = -1
		}
		skipping = false
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			if pos == 0 && bytes.HasPrefix(line, []byte("From ")) {
				pos = next // an mbox separator line in front of a saved message
				continue
			}
			body, noSep = b[pos:], true
			break
		}
		if !validFieldName(trimWSP(line[:colon])) {
			if !(pos == 0 && bytes.HasPrefix(line, []byte("From "))) {
				garbage++
			}
			skipping = true
			pos = next
			continue
		}
		if len(fields) >= d.lim.MaxHeaders {
			over, skipping = true, true
			pos = next
			continue
		}
		cur = pos
		pos = next
	}
	if cur >= 0 { // the header ran to the end of b: a message without body
		fields = append(fields, b[cur:pos])
	}
	d.fields = fields

	if garbage > 0 {
		d.problem(ProblemMalformed, "%s header: %d unparseable line(s) skipped", where(path), garbage)
	}
	if noSep {
		if len(fields) == 0 {
			d.problem(ProblemMalformed, "%s has no header", where(path))
		} else {
			d.problem(ProblemMalformed, "%s header: no blank line before the body", where(path))
		}
	}
	if over {
		d.problem(ProblemLimit, "%s header: more than %d fields; the rest were skipped", where(path), d.lim.MaxHeaders)
	}

	// AddRaw appends, and textproto.Header keeps fields in reverse order
	// (Get returns the field added first by ReadHeader), so add them
	// backwards to get the same semantics as a parsed header.
	var h textproto.Header
	for i := len(fields) - 1; i >= 0; i-- {
		h.AddRaw(fields[i])
	}
	return h, body
}

func trimEOL(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

func trimWSP(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validFieldName follows RFC 5322 2.2: printable ASCII except the colon.
func validFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// parseEntity reads the header of b and, for a multipart, the tree below it.
// level counts the multipart ancestors of b. It returns nil once MaxParts
// entities have been read.
func (d *decoder) parseEntity(b []byte, path string, level int, defType string) *entity {
	d.parts++
	if d.parts > d.lim.MaxParts {
		if !d.partsCut {
			d.partsCut = true
			d.problem(ProblemLimit, "more than %d MIME parts; the rest were skipped", d.lim.MaxParts)
		}
		return nil
	}
	h, body := d.readHeader(b, path)
	if path == "" {
		d.topHeader(h)
	}
	e := &entity{path: path, body: body}
	e.ctRaw = h.Get("Content-Type")
	e.mediaType, e.params = d.contentType(e.ctRaw, path, defType)
	if e.cdRaw = h.Get("Content-Disposition"); e.cdRaw != "" {
		e.disp, e.dparams = d.disposition(e.cdRaw, path)
	}
	if !strings.HasPrefix(e.mediaType, "multipart/") {
		e.cte = transferEncoding(h.Get("Content-Transfer-Encoding"))
		return e
	}

	// RFC 2045 forbids a transfer encoding on multiparts; like go-message we
	// ignore one if it is there.
	if level >= d.lim.MaxDepth {
		d.problem(ProblemLimit, "%s: multipart nested deeper than %d levels; not decoded", where(path), d.lim.MaxDepth)
		e.skipped = true
		return e
	}
	boundary := e.params["boundary"]
	if boundary == "" {
		boundary = guessBoundary(body)
		if boundary == "" {
			d.problem(ProblemMalformed, "%s: %s without a boundary; body read as text", where(path), e.mediaType)
			e.mediaType, e.cte = "text/plain", "8bit"
			return e
		}
		d.problem(ProblemMalformed, "%s: %s without a boundary parameter; boundary guessed from the body", where(path), e.mediaType)
	}
	parts, found, closed := splitMultipart(body, boundary)
	if !found {
		d.problem(ProblemMalformed, "%s: boundary %q not found; body read as text", where(path), boundary)
		e.mediaType, e.cte = "text/plain", "8bit"
		return e
	}
	if !closed {
		d.problem(ProblemMalformed, "%s: missing end boundary; the last part runs to the end of the message", where(path))
	}
	childType := "text/plain"
	if e.mediaType == "multipart/digest" {
		childType = "message/rfc822"
	}
	e.children = make([]*entity, 0, len(parts))
	for i, pb := range parts {
		c := d.parseEntity(pb, childPath(path, i+1), level+1, childType)
		if c == nil {
			break
		}
		e.children = append(e.children, c)
	}
	return e
}

func childPath(parent string, n int) string {
	if parent == "" {
		return strconv.Itoa(n)
	}
	return parent + "." + strconv.Itoa(n)
}

// splitMultipart returns the parts of a multipart body as sub-slices. A
// delimiter is a line that is exactly "--boundary" (or "--boundary--" for
// the last) plus optional white space; the line break before it belongs to
// it (RFC 2046 5.1.1). found is false when no delimiter was seen at all,
// closed when the final delimiter was.
func splitMultipart(body []byte, boundary string) (parts [][]byte, found, closed bool) {
	delim := make([]byte, 0, len(boundary)+2)
	delim = append(append(delim, '-', '-'), boundary...)
	start := -1 // start of the current part's content
	pos := 0
	for pos < len(body) {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		i += pos
		pos = i + 1
		if i > 0 && body[i-1] != '\n' {
			continue
		}
		j := i + len(delim)
		final := bytes.HasPrefix(body[j:], []byte("--"))
		if final {
			j += 2
		}
		for j < len(body) && (body[j] == ' ' || body[j] == '\t') {
			j++
		}
		var lineEnd int
		switch {
		case j == len(body):
			lineEnd = j
		case body[j] == '\n':
			lineEnd = j + 1
		case body[j] == '\r' && (j+1 == len(body) || body[j+1] == '\n'):
			lineEnd = min(j+2, len(body))
		default:
			continue // "--boundaryX": a longer boundary or content
		}
		found = true
		if start >= 0 {
			end := i
			if end > 0 && body[end-1] == '\n' {
				end--
				if end > 0 && body[end-1] == '\r' {
					end--
				}
			}
			parts = append(parts, body[start:max(end, start)])
		}
		if final {
			return parts, true, true
		}
		start = lineEnd
		pos = lineEnd
	}
	if start >= 0 {
		parts = append(parts, body[start:])
	}
	return parts, found, false
}

// guessBoundary takes the boundary from the first line that looks like a
// delimiter ("--" and a token), for multiparts that forgot the parameter.
func guessBoundary(body []byte) string {
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = trimWSP(trimEOL(line))
		if len(line) > 2 && len(line) <= 72 && line[0] == '-' && line[1] == '-' {
			b := bytes.TrimSuffix(line[2:], []byte("--"))
			if len(b) > 0 && bytes.IndexAny(b, " \t") < 0 {
				return string(b)
			}
		}
	}
	return ""
}

// transferEncoding normalises a Content-Transfer-Encoding value.
func transferEncoding(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexAny(v, " \t;("); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(v)
}

// contentType parses a Content-Type value. A value the standard parser
// rejects is read leniently, so that a stray character does not lose the
// boundary or charset parameter.
func (d *decoder) contentType(v, path, def string) (string, map[string]string) {
	if v == "" {
		return def, nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err == nil && validMediaType(mt) {
		return mt, params
	}
	mt, params = looseParams(v)
	if !validMediaType(mt) {
		d.problem(ProblemMalformed, "%s: unparseable Content-Type %q; read as %s", where(path), v, def)
		return def, params
	}
	d.problem(ProblemMalformed, "%s: malformed Content-Type parameters %q", where(path), v)
	return mt, params
}

func (d *decoder) disposition(v, path string) (string, map[string]string) {
	disp, params, err := mime.ParseMediaType(v)
	if err == nil {
		return disp, params
	}
	disp, params = looseParams(v)
	d.problem(ProblemMalformed, "%s: malformed Content-Disposition %q", where(path), v)
	if !isToken(disp) {
		disp = ""
	}
	return disp, params
}

// validMediaType reports whether mt is "type/subtype" made of RFC 2045 tokens.
func validMediaType(mt string) bool {
	typ, sub, ok := strings.Cut(mt, "/")
	return ok && isToken(typ) && isToken(sub)
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// looseParams parses "value; key=val; key="quoted val"" without failing:
// keys are lower-cased, the first of duplicate keys wins, quoted values are
// unquoted, and RFC 2231 keys (name*, name*0*) are kept as they are.
func looseParams(v string) (string, map[string]string) {
	base, rest, _ := strings.Cut(v, ";")
	base = strings.ToLower(strings.TrimSpace(base))
	if i := strings.IndexAny(base, " \t"); i >= 0 {
		base = base[:i]
	}
	params := make(map[string]string)
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t;")
		if rest == "" {
			break
		}
		end := strings.IndexAny(rest, "=;")
		if end < 0 || rest[end] == ';' {
			// a key without value: skip it
			if end < 0 {
				break
			}
			rest = rest[end:]
			continue
		}
		key := strings.ToLower(strings.TrimSpace(rest[:end]))
		rest = strings.TrimLeft(rest[end+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			val = b.String()
			rest = rest[min(i+1, len(rest)):]
		} else {
			end := strings.IndexByte(rest, ';')
			if end < 0 {
				end = len(rest)
			}
			val = strings.TrimSpace(rest[:end])
			rest = rest[end:]
		}
		if _, dup := params[key]; !dup && key != "" {
			params[key] = val
		}
	}
	return base, params
}
