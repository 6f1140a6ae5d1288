package deliver

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"psagate/internal/psa"
	"psagate/internal/store"
)

// ticketEnded reads the state of the ticket job j is about to write to,
// when the provider can. A ticket closed or deleted in the PSA is handed to
// Options.TicketEnded and ended is true: the job is settled there, not
// sent. A state that cannot be read for a reason that will not go away by
// itself (a permission the API member lacks) does not block the call.
func (d *Deliverer) ticketEnded(ctx context.Context, p psa.Provider, call psa.Call, j *store.Job, ref psa.TicketRef, log *slog.Logger) (bool, error) {
	sr, ok := p.(psa.StateReader)
	if !ok || d.o.TicketEnded == nil || ref.IsZero() {
		return false, nil
	}
	switch j.Op {
	case store.OpNote, store.OpAttach, store.OpClose, store.OpPriority:
	default:
		return false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, d.o.CallTimeout)
	st, err := sr.TicketState(cctx, call, ref)
	cancel()
	if err != nil {
		if psa.KindOf(err) == psa.Permanent {
			log.Warn("could not read the ticket's state; sending the call anyway", "ticket", ref.String(), "err", d.scrub(call.Settings.Scrub(err.Error())))
			return false, nil
		}
		return false, err
	}
	d.reconciled(st)
	if !st.Ended() {
		return false, nil
	}
	if err := d.o.DB.Update(func(tx *store.Tx) error {
		if cur, err := tx.Job(j.ID); err != nil || cur == nil {
			return err
		}
		return d.o.TicketEnded(tx, j.Incident, j.ID, st)
	}); err != nil {
		return false, err
	}
	log.Info("ticket was closed in the PSA: the call is not made", "ticket", ref.String(), "status", st.Status, "gone", st.Gone)
	return true, nil
}

func (d *Deliverer) reconciled(st psa.TicketState) {
	if d.o.Metrics == nil {
		return
	}
	result := "open"
	if st.Ended() {
		result = "closed-in-psa"
	}
	d.o.Metrics.Reconciled.WithLabelValues(result).Inc()
}

// Reconcile reads back the PSA state of up to limit open incidents whose
// ticket was not read within every, least recently read first, and ends
// those whose ticket someone closed. Incidents with calls queued are left
// to those calls, which read the state themselves. It returns how many it
// read and how many had ended.
func (d *Deliverer) Reconcile(ctx context.Context, every time.Duration, limit int) (checked, ended int, err error) {
	now := d.o.Now()
	var due []*store.Incident
	err = d.o.DB.View(func(tx *store.Tx) error {
		open, err := tx.OpenIncidents()
		if err != nil {
			return err
		}
		busy := map[uint64]bool{}
		if err := tx.JobHeads(func(h store.JobHead) bool { busy[h.Incident] = true; return true }); err != nil {
			return err
		}
		for _, inc := range open {
			if inc.State == store.StateOpen && !inc.Ticket.IsZero() && !busy[inc.ID] && now.Sub(inc.CheckedAt) >= every {
				due = append(due, inc)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	slices.SortFunc(due, func(a, b *store.Incident) int { return a.CheckedAt.Compare(b.CheckedAt) })
	for _, inc := range due {
		if checked >= limit || ctx.Err() != nil {
			break
		}
		sr, ok := d.o.Providers[inc.Ticket.Provider].(psa.StateReader)
		if !ok {
			continue
		}
		d.mu.Lock()
		_, paused := d.paused[inc.Ticket.Provider]
		d.mu.Unlock()
		if paused {
			continue
		}
		s := d.o.Settings(inc.Client, inc.Device, nil)
		s["provider"] = inc.Ticket.Provider
		cctx, cancel := context.WithTimeout(ctx, d.o.CallTimeout)
		st, rerr := sr.TicketState(cctx, psa.Call{Settings: s}, inc.Ticket)
		cancel()
		checked++
		if rerr != nil {
			if d.o.Metrics != nil {
				d.o.Metrics.Reconciled.WithLabelValues("error").Inc()
			}
			d.o.Logger.Warn("reading a ticket's state failed", "incident", inc.ID, "ticket", inc.Ticket.String(), "err", d.scrub(s.Scrub(rerr.Error())))
			continue
		}
		d.reconciled(st)
		err := d.o.DB.Update(func(tx *store.Tx) error {
			cur, err := tx.Incident(inc.ID)
			if err != nil || cur == nil || cur.State != store.StateOpen {
				return err
			}
			if st.Ended() && d.o.TicketEnded != nil {
				return d.o.TicketEnded(tx, inc.ID, 0, st)
			}
			cur.CheckedAt, cur.PSAStatus = now, st.Status
			return tx.PutIncident(cur)
		})
		if err != nil {
			return checked, ended, err
		}
		if st.Ended() {
			ended++
			d.o.Logger.Info("ticket was closed in the PSA: incident ended", "incident", inc.ID, "ticket", inc.Ticket.String(), "status", st.Status)
		}
	}
	if ended > 0 {
		d.Wake()
	}
	return checked, ended, nil
}
