// Package imaptest is an in-process IMAP server for tests: the go-imap v1
// server over its memory backend, on 127.0.0.1, with one user
// ("username"/"password"). The memory backend is not safe for concurrent
// use, so every backend call here holds one lock; it also lacks MOVE, which
// is added as COPY + \Deleted + EXPUNGE, and a hook sees each move before
// it happens.
package imaptest

import (
	"bytes"
	"io"
	"log"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap"
	"github.com/emersion/go-imap/backend"
	"github.com/emersion/go-imap/backend/memory"
	"github.com/emersion/go-imap/server"
)

// User and Password log in.
const (
	User     = "username"
	Password = "password"
)

// Server is a running IMAP server.
type Server struct {
	Addr string

	mu         sync.Mutex
	user       backend.User
	srv        *server.Server
	ln         net.Listener
	onMove     func(folder string, raws [][]byte) error
	fetchDelay time.Duration
}

// OnMove sets a function called with the raw messages about to be moved,
// before the move, with the backend lock held (it must not call the
// server); an error refuses the move.
func (s *Server) OnMove(f func(folder string, raws [][]byte) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onMove = f
}

// FetchDelay slows every FETCH down, so a test can act while a mailbox is
// being read.
func (s *Server) FetchDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetchDelay = d
}

// Start runs a server with an empty INBOX and the given other folders.
func Start(folders ...string) (*Server, error) {
	be := memory.New()
	u, err := be.Login(nil, User, Password)
	if err != nil {
		return nil, err
	}
	inbox, err := u.GetMailbox("INBOX")
	if err != nil {
		return nil, err
	}
	inbox.(*memory.Mailbox).Messages = nil // the sample message memory.New puts there
	for _, f := range folders {
		if err := u.CreateMailbox(f); err != nil {
			return nil, err
		}
	}
	s := &Server{user: u}
	s.srv = server.New(&lockedBackend{s: s})
	s.srv.AllowInsecureAuth = true
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Addr = s.ln.Addr().String()
	go s.srv.Serve(s.ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Append adds a message to folder.
func (s *Server) Append(folder string, raw []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb, err := s.user.GetMailbox(folder)
	if err != nil {
		return err
	}
	return mb.CreateMessage(nil, time.Now(), bytes.NewReader(raw))
}

// Messages returns the raw messages in folder.
func (s *Server) Messages(folder string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages(folder)
}

func (s *Server) messages(folder string) [][]byte {
	mb, err := s.user.GetMailbox(folder)
	if err != nil {
		return nil
	}
	var out [][]byte
	for _, m := range mb.(*memory.Mailbox).Messages {
		out = append(out, bytes.Clone(m.Body))
	}
	return out
}

type lockedBackend struct{ s *Server }

func (b *lockedBackend) Login(_ *imap.ConnInfo, user, pass string) (backend.User, error) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if user != User || pass != Password {
		return nil, backend.ErrInvalidCredentials
	}
	return &lockedUser{s: b.s}, nil
}

type lockedUser struct{ s *Server }

func (u *lockedUser) Username() string { return User }

func (u *lockedUser) ListMailboxes(sub bool) ([]backend.Mailbox, error) {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	l, err := u.s.user.ListMailboxes(sub)
	out := make([]backend.Mailbox, len(l))
	for i, m := range l {
		out[i] = &lockedMailbox{s: u.s, m: m}
	}
	return out, err
}

func (u *lockedUser) GetMailbox(name string) (backend.Mailbox, error) {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	m, err := u.s.user.GetMailbox(name)
	if err != nil {
		return nil, err
	}
	return &lockedMailbox{s: u.s, m: m}, nil
}

func (u *lockedUser) CreateMailbox(name string) error {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	return u.s.user.CreateMailbox(name)
}

func (u *lockedUser) DeleteMailbox(name string) error {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	return u.s.user.DeleteMailbox(name)
}

func (u *lockedUser) RenameMailbox(a, b string) error {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	return u.s.user.RenameMailbox(a, b)
}

func (u *lockedUser) Logout() error { return nil }

type lockedMailbox struct {
	s *Server
	m backend.Mailbox
}

func (x *lockedMailbox) lock() func() { x.s.mu.Lock(); return x.s.mu.Unlock }

func (x *lockedMailbox) Name() string { return x.m.Name() }

func (x *lockedMailbox) Info() (*imap.MailboxInfo, error) { defer x.lock()(); return x.m.Info() }

func (x *lockedMailbox) Status(items []imap.StatusItem) (*imap.MailboxStatus, error) {
	defer x.lock()()
	return x.m.Status(items)
}

func (x *lockedMailbox) SetSubscribed(v bool) error { defer x.lock()(); return x.m.SetSubscribed(v) }

func (x *lockedMailbox) Check() error { defer x.lock()(); return x.m.Check() }

func (x *lockedMailbox) ListMessages(uid bool, set *imap.SeqSet, items []imap.FetchItem, ch chan<- *imap.Message) error {
	x.s.mu.Lock()
	d := x.s.fetchDelay
	x.s.mu.Unlock()
	time.Sleep(d) // the test's throttle, not synchronisation
	// Collect under the lock, send without it: the server reads ch while
	// other connections may need the lock.
	inner := make(chan *imap.Message, 1024)
	unlock := x.lock()
	err := x.m.ListMessages(uid, set, items, inner)
	unlock()
	for m := range inner {
		ch <- m
	}
	close(ch)
	return err
}

func (x *lockedMailbox) SearchMessages(uid bool, c *imap.SearchCriteria) ([]uint32, error) {
	defer x.lock()()
	return x.m.SearchMessages(uid, c)
}

func (x *lockedMailbox) CreateMessage(flags []string, date time.Time, body imap.Literal) error {
	defer x.lock()()
	return x.m.CreateMessage(flags, date, body)
}

func (x *lockedMailbox) UpdateMessagesFlags(uid bool, set *imap.SeqSet, op imap.FlagsOp, flags []string) error {
	defer x.lock()()
	return x.m.UpdateMessagesFlags(uid, set, op, flags)
}

func (x *lockedMailbox) CopyMessages(uid bool, set *imap.SeqSet, dest string) error {
	defer x.lock()()
	return x.m.CopyMessages(uid, set, dest)
}

func (x *lockedMailbox) Expunge() error { defer x.lock()(); return x.m.Expunge() }

// MoveMessages is MOVE (RFC 6851) for the memory backend.
func (x *lockedMailbox) MoveMessages(uid bool, set *imap.SeqSet, dest string) error {
	defer x.lock()()
	if x.s.onMove != nil {
		var raws [][]byte
		for i, m := range x.m.(*memory.Mailbox).Messages {
			id := uint32(i + 1)
			if uid {
				id = m.Uid
			}
			if set.Contains(id) {
				raws = append(raws, bytes.Clone(m.Body))
			}
		}
		if err := x.s.onMove(dest, raws); err != nil {
			return err
		}
	}
	if err := x.m.CopyMessages(uid, set, dest); err != nil {
		return err
	}
	if err := x.m.UpdateMessagesFlags(uid, set, imap.AddFlags, []string{imap.DeletedFlag}); err != nil {
		return err
	}
	return x.m.Expunge()
}
