package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"psagate/internal/deliver"
	"psagate/internal/store"
)

// httpHandler serves /metrics, /healthz and /readyz on TCP. The admin API
// is on the Unix socket (adminHandler); a request for it here is told where.
func (a *App) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.Metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the admin API is served on the Unix socket [http] admin_socket, not on TCP", http.StatusNotFound)
	})
	return mux
}

// adminHandler is the admin API that the CLI uses while the server holds
// the database lock (bbolt allows one process at a time).
func (a *App) adminHandler() http.Handler {
	admin := http.NewServeMux()
	admin.HandleFunc("GET /admin/queue", a.adminQueue)
	admin.HandleFunc("POST /admin/queue/retry/{id}", a.adminRetry)
	admin.HandleFunc("POST /admin/queue/retry-dead", a.adminRetryDead)
	admin.HandleFunc("POST /admin/queue/drop/{id}", a.adminDrop)
	admin.HandleFunc("GET /admin/incidents", a.adminIncidents)
	admin.HandleFunc("GET /admin/audit", a.adminAudit)
	admin.HandleFunc("GET /admin/backup", a.adminBackup)
	admin.HandleFunc("POST /admin/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Reload(); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		a.auditAdmin(r, "reloaded", "config and rules reloaded")
		fmt.Fprintln(w, "reloaded")
	})
	a.adminRoutes(admin)
	return sameUserOnly(sameOrigin(admin))
}

// Readiness reports why the gateway is not ready, or nothing.
func (a *App) Readiness() []string {
	var problems []string
	if err := a.DB.View(func(tx *store.Tx) error { return nil }); err != nil {
		problems = append(problems, "state database: "+err.Error())
	}
	// A spool that cannot be written (disk full) answers every mail 451:
	// not ready, until a probe write succeeds again.
	if err := a.DB.SpoolWritable(); err != nil {
		problems = append(problems, "state database: "+err.Error())
	}
	if s := a.Snapshot(); s == nil || s.Rules == nil {
		problems = append(problems, "no rules loaded")
	}
	paused := a.Deliverer.Paused()
	names := make([]string, 0, len(paused))
	for p := range paused {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		problems = append(problems, fmt.Sprintf("provider %s paused: %s", p, paused[p]))
	}
	return problems
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	if p := a.Readiness(); len(p) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(p, "\n"))
		return
	}
	fmt.Fprintln(w, "ready")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// QueueView is what `psagate queue list` shows.
type QueueView struct {
	Outbox []*store.Job `json:"outbox"`
	Dead   []*store.Job `json:"dead"`
}

// ReadQueue lists the outbox and the dead letters without attachment bytes.
func ReadQueue(db *store.DB) (*QueueView, error) {
	q := &QueueView{}
	err := db.View(func(tx *store.Tx) error {
		if err := tx.Jobs(func(j *store.Job) bool { j.AttachData = nil; q.Outbox = append(q.Outbox, j); return true }); err != nil {
			return err
		}
		return tx.DeadJobs(func(j *store.Job) bool { j.AttachData = nil; q.Dead = append(q.Dead, j); return true })
	})
	return q, err
}

func (a *App) adminQueue(w http.ResponseWriter, r *http.Request) {
	q, err := ReadQueue(a.DB)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, q)
}

func (a *App) adminRetry(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "job id must be a number", http.StatusBadRequest)
		return
	}
	ids, err := deliver.Retry(a.DB, id, a.opts.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	a.auditAdmin(r, "retried", "dead jobs %v back in the outbox", ids)
	a.Deliverer.Wake()
	writeJSON(w, map[string]any{"retried": ids})
}

func (a *App) adminRetryDead(w http.ResponseWriter, r *http.Request) {
	ids, err := deliver.RetryDead(a.DB, a.opts.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.auditAdmin(r, "retried", "dead jobs %v back in the outbox", ids)
	a.Deliverer.Wake()
	writeJSON(w, map[string]any{"retried": ids})
}

func (a *App) adminDrop(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "job id must be a number", http.StatusBadRequest)
		return
	}
	if err := deliver.Drop(a.DB, id); err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	a.auditAdmin(r, "dropped", "job %d dropped", id)
	writeJSON(w, map[string]any{"dropped": id})
}

// ReadIncidents lists incidents, newest first.
func ReadIncidents(db *store.DB, openOnly bool, limit int) ([]*store.Incident, error) {
	var out []*store.Incident
	err := db.View(func(tx *store.Tx) error {
		if openOnly {
			var err error
			out, err = tx.OpenIncidents()
			return err
		}
		return tx.Incidents(func(i *store.Incident) bool {
			i.Held = nil
			out = append(out, i)
			return limit <= 0 || len(out) < limit
		})
	})
	return out, err
}

func (a *App) adminIncidents(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("n"))
	out, err := ReadIncidents(a.DB, r.URL.Query().Get("open") != "", limit)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, out)
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	// ID is psagate's id of one mail, as in the SMTP reply ("Queued as ...").
	ID                                            string
	From, Subject, Device, Decision, Client, Rule string
	Since                                         time.Time
	Limit                                         int
}

func (f AuditFilter) match(e *store.AuditEntry) bool {
	has := func(v, sub string) bool {
		return sub == "" || strings.Contains(strings.ToLower(v), strings.ToLower(sub))
	}
	return (f.ID == "" || strings.EqualFold(e.Message, f.ID)) && has(e.From, f.From) && has(e.Subject, f.Subject) && has(e.Device, f.Device) && has(e.Client, f.Client) &&
		has(e.Rule, f.Rule) && (f.Decision == "" || e.Decision == f.Decision) && (f.Since.IsZero() || !e.Time.Before(f.Since))
}

// ReadAudit lists matching audit entries, newest first.
func ReadAudit(db *store.DB, f AuditFilter) ([]*store.AuditEntry, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	var out []*store.AuditEntry
	err := db.View(func(tx *store.Tx) error {
		return tx.Audit(func(e *store.AuditEntry) bool {
			if !f.Since.IsZero() && e.Time.Before(f.Since) {
				return false
			}
			if f.match(e) {
				out = append(out, e)
			}
			return len(out) < f.Limit
		})
	})
	return out, err
}

// AuditFilterFromQuery reads an AuditFilter from URL parameters.
func AuditFilterFromQuery(q map[string][]string) AuditFilter {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := AuditFilter{ID: get("id"), From: get("from"), Subject: get("subject"), Device: get("device"), Decision: get("decision"),
		Client: get("client"), Rule: get("rule")}
	f.Limit, _ = strconv.Atoi(get("n"))
	if s := get("since"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			f.Since = t
		}
	}
	return f
}

func (a *App) adminAudit(w http.ResponseWriter, r *http.Request) {
	out, err := ReadAudit(a.DB, AuditFilterFromQuery(r.URL.Query()))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, out)
}

// adminBackup streams a consistent copy of the database, for
// `psagate try -state` against a running server.
func (a *App) adminBackup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := a.DB.Backup(w); err != nil {
		a.log.Warn("backup stream failed", "err", err)
	}
}
