package deliver_test

// Regression tests: a job that may have reached the PSA (its attempt was
// started and the outcome never came back), then went to the dead letters,
// must still search the PSA for its earlier effect when an admin revives it
// (psagate queue retry / retry-dead). Tx.Kill used to clear Job.Started and
// Tx.Revive resets Attempts, so the revived attempt was a plain create: a
// second ticket for the same incident.

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"psagate/internal/deliver"
	"psagate/internal/psa"
	"psagate/internal/psa/autotask"
	atfake "psagate/internal/psa/autotask/fake"
	"psagate/internal/psa/connectwise"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/store"
)

func cwTicketsWithXRef(s *cwfake.Server, xref string) []cwfake.Ticket {
	var out []cwfake.Ticket
	for _, tk := range s.Tickets() {
		if tk.ExternalXRef == xref {
			out = append(out, tk)
		}
	}
	return out
}

func cwRequests(s *cwfake.Server, method, apiPath string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.APIPath == apiPath {
			n++
		}
	}
	return n
}

func atTicketsWithExternalID(s *atfake.Server, ext string) []atfake.Ticket {
	var out []atfake.Ticket
	for _, tk := range s.Tickets() {
		if tk.ExternalID == ext {
			out = append(out, tk)
		}
	}
	return out
}

// The create's response is lost after ConnectWise made the ticket; the
// search of every later attempt fails (503) until max_age has passed and
// the job goes dead. Revived with RetryDead, it must find that ticket.
func TestRevivedDeadCreateFindsLostTicketConnectWise(t *testing.T) {
	cw := cwfake.Start(cwfake.DefaultConfig())
	t.Cleanup(cw.Close)
	db := openTestDB(t)
	clk := newTestClock(11 * time.Minute)
	prov := connectwise.New(connectwise.Options{Logger: testLogger(t)})
	d := startDeliverer(t, db, connectwise.Name, prov, cw.Settings(), slowRetries(), clk.Now)

	// The ticket is created, then the connection drops: no answer.
	cw.Inject(cwfake.Fault{Method: "POST", Path: "/service/tickets", LoseResponse: true})
	inc := addIncident(t, db, "veeam:pinecrest:srv01:nightly", psa.TicketRef{}, clk.Now())
	job := addJob(t, db, inc, store.Job{Op: store.OpCreate}, clk.Now())
	d.Wake()

	s := waitJob(t, db, job.ID, "first attempt failed", failedOnce)
	if !s.Outbox.Started {
		t.Fatalf("after a lost response the job is not marked started: %+v", s.Outbox)
	}
	if n := len(cwTicketsWithXRef(cw, inc.ExternalRef)); n != 1 {
		t.Fatalf("the lost create made %d tickets in the fake, want 1 (the fault did not work as the test assumes)", n)
	}

	// The PSA stays down: the retry's search for the ticket fails, after
	// max_age, and the job goes dead.
	cw.Inject(cwfake.Fault{Method: "GET", Path: "/service/tickets", Status: 503})
	s = dieAfterMaxAge(t, db, clk, d, job.ID, cw.PendingFaults)
	if !s.Dead.Started {
		t.Errorf("dead job lost Started: its revived attempt will not search the PSA first")
	}

	// The admin revives it (psagate queue retry-dead) once the PSA works.
	ids, err := deliver.RetryDead(db, clk.Now())
	if err != nil || len(ids) != 1 || ids[0] != job.ID {
		t.Fatalf("RetryDead = %v, %v; want [%d]", ids, err, job.ID)
	}
	d.Wake()
	waitJob(t, db, job.ID, "delivered", jobState.Gone)

	tickets := cwTicketsWithXRef(cw, inc.ExternalRef)
	if len(tickets) != 1 {
		t.Fatalf("the fake holds %d tickets for the incident, want exactly 1 (a revived create made a duplicate)", len(tickets))
	}
	if n := cwRequests(cw, "POST", "/service/tickets"); n != 1 {
		t.Errorf("%d ticket POSTs, want 1", n)
	}
	got := readIncident(t, db, inc.ID).Ticket
	if want := strconv.Itoa(tickets[0].ID); got.ID != want || got.Provider != connectwise.Name {
		t.Errorf("incident ticket = %+v, want connectwise:%s", got, want)
	}
}

