package rules

import (
	"strconv"
	"strings"
	"time"

	"psagate/internal/message"
	"psagate/internal/sanitize"
)

// Vars returns the values of every built-in field for a and client, with
// the extracted fields of d on top: what templates render with. Values are
// one line, except body.
func (d Decision) Vars(a *message.Alert, client string) map[string]string {
	if a == nil {
		a = &message.Alert{}
	}
	v := make(map[string]string, len(Builtins)+len(d.Fields))
	v["client"] = sanitize.Line(client)
	v["device"] = ""
	if d.Then != nil {
		v["check"] = d.Then.Check
	}
	if d.Rule != nil {
		v["rule"] = d.Rule.Name
	} else {
		v["rule"] = ""
	}
	v["subject"] = sanitize.Line(a.Subject)
	from := a.From
	if from == "" {
		from = a.MailFrom
	}
	v["from"] = sanitize.Line(from)
	v["from_name"] = sanitize.Line(a.FromName)
	to := ""
	if len(a.RcptTo) > 0 {
		to = a.RcptTo[0]
	} else if len(a.To) > 0 {
		to = a.To[0]
	}
	v["to"] = sanitize.Line(to)
	v["sender_ip"] = ""
	if a.RemoteIP.IsValid() {
		v["sender_ip"] = a.RemoteIP.Unmap().String()
	}
	var date time.Time
	if !a.Date.IsZero() {
		date = a.Date
	} else {
		date = a.Received
	}
	v["date"] = ""
	if !date.IsZero() {
		v["date"] = date.Format(time.RFC3339)
	}
	v["message_id"] = sanitize.Line(a.MessageID)
	v["size"] = strconv.Itoa(a.Size)
	v["body"] = a.Text
	for k, x := range d.Fields {
		v[k] = x
	}
	return v
}

// dkimDomain returns the first verified DKIM domain that is one of want or
// a subdomain of one, or "".
func dkimDomain(a *message.Alert, want []string) string {
	if a.Auth == nil {
		return ""
	}
	for _, d := range a.Auth.DKIMDomains {
		for _, w := range want {
			if d == w || strings.HasSuffix(d, "."+w) {
				return d
			}
		}
	}
	return ""
}
