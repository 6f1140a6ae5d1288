package deliver_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/deliver"
	"psagate/internal/psa"
	"psagate/internal/psa/connectwise"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/store"
)

// TestReconcileIsBoundedAndOldestFirst: one Reconcile reads at most limit
// tickets, least recently read first, skips incidents read within every,
// and hands a ticket closed by a technician to TicketEnded.
func TestReconcileIsBoundedAndOldestFirst(t *testing.T) {
	cw := cwfake.Start(cwfake.DefaultConfig())
	t.Cleanup(cw.Close)
	db := openTestDB(t)
	var ended []uint64
	// Reconcile needs no Run loop: a Deliverer with the hook is enough.
	d := deliver.New(deliver.Options{
		DB:        db,
		Providers: map[string]psa.Provider{connectwise.Name: connectwise.New(connectwise.Options{Logger: testLogger(t)})},
		Settings:  func(string, string, map[string]string) psa.Settings { return maps.Clone(cw.Settings()) },
		Limits:    func() config.Deliver { return fastRetries() },
		Logger:    testLogger(t),
		TicketEnded: func(tx *store.Tx, id, from uint64, st psa.TicketState) error {
			ended = append(ended, id)
			inc, err := tx.Incident(id)
			if err != nil {
				return err
			}
			inc.State = store.StateClosedInPSA
			return tx.PutIncident(inc)
		},
	})
	now := time.Now()
	var incs []*store.Incident
	for i := range 5 {
		tk := cw.AddTicket(cwfake.Ticket{Summary: fmt.Sprintf("t%d", i), BoardID: 1, StatusID: 1, CompanyID: 2})
		incs = append(incs, addIncident(t, db, fmt.Sprintf("k%d", i), psa.TicketRef{Provider: connectwise.Name, ID: fmt.Sprint(tk.ID)}, now))
	}
	cw.CloseAsTechnician(mustAtoi(t, incs[4].Ticket.ID), "jsmith")
	// Incident 4 was read most recently: the first round of 2 reads 0 and 1.
	setChecked(t, db, incs[4].ID, now.Add(-time.Hour))
	for i, inc := range incs[:4] {
		setChecked(t, db, inc.ID, now.Add(-time.Duration(10-i)*time.Hour))
	}
	checked, n, err := d.Reconcile(context.Background(), 30*time.Minute, 2)
	if err != nil || checked != 2 || n != 0 {
		t.Fatalf("first round: checked %d, ended %d, %v", checked, n, err)
	}
	checked, n, err = d.Reconcile(context.Background(), 30*time.Minute, 10)
	if err != nil || checked != 3 || n != 1 || len(ended) != 1 || ended[0] != incs[4].ID {
		t.Fatalf("second round: checked %d, ended %d (%v), %v", checked, n, ended, err)
	}
	if checked, _, _ := d.Reconcile(context.Background(), 30*time.Minute, 10); checked != 0 {
		t.Fatalf("a third round right after read %d tickets, want 0 (all read within reconcile_every)", checked)
	}
}

func mustAtoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func setChecked(t *testing.T, db *store.DB, id uint64, at time.Time) {
	t.Helper()
	if err := db.Update(func(tx *store.Tx) error {
		inc, err := tx.Incident(id)
		if err != nil {
			return err
		}
		inc.CheckedAt = at
		return tx.PutIncident(inc)
	}); err != nil {
		t.Fatal(err)
	}
}
