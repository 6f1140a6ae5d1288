package gateway

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"psagate/internal/auth"
	"psagate/internal/incident"
	"psagate/internal/metrics"
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

// Run starts the spool worker, the timer loop and the audit writer, and
// returns when ctx ends and they have stopped.
func (g *Gateway) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.spoolLoop(ctx) }()
	go func() { defer wg.Done(); g.timerLoop(ctx) }()
	wg.Wait()
}
