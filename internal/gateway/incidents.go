package gateway

import (
	"fmt"
	"time"

	"psagate/internal/incident"
	"psagate/internal/psa"
	"psagate/internal/store"
)

// EngineFor is the incident engine of snapshot s over db.
func EngineFor(s *Snapshot, db *store.DB) *incident.Engine {
	return &incident.Engine{Router: s.Router, Instance: db.Instance(), Incidents: s.Config.Incidents}
}

// CloseIncident closes incident id by hand (a device was decommissioned,
// the problem was fixed another way). With psaToo its ticket is closed too,
// with note as the resolution.
func CloseIncident(tx *store.Tx, id uint64, note string, psaToo bool, now time.Time, by string) (*store.Incident, error) {
	inc, err := tx.Incident(id)
	if err != nil {
		return nil, err
	}
	if inc == nil {
		return nil, fmt.Errorf("incident %d: %w", id, store.ErrNotFound)
	}
	if !inc.Active() {
		return inc, fmt.Errorf("incident %d is %s, not open", id, inc.State)
	}
	if note == "" {
		note = "Closed by hand in psagate by " + by + "."
	}
	detail := fmt.Sprintf("closed by %s: %s", by, note)
	if inc.State == store.StatePending {
		if err := tx.DeleteTimer(store.Timer{At: inc.DueAt, Kind: "holddown", Ref: fmt.Sprint(inc.ID)}); err != nil {
			return nil, err
		}
		inc.State = store.StateCancelled
	} else {
		inc.State = store.StateClosed
		if psaToo && !inc.NoPSA {
			prov := inc.Provider
			if !inc.Ticket.IsZero() {
				prov = inc.Ticket.Provider
			}
			j := &store.Job{Provider: prov, Incident: inc.ID, Op: store.OpClose, Key: inc.Key, Client: inc.Client, Device: inc.Device,
				Created: now, NoteTitle: "Closed by hand", NoteText: note, NoteKind: psa.NoteResolution}
			if err := tx.AddJob(j); err != nil {
				return nil, err
			}
			detail += "; the ticket is closed too"
		}
	}
	inc.ClosedAt = now
	if err := tx.PutIncident(inc); err != nil {
		return nil, err
	}
	return inc, tx.AddAudit(&store.AuditEntry{Time: now, Decision: AdminDecision, Effect: "closed", Incident: inc.ID, Key: inc.Key,
		Client: inc.Client, Device: inc.Device, Subject: inc.Summary, Detail: detail})
}

// ForgetIncident deletes incident id (a merged ticket, a re-keyed alert):
// the next mail for its key starts afresh. Its queued calls go with it.
func ForgetIncident(tx *store.Tx, id uint64, now time.Time, by string) (*store.Incident, error) {
	inc, jobs, err := tx.DeleteIncident(id)
	if err != nil {
		return nil, err
	}
	return inc, tx.AddAudit(&store.AuditEntry{Time: now, Decision: AdminDecision, Effect: "forgotten", Incident: inc.ID, Key: inc.Key,
		Client: inc.Client, Device: inc.Device, Subject: inc.Summary,
		Detail: fmt.Sprintf("forgotten by %s (it was %s, ticket %s; %d queued call(s) dropped)", by, inc.State, inc.Ticket, jobs)})
}

// IncidentHistory is an incident with everything that happened to it.
type IncidentHistory struct {
	Incident *store.Incident     `json:"incident"`
	Events   []*store.AuditEntry `json:"events"` // every mail, decision and admin action, oldest first
	Outbox   []*store.Job        `json:"outbox"` // PSA calls still to make
	Dead     []*store.Job        `json:"dead"`   // PSA calls that failed for good
}

// ShowIncident gathers incident id's history.
func ShowIncident(tx *store.Tx, id uint64) (*IncidentHistory, error) {
	inc, err := tx.Incident(id)
	if err != nil {
		return nil, err
	}
	if inc == nil {
		return nil, fmt.Errorf("incident %d: %w", id, store.ErrNotFound)
	}
	inc.Held = nil
	h := &IncidentHistory{Incident: inc, Events: []*store.AuditEntry{}, Outbox: []*store.Job{}, Dead: []*store.Job{}}
	if err := tx.Audit(func(e *store.AuditEntry) bool {
		if e.Incident == id {
			h.Events = append(h.Events, e)
		}
		return true
	}); err != nil {
		return nil, err
	}
	for i, j := 0, len(h.Events)-1; i < j; i, j = i+1, j-1 {
		h.Events[i], h.Events[j] = h.Events[j], h.Events[i]
	}
	keep := func(dst *[]*store.Job) func(*store.Job) bool {
		return func(j *store.Job) bool {
			if j.Incident == id {
				j.AttachData = nil
				*dst = append(*dst, j)
			}
			return true
		}
	}
	if err := tx.Jobs(keep(&h.Outbox)); err != nil {
		return nil, err
	}
	return h, tx.DeadJobs(keep(&h.Dead))
}
