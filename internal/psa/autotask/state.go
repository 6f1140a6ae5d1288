package autotask

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"psagate/internal/psa"
)

// TicketState reads whether the ticket is complete (the configured
// complete_status, or any status that set completedDate) or gone. Autotask
// cannot delete tickets through its API, but an admin can in the UI: the
// API then answers 404 or an empty item.
func (p *Provider) TicketState(ctx context.Context, c psa.Call, ref psa.TicketRef) (psa.TicketState, error) {
	j, err := p.job(c.Settings, "status", true, true)
	if err != nil {
		return psa.TicketState{}, err
	}
	tid, err := ticketID(j.op, ref)
	if err != nil {
		return psa.TicketState{}, err
	}
	var got struct {
		Item *struct {
			Status        *int64  `json:"status"`
			CompletedDate *string `json:"completedDate"`
		} `json:"item"`
	}
	if err := j.call(ctx, http.MethodGet, "Tickets/"+strconv.FormatInt(tid, 10), nil, &got); err != nil {
		var pe *psa.Error
		if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
			return psa.TicketState{Gone: true, Status: "not found"}, nil
		}
		return psa.TicketState{}, err
	}
	if got.Item == nil {
		return psa.TicketState{Gone: true, Status: "not found"}, nil
	}
	st := psa.TicketState{}
	complete := "5"
	if v, ok, err := j.pick(ctx, "complete_status", ""); err == nil && ok {
		complete = v.Value
	}
	if got.Item.Status != nil {
		st.Status = strconv.FormatInt(*got.Item.Status, 10)
		st.Closed = st.Status == complete
	}
	if got.Item.CompletedDate != nil && *got.Item.CompletedDate != "" {
		st.Closed = true
	}
	return st, nil
}

// SetPriority sets the ticket to the configured autotask.priority (a
// sparse update) and adds the note saying why.
func (p *Provider) SetPriority(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	j, err := p.job(c.Settings, "escalate", true, true)
	if err != nil {
		return err
	}
	tid, err := ticketID(j.op, ref)
	if err != nil {
		return err
	}
	pr, ok, err := j.pick(ctx, "priority", "")
	if err != nil {
		return err
	}
	if ok {
		if err := j.call(ctx, http.MethodPatch, "Tickets", map[string]any{"id": tid, "priority": num(pr.Value)}, nil); err != nil {
			return err
		}
	}
	return j.addNote(ctx, tid, n, "note", c.Retry)
}
