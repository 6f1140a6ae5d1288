package imapin

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/gateway"
	"psagate/internal/imapin/imaptest"
	"psagate/internal/message"
	"psagate/internal/store"
)

func alertMail(i int) []byte {
	return []byte(fmt.Sprintf("From: a@vendor.example\r\nTo: acme@alerts.example.net\r\nSubject: alert %d\r\nMessage-ID: <m%d@vendor.example>\r\n\r\nbody %d\r\n", i, i, i))
}

type fixture struct {
	srv *imaptest.Server
	db  *store.DB
	src config.IMAP

	mu       sync.Mutex
	accepted []string // subjects, in order
	envs     []message.Envelope
	reply    func(n int) gateway.Reply
}

func newFixture(t *testing.T, moveTo string) *fixture {
	t.Helper()
	srv, err := imaptest.Start("Done")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	db, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	host, port, _ := strings.Cut(srv.Addr, ":")
	p, _ := strconv.Atoi(port)
	src := config.IMAP{Name: "box", Host: host, Port: p, TLS: "none", User: imaptest.User, Folder: "INBOX", MoveTo: moveTo,
		PollInterval: config.Duration(50 * time.Millisecond), Timeout: config.Duration(5 * time.Second)}
	cfg, err := config.Parse("t.toml", []byte("[smtp]\naccept_domains = [\"a.example\"]\n[[imap]]\nname = \"x\"\nhost = \"127.0.0.1\"\ntls = \"none\"\nuser = \"u\"\npassword = \""+imaptest.Password+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	src.Password = cfg.IMAP[0].Password
	return &fixture{srv: srv, db: db, src: src, reply: func(int) gateway.Reply { return gateway.Reply{Code: 250, Text: "Queued"} }}
}

func (f *fixture) accept(_ context.Context, raw []byte, env message.Envelope) gateway.Reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := message.Decode(raw, env, message.Limits{})
	r := f.reply(len(f.accepted))
	if r.Code < 400 || r.Code >= 500 {
		f.accepted = append(f.accepted, a.Subject)
		f.envs = append(f.envs, env)
	}
	return r
}

// run runs an intake until cond holds.
func (f *fixture) run(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &Intake{Src: f.src, DB: f.db, Accept: f.accept, Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { defer close(done); in.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

func (f *fixture) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.accepted)
}

// TestMoveOnlyAfterAccept: each mail is moved only once the gateway has
// answered for it, in UID order; the envelope comes from Return-Path / To.
func TestMoveOnlyAfterAccept(t *testing.T) {
	f := newFixture(t, "Done")
	for i := range 5 {
		f.srv.Append("INBOX", alertMail(i))
	}
	f.srv.OnMove(func(_ string, raws [][]byte) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, raw := range raws {
			subj := message.Decode(raw, message.Envelope{}, message.Limits{}).Subject
			if len(f.accepted) == 0 || f.accepted[len(f.accepted)-1] != subj {
				t.Errorf("%q moved before the gateway accepted it (accepted: %v)", subj, f.accepted)
			}
		}
		return nil
	})
	f.run(t, func() bool { return len(f.srv.Messages("Done")) == 5 })
	if got := strings.Join(f.accepted, ","); got != "alert 0,alert 1,alert 2,alert 3,alert 4" {
		t.Errorf("accepted %s", got)
	}
	if e := f.envs[0]; e.MailFrom != "a@vendor.example" || len(e.RcptTo) != 1 || e.RcptTo[0] != "acme@alerts.example.net" {
		t.Errorf("envelope %+v", e)
	}
}

// TestDeferredStaysAndIsRetried: a 4xx from the gateway leaves the mail in
// the folder, and the next pass takes it.
func TestDeferredStaysAndIsRetried(t *testing.T) {
	f := newFixture(t, "Done")
	f.srv.Append("INBOX", alertMail(1))
	calls := 0
	f.reply = func(int) gateway.Reply {
		calls++
		if calls == 1 {
			return gateway.Reply{Code: 451, Text: "Temporary failure"}
		}
		return gateway.Reply{Code: 250, Text: "Queued"}
	}
	f.run(t, func() bool { return len(f.srv.Messages("Done")) == 1 })
	if calls < 2 || f.count() != 1 {
		t.Errorf("calls %d, accepted %d", calls, f.count())
	}
}

// TestFlagModeAndUIDMark: without move_to the mails stay, flagged, and the
// UID mark in the state keeps a new intake from taking them again; a new
// UIDVALIDITY makes it start over.
func TestFlagModeAndUIDMark(t *testing.T) {
	f := newFixture(t, "")
	for i := range 3 {
		f.srv.Append("INBOX", alertMail(i))
	}
	f.run(t, func() bool { return f.count() == 3 })
	var mark store.IMAPMark
	f.db.View(func(tx *store.Tx) error { mark = tx.IMAPMark("box"); return nil })
	if mark.Last != 3 || mark.UIDValidity == 0 {
		t.Fatalf("mark %+v", mark)
	}
	f.srv.Append("INBOX", alertMail(3))
	f.run(t, func() bool { return f.count() == 4 })
	if got := strings.Join(f.accepted, ","); got != "alert 0,alert 1,alert 2,alert 3" || len(f.srv.Messages("INBOX")) != 4 {
		t.Errorf("accepted %s; %d left in INBOX", got, len(f.srv.Messages("INBOX")))
	}
	// The server renumbered the folder: everything is read again (the
	// gateway's dedupe then answers "already queued").
	f.db.Update(func(tx *store.Tx) error {
		return tx.SetIMAPMark("box", store.IMAPMark{UIDValidity: mark.UIDValidity + 7, Last: 4})
	})
	f.run(t, func() bool { return f.count() == 8 })
}
