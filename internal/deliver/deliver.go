// Package deliver runs the outbox: it makes the PSA calls the incident
// engine queued, in order per incident (a close never overtakes its create,
// a note waits for its ticket id) and in parallel across incidents, bounded
// per provider in concurrency and rate.
//
// Failures are sorted by what will help: transient ones (timeouts, 5xx, 429)
// are retried with exponential backoff and jitter, honouring Retry-After, up
// to a maximum age; permanent ones go to the dead letters at once with the
// PSA's message; authentication failures pause the provider until a periodic
// probe works again. Before a call, the job is marked started in the
// database, so a job found started after a crash is retried with
// Call.Retry set and the provider looks for the earlier effect (external
// reference, note marker) instead of writing it twice.
package deliver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"psagate/internal/config"
	"psagate/internal/metrics"
	"psagate/internal/psa"
	"psagate/internal/sanitize"
	"psagate/internal/store"
)

// SettingsFunc resolves the effective settings of a job at delivery time,
// so that a config fixed after a failure applies to the retry.
type SettingsFunc func(client, device string, overrides map[string]string) psa.Settings

// Options configure a Deliverer.
type Options struct {
	DB        *store.DB
	Providers map[string]psa.Provider
	Settings  SettingsFunc
	Limits    func() config.Deliver
	Metrics   *metrics.Metrics
	Logger    *slog.Logger
	Now       func() time.Time
	// CallTimeout bounds one provider operation (all its HTTP requests).
	CallTimeout time.Duration
	// Secrets returns every configured secret, scrubbed from stored errors
	// as a last line of defence.
	Secrets func() []string
	// TicketEnded, when set, is called inside a transaction when the PSA
	// shows an incident's ticket closed or deleted by someone else, before
	// job fromJob (0: found by Reconcile). It settles the incident and the
	// calls queued for its ticket; the ticket is then never written to.
	TicketEnded func(tx *store.Tx, incident, fromJob uint64, st psa.TicketState) error
}

// Deliverer runs outbox jobs.
type Deliverer struct {
	o    Options
	wake chan struct{}

	mu       sync.Mutex
	inflight map[uint64]bool // incident lanes with a job running
	running  map[string]int  // provider -> jobs running
	paused   map[string]*pause
	nextSlot map[string]time.Time // rate limiter: earliest start of the next job per provider
	// provOf remembers which provider a waiting, never-tried job resolved
	// to, so that while that provider is at its limit the dispatcher skips
	// the job without decoding it again. Under a backlog those decodes
	// took a large share of the CPU that intake needs. Cleared when the
	// settings change (SettingsChanged).
	provOf map[uint64]string
	// active are the providers the last full scan found jobs for, and
	// lastFull when it ran. While all of them are at their limit a scan
	// stops early (nothing more could start); a full scan at least every
	// fullScanEvery still finds jobs for other providers further back.
	active   map[string]bool
	lastFull time.Time
	wg       sync.WaitGroup
}

// fullScanEvery bounds how long a job for a provider with free slots can
// wait behind another provider's backlog.
const fullScanEvery = time.Second

type pause struct {
	since    time.Time
	reason   string
	settings psa.Settings
}

// New returns a Deliverer.
func New(o Options) *Deliverer {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 2 * time.Minute
	}
	if o.Secrets == nil {
		o.Secrets = func() []string { return nil }
	}
	return &Deliverer{
		o:        o,
		wake:     make(chan struct{}, 1),
		inflight: map[uint64]bool{},
		running:  map[string]int{},
		paused:   map[string]*pause{},
		nextSlot: map[string]time.Time{},
		provOf:   map[uint64]string{},
	}
}

// SettingsChanged tells the Deliverer that the config was reloaded: which
// provider a job goes to may have changed.
func (d *Deliverer) SettingsChanged() {
	d.mu.Lock()
	clear(d.provOf)
	d.mu.Unlock()
	d.Wake()
}

// Wake tells the loop that new jobs may be ready.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Paused returns the providers paused for bad credentials, with why.
func (d *Deliverer) Paused() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	for p, ps := range d.paused {
		out[p] = ps.reason
	}
	return out
}

// Run delivers until ctx ends, then waits for the calls in flight (each
// bounded by CallTimeout) so their outcome is recorded.
func (d *Deliverer) Run(ctx context.Context) error {
	defer d.wg.Wait()
	probe := time.NewTicker(d.o.Limits().ProbeInterval.D())
	defer probe.Stop()
	for {
		next, err := d.dispatch(ctx)
		if err != nil {
			d.o.Logger.Error("outbox scan failed", "err", err)
			next = d.o.Now().Add(time.Second)
		}
		wait := time.Until(next)
		if next.IsZero() || wait > time.Minute {
			wait = time.Minute
		}
		if wait < 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-d.wake:
		case <-t.C:
		case <-probe.C:
			d.probe(ctx)
		}
		t.Stop()
	}
}

