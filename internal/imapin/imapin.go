// Package imapin reads alerts from IMAP mailboxes ([[imap]]): Microsoft
// 365, Google or Dovecot folders that vendor clouds send their alerts to.
// Each mail goes through exactly the same pipeline as one received over
// SMTP (the gateway's Accept: decode, authenticate, route, rules, spool),
// and only after Accept has answered, which for a queued mail means the
// spool transaction is committed and fsync'd, is the mail moved to move_to
// (or flagged \Seen) on the server and its UID recorded in the state.
//
// A crash between the spool commit and the move leaves the mail in the
// folder: it is fetched again after the restart, and the gateway's
// Message-ID + body dedupe answers "already queued", so it is spooled
// once. A crash between the move and the UID record loses nothing either:
// the mail is no longer in the folder. UIDVALIDITY is kept with the last
// UID, so a folder the server renumbered is read from the start (the dedupe
// again keeps that from doubling anything).
//
// The client is github.com/emersion/go-imap v1.2.1, the stable release of
// the library family of go-smtp and go-message. Its v2 exists only as
// betas (v2.0.0-beta.8/9), not approved here; v1 has everything this needs:
// TLS and STARTTLS, UID SEARCH/FETCH/STORE, MOVE with a COPY + EXPUNGE
// fallback, and IDLE with a polling fallback.
package imapin

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap"
	"github.com/emersion/go-imap/client"
	"github.com/prometheus/client_golang/prometheus"

	"psagate/internal/config"
	"psagate/internal/gateway"
	"psagate/internal/message"
	"psagate/internal/store"
)

// AcceptFunc is the gateway's intake: the same function SMTP uses.
type AcceptFunc func(ctx context.Context, raw []byte, env message.Envelope) gateway.Reply

// Intake reads one [[imap]] source until its context ends.
type Intake struct {
	Src    config.IMAP
	DB     *store.DB
	Accept AcceptFunc
	Log    *slog.Logger
	// Messages counts mails by source and outcome (queued, refused,
	// deferred), when set.
	Messages *prometheus.CounterVec
	// TLSConfig, when set, replaces the default (server name from host).
	TLSConfig *tls.Config
}

// NewMessagesCounter is the counter an app registers for its intakes.
func NewMessagesCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "psagate_imap_messages_total",
		Help: "Mails read from [[imap]] sources, by source and outcome (queued: spooled or decided, then moved; deferred: the gateway answered 4xx, left on the server for the next pass).",
	}, []string{"source", "outcome"})
}

