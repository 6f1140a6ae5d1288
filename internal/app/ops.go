package app

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"psagate/internal/gateway"
	"psagate/internal/store"
)

// Ops are the admin actions on the state: silences, quarantine and hands
// on incidents. The admin API runs them in the server; the CLI runs them
// on the database file when no server holds it.
type Ops struct {
	DB   *store.DB
	Snap func() *gateway.Snapshot
	Now  func() time.Time
	// Wake tells the workers there is new work (spool, outbox); may be nil.
	Wake func()
}

func (o *Ops) wake() {
	if o.Wake != nil {
		o.Wake()
	}
}

// Who names a user id for the audit trail: "name (uid N)".
func Who(uid int) string {
	if uid < 0 {
		return "unknown user"
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// Me is Who for this process.
func Me() string { return Who(os.Geteuid()) }

// SilenceRequest is what `psagate silence add` asks for.
type SilenceRequest struct {
	Client, Device, Rule, Comment string
	For                           time.Duration
}

// AddSilence starts a silence.
func (o *Ops) AddSilence(r SilenceRequest, by string) (*store.Silence, error) {
	now := o.Now()
	s := &store.Silence{Client: r.Client, Device: r.Device, Rule: r.Rule, Comment: r.Comment, By: by, Start: now, End: now.Add(r.For)}
	if c := o.Snap().Config; r.Client != "" && c.Client(r.Client) == nil && !strings.EqualFold(r.Client, "default") {
		return nil, fmt.Errorf("no client %q in the config", r.Client)
	}
	return s, o.DB.Update(func(tx *store.Tx) error { return gateway.AddSilence(tx, s, now) })
}

// Silences lists silences, newest first.
func (o *Ops) Silences() ([]*store.Silence, error) {
	out := []*store.Silence{}
	err := o.DB.View(func(tx *store.Tx) error {
		return tx.Silences(func(s *store.Silence) bool { s.Pending = nil; out = append(out, s); return true })
	})
	return out, err
}

// ExpireSilence ends silence id now and catches up what it held back.
func (o *Ops) ExpireSilence(id uint64, by string) (*store.Silence, error) {
	var s *store.Silence
	err := o.DB.Update(func(tx *store.Tx) error {
		var err error
		s, _, err = gateway.ExpireSilence(tx, gateway.EngineFor(o.Snap(), o.DB), id, o.Now(), by)
		return err
	})
	if err == nil {
		o.wake()
		s.Pending = nil
	}
	return s, err
}

// Quarantine lists the quarantined messages, oldest first, without bytes.
func (o *Ops) Quarantine() ([]*store.SpoolEntry, error) {
	var out []*store.SpoolEntry
	err := o.DB.View(func(tx *store.Tx) error {
		var err error
		out, err = tx.QuarantineList()
		return err
	})
	if out == nil {
		out = []*store.SpoolEntry{}
	}
	return out, err
}

// QuarantinedMessage is one quarantined message with its text.
type QuarantinedMessage struct {
	Entry *store.SpoolEntry `json:"entry"`
	Raw   string            `json:"raw"`
}

// ShowQuarantined returns quarantined message id with its bytes.
func (o *Ops) ShowQuarantined(id string) (*QuarantinedMessage, error) {
	var out *QuarantinedMessage
	err := o.DB.View(func(tx *store.Tx) error {
		e, err := tx.QuarantineEntry(id)
		if err != nil {
			return err
		}
		if e == nil {
			return fmt.Errorf("quarantined message %s: %w", id, store.ErrNotFound)
		}
		e.Size = len(e.Raw)
		out = &QuarantinedMessage{Entry: e, Raw: string(e.Raw)}
		return nil
	})
	return out, err
}

// Release re-decides quarantined message id (as "ticket" forces a ticket).
func (o *Ops) Release(id, as, by string) (*gateway.Verdict, error) {
	var v *gateway.Verdict
	err := o.DB.Update(func(tx *store.Tx) error {
		var err error
		v, err = gateway.Release(tx, o.Snap(), id, as, o.Now(), by)
		return err
	})
	if err == nil {
		o.wake()
	}
	return v, err
}

// DeleteQuarantined deletes quarantined message id.
func (o *Ops) DeleteQuarantined(id, by string) error {
	return o.DB.Update(func(tx *store.Tx) error { return gateway.DeleteQuarantined(tx, id, o.Now(), by) })
}

// PruneQuarantine applies max_messages and max_age now.
func (o *Ops) PruneQuarantine() (int, error) {
	n := 0
	err := o.DB.Update(func(tx *store.Tx) error {
		var err error
		n, err = gateway.PruneQuarantine(tx, o.Snap(), o.Now())
		return err
	})
	return n, err
}

// CloseIncident closes incident id by hand, and its ticket with psaToo.
func (o *Ops) CloseIncident(id uint64, note string, psaToo bool, by string) (*store.Incident, error) {
	var inc *store.Incident
	err := o.DB.Update(func(tx *store.Tx) error {
		var err error
		inc, err = gateway.CloseIncident(tx, id, note, psaToo, o.Now(), by)
		return err
	})
	if err == nil && psaToo {
		o.wake()
	}
	return inc, err
}

// ForgetIncident deletes incident id.
func (o *Ops) ForgetIncident(id uint64, by string) (*store.Incident, error) {
	var inc *store.Incident
	err := o.DB.Update(func(tx *store.Tx) error {
		var err error
		inc, err = gateway.ForgetIncident(tx, id, o.Now(), by)
		return err
	})
	return inc, err
}

// ShowIncident returns incident id's history.
func (o *Ops) ShowIncident(id uint64) (*gateway.IncidentHistory, error) {
	var h *gateway.IncidentHistory
	err := o.DB.View(func(tx *store.Tx) error {
		var err error
		h, err = gateway.ShowIncident(tx, id)
		return err
	})
	return h, err
}

// ops is the App's Ops.
func (a *App) ops() *Ops {
	return &Ops{DB: a.DB, Snap: a.Snapshot, Now: a.opts.Now, Wake: func() { a.Gateway.WakeSpool(); a.Deliverer.Wake() }}
}

// adminRoutes adds the day-two endpoints (incidents, silences, quarantine).
func (a *App) adminRoutes(mux *http.ServeMux) {
	o := a.ops()
	who := func(r *http.Request) string { return Who(peerUID(r.Context())) }
	id := func(w http.ResponseWriter, r *http.Request) (uint64, bool) {
		n, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil {
			http.Error(w, "the id must be a number", http.StatusBadRequest)
		}
		return n, err == nil
	}
	reply := func(w http.ResponseWriter, v any, err error) {
		switch {
		case err == nil:
			writeJSON(w, v)
		case errors.Is(err, store.ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
		default:
			http.Error(w, err.Error(), http.StatusConflict)
		}
	}
	mux.HandleFunc("GET /admin/incidents/{id}", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := id(w, r); ok {
			h, err := o.ShowIncident(n)
			reply(w, h, err)
		}
	})
	mux.HandleFunc("POST /admin/incidents/{id}/close", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := id(w, r); ok {
			inc, err := o.CloseIncident(n, r.URL.Query().Get("note"), r.URL.Query().Get("psa") != "", who(r))
			reply(w, inc, err)
		}
	})
	mux.HandleFunc("POST /admin/incidents/{id}/forget", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := id(w, r); ok {
			inc, err := o.ForgetIncident(n, who(r))
			reply(w, inc, err)
		}
	})
	mux.HandleFunc("GET /admin/silences", func(w http.ResponseWriter, r *http.Request) {
		s, err := o.Silences()
		reply(w, s, err)
	})
	mux.HandleFunc("POST /admin/silences", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		d, err := time.ParseDuration(q.Get("for"))
		if err != nil || d <= 0 {
			http.Error(w, "for must be a positive duration like 4h", http.StatusBadRequest)
			return
		}
		s, err := o.AddSilence(SilenceRequest{Client: q.Get("client"), Device: q.Get("device"), Rule: q.Get("rule"), Comment: q.Get("comment"), For: d}, who(r))
		reply(w, s, err)
	})
	mux.HandleFunc("POST /admin/silences/{id}/expire", func(w http.ResponseWriter, r *http.Request) {
		if n, ok := id(w, r); ok {
			s, err := o.ExpireSilence(n, who(r))
			reply(w, s, err)
		}
	})
	mux.HandleFunc("GET /admin/quarantine", func(w http.ResponseWriter, r *http.Request) {
		l, err := o.Quarantine()
		reply(w, l, err)
	})
	mux.HandleFunc("GET /admin/quarantine/{id}", func(w http.ResponseWriter, r *http.Request) {
		m, err := o.ShowQuarantined(r.PathValue("id"))
		reply(w, m, err)
	})
	mux.HandleFunc("POST /admin/quarantine/{id}/release", func(w http.ResponseWriter, r *http.Request) {
		v, err := o.Release(r.PathValue("id"), r.URL.Query().Get("as"), who(r))
		reply(w, v, err)
	})
	mux.HandleFunc("POST /admin/quarantine/{id}/delete", func(w http.ResponseWriter, r *http.Request) {
		err := o.DeleteQuarantined(r.PathValue("id"), who(r))
		reply(w, map[string]string{"deleted": r.PathValue("id")}, err)
	})
}

// AuditAdmin records an admin action that has no record of its own (queue
// retry and drop, reload), with who did it.
func AuditAdmin(db *store.DB, now time.Time, effect, detail string) error {
	return db.Update(func(tx *store.Tx) error {
		return tx.AddAudit(&store.AuditEntry{Time: now, Decision: gateway.AdminDecision, Effect: effect, Detail: detail})
	})
}

func (a *App) auditAdmin(r *http.Request, effect, format string, args ...any) {
	detail := fmt.Sprintf(format, args...) + " by " + Who(peerUID(r.Context()))
	if err := AuditAdmin(a.DB, a.opts.Now(), effect, detail); err != nil {
		a.log.Warn("could not audit an admin action", "effect", effect, "err", err)
	}
}
