package psa

import "context"

// TicketState is what the PSA says about a ticket psagate opened: a
// technician may have closed, completed, merged or deleted it since.
type TicketState struct {
	// Closed is true when the ticket is in a closed (ConnectWise) or
	// complete (Autotask) status: finished by someone in the PSA. A merged
	// ticket is closed by the merge in both PSAs.
	Closed bool `json:"closed,omitempty"`
	// Gone is true when the PSA no longer knows the ticket (deleted).
	Gone bool `json:"gone,omitempty"`
	// Status is the PSA's name (or value) of the ticket's status, for the
	// audit trail.
	Status string `json:"status,omitempty"`
}

// Ended reports whether the ticket can no longer take psagate's notes.
func (s TicketState) Ended() bool { return s.Closed || s.Gone }

// StateReader is implemented by providers that can read a ticket's state
// back. The delivery workers read it before a note, an attachment or a
// close, and the reconciler reads it periodically for open incidents, so
// that a ticket a technician closed by hand is never written to again.
type StateReader interface {
	TicketState(ctx context.Context, c Call, ref TicketRef) (TicketState, error)
}

// Escalator is implemented by providers that can raise a ticket's
// priority to the one the call's settings name.
type Escalator interface {
	SetPriority(ctx context.Context, c Call, ref TicketRef, n Note) error
}