// Run connects, handles what is in the folder, waits for more (IDLE where
// the server offers it, else polling) and reconnects after failures with
// a growing pause, until ctx ends.
func (in *Intake) Run(ctx context.Context) {
	log := in.Log.With("imap", in.Src.Name)
	pause := time.Second
	for ctx.Err() == nil {
		err := in.session(ctx, log)
		if ctx.Err() != nil {
			return
		}
		log.Warn("imap session ended; reconnecting", "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(pause*2, 5*time.Minute)
	}
}

// dial connects and logs in.
func (in *Intake) dial(ctx context.Context) (*client.Client, error) {
	d := &net.Dialer{Timeout: in.Src.Timeout.D()}
	conn, err := d.DialContext(ctx, "tcp", in.Src.Addr())
	if err != nil {
		return nil, fmt.Errorf("imap %s: connect %s: %w", in.Src.Name, in.Src.Addr(), err)
	}
	tc := in.TLSConfig
	if tc == nil {
		tc = &tls.Config{ServerName: in.Src.Host, MinVersion: tls.VersionTLS12}
	}
	if in.Src.TLS == "tls" {
		conn = tls.Client(conn, tc)
	}
	c, err := client.New(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("imap %s: greeting: %w", in.Src.Name, err)
	}
	c.Timeout = in.Src.Timeout.D()
	// The library's own error lines (a read on a connection closed at
	// shutdown) go to the structured log, at debug.
	c.ErrorLog = slog.NewLogLogger(in.Log.Handler(), slog.LevelDebug)
	if in.Src.TLS == "starttls" {
		if err := c.StartTLS(tc); err != nil {
			c.Logout()
			return nil, fmt.Errorf("imap %s: STARTTLS: %w", in.Src.Name, err)
		}
	}
	if err := c.Login(in.Src.User, in.Src.Password.Value()); err != nil {
		c.Logout()
		// The server's text, never the password.
		return nil, fmt.Errorf("imap %s: login as %s: %w", in.Src.Name, in.Src.User, err)
	}
	return c, nil
}

func (in *Intake) session(ctx context.Context, log *slog.Logger) error {
	c, err := in.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Logout()
	// A cancelled context closes the connection, which ends any command
	// or IDLE in progress.
	stopWatch := context.AfterFunc(ctx, func() { c.Terminate() })
	defer stopWatch()

	updates := make(chan client.Update, 64)
	c.Updates = updates
	wake := make(chan struct{}, 1)
	go func() {
		// Drained until the connection is gone: the client blocks on a
		// full channel.
		for {
			select {
			case u := <-updates:
				if _, ok := u.(*client.MailboxUpdate); ok {
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			case <-c.LoggedOut():
				return
			}
		}
	}()
	if in.Src.MoveTo != "" {
		// Create the folder; an error means it exists (or cannot be made,
		// which the first MOVE then says).
		_ = c.Create(in.Src.MoveTo)
	}
	idle, err := c.Support("IDLE")
	if err != nil {
		return err
	}
	log.Info("imap connected", "folder", in.Src.Folder, "idle", idle)
	for {
		if err := in.pass(ctx, c, log); err != nil {
			return err
		}
		if err := in.wait(ctx, c, idle, wake); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// wait returns when the folder may have new mail: an IDLE update, or
// poll_interval passed.
func (in *Intake) wait(ctx context.Context, c *client.Client, idle bool, wake chan struct{}) error {
	t := time.NewTimer(in.Src.PollInterval.D())
	defer t.Stop()
	if !idle {
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return nil
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- c.Idle(stop, &client.IdleOptions{LogoutTimeout: -1}) }()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	case err := <-done:
		return err
	}
	close(stop)
	return <-done
}

// pass handles every mail in the folder above the recorded UID.
func (in *Intake) pass(ctx context.Context, c *client.Client, log *slog.Logger) error {
	st, err := c.Select(in.Src.Folder, false)
	if err != nil {
		return fmt.Errorf("imap %s: select %q: %w", in.Src.Name, in.Src.Folder, err)
	}
	var mark store.IMAPMark
	if err := in.DB.View(func(tx *store.Tx) error { mark = tx.IMAPMark(in.Src.Name); return nil }); err != nil {
		return err
	}
	if mark.UIDValidity != st.UidValidity {
		if mark.UIDValidity != 0 {
			log.Warn("imap UIDVALIDITY changed: the folder was renumbered; reading it from the start (the dedupe keeps mails already spooled from being spooled again)",
				"old", mark.UIDValidity, "new", st.UidValidity)
		}
		mark = store.IMAPMark{UIDValidity: st.UidValidity}
	}
	if st.Messages == 0 {
		return nil
	}
	crit := imap.NewSearchCriteria()
	crit.Uid = new(imap.SeqSet)
	crit.Uid.AddRange(mark.Last+1, 0) // 0 is "*"
	uids, err := c.UidSearch(crit)
	if err != nil {
		return fmt.Errorf("imap %s: search: %w", in.Src.Name, err)
	}
	// "n:*" also matches the highest UID when it is below n (RFC 3501 6.4.8).
	uids = slices.DeleteFunc(uids, func(u uint32) bool { return u <= mark.Last })
	slices.Sort(uids)
	for _, uid := range uids {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		done, err := in.one(ctx, c, uid, log)
		if err != nil {
			return err
		}
		if !done {
			return nil // deferred: try again on the next pass
		}
		mark.Last = uid
		if err := in.DB.Update(func(tx *store.Tx) error { return tx.SetIMAPMark(in.Src.Name, mark) }); err != nil {
			return err
		}
	}
	return nil
}

var bodySection = &imap.BodySectionName{Peek: true}

// one fetches, accepts and then moves (or flags) one mail. It reports
// false when the gateway deferred it (4xx): it stays in the folder.
func (in *Intake) one(ctx context.Context, c *client.Client, uid uint32, log *slog.Logger) (bool, error) {
	set := new(imap.SeqSet)
	set.AddNum(uid)
	ch := make(chan *imap.Message, 1)
	errc := make(chan error, 1)
	go func() { errc <- c.UidFetch(set, []imap.FetchItem{bodySection.FetchItem()}, ch) }()
	var raw []byte
	for m := range ch {
		if lit := m.GetBody(bodySection); lit != nil {
			var b bytes.Buffer
			if _, err := b.ReadFrom(lit); err != nil {
				return false, err
			}
			raw = b.Bytes()
		}
	}
	if err := <-errc; err != nil {
		return false, fmt.Errorf("imap %s: fetch UID %d: %w", in.Src.Name, uid, err)
	}
	if raw == nil {
		// Expunged meanwhile by someone else: nothing to do.
		return true, nil
	}
	reply := in.Accept(ctx, raw, in.envelope(raw))
	attrs := []any{"uid", uid, "reply", fmt.Sprintf("%d %s", reply.Code, reply.Text)}
	switch {
	case reply.Code >= 400 && reply.Code < 500:
		in.count("deferred")
		log.Warn("imap mail deferred by the gateway; it stays in the folder for the next pass", attrs...)
		return false, nil
	case reply.Code >= 500:
		in.count("refused")
		log.Info("imap mail refused by a rule", attrs...)
	default:
		in.count("queued")
		log.Debug("imap mail accepted", attrs...)
	}
	// Only now, with the spool on disk, does the mail leave the folder.
	if in.Src.MoveTo != "" {
		if err := c.UidMove(set, in.Src.MoveTo); err != nil {
			return false, fmt.Errorf("imap %s: move UID %d to %q: %w", in.Src.Name, uid, in.Src.MoveTo, err)
		}
	} else if err := c.UidStore(set, imap.FormatFlagsOp(imap.AddFlags, true), []any{imap.SeenFlag}, nil); err != nil {
		return false, fmt.Errorf("imap %s: flag UID %d: %w", in.Src.Name, uid, err)
	}
	return true, nil
}

func (in *Intake) count(outcome string) {
	if in.Messages != nil {
		in.Messages.WithLabelValues(in.Src.Name, outcome).Inc()
	}
}

// envelope is what SMTP would have known: the sender from Return-Path
// (the mailbox server's record of MAIL FROM) or From, the recipient from
// rcpt, Delivered-To / X-Original-To, or To and Cc. No client IP: SPF cannot
// be checked for mailbox mail, DKIM can.
func (in *Intake) envelope(raw []byte) message.Envelope {
	env := message.Envelope{Helo: ""}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		if in.Src.Rcpt != "" {
			env.RcptTo = []string{in.Src.Rcpt}
		}
		return env
	}
	h := m.Header
	if rp := strings.Trim(strings.TrimSpace(h.Get("Return-Path")), "<>"); strings.Contains(rp, "@") {
		env.MailFrom = rp
	} else if a, err := mail.ParseAddress(h.Get("From")); err == nil {
		env.MailFrom = a.Address
	}
	switch {
	case in.Src.Rcpt != "":
		env.RcptTo = []string{in.Src.Rcpt}
	case strings.Contains(h.Get("Delivered-To"), "@"):
		env.RcptTo = []string{strings.ToLower(strings.Trim(strings.TrimSpace(h.Get("Delivered-To")), "<>"))}
	case strings.Contains(h.Get("X-Original-To"), "@"):
		env.RcptTo = []string{strings.ToLower(strings.Trim(strings.TrimSpace(h.Get("X-Original-To")), "<>"))}
	default:
		for _, k := range []string{"To", "Cc"} {
			if l, err := h.AddressList(k); err == nil {
				for _, a := range l {
					env.RcptTo = append(env.RcptTo, strings.ToLower(a.Address))
				}
			}
		}
	}
	return env
}
