// Package logpsa is the provider for running without a PSA account: it
// writes, one JSON object a line, the ticket operations it would perform
// (the ticket's summary, description, client, key and the effective
// settings, secrets redacted). `make run` uses it, and so do tests that need
// a provider whose output is easy to read.
package logpsa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"time"

	"psagate/internal/psa"
)

// Provider writes ticket operations as JSON lines.
type Provider struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// New returns a Provider writing to w.
func New(w io.Writer) *Provider { return &Provider{w: w, now: time.Now} }

// Line is one written operation.
type Line struct {
	Time        time.Time         `json:"time"`
	Provider    string            `json:"provider"`
	Op          string            `json:"op"`
	Ticket      string            `json:"ticket"`
	Client      string            `json:"client,omitempty"`
	Key         string            `json:"key,omitempty"`
	Summary     string            `json:"summary,omitempty"`
	Description string            `json:"description,omitempty"`
	ExternalRef string            `json:"external_ref,omitempty"`
	NoteKind    string            `json:"note_kind,omitempty"`
	Text        string            `json:"text,omitempty"`
	File        string            `json:"file,omitempty"`
	ContentType string            `json:"content_type,omitempty"`
	Bytes       int               `json:"bytes,omitempty"`
	Settings    map[string]string `json:"settings,omitempty"`
}

func (p *Provider) Name() string { return "log" }

func (p *Provider) write(l Line) error {
	l.Time = p.now().UTC()
	l.Provider = "log"
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err = p.w.Write(append(b, '\n'))
	return err
}

// ticketID is derived from the external reference, so a retried create
// returns the same id, as a real PSA's external-reference search would.
func ticketID(ref string) string {
	h := sha256.Sum256([]byte(ref))
	return "log-" + hex.EncodeToString(h[:5])
}

// Create writes the ticket it would open.
func (p *Provider) Create(ctx context.Context, c psa.Call, t psa.Ticket) (psa.TicketRef, error) {
	id := ticketID(t.ExternalRef)
	err := p.write(Line{Op: "create", Ticket: id, Client: t.Client, Key: t.Key, Summary: t.Summary,
		Description: t.Description, ExternalRef: t.ExternalRef, Settings: settingsFor(c.Settings)})
	return psa.TicketRef{Provider: "log", ID: id}, err
}

// AddNote writes the note it would add.
func (p *Provider) AddNote(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	return p.write(Line{Op: "note", Ticket: ref.ID, NoteKind: string(n.Kind), Text: n.Text})
}

// Attach writes the file it would upload (name, type, size).
func (p *Provider) Attach(ctx context.Context, c psa.Call, ref psa.TicketRef, a psa.Attachment) error {
	return p.write(Line{Op: "attach", Ticket: ref.ID, File: a.Name, ContentType: a.ContentType, Bytes: len(a.Data)})
}

// Close writes the close it would make.
func (p *Provider) Close(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	return p.write(Line{Op: "close", Ticket: ref.ID, NoteKind: string(n.Kind), Text: n.Text})
}

// Reopen writes the reopen it would make.
func (p *Provider) Reopen(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	return p.write(Line{Op: "reopen", Ticket: ref.ID, Text: n.Text})
}

// settingsFor keeps the keys that would shape the ticket, redacted.
func settingsFor(s psa.Settings) map[string]string {
	if len(s) == 0 {
		return nil
	}
	return s.Redacted()
}
