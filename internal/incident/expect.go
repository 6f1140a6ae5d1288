package incident

import (
	"encoding/json"
	"fmt"
	"time"

	"psagate/internal/psa"
	"psagate/internal/route"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// expectRecord tracks one expected mail stream (rule × client × device).
type expectRecord struct {
	Rule      string            `json:"rule"`
	Client    string            `json:"client"`
	Device    string            `json:"device,omitempty"`
	Check     string            `json:"check,omitempty"`
	Interval  time.Duration     `json:"interval"`
	Last      time.Time         `json:"last"`
	Key       string            `json:"key"`     // the absence incident's key
	Subject   string            `json:"subject"` // of the last expected mail, for the summary
	Overrides map[string]string `json:"overrides,omitempty"`
}

func expectKey(rule, client, device string) string {
	return rule + "\x00" + client + "\x00" + device
}

// sawExpected records that an expected mail arrived: it closes an open
// absence incident and schedules the next deadline.
func (e *Engine) sawExpected(tx *store.Tx, ev *Event) (string, error) {
	k := expectKey(ev.Rule, ev.Client, ev.Device)
	var rec expectRecord
	found, err := tx.GetExpect(k, &rec)
	if err != nil {
		return "", err
	}
	if found {
		if err := tx.DeleteTimer(store.Timer{At: rec.Last.Add(rec.Interval), Kind: "expect", Ref: k}); err != nil {
			return "", err
		}
	}
	check := ev.Check
	if check == "" {
		check = ev.Rule
	}
	rec = expectRecord{Rule: ev.Rule, Client: ev.Client, Device: ev.Device, Check: check, Interval: ev.Expect, Last: ev.At,
		Key: absenceKey(ev.Client, ev.Device, check), Subject: ev.Summary, Overrides: ev.Overrides}
	if err := tx.PutExpect(k, rec); err != nil {
		return "", err
	}
	if err := tx.AddTimer(store.Timer{At: ev.At.Add(ev.Expect), Kind: "expect", Ref: k}); err != nil {
		return "", err
	}
	cur, err := tx.IncidentByKey(rec.Key)
	if err != nil || cur == nil || !cur.Active() || !cur.Absence {
		return "", err
	}
	cur.State, cur.ClosedAt, cur.LastSeen, cur.LastMessage = store.StateClosed, ev.At, ev.At, ev.MessageID
	if !cur.NoPSA {
		j := e.job(ev, cur, store.OpClose)
		j.NoteText = fmt.Sprintf("The expected mail arrived again at %s:\n%s", ev.At.UTC().Format(time.RFC3339), ev.Summary)
		j.NoteTitle, j.NoteKind = "Expected mail arrived", psa.NoteResolution
		if err := tx.AddJob(j); err != nil {
			return "", err
		}
	}
	if err := tx.PutIncident(cur); err != nil {
		return "", err
	}
	return fmt.Sprintf("closed absence incident %d", cur.ID), nil
}

func absenceKey(client, device, check string) string {
	return route.ClientName(client) + "/" + device + "/" + check + "/absent"
}

// Fire handles a due timer.
func (e *Engine) Fire(tx *store.Tx, tm store.Timer, now time.Time) (*Outcome, error) {
	if err := tx.DeleteTimer(tm); err != nil {
		return nil, err
	}
	switch tm.Kind {
	case "holddown":
		var id uint64
		if _, err := fmt.Sscan(tm.Ref, &id); err != nil {
			return nil, nil
		}
		inc, err := tx.Incident(id)
		if err != nil || inc == nil || inc.State != store.StatePending {
			return nil, err // recovered (cancelled) or gone: nothing to do
		}
		var held heldTicket
		if err := json.Unmarshal(inc.Held, &held); err != nil || held.Summary == "" {
			// Never let an unreadable record swallow the alert: open the
			// ticket with what the incident itself knows.
			held = heldTicket{Summary: inc.Summary, Description: fmt.Sprintf(
				"(psagate could not read the alert text kept for this hold-down; see `psagate audit -device %q`)", inc.Device)}
		}
		inc.State, inc.OpenedAt, inc.Held = store.StateOpen, now, nil
		inc.NoPSA = !e.Router.EnabledAt(inc.Client, now)
		desc := held.Description
		if inc.Count > 1 {
			desc += fmt.Sprintf("\n\n(%d alerts for this problem arrived during the hold-down, the first at %s.)",
				inc.Count, inc.FirstSeen.UTC().Format(time.RFC3339))
		}
		ev := &Event{MessageID: held.MessageID, At: now, Overrides: held.Overrides}
		jobs, err := e.createJobs(tx, ev, inc, held.Summary, desc)
		if err != nil {
			return nil, err
		}
		if err := tx.PutIncident(inc); err != nil {
			return nil, err
		}
		return &Outcome{Decision: rules.ActionTicket, Effect: EffectOpened, Incident: inc, Jobs: jobs,
			Detail: fmt.Sprintf("hold-down ended without a recovery (first alert %s)", inc.FirstSeen.UTC().Format(time.RFC3339))}, nil
	case timerStorm:
		return e.fireStorm(tx, tm, now)
	case "expect":
		var rec expectRecord
		found, err := tx.GetExpect(tm.Ref, &rec)
		if err != nil || !found {
			return nil, err
		}
		if now.Before(rec.Last.Add(rec.Interval)) {
			return nil, nil // a newer mail moved the deadline
		}
		if cur, err := tx.IncidentByKey(rec.Key); err != nil {
			return nil, err
		} else if cur != nil && cur.Active() {
			return nil, nil
		}
		dev := rec.Device
		if dev == "" {
			dev = route.ClientName(rec.Client)
		}
		summary := fmt.Sprintf("%s: no %q mail since %s (expected every %s)", dev, rec.Check,
			rec.Last.UTC().Format("2006-01-02 15:04 MST"), rec.Interval)
		desc := fmt.Sprintf("psagate expected a mail matching rule %q from %s at least every %s.\n"+
			"The last one arrived at %s:\n  %s\n\nNothing has arrived since. The device may be down or unable to send mail.\n"+
			"This ticket closes itself when the expected mail arrives again.",
			rec.Rule, dev, rec.Interval, rec.Last.UTC().Format(time.RFC3339), rec.Subject)
		ev := &Event{At: now, Action: rules.ActionTicket, Rule: rec.Rule, Client: rec.Client, Device: rec.Device,
			Check: rec.Check + "/absent", Key: rec.Key, Summary: summary, Description: desc, Overrides: rec.Overrides}
		out, err := e.open(tx, ev, &store.Incident{})
		if err != nil {
			return nil, err
		}
		out.Detail = "expected mail overdue"
		return out, nil
	}
	return nil, nil
}
