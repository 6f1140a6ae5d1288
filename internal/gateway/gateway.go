package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"psagate/internal/auth"
	"psagate/internal/incident"
	"psagate/internal/message"
	"psagate/internal/metrics"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// Reply is the SMTP answer to a message.
type Reply struct {
	Code     int
	Enhanced [3]int
	Text     string
}

// Gateway is the running pipeline.
type Gateway struct {
	db      *store.DB
	snap    atomic.Pointer[Snapshot]
	metrics *metrics.Metrics
	log     *slog.Logger
	now     func() time.Time

	spoolWake chan struct{}
	timerWake chan struct{}
	onJobs    func() // wakes the delivery workers
	auth      *auth.Checker

	// SMTP refusals audited in the current minute (Refused).
	refMu      sync.Mutex
	refWindow  time.Time
	refCount   int
	refDropped int

	audit     chan *store.AuditEntry
	auditDone chan struct{}
	closeOnce sync.Once

	// storeFault, when set (tests), fails a spool transaction at its end
	// as a failing commit would.
	storeFault func() error
}

// Options configure a Gateway.
type Options struct {
	DB      *store.DB
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
	OnJobs  func()
	// Auth authenticates senders when the snapshot needs it; nil: never.
	Auth *auth.Checker
}

// New returns a Gateway running snapshot s. Call Run to start its workers.
func New(s *Snapshot, o Options) *Gateway {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OnJobs == nil {
		o.OnJobs = func() {}
	}
	g := &Gateway{
		db: o.DB, metrics: o.Metrics, log: o.Logger, now: o.Now, onJobs: o.OnJobs, auth: o.Auth,
		spoolWake: make(chan struct{}, 1),
		timerWake: make(chan struct{}, 1),
		audit:     make(chan *store.AuditEntry, 4096),
		auditDone: make(chan struct{}),
	}
	g.snap.Store(s)
	// The audit writer runs from the start, so a drop answered before Run
	// (or in a test without Run) is still recorded and CloseAudit returns.
	go g.auditLoop()
	return g
}

// WakeSpool tells the spool worker that a message was spooled (a
// released quarantined mail).
func (g *Gateway) WakeSpool() { wake(g.spoolWake) }

// Snapshot is the active configuration.
func (g *Gateway) Snapshot() *Snapshot { return g.snap.Load() }

// Swap installs a new configuration; messages already decided keep theirs.
func (g *Gateway) Swap(s *Snapshot) { g.snap.Store(s) }

// Engine returns the incident engine for snapshot s.
func (g *Gateway) Engine(s *Snapshot) *incident.Engine {
	return &incident.Engine{Router: s.Router, Instance: g.db.Instance(), Incidents: s.Config.Incidents}
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

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

// record queues an audit entry for a decision that needs no transaction of
// its own (drops and rejects): losing it in a crash loses no alert.
func (g *Gateway) record(v *Verdict, env message.Envelope, decision rules.Action, effect incident.Effect, inc *store.Incident, detail string) {
	e := auditEntry(v, env.MailFrom, firstOf(env.RcptTo), ipString(env), env.Received, decision, effect, inc, detail)
	select {
	case g.audit <- e:
	default:
		g.log.Warn("audit queue full; decision not recorded in the audit trail", "id", v.ID)
	}
}

func auditEntry(v *Verdict, from, rcpt, ip string, at time.Time, decision rules.Action, effect incident.Effect, inc *store.Incident, detail string) *store.AuditEntry {
	if len(v.Notes) > 0 {
		notes := strings.Join(v.Notes, "; ")
		if detail == "" {
			detail = notes
		} else {
			detail += "; " + notes
		}
	}
	e := &store.AuditEntry{Time: at, Message: v.ID, MsgID: v.HeaderMsgID, From: v.From, Rcpt: rcpt, RemoteIP: ip,
		Subject: v.Subject, Client: v.Client, Device: v.Device, Rule: v.Rule, Decision: string(decision), Effect: string(effect),
		Key: v.Key, Detail: detail, Auth: v.Auth}
	if e.From == "" {
		e.From = from
	}
	if inc != nil {
		e.Incident = inc.ID
	}
	return e
}

// Run starts the spool worker, the timer loop and the audit writer, and
// returns when ctx ends and they have stopped.
func (g *Gateway) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.spoolLoop(ctx) }()
	go func() { defer wg.Done(); g.timerLoop(ctx) }()
	wg.Wait()
}

// CloseAudit flushes and stops the audit writer; call after the SMTP
// server has stopped.
func (g *Gateway) CloseAudit() {
	g.closeOnce.Do(func() { close(g.audit) })
	<-g.auditDone
}