// The same for a note: the note is written, its response lost, the
// marker search fails until max_age, the job is dead; revived with Retry
// (psagate queue retry ID) it must find the note by its marker.
func TestRevivedDeadNoteFindsLostNoteConnectWise(t *testing.T) {
	cw := cwfake.Start(cwfake.DefaultConfig())
	t.Cleanup(cw.Close)
	db := openTestDB(t)
	clk := newTestClock(11 * time.Minute)
	prov := connectwise.New(connectwise.Options{Logger: testLogger(t)})
	d := startDeliverer(t, db, connectwise.Name, prov, cw.Settings(), slowRetries(), clk.Now)

	tk := cw.AddTicket(cwfake.Ticket{Summary: "Backup failed: nightly", CompanyID: 250, BoardID: 12, StatusID: 101})
	cw.Inject(cwfake.Fault{Method: "POST", Path: "/service/tickets/*/notes", LoseResponse: true})
	inc := addIncident(t, db, "veeam:pinecrest:srv01:nightly", psa.TicketRef{Provider: connectwise.Name, ID: strconv.Itoa(tk.ID)}, clk.Now())
	job := addJob(t, db, inc, store.Job{Op: store.OpNote, NoteText: "Backup failed again at 02:00.", NoteKind: psa.NoteDiscussion}, clk.Now())
	if job.Marker == "" {
		t.Fatal("the store gave the note job no marker")
	}
	marker := psa.MarkerLine(job.Marker)
	notesWithMarker := func() int {
		cur, ok := cw.Ticket(tk.ID)
		if !ok {
			t.Fatalf("ticket %d is gone from the fake", tk.ID)
		}
		n := 0
		for _, nt := range cur.Notes {
			if strings.Contains(nt.Text, marker) {
				n++
			}
		}
		return n
	}
	d.Wake()

	s := waitJob(t, db, job.ID, "first attempt failed", failedOnce)
	if !s.Outbox.Started {
		t.Fatalf("after a lost response the job is not marked started: %+v", s.Outbox)
	}
	if n := notesWithMarker(); n != 1 {
		t.Fatalf("the lost note POST made %d notes, want 1 (the fault did not work as the test assumes)", n)
	}

	cw.Inject(cwfake.Fault{Method: "GET", Path: "/service/tickets/*/notes", Status: 503})
	s = dieAfterMaxAge(t, db, clk, d, job.ID, cw.PendingFaults)

	ids, err := deliver.Retry(db, job.ID, clk.Now())
	if err != nil || len(ids) != 1 || ids[0] != job.ID {
		t.Fatalf("Retry = %v, %v; want [%d]", ids, err, job.ID)
	}
	d.Wake()
	waitJob(t, db, job.ID, "delivered", jobState.Gone)

	if n := notesWithMarker(); n != 1 {
		t.Fatalf("the ticket has %d notes with %q, want exactly 1 (a revived note was written twice)", n, marker)
	}
	if n := cwRequests(cw, "POST", "/service/tickets/"+strconv.Itoa(tk.ID)+"/notes"); n != 1 {
		t.Errorf("%d note POSTs, want 1", n)
	}
}

// panicAfterCreate is the real provider with a bug: its first Create
// panics after the ticket was made (a crash mid-call). The Deliverer moves
// the job to the dead letters at once.
type panicAfterCreate struct {
	psa.Provider
	panicked atomic.Bool
}

func (p *panicAfterCreate) Create(ctx context.Context, c psa.Call, t psa.Ticket) (psa.TicketRef, error) {
	ref, err := p.Provider.Create(ctx, c, t)
	if err == nil && p.panicked.CompareAndSwap(false, true) {
		panic("index out of range [3] with length 3")
	}
	return ref, err
}

