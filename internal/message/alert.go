// Package message decodes an accepted SMTP message into an Alert: the
// envelope, the main headers with RFC 2047 words decoded, the readable body
// text and the attachments. Decoding never fails and never panics: a
// malformed message is decoded as far as it goes and the problems are
// recorded on the Alert, because an unreadable alert is still an alert.
package message

import (
	"net/netip"
	"strings"
	"time"
)

// Envelope is what the SMTP session knows about a message besides its bytes.
type Envelope struct {
	MailFrom string     // reverse path, as given (may be empty for bounces)
	RcptTo   []string   // forward paths, in RCPT order
	RemoteIP netip.Addr // peer address; zero when not from the network (try)
	Helo     string
	Received time.Time // when the gateway accepted the message
	// Notes say what the SMTP layer changed in the message (long header
	// lines folded, ...), for the audit trail.
	Notes []string
	// Auth is the sender authentication result, set by the gateway before
	// the rules run; nil when [auth] is off.
	Auth *AuthResults
}

// Alert is a decoded message. Every string field is valid UTF-8 and free of
// control characters (header values hold no CR, LF or NUL; Text keeps "\n").
type Alert struct {
	Envelope

	From      string   // addr-spec of the From header, lower-cased; "" if absent or unparseable
	FromName  string   // display name of the From header
	To        []string // addr-specs of To and Cc, lower-cased
	Subject   string   // RFC 2047 decoded, one line
	Date      time.Time
	MessageID string // without angle brackets

	// Header holds every top-level header, keyed by lower-case name, values
	// decoded (RFC 2047) and sanitised to one line each.
	Header map[string][]string

	Text     string // the body as readable text: text/plain preferred, else HTML rendered to text
	FromHTML bool   // Text was rendered from text/html

	Attachments []Attachment
	Size        int // bytes of the raw message

	Problems []Problem
}

// Attachment is one non-body MIME part.
type Attachment struct {
	Name        string // file name, sanitised (no path separators, no control characters)
	ContentType string // lower-case media type, e.g. "image/png"
	Size        int
	Data        []byte
}

// ProblemKind classifies a decoding problem.
type ProblemKind string

const (
	// ProblemInjection: a decoded header value contained CR, LF or NUL (a
	// header injection attempt). The characters were removed.
	ProblemInjection ProblemKind = "injection"
	// ProblemMalformed: the message structure is broken (bad MIME, missing
	// boundary, unparseable header); decoding went as far as it could.
	ProblemMalformed ProblemKind = "malformed"
	// ProblemCharset: text in an unknown or broken charset was repaired.
	ProblemCharset ProblemKind = "charset"
	// ProblemLimit: a decoding limit (parts, depth, header count, text size)
	// was reached and the rest was skipped.
	ProblemLimit ProblemKind = "limit"
)

// Problem is one thing that was wrong with a message.
type Problem struct {
	Kind   ProblemKind
	Detail string // human readable, already sanitised
}

// HasProblem reports whether the alert recorded a problem of kind k.
func (a *Alert) HasProblem(k ProblemKind) bool {
	for _, p := range a.Problems {
		if p.Kind == k {
			return true
		}
	}
	return false
}

// Limits bound the work and memory spent decoding one message.
type Limits struct {
	MaxParts       int // MIME parts in total (default 100)
	MaxDepth       int // multipart nesting depth (default 10)
	MaxHeaders     int // header fields per part (default 500)
	MaxTextBytes   int // bytes of body text kept (default 1 MiB)
	MaxAttachments int // attachments kept (default 20)
}

// DefaultLimits are used for zero fields of Limits.
var DefaultLimits = Limits{MaxParts: 100, MaxDepth: 10, MaxHeaders: 500, MaxTextBytes: 1 << 20, MaxAttachments: 20}

func (l Limits) withDefaults() Limits {
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultLimits.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultLimits.MaxHeaders
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = DefaultLimits.MaxTextBytes
	}
	if l.MaxAttachments <= 0 {
		l.MaxAttachments = DefaultLimits.MaxAttachments
	}
	return l
}

// AuthResults is what sender authentication (package auth) found for a
// message, in the form rules, audit and try need; nil when authentication
// did not run.
type AuthResults struct {
	// Header is the result in Authentication-Results syntax (RFC 8601),
	// e.g. "psagate; spf=pass smtp.mailfrom=datto.com; dkim=pass
	// header.d=datto.com; dmarc=pass header.from=datto.com".
	Header string
	// Authenticated: DMARC-aligned pass, by DKIM or SPF, for FromDomain.
	Authenticated bool
	FromDomain    string
	DKIMDomains   []string // d= of every signature that verified
	SPF           string   // pass, fail, softfail, neutral, none, temperror, permerror
	DMARC         string   // pass, fail, none, temperror
}

// ClaimsDomain reports whether domain names the From header or envelope
// sender domain of a, or one of their parents: the mail "claims" to be
// from that vendor.
func (a *Alert) ClaimsDomain(domain string) bool {
	domain = strings.ToLower(strings.TrimPrefix(domain, "@"))
	for _, addr := range []string{a.From, a.MailFrom} {
		if d := DomainOf(addr); d != "" && (d == domain || strings.HasSuffix(d, "."+domain)) {
			return true
		}
	}
	return false
}

// DomainOf is the lower-case domain of an address, "" when it has none.
func DomainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(addr[i+1:], "<> "), "."))
}
