// Package autotask is the Autotask PSA provider: it opens, notes, closes and
// reopens tickets and uploads attachments through the Autotask REST API
// (v1.0), and implements the "Test It" check and the lookups an admin uses to
// fill in the settings.
//
// What it does on the wire follows the API digest in
// /work/shared/reference/autotask-rest-api.md:
//
//   - The zone is discovered with GET {zone_url}zoneInformation?user= (no
//     credentials) and cached for 12 hours; a 401 from the zone triggers one
//     re-discovery, in case the tenant moved, before the call fails.
//   - Every API call carries ApiIntegrationCode, UserName and Secret, and
//     goes to the discovered zone host only (redirects are not followed; a
//     next-page URL on another host is refused).
//   - Picklist settings (queue, status, priority, issue and sub-issue type,
//     ticket type, source, note type and publish) may be labels or numbers;
//     they are resolved through entityInformation/fields, cached for an hour
//     and re-read once when a value is missing.
//   - At most Options.MaxInFlight (default 3) requests per integration are in
//     flight: Autotask's thread limit is 3 per integration and entity.
//   - ThresholdInformation is read at the start and then every 100 calls or
//     10 minutes. At 50% of the hourly threshold each call waits 0.5 s, at
//     75% 1 s; at 90% ticket operations are not sent at all but fail as
//     transient with a 5 minute Retry-After, which leaves the last 10% of
//     the tenant's budget (shared by all its integrations) to the others.
//     The outbox keeps the jobs and retries them.
//   - A retried create first looks for its externalID; a retried note or
//     attachment first looks for its marker, so a lost response never makes
//     a duplicate.
//
// Errors are *psa.Error, classified as transient, permanent or auth. No
// error, log line or Test output contains the secret or integration code.
package autotask

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"psagate/internal/psa"
)

// Name is the provider name.
const Name = "autotask"

// Options configure a Provider. Zero values take the documented defaults.
type Options struct {
	// HTTPClient sends the requests (default: a client with the default
	// transport). Its redirect policy is replaced: credentials must not
	// follow a redirect. Its Timeout, if any, applies on top of
	// autotask.timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger     // default slog.Default()
	Now        func() time.Time // default time.Now
	// Sleep waits d or until ctx ends (default: a timer). Tests replace it
	// to observe the threshold slow-down without waiting.
	Sleep func(ctx context.Context, d time.Duration) error
	// MaxInFlight caps concurrent requests per integration (default 3).
	MaxInFlight int
	// ThresholdEvery and ThresholdInterval say how often ThresholdInformation
	// is read again (default every 100 calls or 10 minutes, whichever comes
	// first).
	ThresholdEvery    int
	ThresholdInterval time.Duration
}

// Provider is the Autotask provider. It is safe for concurrent use; state
// is kept per integration (zone URL, username, integration code), so
// clients with different Autotask settings do not share zones, picklists or
// limits.
type Provider struct {
	http        *http.Client
	log         *slog.Logger
	now         func() time.Time
	sleep       func(ctx context.Context, d time.Duration) error
	maxInFlight int
	thrEvery    int
	thrInterval time.Duration
	// windowBytes is the attachment upload budget per attachWindow; a field
	// so that tests need not push 10 MB through the race detector.
	windowBytes int

	mu   sync.Mutex
	ints map[string]*integration
}

var (
	_ psa.Provider = (*Provider)(nil)
	_ psa.Checker  = (*Provider)(nil)
)

// New returns a Provider.
func New(opts Options) *Provider {
	p := &Provider{
		log:         opts.Logger,
		now:         opts.Now,
		sleep:       opts.Sleep,
		maxInFlight: opts.MaxInFlight,
		thrEvery:    opts.ThresholdEvery,
		thrInterval: opts.ThresholdInterval,
		windowBytes: attachWindowBytes,
		ints:        map[string]*integration{},
	}
	var hc http.Client
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient
	}
	// The credential headers are not Authorization headers: Go's client
	// would carry them across a redirect to any host.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p.http = &hc
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.sleep == nil {
		p.sleep = sleepCtx
	}
	if p.maxInFlight <= 0 {
		p.maxInFlight = 3
	}
	if p.thrEvery <= 0 {
		p.thrEvery = 100
	}
	if p.thrInterval <= 0 {
		p.thrInterval = 10 * time.Minute
	}
	return p
}

// Name returns "autotask".
func (p *Provider) Name() string { return Name }

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// integration is the shared state of one Autotask integration.
type integration struct {
	sem chan struct{}

	zoneMu  sync.Mutex // serialises discovery
	mu      sync.Mutex // guards everything below
	zone    *zoneInfo
	zoneGen int
	zoneAt  time.Time

	fields    map[string]*fieldSet // "Tickets", "TicketNotes"
	fieldsMu  sync.Mutex           // serialises fetching fields
	companies map[string]companyHit

	budget  budget
	uploads []uploadRec
}

type companyHit struct {
	id int64
	at time.Time
}

type uploadRec struct {
	at    time.Time
	bytes int
}

func (p *Provider) integration(c *config) *integration {
	k := c.key()
	p.mu.Lock()
	defer p.mu.Unlock()
	in, ok := p.ints[k]
	if !ok {
		in = &integration{
			sem:       make(chan struct{}, p.maxInFlight),
			fields:    map[string]*fieldSet{},
			companies: map[string]companyHit{},
		}
		p.ints[k] = in
	}
	return in
}

// setup parses the settings of a call and finds its integration.
func (p *Provider) setup(s psa.Settings, op string, full bool) (*config, *integration, error) {
	c, errs := parseConfig(s, full)
	if len(errs) > 0 {
		msg := errs[0].Error()
		if len(errs) > 1 {
			msg += " (and " + itoa(len(errs)-1) + " more problems; run `psagate check`)"
		}
		kind := psa.Permanent
		if c.username == "" || c.secret == "" || c.code == "" {
			// Missing credentials pause the provider like wrong ones: the
			// jobs wait for the admin instead of becoming dead letters.
			kind = psa.Auth
		}
		return nil, nil, &psa.Error{Provider: Name, Op: op, Kind: kind, Message: s.Scrub(msg)}
	}
	return c, p.integration(c), nil
}
