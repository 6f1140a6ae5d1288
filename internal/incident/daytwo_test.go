package incident

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"psagate/internal/psa"
	"psagate/internal/route"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// deliver plays the delivery workers: every queued job succeeds, a create
// gives its incident a ticket. It returns the jobs, in order.
func (h *harness) deliver() []*store.Job {
	h.t.Helper()
	jobs := h.jobs()
	err := h.db.Update(func(tx *store.Tx) error {
		for _, j := range jobs {
			if j.Op == store.OpCreate {
				inc, err := tx.Incident(j.Incident)
				if err != nil {
					return err
				}
				inc.Ticket = psa.TicketRef{Provider: "connectwise", ID: fmt.Sprint(1000 + j.Incident)}
				if err := tx.PutIncident(inc); err != nil {
					return err
				}
			}
			if err := tx.DeleteJob(j.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return jobs
}

func (h *harness) incident(id uint64) *store.Incident {
	h.t.Helper()
	var inc *store.Incident
	if err := h.db.View(func(tx *store.Tx) error {
		var err error
		inc, err = tx.Incident(id)
		return err
	}); err != nil || inc == nil {
		h.t.Fatalf("incident %d: %v", id, err)
	}
	return inc
}

func (h *harness) ticketEnded(id, fromJob uint64, st psa.TicketState) []*Outcome {
	h.t.Helper()
	var outs []*Outcome
	if err := h.db.Update(func(tx *store.Tx) error {
		var err error
		outs, err = h.eng.TicketEnded(tx, id, fromJob, st, h.now)
		return err
	}); err != nil {
		h.t.Fatal(err)
	}
	return outs
}

// TestReenabledClientGetsItsTicket: a failure recorded while the client was
// disabled gets its ticket on the next failure once the client is enabled
// again, instead of being "noted" on a ticket that does not exist.
func TestReenabledClientGetsItsTicket(t *testing.T) {
	h := newHarness(t)
	o := h.apply(failure("paused", "SRV4"))
	if !o.Incident.NoPSA {
		t.Fatal("incident of a disabled client is not marked NoPSA")
	}
	wantJobs(t, h.outbox())
	h.cfg.Client("paused").Enabled = true
	h.eng.Router = route.New(h.cfg)
	h.advance(time.Hour)
	o = h.apply(failure("paused", "SRV4"))
	want(t, o, rules.ActionTicket, EffectOpened)
	id := o.Incident.ID
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", id))
	if j := h.jobs()[0]; !strings.Contains(j.Description, "2 alerts") && !strings.Contains(j.Description, "recorded 2") {
		t.Errorf("the ticket does not say what happened while disabled: %q", j.Description)
	}
	h.deliver()
	h.advance(time.Minute)
	want(t, h.apply(failure("paused", "SRV4")), rules.ActionNote, EffectNoted)
	wantJobs(t, h.outbox(), fmt.Sprintf("note:%d", id))
}

// TestDisabledUntilEndsByItself: disabled_until turns ticketing back on at
// its time without anyone touching the config.
func TestDisabledUntilEndsByItself(t *testing.T) {
	h := newHarness(t)
	c := h.cfg.Client("paused")
	c.DisabledUntil = h.now.Add(2 * time.Hour)
	h.eng.Router = route.New(h.cfg)
	o := h.apply(failure("paused", "SRV5"))
	if !o.Incident.NoPSA {
		t.Fatal("a failure before disabled_until made a PSA call")
	}
	h.advance(2 * time.Hour)
	o = h.apply(failure("paused", "SRV5"))
	want(t, o, rules.ActionTicket, EffectOpened)
	wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", o.Incident.ID))
}

// TestStormControl: 100 repeats in an hour give at most max_notes_per_hour
// notes, then one summary note when the hour ends.
func TestStormControl(t *testing.T) {
	h := newHarness(t)
	h.eng.Incidents.MaxNotesPerHour = 4
	start := h.now
	o := h.apply(failure("acme", "SRV9"))
	id := o.Incident.ID
	h.deliver()
	throttled := 0
	for i := range 100 {
		h.advance(30 * time.Second)
		ev := failure("acme", "SRV9")
		ev.Summary = fmt.Sprintf("SRV9: backup failed (%d)", i+1)
		switch o := h.apply(ev); o.Effect {
		case EffectThrottled:
			throttled++
		case EffectNoted:
		default:
			t.Fatalf("repeat %d: %s (%s)", i+1, o.Decision, o.Effect)
		}
	}
	notes := h.deliver()
	if len(notes) != 4 || throttled != 96 {
		t.Fatalf("%d notes, %d throttled; want 4 and 96", len(notes), throttled)
	}
	h.now = start.Add(30*time.Second + time.Hour) // the window opened with the first note
	outs := h.fire()
	if len(outs) != 1 || outs[0].Effect != EffectSummarised {
		t.Fatalf("window end: %+v", outs)
	}
	sum := h.deliver()
	if len(sum) != 1 || sum[0].Op != store.OpNote || sum[0].Incident != id {
		t.Fatalf("summary jobs: %+v", sum)
	}
	if txt := sum[0].NoteText; !strings.HasPrefix(txt, "96 more failures between ") || !strings.Contains(txt, "last: SRV9: backup failed (100)") {
		t.Errorf("summary note: %q", txt)
	}
	// The next hour starts a new window: repeats are noted again.
	h.advance(time.Minute)
	want(t, h.apply(failure("acme", "SRV9")), rules.ActionNote, EffectNoted)
}

// TestStormSummaryFoldsIntoTheClose: a recovery during a storm closes the
// ticket with the summary in the resolution, not a separate note after it.
func TestStormSummaryFoldsIntoTheClose(t *testing.T) {
	h := newHarness(t)
	h.eng.Incidents.MaxNotesPerHour = 1
	h.apply(failure("acme", "SRV8"))
	h.deliver()
	for range 3 {
		h.advance(time.Minute)
		h.apply(failure("acme", "SRV8"))
	}
	h.deliver()
	h.advance(time.Minute)
	want(t, h.apply(success("acme", "SRV8")), rules.ActionClose, EffectClosed)
	jobs := h.deliver()
	if len(jobs) != 1 || jobs[0].Op != store.OpClose || !strings.HasPrefix(jobs[0].NoteText, "2 more failures") {
		t.Fatalf("close jobs: %+v", jobs)
	}
	h.advance(time.Hour)
	if outs := h.fire(); len(outs) != 0 {
		t.Fatalf("the window timer of a closed incident did something: %+v", outs)
	}
}

// TestTicketClosedInPSA covers both after_manual_close policies when the
// delivery workers find the ticket closed before a repeat's note, and the
// reconciler's path (fromJob 0) followed by the next failure.
func TestTicketClosedInPSA(t *testing.T) {
	for _, policy := range []string{"new", "reopen"} {
		t.Run(policy+"/before the note", func(t *testing.T) {
			h := newHarness(t)
			h.cfg.PSA["after_manual_close"] = policy
			h.eng.Router = route.New(h.cfg)
			o := h.apply(failure("acme", "SRV1"))
			id := o.Incident.ID
			h.deliver()
			h.advance(time.Hour)
			h.apply(failure("acme", "SRV1"))
			note := h.jobs()[0]
			if !note.Recur {
				t.Fatal("a repeat's note is not marked as a recurrence")
			}
			outs := h.ticketEnded(id, note.ID, psa.TicketState{Closed: true, Status: "Closed"})
			if len(outs) != 2 || outs[0].Effect != EffectClosedInPSA {
				t.Fatalf("outcomes: %+v", outs)
			}
			if got := h.incident(id).State; got != map[string]string{"new": store.StateClosedInPSA, "reopen": store.StateOpen}[policy] {
				t.Errorf("old incident state %q", got)
			}
			jobs := h.jobs()
			if len(jobs) != 1 || jobs[0].ID != note.ID {
				t.Fatalf("jobs: %+v", jobs)
			}
			switch policy {
			case "new":
				want(t, outs[1], rules.ActionTicket, EffectNew)
				if jobs[0].Op != store.OpCreate || jobs[0].Incident == id || jobs[0].ExternalRef == "" || jobs[0].Summary != "SRV1: backup failed" {
					t.Fatalf("the repeat did not become a create for a new incident: %+v", jobs[0])
				}
			case "reopen":
				want(t, outs[1], rules.ActionTicket, EffectReopened)
				if jobs[0].Op != store.OpReopen || jobs[0].Incident != id {
					t.Fatalf("the repeat did not become a reopen: %+v", jobs[0])
				}
			}
		})
		t.Run(policy+"/reconciled", func(t *testing.T) {
			h := newHarness(t)
			h.cfg.PSA["after_manual_close"] = policy
			h.eng.Router = route.New(h.cfg)
			id := h.apply(failure("acme", "SRV2")).Incident.ID
			h.deliver()
			outs := h.ticketEnded(id, 0, psa.TicketState{Closed: true})
			if len(outs) != 1 || outs[0].Effect != EffectClosedInPSA {
				t.Fatalf("outcomes: %+v", outs)
			}
			h.advance(time.Hour)
			o := h.apply(failure("acme", "SRV2"))
			switch policy {
			case "new":
				want(t, o, rules.ActionTicket, EffectOpened)
				if o.Incident.ID == id {
					t.Fatal("the new failure went to the closed incident")
				}
				wantJobs(t, h.outbox(), fmt.Sprintf("create:%d", o.Incident.ID))
			case "reopen":
				want(t, o, rules.ActionTicket, EffectReopened)
				wantJobs(t, h.outbox(), fmt.Sprintf("reopen:%d", id))
			}
		})
	}
	t.Run("deleted ticket drops its close", func(t *testing.T) {
		h := newHarness(t)
		id := h.apply(failure("acme", "SRV3")).Incident.ID
		h.deliver()
		h.apply(success("acme", "SRV3"))
		cl := h.jobs()[0]
		outs := h.ticketEnded(id, cl.ID, psa.TicketState{Gone: true})
		if len(outs) != 0 || len(h.jobs()) != 0 {
			t.Fatalf("outcomes %+v, jobs %v", outs, h.outbox())
		}
	})
}

// TestEscalation: a failure repeating a warning's open incident raises
// the ticket's priority once, with a note saying why.
func TestEscalation(t *testing.T) {
	h := newHarness(t)
	w := failure("acme", "SRV6")
	w.Severity = "warning"
	id := h.apply(w).Incident.ID
	h.deliver()
	h.advance(time.Minute)
	f := failure("acme", "SRV6")
	f.Severity, f.Escalate, f.Rule = "failure", true, "backup failed hard"
	f.Overrides = map[string]string{"connectwise.priority": "Priority 1 - Emergency Response"}
	o := h.apply(f)
	want(t, o, rules.ActionNote, EffectEscalated)
	jobs := h.deliver()
	if len(jobs) != 1 || jobs[0].Op != store.OpPriority || jobs[0].Incident != id ||
		jobs[0].Overrides["connectwise.priority"] != "Priority 1 - Emergency Response" || !strings.Contains(jobs[0].NoteText, "reported as warning") {
		t.Fatalf("escalation jobs: %+v", jobs)
	}
	h.advance(time.Minute)
	want(t, h.apply(f), rules.ActionNote, EffectNoted) // already at failure: an ordinary repeat
}
