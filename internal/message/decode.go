package message

import (
	"fmt"
	"mime"
	"net/mail"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	gomessage "github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"psagate/internal/sanitize"
)

// maxProblems bounds Alert.Problems: a hostile message with thousands of
// broken parts must not turn the problem list into the largest thing we keep.
const maxProblems = 32

// commonDateLayout is RFC 5322's date-time as nearly every sender writes it
// ("2" also accepts a zero-padded day).
const commonDateLayout = "Mon, 2 Jan 2006 15:04:05 -0700"

// maxDetailRunes bounds one problem detail; details quote message content.
const maxDetailRunes = 200

// recoverHook, when set (by tests only), is called with the panic value and
// stack when Decode recovers from a panic. The fuzz test uses it to fail
// instead of letting the last-resort recover hide a bug.
var recoverHook atomic.Pointer[func(v any, stack []byte)]

// testForcePanic makes Decode panic after the top-level header is read, so a
// test can prove the last-resort recover works.
var testForcePanic atomic.Bool

// Decode decodes a raw RFC 5322 message into an Alert. It never fails and
// never panics: whatever cannot be decoded is recorded in Alert.Problems and
// decoding continues as far as the message allows. Nothing in the returned
// Alert shares memory with raw, so the caller may reuse its buffer.
//
// Decode runs while an SMTP DATA command is open, so it works on sub-slices
// of raw instead of streaming through readers: the MIME structure is found
// with a handful of bytes.Index calls, and each part is decoded once, into a
// buffer sized from the encoded length.
func Decode(raw []byte, env Envelope, lim Limits) (a *Alert) {
	a = &Alert{Envelope: cleanEnvelope(env), Size: len(raw)}
	d := &decoder{lim: lim.withDefaults(), a: a}
	d.words.CharsetReader = d.wordCharset
	defer func() {
		if r := recover(); r != nil {
			if h := recoverHook.Load(); h != nil {
				(*h)(r, debug.Stack())
			}
			// Last resort: the fields filled so far were sanitised when they
			// were set, so the partial Alert keeps its guarantees.
			d.problem(ProblemMalformed, "internal error while decoding (%v); the alert is incomplete", r)
		}
	}()
	d.decode(raw)
	return a
}

// cleanEnvelope copies env so the Alert does not alias the session's slices,
// and sanitises its strings: the Alert promises no control characters anywhere.
func cleanEnvelope(env Envelope) Envelope {
	env.MailFrom = sanitize.Line(env.MailFrom)
	env.Helo = sanitize.Line(env.Helo)
	if env.RcptTo != nil {
		rcpt := make([]string, len(env.RcptTo))
		for i, r := range env.RcptTo {
			rcpt[i] = sanitize.Line(r)
		}
		env.RcptTo = rcpt
	}
	return env
}

// decoder holds the state of one Decode call.
type decoder struct {
	lim Limits
	a   *Alert

	words mime.WordDecoder
	ctx   string // header or part being decoded, named in charset problems

	fields [][]byte // scratch for readHeader, reused for every part

	parts    int  // entities parsed so far, the root included
	partsCut bool // MaxParts was reached
	attCut   bool // MaxAttachments was reached

	text     strings.Builder
	textCut  bool
	fromHTML bool
}

// problem records one problem, once. Details are sanitised and bounded here
// so that callers may quote message content.
func (d *decoder) problem(kind ProblemKind, format string, args ...any) {
	a := d.a
	if len(a.Problems) > maxProblems {
		return
	}
	detail := sanitize.Truncate(sanitize.Line(fmt.Sprintf(format, args...)), maxDetailRunes, "…")
	for _, p := range a.Problems {
		if p.Kind == kind && p.Detail == detail {
			return
		}
	}
	if len(a.Problems) == maxProblems {
		a.Problems = append(a.Problems, Problem{Kind: ProblemLimit, Detail: "too many problems; the rest were not recorded"})
		return
	}
	a.Problems = append(a.Problems, Problem{Kind: kind, Detail: detail})
}

func (d *decoder) decode(raw []byte) {
	if len(raw) == 0 {
		d.problem(ProblemMalformed, "message is empty")
		return
	}
	root := d.parseEntity(raw, "", 0, "text/plain")
	if testForcePanic.Load() {
		panic("message: forced panic for the recover test")
	}
	d.collect(root, true)
	d.finishText()
}

// topHeader fills the Alert fields that come from the message header.
func (d *decoder) topHeader(h textproto.Header) {
	a := d.a
	a.Header = make(map[string][]string, h.Len())
	fields := h.Fields()
	for fields.Next() {
		key := fields.Key()
		name := lowerName(key)
		a.Header[name] = append(a.Header[name], d.headerText(key, fields.Value()))
	}
	if v := a.Header["subject"]; len(v) > 0 {
		a.Subject = v[0]
	}

	if from := d.addresses("From", h.Get("From")); len(from) > 0 {
		a.From = cleanAddr(from[0].Address)
		a.FromName = d.clean("From", from[0].Name)
	}
	for _, key := range [...]string{"To", "Cc"} {
		// Repeated To or Cc fields break RFC 5322 but occur; keep them all.
		for _, v := range h.Values(key) {
			for _, addr := range d.addresses(key, v) {
				if s := cleanAddr(addr.Address); s != "" {
					a.To = append(a.To, s)
				}
			}
		}
	}

	mh := gomail.Header{Header: gomessage.Header{Header: h}}
	if t, err := time.Parse(commonDateLayout, h.Get("Date")); err == nil {
		a.Date = t // the usual form; mail.ParseDate allocates an error per layout it tries
	} else if t, err := mh.Date(); err == nil {
		a.Date = t
	} else {
		d.problem(ProblemMalformed, "Date: unparseable value %q", sanitize.Truncate(h.Get("Date"), 60, "…"))
	}
	if h.Has("Message-Id") {
		if id, err := mh.MessageID(); err == nil {
			a.MessageID = sanitize.Line(id)
		} else {
			a.MessageID = looseMessageID(h.Get("Message-Id"))
		}
	}
}