// candidate is a lane head ready to run.
type candidate struct {
	job      *store.Job
	settings psa.Settings
	provider string
}

// dispatch starts every job that may run now and returns when the next
// waiting job becomes due. It reads the outbox index (a few bytes a job),
// and decodes in full only the lane heads it is about to start, so a large
// backlog during a PSA outage costs little per wake-up.
func (d *Deliverer) dispatch(ctx context.Context) (time.Time, error) {
	now := d.o.Now()
	lim := d.o.Limits()
	var next time.Time
	var started []candidate
	stopped := false
	err := d.o.DB.View(func(tx *store.Tx) error {
		seen := map[uint64]bool{}
		d.mu.Lock()
		if len(d.provOf) > 1<<16 {
			clear(d.provOf) // bounded: entries of jobs dropped by an admin are never removed otherwise
		}
		free := map[string]int{}
		for p, pl := range lim.Providers {
			n := pl.Concurrency - d.running[p]
			if pl.Concurrency <= 0 {
				n = 1 << 30
			}
			if _, paused := d.paused[p]; paused {
				n = 0
			}
			free[p] = n
		}
		d.mu.Unlock()
		d.mu.Lock()
		full := time.Since(d.lastFull) >= fullScanEvery
		active := d.active
		d.mu.Unlock()
		seenProv := map[string]bool{}
		saturated := func() bool {
			if full || len(active)+len(seenProv) == 0 {
				return false
			}
			for p := range active {
				if free[p] > 0 {
					return false
				}
			}
			for p := range seenProv {
				if free[p] > 0 {
					return false
				}
			}
			return true
		}
		var scanErr error
		err := tx.JobHeads(func(h store.JobHead) bool {
			if saturated() {
				stopped = true
				return false
			}
			if seen[h.Incident] {
				return true // not the head of its lane
			}
			seen[h.Incident] = true
			if h.NextTry.After(now) {
				if next.IsZero() || h.NextTry.Before(next) {
					next = h.NextTry
				}
				return true
			}
			d.mu.Lock()
			busy := d.inflight[h.Incident]
			p := h.Provider // of the last attempt, if any
			if p == "" {
				p = d.provOf[h.ID]
			}
			d.mu.Unlock()
			if p != "" {
				seenProv[p] = true
			}
			if n, known := free[p]; known && n <= 0 {
				return true // that provider is busy or paused: woken when it frees
			}
			if busy {
				return true
			}
			j, err := tx.Job(h.ID)
			if err != nil || j == nil {
				scanErr = err
				return err == nil
			}
			s := d.o.Settings(j.Client, j.Device, j.Overrides)
			prov := s.Provider()
			if j.Op != store.OpCreate {
				// Follow-up calls go to the PSA that holds the ticket, even if
				// the client has since been moved to another one.
				if inc, err := tx.Incident(j.Incident); err == nil && inc != nil && !inc.Ticket.IsZero() {
					prov = inc.Ticket.Provider
					s["provider"] = prov
				}
			}
			d.mu.Lock()
			d.provOf[j.ID] = prov
			d.mu.Unlock()
			seenProv[prov] = true
			if n, known := free[prov]; !known || n <= 0 {
				if !known {
					started = append(started, candidate{job: j, settings: s, provider: prov})
				}
				return true
			}
			free[prov]--
			started = append(started, candidate{job: j, settings: s, provider: prov})
			return true
		})
		if err != nil {
			return err
		}
		if !stopped {
			d.mu.Lock()
			d.active, d.lastFull = seenProv, time.Now()
			d.mu.Unlock()
		}
		return scanErr
	})
	if err != nil {
		return time.Time{}, err
	}
	if stopped {
		// Jobs past the stop point were not looked at: come back for the
		// full scan even if no job finishes before then.
		if due := now.Add(fullScanEvery); next.IsZero() || due.Before(next) {
			next = due
		}
	}
	for _, c := range started {
		pl := lim.Providers[c.provider]
		d.mu.Lock()
		start := now
		if pl.RatePerMinute > 0 {
			slot := d.nextSlot[c.provider]
			if slot.After(now) {
				start = slot
			}
			d.nextSlot[c.provider] = start.Add(time.Duration(float64(time.Minute) / pl.RatePerMinute))
		}
		d.inflight[c.job.Incident] = true
		d.running[c.provider]++
		d.mu.Unlock()
		d.wg.Add(1)
		go d.run(ctx, c, start)
	}
	return next, nil
}

func (d *Deliverer) done(c candidate) {
	d.mu.Lock()
	delete(d.provOf, c.job.ID)
	delete(d.inflight, c.job.Incident)
	d.running[c.provider]--
	d.mu.Unlock()
	d.Wake()
}

