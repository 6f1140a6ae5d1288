package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/deliver"
	"psagate/internal/store"
)

// stateAccess reaches the state database: directly when no server holds it,
// else through the running server's loopback admin API (bbolt lets one
// process open the file at a time).
type stateAccess interface {
	Queue() (*app.QueueView, error)
	Retry(id uint64) ([]uint64, error)
	RetryDead() ([]uint64, error)
	Drop(id uint64) error
	Incidents(open bool, n int) ([]*store.Incident, error)
	Audit(f app.AuditFilter) ([]*store.AuditEntry, error)
	Close()
	Via() string
}

func openState(cfg *config.Config) (stateAccess, error) {
	db, err := store.Open(cfg.State.Path, store.Options{LockTimeout: 300 * time.Millisecond, AuditMax: cfg.State.AuditMax})
	if err == nil {
		return &direct{db: db}, nil
	}
	if !errors.Is(err, store.ErrLocked) {
		return nil, err
	}
	return &remote{sock: cfg.HTTP.AdminSocket, c: app.AdminClient(cfg.HTTP.AdminSocket, 30*time.Second)}, nil
}

type direct struct{ db *store.DB }

func (d *direct) Queue() (*app.QueueView, error) { return app.ReadQueue(d.db) }
func (d *direct) Retry(id uint64) ([]uint64, error) {
	ids, err := deliver.Retry(d.db, id, time.Now())
	if err == nil {
		err = app.AuditAdmin(d.db, time.Now(), "retried", fmt.Sprintf("dead jobs %v back in the outbox by %s", ids, app.Me()))
	}
	return ids, err
}

func (d *direct) RetryDead() ([]uint64, error) {
	ids, err := deliver.RetryDead(d.db, time.Now())
	if err == nil {
		err = app.AuditAdmin(d.db, time.Now(), "retried", fmt.Sprintf("dead jobs %v back in the outbox by %s", ids, app.Me()))
	}
	return ids, err
}

func (d *direct) Drop(id uint64) error {
	err := deliver.Drop(d.db, id)
	if err == nil {
		err = app.AuditAdmin(d.db, time.Now(), "dropped", fmt.Sprintf("job %d dropped by %s", id, app.Me()))
	}
	return err
}
func (d *direct) Incidents(open bool, n int) ([]*store.Incident, error) {
	return app.ReadIncidents(d.db, open, n)
}
func (d *direct) Audit(f app.AuditFilter) ([]*store.AuditEntry, error) { return app.ReadAudit(d.db, f) }
func (d *direct) Close()                                               { d.db.Close() }
func (d *direct) Via() string                                          { return "database " + d.db.Path() }

type remote struct {
	sock string
	c    *http.Client
}

func (r *remote) do(method, path string, out any) error {
	req, err := http.NewRequest(method, app.AdminURL(path), nil)
	if err != nil {
		return err
	}
	resp, err := r.c.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("the database is held by a running psagate, and its admin socket %s refuses this user: run the command as the service user or root", r.sock)
		}
		return fmt.Errorf("the database is held by a running psagate, and its admin API (socket %s) did not answer: %w", r.sock, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return errors.New(strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

func (r *remote) Queue() (*app.QueueView, error) {
	var q app.QueueView
	return &q, r.do("GET", "/admin/queue", &q)
}

func (r *remote) Retry(id uint64) ([]uint64, error) {
	var out struct{ Retried []uint64 }
	return out.Retried, r.do("POST", fmt.Sprintf("/admin/queue/retry/%d", id), &out)
}

func (r *remote) RetryDead() ([]uint64, error) {
	var out struct{ Retried []uint64 }
	return out.Retried, r.do("POST", "/admin/queue/retry-dead", &out)
}

func (r *remote) Drop(id uint64) error {
	var out map[string]any
	return r.do("POST", fmt.Sprintf("/admin/queue/drop/%d", id), &out)
}

func (r *remote) Incidents(open bool, n int) ([]*store.Incident, error) {
	var out []*store.Incident
	q := url.Values{"n": {strconv.Itoa(n)}}
	if open {
		q.Set("open", "1")
	}
	return out, r.do("GET", "/admin/incidents?"+q.Encode(), &out)
}

func (r *remote) Audit(f app.AuditFilter) ([]*store.AuditEntry, error) {
	q := url.Values{"id": {f.ID}, "from": {f.From}, "subject": {f.Subject}, "device": {f.Device}, "decision": {f.Decision},
		"client": {f.Client}, "rule": {f.Rule}, "n": {strconv.Itoa(f.Limit)}}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339))
	}
	var out []*store.AuditEntry
	return out, r.do("GET", "/admin/audit?"+q.Encode(), &out)
}

func (r *remote) Close()      {}
func (r *remote) Via() string { return "admin API " + r.sock }

