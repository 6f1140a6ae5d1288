package connectwise

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"psagate/internal/psa"
)

// TicketState reads whether a technician closed the ticket (closedFlag, set
// by every status marked closed, including the one a merge moves the merged
// ticket to) or deleted it (404).
func (p *Provider) TicketState(ctx context.Context, c psa.Call, ref psa.TicketRef) (psa.TicketState, error) {
	cl, err := p.newCall(c.Settings, "status")
	if err != nil {
		return psa.TicketState{}, err
	}
	id, err := cl.ticketID(ref)
	if err != nil {
		return psa.TicketState{}, err
	}
	var t ticketInfo
	if err := cl.getJSON(ctx, fmt.Sprintf("/service/tickets/%d", id), nil, &t); err != nil {
		var pe *psa.Error
		if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
			return psa.TicketState{Gone: true, Status: "not found"}, nil
		}
		return psa.TicketState{}, err
	}
	st := psa.TicketState{Closed: t.ClosedFlag}
	if t.Status != nil {
		st.Status = t.Status.Name
	}
	return st, nil
}

// SetPriority moves the ticket to the priority of the call's settings
// (connectwise.priority) and adds the note saying why.
func (p *Provider) SetPriority(ctx context.Context, c psa.Call, ref psa.TicketRef, n psa.Note) error {
	cl, err := p.newCall(c.Settings, "escalate")
	if err != nil {
		return err
	}
	id, err := cl.ticketID(ref)
	if err != nil {
		return err
	}
	pr, err := cl.resolvePriority(ctx)
	if err != nil {
		return err
	}
	ops := []map[string]any{{"op": "replace", "path": "priority", "value": idRef{pr.ID}}}
	if err := cl.sendJSON(ctx, http.MethodPatch, fmt.Sprintf("/service/tickets/%d", id), ops, nil); err != nil {
		return err
	}
	return cl.addNote(ctx, id, n, c.Retry, psa.NoteDiscussion)
}
