package fake

import "time"

// CloseAsTechnician closes ticket id the way a technician does in the
// ConnectWise UI: it moves to the board's first closed status (by sort
// order), closedFlag set, closedBy the technician. It reports whether the
// ticket exists.
func (s *Server) CloseAsTechnician(id int, member string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tickets {
		if t.ID != id {
			continue
		}
		if b := s.board(t.BoardID); b != nil {
			var best *Status
			for i := range b.Statuses {
				st := &b.Statuses[i]
				if st.Closed && !st.Inactive && (best == nil || st.SortOrder < best.SortOrder) {
					best = st
				}
			}
			if best != nil {
				t.StatusID = best.ID
			}
		}
		t.ClosedFlag, t.ClosedDate, t.ClosedBy = true, s.now().Truncate(time.Second), member
		return true
	}
	return false
}

// DeleteTicket removes ticket id as an admin deleting it in the UI would:
// the API answers 404 for it afterwards.
func (s *Server) DeleteTicket(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range s.tickets {
		if t.ID == id {
			s.tickets = append(s.tickets[:i], s.tickets[i+1:]...)
			return true
		}
	}
	return false
}
