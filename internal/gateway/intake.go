package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"psagate/internal/message"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// DedupeKey identifies an SMTP retry of the same message, and only that:
// the same Message-ID, the same header fields that say what the alert is
// (Subject, From, To, Date, Content-Type and every other field the sender
// wrote), the same body, for the same envelope recipients and client.
// Relays may add or change their trace fields (Received and the like) on a
// retry, so those are left out. Keying on Message-ID and body alone threw
// away a second device's failure that reused a template's Message-ID with
// another Subject, and another client's copy of a mail (issue 14). A message
// without Message-ID is identified by its whole content, trace included.
func DedupeKey(msgID string, raw []byte, rcpts []string, client string) []byte {
	h := sha256.New()
	if msgID == "" {
		h.Write([]byte("raw\x00"))
		h.Write(raw)
	} else {
		head, body := splitHeader(raw)
		h.Write([]byte("mid\x00" + msgID + "\x00"))
		for _, f := range headerFields(head) {
			name, _, _ := strings.Cut(f, ":")
			if traceField(strings.ToLower(strings.TrimSpace(name))) {
				continue
			}
			h.Write([]byte(f))
			h.Write([]byte{0})
		}
		h.Write([]byte("body\x00"))
		h.Write(body)
	}
	rc := make([]string, 0, len(rcpts))
	for _, r := range rcpts {
		rc = append(rc, strings.ToLower(strings.TrimSpace(r)))
	}
	slices.Sort(rc)
	h.Write([]byte("\x00rcpt\x00" + strings.Join(rc, "\x00") + "\x00client\x00" + client))
	return h.Sum(nil)[:16]
}

// splitHeader splits a message at its first empty line.
func splitHeader(raw []byte) (head, body []byte) {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return raw[:i+2], raw[i+4:]
	}
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		return raw[:i+1], raw[i+2:]
	}
	return raw, nil
}

// headerFields returns the unfolded header fields of head, each as
// "name:value" with the value's whitespace runs collapsed, so a relay that
// refolds a long Subject does not make a retry look like a new message.
func headerFields(head []byte) []string {
	var out []string
	for _, line := range strings.Split(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1] += " " + line
			continue
		}
		out = append(out, line)
	}
	for i, f := range out {
		name, value, _ := strings.Cut(f, ":")
		out[i] = strings.ToLower(strings.TrimSpace(name)) + ":" + strings.Join(strings.Fields(value), " ")
	}
	return out
}

// traceField reports header fields that relays add or rewrite on the way
// (RFC 5321 section 4.4 trace fields, and their common relatives): they
// differ between two deliveries of one message, so they do not identify it.
func traceField(name string) bool {
	switch name {
	case "received", "return-path", "delivered-to", "x-received", "x-original-to", "x-forwarded-to",
		"x-forwarded-for", "authentication-results", "received-spf", "dkim-signature", "x-google-dkim-signature",
		"x-gm-message-state", "x-virus-scanned":
		return true
	}
	return strings.HasPrefix(name, "arc-") || strings.HasPrefix(name, "x-spam") || strings.HasPrefix(name, "x-ms-exchange-")
}

// Accept decides a message received over SMTP and answers it: drop and
// reject at once; everything else only after the spool commit.
func (g *Gateway) Accept(ctx context.Context, raw []byte, env message.Envelope) Reply {
	now := g.now()
	env.Received = now
	id := NewID(now)
	s := g.Snapshot()
	if groups, clients := s.Router.SplitByClient(env.RcptTo); groups != nil {
		return g.acceptPerClient(ctx, s, raw, env, groups, clients)
	}
	v, a, _ := s.DecideAuth(ctx, g.auth, id, raw, env)
	log := g.log.With("id", id, "from", a.From, "rcpt", firstOf(env.RcptTo), "subject", a.Subject, "client", v.Client, "rule", v.Rule)
	if g.metrics != nil {
		g.metrics.LastMessageReceived.Set(float64(now.Unix()))
		for _, r := range v.Audit {
			g.metrics.RuleMatches.WithLabelValues(r, "audit").Inc()
		}
	}
	switch v.Action {
	case rules.ActionDrop:
		g.count("dropped", v)
		g.record(v, env, rules.ActionDrop, "", nil, "")
		log.Info("decision", "decision", rules.ActionDrop)
		return Reply{250, [3]int{2, 0, 0}, fmt.Sprintf("Accepted as %s and discarded by rule %q (nothing queued)", id, v.Rule)}
	case rules.ActionReject:
		g.count("rejected", v)
		g.record(v, env, rules.ActionReject, "", nil, v.RejectText)
		log.Info("decision", "decision", rules.ActionReject)
		return Reply{550, [3]int{5, 7, 1}, fmt.Sprintf("%s (id %s)", v.RejectText, id)}
	}
	vb, err := encodeVerdict(v)
	if err != nil {
		log.Error("encode verdict", "err", err)
		g.count("error", nil)
		return Reply{451, [3]int{4, 3, 0}, "Temporary failure while storing the message; please retry"}
	}
	e := &store.SpoolEntry{ID: id, Received: now, MailFrom: env.MailFrom, RcptTo: env.RcptTo,
		RemoteIP: ipString(env), Helo: env.Helo, Decision: vb, Raw: raw}
	orig, dup, err := g.db.Accept(e, DedupeKey(a.MessageID, raw, env.RcptTo, v.Client))
	if err != nil {
		log.Error("spool write failed; the sender will retry", "err", err)
		g.count("error", nil)
		return Reply{451, [3]int{4, 3, 0}, "Temporary failure while storing the message; please retry"}
	}
	if dup {
		g.count("duplicate", nil)
		log.Info("duplicate delivery ignored", "original", orig)
		return Reply{250, [3]int{2, 0, 0}, fmt.Sprintf("Already queued as %s (duplicate delivery ignored)", orig)}
	}
	g.count("queued", v)
	log.Debug("queued", "action", v.Action)
	wake(g.spoolWake)
	return Reply{250, [3]int{2, 0, 0}, "Queued as " + id}
}

