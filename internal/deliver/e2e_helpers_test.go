package deliver_test

// Helpers for the end-to-end delivery tests: a real bbolt file, the real
// Deliverer loop (Run) and the real providers against their fake PSA servers.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/deliver"
	"psagate/internal/psa"
	"psagate/internal/store"
)

// testClock is the Deliverer's injected clock. It runs at the real rate but
// lags real time by a lag the test shrinks with Advance. It must never run
// ahead of real time: the Deliverer turns its times into real timers
// (time.Until(start) before a call, time.Until(NextTry) in Run), so a clock
// ahead of time.Now would make it wait for real.
type testClock struct {
	mu  sync.Mutex
	lag time.Duration
}

func newTestClock(lag time.Duration) *testClock { return &testClock{lag: lag} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(-c.lag)
}

// Advance moves the clock forward by d, which must not exceed the lag.
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > c.lag {
		panic("testClock: cannot run ahead of real time")
	}
	c.lag -= d
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func openTestDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// startDeliverer runs a Deliverer until the end of the test. now nil is the
// real clock. The cleanup stops the loop and waits for the calls in flight,
// so it must be registered after the fakes and the database are (cleanups
// run last-in first-out).
func startDeliverer(t *testing.T, db *store.DB, name string, prov psa.Provider, settings psa.Settings, lim config.Deliver, now func() time.Time) *deliver.Deliverer {
	t.Helper()
	if lim.ProbeInterval == 0 {
		lim.ProbeInterval = config.Duration(time.Hour)
	}
	if lim.Providers == nil {
		lim.Providers = map[string]config.ProviderLimits{name: {Concurrency: 4}}
	}
	d := deliver.New(deliver.Options{
		DB:        db,
		Providers: map[string]psa.Provider{name: prov},
		// dispatch writes into the map it gets: a fresh copy each time.
		Settings:    func(string, string, map[string]string) psa.Settings { return maps.Clone(settings) },
		Limits:      func() config.Deliver { return lim },
		Logger:      testLogger(t),
		Now:         now,
		CallTimeout: 20 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return d
}

// addIncident stores an open incident and returns it; with ticket set, it
// already has its PSA ticket.
func addIncident(t *testing.T, db *store.DB, key string, ticket psa.TicketRef, now time.Time) *store.Incident {
	t.Helper()
	var inc *store.Incident
	err := db.Update(func(tx *store.Tx) error {
		id, err := tx.NewIncidentID()
		if err != nil {
			return err
		}
		inc = &store.Incident{
			ID: id, Key: key, Client: "pinecrest", Device: "srv01", State: store.StateOpen,
			Summary: "Backup failed: " + key, ExternalRef: fmt.Sprintf("psagate:test:%d:%s", id, key),
			Ticket: ticket, FirstSeen: now, LastSeen: now, Count: 1, OpenedAt: now,
		}
		return tx.PutIncident(inc)
	})
	if err != nil {
		t.Fatal(err)
	}
	return inc
}

// addJob queues j for inc and returns it with its id (and, for a note,
// the marker the store gave it).
func addJob(t *testing.T, db *store.DB, inc *store.Incident, j store.Job, now time.Time) store.Job {
	t.Helper()
	j.Incident, j.Key, j.Client, j.Device, j.Created = inc.ID, inc.Key, inc.Client, inc.Device, now
	if j.Op == store.OpCreate {
		j.Summary, j.ExternalRef = inc.Summary, inc.ExternalRef
		j.Description = "Veeam job 'Nightly' failed on srv01.\nError: the network path was not found."
	}
	if err := db.Update(func(tx *store.Tx) error { return tx.AddJob(&j) }); err != nil {
		t.Fatal(err)
	}
	return j
}

// jobState is where job id is: in the outbox, in the dead letters, or gone
// (delivered).
type jobState struct {
	Outbox *store.Job
	Dead   *store.Job
}

func (s jobState) Gone() bool { return s.Outbox == nil && s.Dead == nil }

func readJob(t *testing.T, db *store.DB, id uint64) jobState {
	t.Helper()
	var s jobState
	err := db.View(func(tx *store.Tx) error {
		var err error
		if s.Outbox, err = tx.Job(id); err != nil {
			return err
		}
		s.Dead, err = tx.DeadJob(id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readIncident(t *testing.T, db *store.DB, id uint64) *store.Incident {
	t.Helper()
	var inc *store.Incident
	if err := db.View(func(tx *store.Tx) error {
		var err error
		inc, err = tx.Incident(id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return inc
}

// waitJob polls the database until cond holds for job id, or fails the
// test after the deadline with the job's last state.
func waitJob(t *testing.T, db *store.DB, id uint64, what string, cond func(jobState) bool) jobState {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := readJob(t, db, id)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for job %d: %s; outbox=%+v dead=%+v", id, what, s.Outbox, s.Dead)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// failedOnce is true when the job's first attempt has failed and been
// recorded (it is back in the outbox with an error).
func failedOnce(s jobState) bool {
	return s.Outbox != nil && s.Outbox.Attempts == 1 && s.Outbox.LastError != "" && !s.Outbox.NextTry.IsZero()
}

func isDead(s jobState) bool { return s.Dead != nil && s.Outbox == nil }

// slowRetries are limits under which a failed job is retried only when the
// test moves the injected clock: the backoff (at least 30s of injected time)
// never elapses on its own during the test. (With a lagging clock, Run
// polls the outbox without waiting until the test advances the clock; the
// tests advance it as soon as the failure is recorded.)
func slowRetries() config.Deliver {
	return config.Deliver{
		MaxAge:     config.Duration(10 * time.Minute),
		BackoffMin: config.Duration(time.Minute),
		BackoffMax: config.Duration(time.Minute),
	}
}