func (d *Deliverer) run(ctx context.Context, c candidate, start time.Time) {
	defer d.wg.Done()
	defer d.done(c)
	defer func() {
		// A provider bug must not take the gateway (and intake) down with
		// it: the job goes to the dead letters where an admin sees it.
		if r := recover(); r != nil {
			msg := d.scrub(c.settings.Scrub(fmt.Sprint(r)))
			d.o.Logger.Error("provider panicked; job moved to dead letters", "job", c.job.ID, "provider", c.provider, "panic", msg)
			d.kill(c.job, "internal error in the "+c.provider+" provider: "+msg, d.o.Logger)
		}
	}()
	if wait := time.Until(start); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	j := c.job
	log := d.o.Logger.With("job", j.ID, "op", j.Op, "incident", j.Incident, "client", j.Client, "provider", c.provider, "message", j.MessageID)
	prov, ok := d.o.Providers[c.provider]
	if !ok {
		d.kill(j, fmt.Sprintf("no provider %q is configured", c.provider), log)
		return
	}
	var ref psa.TicketRef
	if j.Op != store.OpCreate {
		var deadCreate uint64
		err := d.o.DB.View(func(tx *store.Tx) error {
			inc, err := tx.Incident(j.Incident)
			if err != nil || inc == nil {
				return err
			}
			ref = inc.Ticket
			if ref.IsZero() {
				return tx.DeadJobs(func(dj *store.Job) bool {
					if dj.Incident == j.Incident && dj.Op == store.OpCreate {
						deadCreate = dj.ID
						return false
					}
					return true
				})
			}
			return nil
		})
		if err != nil {
			log.Error("read incident", "err", err)
			return
		}
		if ref.IsZero() {
			reason := "the incident has no ticket to " + j.Op
			if deadCreate != 0 {
				reason = fmt.Sprintf("its ticket was never created: create job %d is in the dead letters (psagate queue retry %d brings both back)", deadCreate, deadCreate)
			}
			d.kill(j, reason, log)
			return
		}
	}
	// Mark the attempt started before the call: if we die during it, the
	// next attempt knows the PSA may already have done it.
	retry := j.Started || j.Attempts > 0
	if err := d.o.DB.Batch(func(tx *store.Tx) error {
		cur, err := tx.Job(j.ID)
		if err != nil || cur == nil {
			return err
		}
		cur.Started, cur.Attempts, cur.Provider = true, cur.Attempts+1, c.provider
		*j = *cur
		return tx.PutJob(cur)
	}); err != nil {
		log.Error("mark job started", "err", err)
		return
	}
	call := psa.Call{Settings: c.settings, Retry: retry}
	if ended, err := d.ticketEnded(ctx, prov, call, j, ref, log); err != nil {
		if ctx.Err() != nil {
			return
		}
		d.fail(j, c, err, log)
		return
	} else if ended {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, d.o.CallTimeout)
	t0 := time.Now()
	newRef, err := d.call(cctx, prov, call, j, ref)
	cancel()
	elapsed := time.Since(t0)
	if d.o.Metrics != nil {
		d.o.Metrics.PSADuration.WithLabelValues(c.provider, j.Op).Observe(elapsed.Seconds())
	}
	if err == nil {
		d.succeed(j, newRef, c.provider, log, elapsed)
		return
	}
	if ctx.Err() != nil {
		// Shutting down: park the job. It stays marked started, so the next
		// run looks for whatever this interrupted call may have done.
		log.Info("psa call interrupted by shutdown; job parked for the next start")
		return
	}
	d.fail(j, c, err, log)
}

func (d *Deliverer) call(ctx context.Context, p psa.Provider, call psa.Call, j *store.Job, ref psa.TicketRef) (psa.TicketRef, error) {
	switch j.Op {
	case store.OpCreate:
		return p.Create(ctx, call, psa.Ticket{Summary: j.Summary, Description: j.Description, ExternalRef: j.ExternalRef,
			Key: j.Key, Client: j.Client, Device: j.Device})
	case store.OpNote:
		return ref, p.AddNote(ctx, call, ref, psa.Note{Title: j.NoteTitle, Text: j.NoteText, Kind: j.NoteKind, Marker: j.Marker})
	case store.OpAttach:
		return ref, p.Attach(ctx, call, ref, psa.Attachment{Name: j.AttachName, ContentType: j.AttachType, Data: j.AttachData, Marker: j.Marker})
	case store.OpClose:
		return ref, p.Close(ctx, call, ref, psa.Note{Title: j.NoteTitle, Text: j.NoteText, Kind: psa.NoteResolution, Marker: j.Marker})
	case store.OpReopen:
		return ref, p.Reopen(ctx, call, ref, psa.Note{Title: j.NoteTitle, Text: j.NoteText, Kind: j.NoteKind, Marker: j.Marker})
	case store.OpPriority:
		n := psa.Note{Title: j.NoteTitle, Text: j.NoteText, Kind: j.NoteKind, Marker: j.Marker}
		if esc, ok := p.(psa.Escalator); ok {
			return ref, esc.SetPriority(ctx, call, ref, n)
		}
		return ref, p.AddNote(ctx, call, ref, n)
	}
	return ref, &psa.Error{Kind: psa.Permanent, Op: j.Op, Message: "unknown job operation"}
}

