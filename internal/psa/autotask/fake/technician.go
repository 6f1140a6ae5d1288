package fake

// CompleteAsTechnician sets ticket id to Complete (status 5) the way a
// technician does in the Autotask UI, which also stamps completedDate. It
// reports whether the ticket exists.
func (s *Server) CompleteAsTechnician(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tickets[id]
	if !ok {
		return false
	}
	now := s.now()
	rec["status"] = int64(5)
	rec["completedDate"] = now
	rec["lastActivityDate"] = now
	return true
}

// DeleteTicket removes ticket id as an admin deleting it in the UI would
// (the API itself cannot): GET Tickets/{id} answers 404 afterwards.
func (s *Server) DeleteTicket(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tickets[id]; !ok {
		return false
	}
	delete(s.tickets, id)
	return true
}
