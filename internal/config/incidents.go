package config

import (
	"fmt"
	"strings"
	"time"
)

// Incidents is the [incidents] section: how psagate keeps its incidents in
// step with the tickets people work on in the PSA.
type Incidents struct {
	// ReconcileEvery is how often the state of an open incident's ticket is
	// read back from the PSA (besides before every note and close).
	ReconcileEvery Duration `toml:"reconcile_every"`
	// ReconcilePerMinute bounds those reads, so thousands of open incidents
	// do not eat the PSA's request budget.
	ReconcilePerMinute int `toml:"reconcile_per_minute"`
	// AfterManualClose is the org-wide default of the after_manual_close
	// policy ([psa], [client.psa] and a rule's psa table may override it):
	// what the next failure does after a technician closed the ticket.
	AfterManualClose string `toml:"after_manual_close"`
	// MaxNotesPerHour caps the repeat notes added to one ticket in an hour;
	// the rest are counted and summarised in one note.
	MaxNotesPerHour int `toml:"max_notes_per_hour"`
}

// The after_manual_close policies.
const (
	AfterCloseNew    = "new"    // open a new ticket
	AfterCloseReopen = "reopen" // reopen the closed ticket
)

func (l *loader) incidents(in *Incidents) {
	defDur(&in.ReconcileEvery, 10*time.Minute)
	limit(l, "incidents.reconcile_per_minute", &in.ReconcilePerMinute, 30, 1)
	limit(l, "incidents.max_notes_per_hour", &in.MaxNotesPerHour, 4, 1)
	switch in.AfterManualClose {
	case "":
		in.AfterManualClose = AfterCloseNew
	case AfterCloseNew, AfterCloseReopen:
	default:
		l.errf("incidents.after_manual_close", "must be %q or %q, not %q", AfterCloseNew, AfterCloseReopen, in.AfterManualClose)
		in.AfterManualClose = AfterCloseNew
	}
}

// Deadline is a point in time written as "2026-12-08T06:00:00Z",
// "2026-12-08 06:00" (UTC) or "2026-12-08" (midnight UTC).
type Deadline struct{ time.Time }

func (d *Deadline) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04", "2006-01-02T15:04", time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			d.Time = t
			return nil
		}
	}
	return fmt.Errorf("%q is not a time (write it like \"2026-12-08T06:00:00Z\" or \"2026-12-08\")", s)
}

// EnabledAt reports whether tickets may be made for c at now: enabled,
// or disabled only until a disabled_until that has passed.
func (c *Client) EnabledAt(now time.Time) bool {
	if !c.DisabledUntil.IsZero() {
		return !now.Before(c.DisabledUntil)
	}
	return c.Enabled
}

// Quarantine is the [quarantine] section: how much quarantined mail is kept.
type Quarantine struct {
	// MaxMessages caps the quarantine; the oldest are pruned beyond it.
	MaxMessages int `toml:"max_messages"`
	// MaxAge prunes messages quarantined longer ago.
	MaxAge Duration `toml:"max_age"`
}

func (l *loader) quarantine(q *Quarantine) {
	limit(l, "quarantine.max_messages", &q.MaxMessages, 10000, 1)
	defDur(&q.MaxAge, 30*24*time.Hour)
}
