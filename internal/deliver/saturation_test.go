package deliver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/deliver"
	"psagate/internal/psa"
	"psagate/internal/psa/logpsa"
	"psagate/internal/store"
	"psagate/internal/testutil"
)

// stuckPSA holds every call until the test ends: a PSA that has stopped
// answering, with all of psagate's slots for it taken.
type stuckPSA struct {
	calls   chan string
	release chan struct{}
}

func (p *stuckPSA) Name() string { return "stuck" }
func (p *stuckPSA) Create(ctx context.Context, _ psa.Call, t psa.Ticket) (psa.TicketRef, error) {
	p.calls <- t.Summary
	select {
	case <-p.release:
		return psa.TicketRef{Provider: "stuck", ID: "1"}, nil
	case <-ctx.Done():
		return psa.TicketRef{}, ctx.Err()
	}
}
func (p *stuckPSA) AddNote(context.Context, psa.Call, psa.TicketRef, psa.Note) error { return nil }
func (p *stuckPSA) Attach(context.Context, psa.Call, psa.TicketRef, psa.Attachment) error {
	return nil
}
func (p *stuckPSA) Close(context.Context, psa.Call, psa.TicketRef, psa.Note) error  { return nil }
func (p *stuckPSA) Reopen(context.Context, psa.Call, psa.TicketRef, psa.Note) error { return nil }

// A backlog for one PSA whose slots are all busy must not hold up a job
// for another PSA queued behind it: the dispatcher may stop scanning early
// while the busy provider is saturated, but not for good.
func TestBusyProviderDoesNotBlockAnother(t *testing.T) {
	db := openTestDB(t)
	now := time.Now()
	stuck := &stuckPSA{calls: make(chan string, 100), release: make(chan struct{})}
	defer close(stuck.release)
	out := &testutil.Buffer{}

	// Thirty lanes for the stuck PSA first, then one for the log provider.
	for i := range 30 {
		inc := addIncident(t, db, fmt.Sprintf("stuck/%02d", i), psa.TicketRef{}, now)
		addJob(t, db, inc, store.Job{Op: store.OpCreate}, now)
	}

	lim := config.Deliver{ProbeInterval: config.Duration(time.Hour), MaxAge: config.Duration(time.Hour),
		BackoffMin: config.Duration(time.Second), BackoffMax: config.Duration(time.Second),
		Providers: map[string]config.ProviderLimits{"stuck": {Concurrency: 2}, "log": {Concurrency: 2}}}
	d := deliver.New(deliver.Options{
		DB:        db,
		Providers: map[string]psa.Provider{"stuck": stuck, "log": logpsa.New(out)},
		Settings: func(client, _ string, _ map[string]string) psa.Settings {
			if client == "other" {
				return psa.Settings{"provider": "log"}
			}
			return psa.Settings{"provider": "stuck"}
		},
		Limits:      func() config.Deliver { return lim },
		Logger:      testLogger(t),
		CallTimeout: time.Minute,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// Both slots of the stuck PSA are taken, so the dispatcher has seen it
	// saturated; only then does a job for the log provider arrive, behind
	// the stuck backlog ...
	for range 2 {
		<-stuck.calls
	}
	other := addIncident(t, db, "other/srv", psa.TicketRef{}, now)
	other.Client = "other"
	if err := db.Update(func(tx *store.Tx) error { return tx.PutIncident(other) }); err != nil {
		t.Fatal(err)
	}
	j := addJob(t, db, other, store.Job{Op: store.OpCreate}, now)
	d.Wake()
	// ... and it still goes out.
	waitJob(t, db, j.ID, "the other provider's job to be delivered", func(s jobState) bool { return s.Gone() })
	if !strings.Contains(out.String(), `"op":"create"`) {
		t.Fatalf("the log provider shows no create:\n%s", out.String())
	}
	select {
	case s := <-stuck.calls:
		t.Fatalf("a third call reached the stuck PSA past its concurrency of 2: %q", s)
	default:
	}
}