func (d *Deliverer) succeed(j *store.Job, ref psa.TicketRef, provider string, log *slog.Logger, elapsed time.Duration) {
	err := d.o.DB.Batch(func(tx *store.Tx) error {
		if err := tx.DeleteJob(j.ID); err != nil {
			return err
		}
		if j.Op != store.OpCreate {
			return nil
		}
		inc, err := tx.Incident(j.Incident)
		if err != nil || inc == nil {
			return err
		}
		inc.Ticket = ref
		return tx.PutIncident(inc)
	})
	if err != nil {
		// The PSA has done it but we could not record it: the job stays
		// started, and its retry finds the earlier effect.
		log.Error("record delivered job", "err", err)
		return
	}
	if d.o.Metrics != nil {
		d.o.Metrics.PSAOperations.WithLabelValues(provider, j.Op, "success").Inc()
	}
	log.Info("psa call done", "ticket", ref.String(), "attempt", j.Attempts, "took", elapsed.Round(time.Millisecond))
}

func (d *Deliverer) scrub(s string) string {
	for _, v := range d.o.Secrets() {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return sanitize.Line(s)
}

func (d *Deliverer) fail(j *store.Job, c candidate, err error, log *slog.Logger) {
	kind := psa.KindOf(err)
	msg := d.scrub(c.settings.Scrub(err.Error()))
	now := d.o.Now()
	if d.o.Metrics != nil {
		d.o.Metrics.PSAOperations.WithLabelValues(c.provider, j.Op, kind.String()+"_error").Inc()
		d.o.Metrics.PSAErrors.WithLabelValues(c.provider, j.Op, psa.ReasonOf(err)).Inc()
	}
	switch kind {
	case psa.Permanent:
		log.Error("psa call failed for good: job moved to dead letters", "err", msg)
		d.kill(j, msg, log)
		return
	case psa.Auth:
		d.mu.Lock()
		if _, ok := d.paused[c.provider]; !ok {
			d.paused[c.provider] = &pause{since: now, reason: msg, settings: c.settings}
			if d.o.Metrics != nil {
				d.o.Metrics.ProviderPaused.WithLabelValues(c.provider).Set(1)
			}
			log.Error("provider paused: authentication failed; fix the credentials, delivery resumes by itself", "err", msg)
		}
		d.mu.Unlock()
	}
	lim := d.o.Limits()
	if kind == psa.Transient && now.Sub(j.Created) > lim.MaxAge.D() {
		d.kill(j, fmt.Sprintf("gave up after %s of retries; last error: %s", lim.MaxAge.D(), msg), log)
		return
	}
	wait := Backoff(j.Attempts, lim.BackoffMin.D(), lim.BackoffMax.D())
	if ra := psa.RetryAfterOf(err); ra > wait {
		wait = ra
	}
	if kind == psa.Auth {
		wait = 0 // waits for the provider to be unpaused instead
	}
	e := d.o.DB.Batch(func(tx *store.Tx) error {
		cur, err := tx.Job(j.ID)
		if err != nil || cur == nil {
			return err
		}
		// The call failed: nothing reached the PSA, or the provider's
		// retry search will find what did. Started stays true only for
		// errors that may have been applied (timeouts, resets, 5xx).
		cur.Started = kind == psa.Transient
		cur.LastError = msg
		cur.NextTry = now.Add(wait)
		return tx.PutJob(cur)
	})
	if e != nil {
		log.Error("record failed job", "err", e)
	}
	log.Warn("psa call failed; will retry", "err", msg, "kind", kind.String(), "attempt", j.Attempts, "retry_in", wait.Round(time.Millisecond))
}

func (d *Deliverer) kill(j *store.Job, reason string, log *slog.Logger) {
	reason = d.scrub(reason)
	err := d.o.DB.Batch(func(tx *store.Tx) error {
		cur, err := tx.Job(j.ID)
		if err != nil || cur == nil {
			return err
		}
		return tx.Kill(cur, reason, d.o.Now())
	})
	if err != nil {
		log.Error("move job to dead letters", "err", err)
		return
	}
	log.Error("job is dead", "reason", reason)
}