// copiesNote is the audit's note on a mail decided once per client.
func copiesNote(v *Verdict) string {
	if len(v.Copies) < 2 {
		return ""
	}
	return "the mail was addressed to clients " + strings.Join(v.Copies, ", ") + ": decided once per client"
}

// acceptPerClient handles a mail whose recipients belong to several
// clients: each client's recipients get their own decision (routing,
// rules, incident key), so each client gets its own incident and ticket,
// and the copies to spool are committed in one transaction before the one
// reply. Deciding once, for the first client, left the others with nothing
// and nobody told (issue 14).
func (g *Gateway) acceptPerClient(ctx context.Context, s *Snapshot, raw []byte, env message.Envelope, groups [][]string, clients []string) Reply {
	var (
		entries          []*store.SpoolEntry
		dedupes          [][]byte
		queued           []*Verdict
		rejected         *Verdict
		discarded, names []string
	)
	if g.metrics != nil {
		g.metrics.LastMessageReceived.Set(float64(env.Received.Unix()))
	}
	for _, grp := range groups {
		e := env
		e.RcptTo = grp
		id := NewID(env.Received)
		v, a, _ := s.DecideAuth(ctx, g.auth, id, raw, e)
		v.Copies = clients
		// A rule's key template without {client} would make the clients'
		// copies one incident, the second a note on the first's ticket.
		if v.Key != "" && !strings.Contains(v.Key, v.Client) {
			v.Key = store.BoundKey(v.Client + "/" + v.Key)
		}
		log := g.log.With("id", id, "from", a.From, "rcpt", firstOf(grp), "subject", a.Subject, "client", v.Client, "rule", v.Rule)
		switch v.Action {
		case rules.ActionDrop:
			g.count("dropped", v)
			g.record(v, e, rules.ActionDrop, "", nil, copiesNote(v))
			log.Info("decision", "decision", rules.ActionDrop, "copies", clients)
			discarded = append(discarded, id)
			continue
		case rules.ActionReject:
			g.count("rejected", v)
			g.record(v, e, rules.ActionReject, "", nil, v.RejectText+"; "+copiesNote(v))
			log.Info("decision", "decision", rules.ActionReject, "copies", clients)
			if rejected == nil {
				rejected = v
			}
			continue
		}
		vb, err := encodeVerdict(v)
		if err != nil {
			log.Error("encode verdict", "err", err)
			g.count("error", nil)
			return Reply{451, [3]int{4, 3, 0}, "Temporary failure while storing the message; please retry"}
		}
		entries = append(entries, &store.SpoolEntry{ID: id, Received: env.Received, MailFrom: env.MailFrom, RcptTo: grp,
			RemoteIP: ipString(env), Helo: env.Helo, Decision: vb, Raw: raw})
		dedupes = append(dedupes, DedupeKey(a.MessageID, raw, grp, v.Client))
		queued = append(queued, v)
	}
	if len(entries) == 0 {
		if rejected != nil {
			return Reply{550, [3]int{5, 7, 1}, fmt.Sprintf("%s (id %s)", rejected.RejectText, rejected.ID)}
		}
		return Reply{250, [3]int{2, 0, 0}, fmt.Sprintf("Accepted as %s and discarded for every client (nothing queued)", strings.Join(discarded, ", "))}
	}
	res, err := g.db.AcceptAll(entries, dedupes)
	if err != nil {
		g.log.Error("spool write failed; the sender will retry", "err", err, "copies", clients)
		g.count("error", nil)
		return Reply{451, [3]int{4, 3, 0}, "Temporary failure while storing the message; please retry"}
	}
	var ids []string
	dups := 0
	for i, r := range res {
		names = append(names, queued[i].Client)
		if r.Dup {
			g.count("duplicate", nil)
			ids = append(ids, r.OrigID)
			dups++
			continue
		}
		g.count("queued", queued[i])
		ids = append(ids, entries[i].ID)
	}
	if dups == len(res) {
		return Reply{250, [3]int{2, 0, 0}, fmt.Sprintf("Already queued as %s (duplicate delivery ignored)", strings.Join(ids, ", "))}
	}
	wake(g.spoolWake)
	return Reply{250, [3]int{2, 0, 0}, fmt.Sprintf("Queued as %s (one per client: %s)", strings.Join(ids, ", "), strings.Join(names, ", "))}
}

func (g *Gateway) count(outcome string, v *Verdict) {
	if g.metrics == nil {
		return
	}
	g.metrics.MessagesReceived.WithLabelValues(outcome).Inc()
	if v == nil {
		return
	}
	g.metrics.RuleMatches.WithLabelValues(v.Rule, string(v.Action)).Inc()
	if v.Action == rules.ActionDrop {
		g.metrics.MessagesDropped.WithLabelValues(v.Rule).Inc()
	}
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func ipString(env message.Envelope) string {
	if env.RemoteIP.IsValid() {
		return env.RemoteIP.String()
	}
	return ""
}
