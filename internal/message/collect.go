package message

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	"psagate/internal/sanitize"
)

// htmlInputFactor bounds the HTML read for rendering to this many times
// MaxTextBytes: markup is bulky, but an endless document must not be.
const htmlInputFactor = 8

// maxNameBytes bounds attachment names; PSA upload APIs and file systems
// reject longer ones.
const maxNameBytes = 255

// collect walks the tree in order, adding body text and attachments.
// bodyOK is false inside the alternatives that lost to another one: their
// text is skipped, but their attachments (an inline screenshot of the HTML
// version) are kept.
func (d *decoder) collect(e *entity, bodyOK bool) {
	if e == nil || e.skipped {
		return
	}
	if strings.HasPrefix(e.mediaType, "multipart/") {
		best := -1
		if e.mediaType == "multipart/alternative" {
			best = chooseAlternative(e.children)
		}
		for i, c := range e.children {
			d.collect(c, bodyOK && (best < 0 || i == best))
		}
		return
	}
	if isBodyText(e) {
		if bodyOK {
			d.addText(e)
		}
		return
	}
	d.addAttachment(e)
}

// isBodyText reports whether e is readable body text rather than an
// attachment: text/plain or text/html not marked as an attachment. Other text
// types (calendar invitations, CSV exports) are files.
func isBodyText(e *entity) bool {
	return (e.mediaType == "text/plain" || e.mediaType == "text/html") && e.disp != "attachment"
}

// chooseAlternative picks the alternative that holds plain text, else the
// last one holding HTML (RFC 2046 orders alternatives by fidelity), else the
// last one.
func chooseAlternative(children []*entity) int {
	for i, c := range children {
		if holds(c, "text/plain") {
			return i
		}
	}
	for i := len(children) - 1; i >= 0; i-- {
		if holds(children[i], "text/html") {
			return i
		}
	}
	return len(children) - 1
}

// holds reports whether the subtree e has a body part of media type mt. An
// empty text/plain does not count: some senders put the whole message in the
// HTML alternative and leave the plain one blank.
func holds(e *entity, mt string) bool {
	if e == nil || e.skipped {
		return false
	}
	if strings.HasPrefix(e.mediaType, "multipart/") {
		for _, c := range e.children {
			if holds(c, mt) {
				return true
			}
		}
		return false
	}
	return e.mediaType == mt && isBodyText(e) && len(bytes.TrimSpace(e.body)) > 0
}

// addText appends one body part to the text, within MaxTextBytes.
func (d *decoder) addText(e *entity) {
	room := d.lim.MaxTextBytes - d.text.Len()
	if d.text.Len() > 0 {
		room -= 2
	}
	if room <= 0 {
		d.textCut = true
		return
	}
	d.ctx = where(e.path)
	raw := d.transferDecode(e, false)
	cs := e.params["charset"]
	sep := ""
	if d.text.Len() > 0 {
		sep = "\n\n"
	}
	if e.mediaType == "text/html" {
		d.fromHTML = true
		if cs == "" {
			cs = metaCharset(raw)
		}
		html, cut := d.toUTF8(raw, cs, htmlInputFactor*d.lim.MaxTextBytes)
		s, rcut := htmlToText(html, room)
		if cut || rcut {
			d.textCut = true
		}
		if strings.TrimSpace(s) != "" {
			d.text.WriteString(sep)
			d.text.WriteString(s)
		}
		return
	}
	if d.writeUTF8(&d.text, sep, raw, cs, room, true) {
		d.textCut = true
	}
}

func (d *decoder) finishText() {
	a := d.a
	a.FromHTML = d.fromHTML
	if d.text.Len() == 0 {
		return
	}
	a.Text = cleanBodyText(d.text.String())
	if len(a.Text) > d.lim.MaxTextBytes {
		a.Text = sanitize.TruncateBytes(a.Text, d.lim.MaxTextBytes, "")
		d.textCut = true
	}
	if d.textCut {
		d.problem(ProblemLimit, "body text longer than %d bytes; the rest was cut", d.lim.MaxTextBytes)
	}
}

// addAttachment decodes e into an Attachment, within MaxAttachments.
func (d *decoder) addAttachment(e *entity) {
	a := d.a
	if len(a.Attachments) >= d.lim.MaxAttachments {
		if !d.attCut {
			d.attCut = true
			d.problem(ProblemLimit, "more than %d attachments; the rest were skipped", d.lim.MaxAttachments)
		}
		return
	}
	d.ctx = where(e.path)
	data := d.transferDecode(e, true)
	a.Attachments = append(a.Attachments, Attachment{
		Name:        d.attachmentName(e, len(a.Attachments)+1),
		ContentType: e.mediaType,
		Size:        len(data),
		Data:        data,
	})
}

// attachmentName returns the part's file name: decoded, reduced to its base
// name, one clean line, or a generated "attachment-N.ext" when there is none.
func (d *decoder) attachmentName(e *entity, n int) string {
	// RFC 2231 values are stitched here rather than by mime.ParseMediaType,
	// which drops (or, for continuations, silently truncates) values in
	// charsets other than UTF-8 and US-ASCII.
	name, ok := d.rfc2231(e.cdRaw, "filename")
	if !ok {
		name, ok = e.dparams["filename"]
	}
	if !ok {
		name, ok = d.rfc2231(e.ctRaw, "name")
	}
	if !ok {
		name = e.params["name"]
	}
	if strings.Contains(name, "=?") || strings.ContainsAny(name, "\r\n\x00") {
		what := fmt.Sprintf("attachment %d name", n) // only when it may be needed
		d.ctx = what
		if dec, err := d.words.DecodeHeader(name); err == nil {
			name = dec
		}
		name = d.clean(what, name)
	}
	name = baseName(sanitize.Line(name))
	if name == "" {
		return fmt.Sprintf("attachment-%d%s", n, extensionFor(e.mediaType))
	}
	return name
}

// baseName strips directories (either slash), a drive letter and names that
// only mean "this/parent directory", and bounds the length, keeping a short
// extension.
func baseName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	if len(name) >= 2 && name[1] == ':' && (name[0]|0x20 >= 'a' && name[0]|0x20 <= 'z') {
		name = name[2:]
	}
	name = strings.TrimSpace(name)
	if strings.Trim(name, ".") == "" {
		return ""
	}
	if len(name) > maxNameBytes {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		name = sanitize.TruncateBytes(name[:len(name)-len(ext)], maxNameBytes-len(ext), "") + ext
	}
	return name
}

// extensions for generated attachment names. A fixed table, not
// mime.ExtensionsByType, so the names do not depend on the host's mime.types.
var extensions = map[string]string{
	"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/gif": ".gif",
	"image/bmp": ".bmp", "image/webp": ".webp", "image/tiff": ".tif", "image/svg+xml": ".svg",
	"application/pdf": ".pdf", "application/zip": ".zip", "application/gzip": ".gz",
	"application/json": ".json", "application/xml": ".xml", "text/xml": ".xml",
	"text/plain": ".txt", "text/html": ".html", "text/csv": ".csv", "text/calendar": ".ics",
	"message/rfc822": ".eml", "message/delivery-status": ".txt",
	"application/pkcs7-signature": ".p7s", "application/x-pkcs7-signature": ".p7s",
	"application/pgp-signature": ".asc", "application/vnd.ms-excel": ".xls",
	"application/msword": ".doc",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":       ".xlsx",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}

func extensionFor(mediaType string) string {
	if ext, ok := extensions[mediaType]; ok {
		return ext
	}
	return ".bin"
}
