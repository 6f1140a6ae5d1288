// Package connectwise is psagate's ConnectWise Manage (ConnectWise PSA)
// provider: it opens service tickets, adds notes and attachments, closes and
// reopens tickets through the REST API (/apis/3.0), and implements the
// "Test It" button and the value lookups of psa.Checker.
//
// Configuration names (board, status, type, company identifier ...) are
// resolved to ids through the API's lookup endpoints and cached per
// connection (server, login company and API member), so clients with other
// companies, boards or even other ConnectWise sites share one Provider
// safely. Every write that a lost response could make twice is guarded: a
// retried create searches for the ticket's externalXRef first, a retried note
// or upload looks for its marker first.
//
// The wire format follows /work/shared/reference/connectwise-manage-api.md;
// the fake sub-package is a server that enforces it.
package connectwise

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"psagate/internal/psa"
)

// Name is the provider name in settings and ticket references.
const Name = "connectwise"

// Options configure a Provider. Zero values get sensible defaults.
type Options struct {
	// HTTPClient makes the requests (default: a client of its own that does
	// not follow redirects, so credentials never travel to another URL).
	// Per-call timeouts come from the connectwise.timeout setting.
	HTTPClient *http.Client
	Logger     *slog.Logger     // default slog.Default()
	Now        func() time.Time // default time.Now
}

// Provider is the ConnectWise Manage provider. It is safe for concurrent use.
type Provider struct {
	hc  *http.Client
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	conns map[string]*conn
}

var (
	_ psa.Provider = (*Provider)(nil)
	_ psa.Checker  = (*Provider)(nil)
)

// New returns a Provider.
func New(opts Options) *Provider {
	p := &Provider{hc: opts.HTTPClient, log: opts.Logger, now: opts.Now, conns: map[string]*conn{}}
	if p.hc == nil {
		p.hc = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.log = p.log.With("provider", Name)
	return p
}

// Name returns "connectwise".
func (p *Provider) Name() string { return Name }

// conn is the state shared by every call to one server as one API member:
// the discovered base URL and the name caches.
type conn struct {
	mu        sync.Mutex
	base      string              // discovered https://site/codebase/apis/3.0; "" until known
	lists     map[string][]entity // list path+query -> rows, for name resolution
	companies map[string]entity   // lower-case identifier -> company
	contacts  map[int][]entity    // company id -> contacts
	assocs    map[int][]assocRow  // board id -> type/subtype/item combinations
}

func newConn() *conn {
	return &conn{lists: map[string][]entity{}, companies: map[string]entity{}, contacts: map[int][]entity{}, assocs: map[int][]assocRow{}}
}

// forget drops the name caches, so the next call re-reads them. Used after a
// validation error that may come from a stale id.
func (cn *conn) forget() {
	cn.mu.Lock()
	cn.lists = map[string][]entity{}
	cn.companies = map[string]entity{}
	cn.contacts = map[int][]entity{}
	cn.assocs = map[int][]assocRow{}
	cn.mu.Unlock()
}

// call is one provider operation with its parsed settings.
type call struct {
	p   *Provider
	cfg *config
	cn  *conn
	op  string
}

// newCall parses the settings and finds the connection state. Settings that
// make every call fail (site, credentials) are an Auth error: the provider
// pauses until the configuration is fixed, instead of dead-lettering jobs.
func (p *Provider) newCall(s psa.Settings, op string) (*call, error) {
	cfg, problems := parseConfig(s)
	if len(problems) > 0 {
		msgs := make([]string, len(problems))
		for i, e := range problems {
			msgs[i] = e.Error()
		}
		return nil, &psa.Error{Provider: Name, Op: op, Kind: psa.Auth,
			Message: cfg.scrub(strings.Join(msgs, "; ")), Err: errors.Join(problems...)}
	}
	key := cfg.connKey()
	p.mu.Lock()
	cn := p.conns[key]
	if cn == nil {
		cn = newConn()
		p.conns[key] = cn
	}
	p.mu.Unlock()
	return &call{p: p, cfg: cfg, cn: cn, op: op}, nil
}

func basicToken(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// errorf builds a classified error of this call.
func (c *call) errorf(kind psa.Kind, msg string) *psa.Error {
	return &psa.Error{Provider: Name, Op: c.op, Kind: kind, Message: c.cfg.scrub(msg)}
}

// ctxErr classifies a context error that ended a call before or between requests.
func (c *call) ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return &psa.Error{Provider: Name, Op: c.op, Kind: psa.Transient, Message: "cancelled: " + err.Error(), Err: err}
	}
	return nil
}