// headerText decodes one unstructured header value: raw 8-bit text that is
// not UTF-8 is read as Windows-1252 (what such senders almost always mean),
// RFC 2047 words are decoded in any charset, and the result is checked for
// smuggled line breaks before it is flattened to one line.
func (d *decoder) headerText(key, v string) string {
	if !utf8.ValidString(v) {
		d.problem(ProblemMalformed, "%s: raw 8-bit bytes that are not UTF-8 (read as Windows-1252)", key)
		v = windows1252(v)
	}
	if strings.Contains(v, "=?") {
		d.ctx = key
		if dec, err := d.words.DecodeHeader(v); err == nil {
			v = dec
		}
		if !utf8.ValidString(v) {
			d.problem(ProblemCharset, "%s: encoded word held invalid UTF-8 (repaired)", key)
		}
	}
	return d.clean(key, v)
}

// clean flattens a decoded header-ish value to one printable line, recording
// a header injection when a CR, LF or NUL was in it: after decoding, those can
// only come from a crafted encoded word, RFC 2231 value or raw bare CR.
func (d *decoder) clean(what, v string) string {
	if strings.ContainsAny(v, "\r\n\x00") {
		var found string
		switch hasBreak, hasNUL := strings.ContainsAny(v, "\r\n"), strings.Contains(v, "\x00"); {
		case hasBreak && hasNUL:
			found = "CR/LF and NUL"
		case hasBreak:
			found = "CR/LF"
		default:
			found = "NUL"
		}
		d.problem(ProblemInjection, "%s: decoded value contained %s (header injection)", what, found)
	}
	return sanitize.Line(v)
}

// addresses parses an address-list header. net/mail is strict, so a list it
// rejects is read again leniently, keeping whatever looks like an address.
func (d *decoder) addresses(key, v string) []*mail.Address {
	if v == "" {
		return nil
	}
	if !utf8.ValidString(v) {
		v = windows1252(v)
	}
	d.ctx = key
	// The same parser go-message/mail uses, with our word decoder so that
	// display names in unknown charsets stay readable.
	p := mail.AddressParser{WordDecoder: &d.words}
	if list, err := p.ParseList(v); err == nil {
		return list
	}
	list := d.looseAddresses(v)
	d.problem(ProblemMalformed, "%s: unparseable address list (%d address(es) recovered)", key, len(list))
	return list
}

// looseAddresses splits v at top-level commas and takes from each piece the
// <addr-spec> or a bare word containing '@'.
func (d *decoder) looseAddresses(v string) []*mail.Address {
	var out []*mail.Address
	for _, piece := range splitTopLevel(v) {
		piece = strings.TrimSpace(piece)
		var name, addr string
		if lt := strings.LastIndexByte(piece, '<'); lt >= 0 {
			if gt := strings.IndexByte(piece[lt:], '>'); gt > 0 {
				addr = piece[lt+1 : lt+gt]
				name = strings.Trim(strings.TrimSpace(piece[:lt]), `"`)
			}
		}
		if addr == "" {
			for w := range strings.FieldsSeq(piece) {
				if strings.Contains(w, "@") {
					addr = strings.Trim(w, `<>"(),;`)
					break
				}
			}
		}
		if addr == "" {
			continue
		}
		if dec, err := d.words.DecodeHeader(name); err == nil {
			name = dec
		}
		out = append(out, &mail.Address{Name: name, Address: addr})
	}
	return out
}

// splitTopLevel splits an address list at commas outside quotes, comments
// and angle brackets.
func splitTopLevel(v string) []string {
	var out []string
	start, depth, angle, quoted := 0, 0, false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted:
			if c == '\\' {
				i++
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && depth == 0 && !angle:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// cleanAddr lower-cases an addr-spec and makes sure it is one clean line
// (net/mail accepts quoted local parts with odd characters).
func cleanAddr(s string) string {
	return strings.ToLower(sanitize.Line(s))
}

// looseMessageID takes what is between the first '<' and the next '>', or
// the whole value when there are no brackets: Message-IDs without '@' or with
// stray text are common enough that they are not recorded as problems.
func looseMessageID(v string) string {
	if lt := strings.IndexByte(v, '<'); lt >= 0 {
		if gt := strings.IndexByte(v[lt:], '>'); gt > 0 {
			v = v[lt+1 : lt+gt]
		}
	}
	return sanitize.Line(v)
}

// commonNames maps canonical header keys to their lower-case form without an
// allocation for the headers every alert has.
var commonNames = map[string]string{
	"From": "from", "To": "to", "Cc": "cc", "Subject": "subject", "Date": "date",
	"Message-Id": "message-id", "Mime-Version": "mime-version", "Content-Type": "content-type",
	"Content-Transfer-Encoding": "content-transfer-encoding", "Received": "received",
	"Return-Path": "return-path", "Reply-To": "reply-to", "X-Mailer": "x-mailer",
	"Sender": "sender", "Importance": "importance", "X-Priority": "x-priority",
}

func lowerName(key string) string {
	if n, ok := commonNames[key]; ok {
		return n
	}
	return strings.ToLower(key)
}
