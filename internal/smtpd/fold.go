package smtpd

import (
	"bytes"
	"fmt"
)

// maxLine is RFC 5322's limit on a line (2.1.1), without its CRLF.
const maxLine = 998

// foldLongLines folds header lines longer than 998 bytes, as Postfix's
// cleanup does with long lines, instead of refusing the message: alert
// tools put kilobytes of HTML or a long list of devices on one line, and a
// refused alert is lost for good. A line is folded at the last space or tab
// before the limit, which unfolding undoes exactly; a run of 998 bytes
// without any is split, and the space that continues it becomes part of the
// value. Body lines are left as they are: psagate reads lines of any length
// up to smtp.max_line_length, does not relay the message, and breaking a
// base64 or quoted-printable line could change what it decodes to. The
// notes say what was done, for the audit trail; raw is returned unchanged
// (same slice) when there is nothing to fold.
func foldLongLines(raw []byte) ([]byte, []string) {
	end := headerEnd(raw)
	longHeaders, longBody := 0, 0
	for line := range bytes.Lines(raw[:end]) {
		if len(bytes.TrimRight(line, "\r\n")) > maxLine {
			longHeaders++
		}
	}
	for line := range bytes.Lines(raw[end:]) {
		if len(bytes.TrimRight(line, "\r\n")) > maxLine {
			longBody++
		}
	}
	var notes []string
	if longBody > 0 {
		notes = append(notes, fmt.Sprintf("%d body line(s) longer than %d bytes kept as sent", longBody, maxLine))
	}
	if longHeaders == 0 {
		return raw, notes
	}
	out := make([]byte, 0, len(raw)+longHeaders*64+cap(raw)-len(raw))
	split := 0
	for line := range bytes.Lines(raw[:end]) {
		text := bytes.TrimRight(line, "\r\n")
		if len(text) <= maxLine {
			out = append(out, line...)
			continue
		}
		eol := line[len(text):]
		// Never fold inside the field name: the first break may come only
		// after the colon.
		colon := bytes.IndexByte(text, ':')
		for first := true; len(text) > maxLine; first = false {
			// A segment must hold more than white space, or it would read
			// as an empty line.
			from := len(text) - len(bytes.TrimLeft(text, " \t")) + 1
			if first && colon >= 0 {
				from = max(from, colon+1)
			}
			if cut := lastSpace(text, from); cut > 0 {
				out = append(out, text[:cut]...)
				out = append(out, '\r', '\n')
				text = text[cut:] // the continuation starts with the space
				continue
			}
			split++
			out = append(out, text[:maxLine]...)
			out = append(out, '\r', '\n')
			text = append([]byte{' '}, text[maxLine:]...)
		}
		out = append(out, text...)
		out = append(out, eol...)
	}
	out = append(out, raw[end:]...)
	note := fmt.Sprintf("%d header line(s) longer than %d bytes folded", longHeaders, maxLine)
	if split > 0 {
		note += fmt.Sprintf(" (%d break(s) without white space: a space was inserted there)", split)
	}
	return out, append([]string{note}, notes...)
}

// lastSpace is the index of the last space or tab in text[from:maxLine+1],
// or -1.
func lastSpace(text []byte, from int) int {
	if from >= maxLine {
		return -1
	}
	i := bytes.LastIndexAny(text[from:maxLine+1], " \t")
	if i < 0 {
		return -1
	}
	return from + i
}

// headerEnd is the offset of the line that ends the header (the empty
// line, which belongs to the body here), or len(raw) if there is none.
func headerEnd(raw []byte) int {
	off := 0
	for line := range bytes.Lines(raw) {
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return off
		}
		off += len(line)
	}
	return len(raw)
}

// countReceived counts the Received: fields of the message header: each
// relay adds one, so a count past smtp.max_hops is a mail loop (Postfix's
// hopcount_limit, 50 by default, does the same).
func countReceived(raw []byte) int {
	n := 0
	for line := range bytes.Lines(raw[:headerEnd(raw)]) {
		name, _, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("Received")) {
			n++
		}
	}
	return n
}