func cmdQueue(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("queue", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: psagate queue -config FILE list|retry ID|retry-dead|drop ID")
		return errUsage
	}
	cfg, err := config.LoadWithoutSecrets(*cfgPath)
	if err != nil {
		return err
	}
	st, err := openState(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	idArg := func() (uint64, error) {
		if fs.NArg() != 2 {
			return 0, errUsage
		}
		id, err := strconv.ParseUint(fs.Arg(1), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("job id %q is not a number", fs.Arg(1))
		}
		return id, nil
	}
	if (fs.Arg(0) == "list" || fs.Arg(0) == "retry-dead") && fs.NArg() != 1 {
		fmt.Fprintf(stderr, "psagate queue %s: unexpected argument %q\n", fs.Arg(0), fs.Arg(1))
		return errUsage
	}
	switch fs.Arg(0) {
	case "list":
		q, err := st.Queue()
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(q)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "outbox: %d job(s)\n", len(q.Outbox))
		if len(q.Outbox) > 0 {
			fmt.Fprintln(tw, "ID\tOP\tINCIDENT\tCLIENT\tATTEMPTS\tNEXT TRY\tLAST ERROR")
		}
		for _, j := range q.Outbox {
			next := "now"
			if !j.NextTry.IsZero() {
				next = j.NextTry.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s\t%s\n", j.ID, j.Op, j.Incident, j.Client, j.Attempts, next, j.LastError)
		}
		fmt.Fprintf(tw, "\ndead letters: %d job(s)\n", len(q.Dead))
		if len(q.Dead) > 0 {
			fmt.Fprintln(tw, "ID\tOP\tINCIDENT\tCLIENT\tDIED\tREASON")
		}
		for _, j := range q.Dead {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", j.ID, j.Op, j.Incident, j.Client, j.DeadAt.Local().Format(time.DateTime), j.Reason)
		}
		return tw.Flush()
	case "retry":
		id, err := idArg()
		if err != nil {
			return err
		}
		ids, err := st.Retry(id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "back in the outbox: %v (via %s)\n", ids, st.Via())
		return nil
	case "retry-dead":
		ids, err := st.RetryDead()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "back in the outbox: %d job(s) %v (via %s)\n", len(ids), ids, st.Via())
		return nil
	case "drop":
		id, err := idArg()
		if err != nil {
			return err
		}
		if err := st.Drop(id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "dropped job %d (via %s)\n", id, st.Via())
		return nil
	}
	fmt.Fprintf(stderr, "psagate queue: unknown action %q (list, retry ID, retry-dead, drop ID)\n", fs.Arg(0))
	return errUsage
}

func cmdIncidents(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("incidents", stderr)
	open := fs.Bool("open", false, "list: only pending and open incidents")
	asJSON := fs.Bool("json", false, "print JSON")
	n := fs.Int("n", 100, "list: at most this many (newest first)")
	note := fs.String("note", "", "close: the resolution text")
	psaToo := fs.Bool("psa", false, "close: close the PSA ticket too")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	if fs.NArg() > 0 && fs.Arg(0) != "list" {
		return incidentVerb(fs, *cfgPath, *note, *psaToo, *asJSON, stdout, stderr)
	}
	if err := verbArgs(fs, stderr, "psagate incidents -config FILE [list] [-open] [-n N] [-json] | close ID [-note TEXT] [-psa] | forget ID | show ID",
		min(fs.NArg(), 1)-1, "open", "n"); err != nil {
		return err
	}
	cfg, err := config.LoadWithoutSecrets(*cfgPath)
	if err != nil {
		return err
	}
	st, err := openState(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	incs, err := st.Incidents(*open, *n)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(incs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tKEY\tCLIENT\tTICKET\tFIRST SEEN\tLAST SEEN\tCOUNT\tSUMMARY")
	for _, i := range incs {
		ticket := "-"
		if !i.Ticket.IsZero() {
			ticket = i.Ticket.String()
		} else if i.NoPSA {
			ticket = "(client disabled)"
		} else if i.State == store.StateOpen {
			ticket = "(queued)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", i.ID, i.State, i.Key, i.Client, ticket,
			i.FirstSeen.Local().Format(time.DateTime), i.LastSeen.Local().Format(time.DateTime), i.Count, i.Summary)
	}
	return tw.Flush()
}

func cmdAudit(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("audit", stderr)
	var f app.AuditFilter
	fs.StringVar(&f.From, "from", "", "sender contains")
	fs.StringVar(&f.Subject, "subject", "", "subject contains")
	fs.StringVar(&f.Device, "device", "", "device contains")
	fs.StringVar(&f.Client, "client", "", "client contains")
	fs.StringVar(&f.Rule, "rule", "", "rule name contains")
	fs.StringVar(&f.Decision, "decision", "", "decision is (drop, reject, ticket, note, close, quarantine)")
	since := fs.Duration("since", 0, "only the last DURATION (e.g. 24h)")
	fs.IntVar(&f.Limit, "n", 50, "at most this many (newest first)")
	fs.StringVar(&f.ID, "id", "", "the mail with this id (from the SMTP reply: \"Queued as ...\")")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "psagate audit: unexpected argument %q (filters are flags: -id, -from, -subject ...)\n", fs.Arg(0))
		return errUsage
	}
	if *since > 0 {
		f.Since = time.Now().Add(-*since)
	}
	cfg, err := config.LoadWithoutSecrets(*cfgPath)
	if err != nil {
		return err
	}
	st, err := openState(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	entries, err := st.Audit(f)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(entries)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tMESSAGE\tDECISION\tRULE\tCLIENT\tFROM\tSUBJECT\tDETAIL")
	for _, e := range entries {
		dec := e.Decision
		if e.Effect != "" {
			dec += " (" + e.Effect + ")"
		}
		detail := e.Detail
		if e.Auth != "" && !strings.Contains(detail, e.Auth) {
			// The Authentication-Results view ([auth]) of the message.
			detail = strings.TrimSpace(detail + " Authentication-Results: " + e.Auth)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Message, dec, e.Rule,
			e.Client, e.From, e.Subject, detail)
	}
	return tw.Flush()
}