func TestRevivedCreateAfterProviderPanicFindsTicketConnectWise(t *testing.T) {
	cw := cwfake.Start(cwfake.DefaultConfig())
	t.Cleanup(cw.Close)
	db := openTestDB(t)
	prov := &panicAfterCreate{Provider: connectwise.New(connectwise.Options{Logger: testLogger(t)})}
	d := startDeliverer(t, db, connectwise.Name, prov, cw.Settings(), slowRetries(), nil)

	inc := addIncident(t, db, "veeam:pinecrest:srv01:nightly", psa.TicketRef{}, time.Now())
	job := addJob(t, db, inc, store.Job{Op: store.OpCreate}, time.Now())
	d.Wake()

	s := waitJob(t, db, job.ID, "dead after the panic", isDead)
	if !strings.Contains(s.Dead.Reason, "internal error in the connectwise provider") {
		t.Fatalf("dead for another reason than the panic: %q", s.Dead.Reason)
	}
	if n := len(cwTicketsWithXRef(cw, inc.ExternalRef)); n != 1 {
		t.Fatalf("%d tickets before the revive, want 1", n)
	}

	ids, err := deliver.Retry(db, job.ID, time.Now())
	if err != nil || len(ids) != 1 {
		t.Fatalf("Retry = %v, %v", ids, err)
	}
	d.Wake()
	waitJob(t, db, job.ID, "delivered", jobState.Gone)

	tickets := cwTicketsWithXRef(cw, inc.ExternalRef)
	if len(tickets) != 1 {
		t.Fatalf("the fake holds %d tickets for the incident, want exactly 1 (a revived create made a duplicate)", len(tickets))
	}
	if got, want := readIncident(t, db, inc.ID).Ticket.ID, strconv.Itoa(tickets[0].ID); got != want {
		t.Errorf("incident ticket %q, want %q", got, want)
	}
}

// Autotask: the ticket POST is handled and its response lost; the retry's
// Tickets/query fails (503) after max_age; the revived job must find the
// ticket by its externalID.
func TestRevivedDeadCreateFindsLostTicketAutotask(t *testing.T) {
	at := atfake.Start(atfake.DefaultConfig())
	t.Cleanup(at.Close)
	db := openTestDB(t)
	clk := newTestClock(11 * time.Minute)
	prov := autotask.New(autotask.Options{Logger: testLogger(t)})
	d := startDeliverer(t, db, autotask.Name, prov, at.Settings(), slowRetries(), clk.Now)

	at.Inject(atfake.Fault{Kind: atfake.FaultLostResponse, Method: "POST", Path: "Tickets"})
	inc := addIncident(t, db, "veeam:pinecrest:srv01:nightly", psa.TicketRef{}, clk.Now())
	job := addJob(t, db, inc, store.Job{Op: store.OpCreate}, clk.Now())
	d.Wake()

	s := waitJob(t, db, job.ID, "first attempt failed", failedOnce)
	if !s.Outbox.Started {
		t.Fatalf("after a lost response the job is not marked started: %+v", s.Outbox)
	}
	if n := len(atTicketsWithExternalID(at, inc.ExternalRef)); n != 1 {
		t.Fatalf("the lost create made %d tickets, want 1 (the fault did not work as the test assumes)", n)
	}

	at.Inject(atfake.Fault{Kind: atfake.Fault503, Method: "POST", Path: "Tickets/query"})
	s = dieAfterMaxAge(t, db, clk, d, job.ID, at.PendingFaults)

	ids, err := deliver.RetryDead(db, clk.Now())
	if err != nil || len(ids) != 1 || ids[0] != job.ID {
		t.Fatalf("RetryDead = %v, %v; want [%d]", ids, err, job.ID)
	}
	d.Wake()
	waitJob(t, db, job.ID, "delivered", jobState.Gone)

	tickets := atTicketsWithExternalID(at, inc.ExternalRef)
	if len(tickets) != 1 {
		t.Fatalf("the fake holds %d tickets for the incident, want exactly 1 (a revived create made a duplicate)", len(tickets))
	}
	if got, want := readIncident(t, db, inc.ID).Ticket.ID, strconv.FormatInt(tickets[0].ID, 10); got != want {
		t.Errorf("incident ticket %q, want %q", got, want)
	}
}

// dieAfterMaxAge moves the clock past max_age while the PSA keeps failing,
// waits for the job to go dead for that reason, and checks that every
// injected fault was consumed, so none is left to distort the revive.
func dieAfterMaxAge(t *testing.T, db *store.DB, clk *testClock, d *deliver.Deliverer, id uint64, pendingFaults func() int) jobState {
	t.Helper()
	clk.Advance(11 * time.Minute)
	d.Wake()
	s := waitJob(t, db, id, "dead after max_age", isDead)
	if !strings.Contains(s.Dead.Reason, "gave up after") {
		t.Fatalf("dead for another reason than max_age: %q", s.Dead.Reason)
	}
	if n := pendingFaults(); n != 0 {
		t.Fatalf("%d injected faults not consumed: the fault is not removed before the revive", n)
	}
	return s
}