func (g *Gateway) auditLoop() {
	defer close(g.auditDone)
	for e := range g.audit {
		batch := []*store.AuditEntry{e}
	more:
		for len(batch) < 256 {
			select {
			case e, ok := <-g.audit:
				if !ok {
					break more
				}
				batch = append(batch, e)
			default:
				break more
			}
		}
		if err := g.db.Update(func(tx *store.Tx) error {
			for _, e := range batch {
				if err := tx.AddAudit(e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			g.log.Error("audit write failed", "err", err, "entries", len(batch))
		}
	}
}

func (g *Gateway) spoolLoop(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		for {
			n, err := g.ProcessSpool(ctx, 128)
			if err != nil {
				g.log.Error("processing the spool failed; will retry", "err", err)
				break
			}
			if n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-g.spoolWake:
		case <-tick.C:
		}
	}
}

// Result is what became of one processed message.
type Result struct {
	Verdict  *Verdict
	Outcome  *incident.Outcome
	Decision rules.Action
	Effect   incident.Effect
	Entry    *store.SpoolEntry
	Pruned   int // quarantined messages pruned to make room (max_messages)
}

// ProcessSpool runs the incident engine over up to n spooled messages in
// one transaction and returns how many it handled. When that transaction
// fails, the messages are taken one by one, so that a single message the
// engine cannot handle is set aside (quarantined, with the error) instead
// of blocking every message behind it.
func (g *Gateway) ProcessSpool(ctx context.Context, n int) (int, error) {
	results, err := g.processBatch(n)
	if err != nil {
		g.log.Warn("spool batch failed; retrying its messages one by one", "err", err)
		results, err = g.processOneByOne(n)
	}
	jobs := false
	for _, r := range results {
		g.logResult(r)
		if r.Outcome != nil && len(r.Outcome.Jobs) > 0 {
			jobs = true
		}
	}
	if jobs {
		g.onJobs()
	}
	if len(results) > 0 {
		wake(g.timerWake)
	}
	return len(results), err
}

func (g *Gateway) processBatch(n int) ([]*Result, error) {
	var results []*Result
	s := g.Snapshot()
	eng := g.Engine(s)
	err := g.db.Update(func(tx *store.Tx) error {
		results = results[:0]
		entries, err := tx.SpoolBatch(n)
		if len(entries) == 0 && err != nil {
			return &messageError{err} // the head record itself is damaged
		}
		// A damaged record after good ones: process those, and meet the
		// damage when it is the head.
		for _, e := range entries {
			r, err := Process(tx, eng, s, e)
			if err != nil {
				return &messageError{fmt.Errorf("message %s: %w", e.ID, err)}
			}
			results = append(results, r)
			if err := tx.DeleteSpool(e.Seq); err != nil {
				return err
			}
		}
		if g.storeFault != nil {
			return g.storeFault()
		}
		return nil
	})
	return results, err
}

// messageError is a failure that belongs to one message (it cannot be
// decoded or processed), as opposed to the database failing to commit: only
// the first kind sets a message aside; the second is retried as it is.
type messageError struct{ err error }

func (e *messageError) Error() string { return e.err.Error() }
func (e *messageError) Unwrap() error { return e.err }

func (g *Gateway) processOneByOne(n int) ([]*Result, error) {
	var out []*Result
	for range n {
		r, perr := g.processBatch(1)
		if perr == nil {
			if len(r) == 0 {
				break
			}
			out = append(out, r...)
			continue
		}
		if !errors.As(perr, new(*messageError)) {
			// The store, not the message: leave it spooled for the retry.
			return out, perr
		}
		// This message fails on its own: keep it for an admin.
		var head *store.SpoolEntry
		qerr := g.db.Update(func(tx *store.Tx) error {
			entries, err := tx.SpoolHead(1)
			if ce := (*store.CorruptSpoolError)(nil); errors.As(err, &ce) {
				reason := "spool record could not be decoded: " + ce.Error()
				if head, err = tx.SetAsideCorrupt(ce.Seq, reason, g.now()); err != nil || head == nil {
					return err
				}
				return tx.AddAudit(&store.AuditEntry{Time: head.Received, Message: head.ID, Decision: string(rules.ActionQuarantine),
					Effect: "processing failed", Detail: reason})
			}
			if err != nil || len(entries) == 0 {
				return err
			}
			head = entries[0]
			reason := "could not be processed: " + perr.Error()
			if err := tx.Quarantine(head, reason); err != nil {
				return err
			}
			if err := tx.AddAudit(failedAudit(head, reason)); err != nil {
				return err
			}
			return tx.DeleteSpool(head.Seq)
		})
		if qerr != nil {
			return out, fmt.Errorf("%w; and setting the message aside failed: %v", perr, qerr)
		}
		if head != nil {
			g.log.Error("message could not be processed; it is kept in quarantine", "msg", head.ID, "err", perr)
		}
	}
	return out, nil
}

// failedAudit is the audit entry of a message that could not be
// processed: everything its verdict says (subject, client, rule, key), so
// an admin searching the audit by subject or client still finds it.
func failedAudit(e *store.SpoolEntry, reason string) *store.AuditEntry {
	v, err := decodeVerdict(e.Decision)
	if err != nil {
		v = &Verdict{ID: e.ID}
	}
	v.ID = e.ID
	return auditEntry(v, e.MailFrom, firstOf(e.RcptTo), e.RemoteIP, e.Received, rules.ActionQuarantine, "processing failed", nil, reason)
}

// Process handles one spooled message inside tx: quarantine, or the
// incident engine; it records the audit entry in the same transaction.
func Process(tx *store.Tx, eng *incident.Engine, s *Snapshot, e *store.SpoolEntry) (*Result, error) {
	v, err := decodeVerdict(e.Decision)
	if err != nil {
		// A verdict we cannot read must not lose the message: keep it for
		// an admin instead.
		if qerr := tx.Quarantine(e, "unreadable verdict: "+err.Error()); qerr != nil {
			return nil, qerr
		}
		return &Result{Verdict: &Verdict{ID: e.ID}, Decision: rules.ActionQuarantine, Effect: "unreadable verdict", Entry: e}, nil
	}
	return ProcessVerdict(tx, eng, s, e, v)
}

// ProcessVerdict is Process for a verdict the caller holds (try decides
// and processes in one step: the verdict need not go through JSON).
func ProcessVerdict(tx *store.Tx, eng *incident.Engine, s *Snapshot, e *store.SpoolEntry, vp *Verdict) (*Result, error) {
	v := *vp
	rcpt := firstOf(e.RcptTo)
	r := &Result{Verdict: &v, Entry: e}
	switch v.Action {
	case rules.ActionQuarantine:
		reason := "rule " + v.Rule
		switch {
		case v.Rule == BuiltinInjection:
			reason = "header injection: " + joinProblems(v.Problems)
		case v.Rule == BuiltinAuth:
			reason = "sender authentication: " + joinProblems(v.Problems)
		case v.Guard != "":
			reason = fmt.Sprintf("unsafe to %s (rule %s): %s", v.Was, v.Rule, v.Guard)
		}
		if e.Decision == nil {
			// The quarantine keeps the verdict beside the message.
			b, err := encodeVerdict(&v)
			if err != nil {
				return nil, err
			}
			e.Decision = b
		}
		if err := tx.Quarantine(e, reason); err != nil {
			return nil, err
		}
		if tx.QuarantineLen() > s.Config.Quarantine.MaxMessages {
			n, err := PruneQuarantine(tx, s, e.Received)
			if err != nil {
				return nil, err
			}
			r.Pruned = n
		}
		r.Decision, r.Effect = rules.ActionQuarantine, "kept"
		return r, tx.AddAudit(auditEntry(&v, e.MailFrom, rcpt, e.RemoteIP, e.Received, rules.ActionQuarantine, "kept", nil, reason))
	case rules.ActionTicket, rules.ActionNote, rules.ActionClose:
	default:
		return nil, fmt.Errorf("unexpected action %q in the spool", v.Action)
	}
	ev := &incident.Event{
		MessageID: v.ID, At: e.Received, Action: v.Action, Rule: v.Rule, Client: v.Client, Device: v.Device,
		Check: v.Check, Key: v.Key, Summary: v.Summary, Description: v.Description, NoteText: v.NoteText,
		Repeat: v.Repeat, Delay: v.Delay, Reopen: v.Reopen, Expect: v.Expect, Attach: v.Attach, Overrides: v.Overrides,
		Severity: v.Severity, Escalate: v.Escalate,
	}
	if sil, err := silenceFor(tx, &v, e.Received); err != nil {
		return nil, err
	} else if sil != nil {
		return silenced(tx, sil, ev, &v, e)
	}
	if v.Attach && v.Attachments > 0 {
		raw, err := tx.SpoolRaw(e)
		if err != nil {
			return nil, err
		}
		a := message.Decode(raw, message.Envelope{}, s.Limits())
		// The policy of the PSA this ticket goes to: each can have its own.
		types, maxBytes := s.Config.Deliver.AttachPolicy(s.Router.Effective(v.Client, v.Device, v.Overrides).Provider())
		ev.Attachments, ev.Withheld = FilterAttachments(a.Attachments, types, maxBytes)
	}
	out, err := eng.Apply(tx, ev)
	if err != nil {
		return nil, err
	}
	r.Outcome, r.Decision, r.Effect = out, out.Decision, out.Effect
	detail := out.Detail
	if len(ev.Withheld) > 0 {
		detail = strings.TrimPrefix(detail+"; attachments not uploaded: "+strings.Join(ev.Withheld, "; "), "; ")
	}
	if note := copiesNote(&v); note != "" {
		detail = strings.TrimPrefix(detail+"; "+note, "; ")
	}
	return r, tx.AddAudit(auditEntry(&v, e.MailFrom, rcpt, e.RemoteIP, e.Received, out.Decision, out.Effect, out.Incident, detail))
}

func joinProblems(p []string) string {
	if len(p) == 0 {
		return "(no detail)"
	}
	return strings.Join(p, "; ")
}

func (g *Gateway) logResult(r *Result) {
	v := r.Verdict
	attrs := []any{"id", v.ID, "decision", r.Decision, "effect", r.Effect, "rule", v.Rule, "client", v.Client,
		"subject", v.Subject, "from", v.From}
	if v.Device != "" {
		attrs = append(attrs, "device", v.Device)
	}
	if v.Key != "" {
		attrs = append(attrs, "key", v.Key)
	}
	if o := r.Outcome; o != nil {
		if o.Incident != nil {
			attrs = append(attrs, "incident", o.Incident.ID)
		}
		if len(o.Jobs) > 0 {
			attrs = append(attrs, "jobs", len(o.Jobs))
		}
		if o.Detail != "" {
			attrs = append(attrs, "detail", o.Detail)
		}
	}
	g.log.Info("decision", attrs...)
	if g.metrics != nil && r.Pruned > 0 {
		g.metrics.QuarantinePruned.Add(float64(r.Pruned))
	}
	if g.metrics != nil {
		g.metrics.Decisions.WithLabelValues(string(r.Decision), string(r.Effect)).Inc()
	}
}

func (g *Gateway) timerLoop(ctx context.Context) {
	for {
		if _, err := g.FireTimers(g.now()); err != nil {
			g.log.Error("timers failed; will retry", "err", err)
		}
		var next time.Time
		var ok bool
		_ = g.db.View(func(tx *store.Tx) error { next, ok = tx.NextTimer(); return nil })
		wait := time.Minute
		if ok {
			if d := next.Sub(g.now()); d < wait {
				wait = d
			}
		}
		if wait < 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.timerWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// FireTimers handles every timer due at now (hold-downs ending, expected
// mail overdue) and returns the outcomes.
func (g *Gateway) FireTimers(now time.Time) ([]*incident.Outcome, error) {
	s := g.Snapshot()
	eng := g.Engine(s)
	var outs []*incident.Outcome
	err := g.db.Update(func(tx *store.Tx) error {
		outs = outs[:0]
		var err error
		outs, err = FireDue(tx, eng, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	jobs := false
	for _, o := range outs {
		attrs := []any{"decision", o.Decision, "effect", o.Effect, "detail", o.Detail}
		if o.Incident != nil {
			attrs = append(attrs, "incident", o.Incident.ID, "key", o.Incident.Key, "client", o.Incident.Client)
		}
		g.log.Info("timer", attrs...)
		if g.metrics != nil {
			g.metrics.Decisions.WithLabelValues(string(o.Decision), string(o.Effect)).Inc()
		}
		if len(o.Jobs) > 0 {
			jobs = true
		}
	}
	if jobs {
		g.onJobs()
	}
	return outs, nil
}

// FireDue handles the timers due at now inside tx and audits them.
func FireDue(tx *store.Tx, eng *incident.Engine, now time.Time) ([]*incident.Outcome, error) {
	var outs []*incident.Outcome
	for _, tm := range tx.DueTimers(now) {
		if tm.Kind == timerSilence {
			os, err := fireSilence(tx, eng, tm, now)
			if err != nil {
				return nil, err
			}
			outs = append(outs, os...)
			continue
		}
		o, err := eng.Fire(tx, tm, now)
		if err != nil {
			return nil, err
		}
		if o == nil {
			continue
		}
		outs = append(outs, o)
		if err := tx.AddAudit(outcomeAudit(o, now, "timer: ")); err != nil {
			return nil, err
		}
	}
	return outs, nil
}
