package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/gateway"
	"psagate/internal/store"
)

// dayTwo are the admin actions of incidents, silence and quarantine:
// *app.Ops on the database file, remoteOps through a running server.
type dayTwo interface {
	ShowIncident(id uint64) (*gateway.IncidentHistory, error)
	CloseIncident(id uint64, note string, psaToo bool, by string) (*store.Incident, error)
	ForgetIncident(id uint64, by string) (*store.Incident, error)
	Silences() ([]*store.Silence, error)
	AddSilence(r app.SilenceRequest, by string) (*store.Silence, error)
	ExpireSilence(id uint64, by string) (*store.Silence, error)
	Quarantine() ([]*store.SpoolEntry, error)
	ShowQuarantined(id string) (*app.QuarantinedMessage, error)
	Release(id, as, by string) (*gateway.Verdict, error)
	DeleteQuarantined(id, by string) error
}

// openDayTwo reaches the state of the config at cfgPath for an admin action.
func openDayTwo(cfgPath string) (dayTwo, stateAccess, error) {
	cfg, err := config.LoadWithoutSecrets(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	st, err := openState(cfg)
	if err != nil {
		return nil, nil, err
	}
	switch s := st.(type) {
	case *direct:
		snap, err := app.LoadSnapshotWithoutSecrets(cfgPath)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		return &app.Ops{DB: s.db, Snap: func() *gateway.Snapshot { return snap }, Now: time.Now}, st, nil
	case *remote:
		return &remoteOps{s}, st, nil
	}
	st.Close()
	return nil, nil, fmt.Errorf("unknown state access %T", st)
}

// remoteOps runs the actions in the server; it says who asks by the
// socket's peer credentials, not by what the client claims.
type remoteOps struct{ r *remote }

func (o *remoteOps) ShowIncident(id uint64) (*gateway.IncidentHistory, error) {
	var h gateway.IncidentHistory
	return &h, o.r.do("GET", fmt.Sprintf("/admin/incidents/%d", id), &h)
}

func (o *remoteOps) CloseIncident(id uint64, note string, psaToo bool, _ string) (*store.Incident, error) {
	q := url.Values{"note": {note}}
	if psaToo {
		q.Set("psa", "1")
	}
	var inc store.Incident
	return &inc, o.r.do("POST", fmt.Sprintf("/admin/incidents/%d/close?%s", id, q.Encode()), &inc)
}

func (o *remoteOps) ForgetIncident(id uint64, _ string) (*store.Incident, error) {
	var inc store.Incident
	return &inc, o.r.do("POST", fmt.Sprintf("/admin/incidents/%d/forget", id), &inc)
}

func (o *remoteOps) Silences() ([]*store.Silence, error) {
	var out []*store.Silence
	return out, o.r.do("GET", "/admin/silences", &out)
}

func (o *remoteOps) AddSilence(r app.SilenceRequest, _ string) (*store.Silence, error) {
	q := url.Values{"client": {r.Client}, "device": {r.Device}, "rule": {r.Rule}, "comment": {r.Comment}, "for": {r.For.String()}}
	var s store.Silence
	return &s, o.r.do("POST", "/admin/silences?"+q.Encode(), &s)
}

func (o *remoteOps) ExpireSilence(id uint64, _ string) (*store.Silence, error) {
	var s store.Silence
	return &s, o.r.do("POST", fmt.Sprintf("/admin/silences/%d/expire", id), &s)
}

func (o *remoteOps) Quarantine() ([]*store.SpoolEntry, error) {
	var out []*store.SpoolEntry
	return out, o.r.do("GET", "/admin/quarantine", &out)
}

func (o *remoteOps) ShowQuarantined(id string) (*app.QuarantinedMessage, error) {
	var m app.QuarantinedMessage
	return &m, o.r.do("GET", "/admin/quarantine/"+url.PathEscape(id), &m)
}

func (o *remoteOps) Release(id, as, _ string) (*gateway.Verdict, error) {
	var v gateway.Verdict
	return &v, o.r.do("POST", "/admin/quarantine/"+url.PathEscape(id)+"/release?"+url.Values{"as": {as}}.Encode(), &v)
}

func (o *remoteOps) DeleteQuarantined(id, _ string) error {
	var out map[string]string
	return o.r.do("POST", "/admin/quarantine/"+url.PathEscape(id)+"/delete", &out)
}

// verbArgs checks that a verb got exactly n positional arguments and only
// the flags it takes (besides -config and -json).
func verbArgs(fs *flag.FlagSet, stderr io.Writer, usage string, n int, flags ...string) error {
	if fs.NArg()-1 != n {
		fmt.Fprintf(stderr, "usage: %s\n", usage)
		return errUsage
	}
	var bad []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "config" && f.Name != "json" && !contains(flags, f.Name) {
			bad = append(bad, "-"+f.Name)
		}
	})
	if len(bad) > 0 {
		fmt.Fprintf(stderr, "%s does not take %s\nusage: %s\n", fs.Arg(0), strings.Join(bad, ", "), usage)
		return errUsage
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func idArg(fs *flag.FlagSet, what string) (uint64, error) {
	id, err := strconv.ParseUint(fs.Arg(1), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s id %q is not a number", what, fs.Arg(1))
	}
	return id, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// incidentVerb runs incidents close|forget|show.
func incidentVerb(fs *flag.FlagSet, cfgPath string, note string, psaToo, asJSON bool, stdout, stderr io.Writer) error {
	usages := map[string]string{
		"close":  "psagate incidents -config FILE close ID [-note TEXT] [-psa]",
		"forget": "psagate incidents -config FILE forget ID",
		"show":   "psagate incidents -config FILE show ID [-json]",
	}
	verb := fs.Arg(0)
	usage, ok := usages[verb]
	if !ok {
		fmt.Fprintf(stderr, "psagate incidents: unknown action %q (list, close ID, forget ID, show ID)\n", verb)
		return errUsage
	}
	var allowed []string
	if verb == "close" {
		allowed = []string{"note", "psa"}
	}
	if err := verbArgs(fs, stderr, usage, 1, allowed...); err != nil {
		return err
	}
	id, err := idArg(fs, "incident")
	if err != nil {
		return err
	}
	ops, st, err := openDayTwo(cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	switch verb {
	case "close":
		inc, err := ops.CloseIncident(id, note, psaToo, app.Me())
		if err != nil {
			return err
		}
		extra := ""
		if psaToo {
			extra = "; its ticket is being closed"
		}
		fmt.Fprintf(stdout, "incident %d (%s) is %s%s (via %s)\n", inc.ID, inc.Key, inc.State, extra, st.Via())
	case "forget":
		inc, err := ops.ForgetIncident(id, app.Me())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "incident %d (%s) forgotten: the next mail for its key starts afresh (via %s)\n", inc.ID, inc.Key, st.Via())
	case "show":
		h, err := ops.ShowIncident(id)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, h)
		}
		i := h.Incident
		fmt.Fprintf(stdout, "incident %d  %s  key %s\nclient %s  device %s  rule %s\nticket %s  psa status %q\nfirst %s  last %s  count %d  notes %d\nsummary: %s\n\n",
			i.ID, i.State, i.Key, i.Client, i.Device, i.Rule, i.Ticket, i.PSAStatus, i.FirstSeen.Local().Format(time.DateTime),
			i.LastSeen.Local().Format(time.DateTime), i.Count, i.Notes, i.Summary)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tMESSAGE\tDECISION\tSUBJECT\tDETAIL")
		for _, e := range h.Events {
			dec := e.Decision
			if e.Effect != "" {
				dec += " (" + e.Effect + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Message, dec, e.Subject, e.Detail)
		}
		for _, j := range h.Outbox {
			fmt.Fprintf(tw, "%s\tjob %d\t%s (queued)\t\t%s\n", j.Created.Local().Format(time.DateTime), j.ID, j.Op, j.LastError)
		}
		for _, j := range h.Dead {
			fmt.Fprintf(tw, "%s\tjob %d\t%s (dead)\t\t%s\n", j.DeadAt.Local().Format(time.DateTime), j.ID, j.Op, j.Reason)
		}
		return tw.Flush()
	}
	return nil
}

func cmdSilence(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("silence", stderr)
	var r app.SilenceRequest
	fs.StringVar(&r.Client, "client", "", "the client to silence (required)")
	fs.StringVar(&r.Device, "device", "", "only this device (a glob)")
	fs.StringVar(&r.Rule, "rule", "", "only this rule's mail")
	fs.DurationVar(&r.For, "for", 0, "how long, e.g. 4h (required)")
	fs.StringVar(&r.Comment, "comment", "", "why (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	usage := "psagate silence -config FILE add -client C [-device D] [-rule R] -for 4h -comment TEXT | list | expire ID"
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: "+usage)
		return errUsage
	}
	var err error
	switch fs.Arg(0) {
	case "add":
		err = verbArgs(fs, stderr, usage, 0, "client", "device", "rule", "for", "comment")
	case "list":
		err = verbArgs(fs, stderr, usage, 0)
	case "expire":
		err = verbArgs(fs, stderr, usage, 1)
	default:
		fmt.Fprintf(stderr, "psagate silence: unknown action %q (add, list, expire ID)\n", fs.Arg(0))
		return errUsage
	}
	if err != nil {
		return err
	}
	ops, st, err := openDayTwo(*cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	switch fs.Arg(0) {
	case "add":
		if r.For <= 0 {
			return fmt.Errorf("-for is required: how long the silence lasts, e.g. -for 4h")
		}
		s, err := ops.AddSilence(r, app.Me())
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, s)
		}
		fmt.Fprintf(stdout, "silence %d: client %s until %s (via %s)\n", s.ID, s.Client, s.End.Local().Format(time.DateTime), st.Via())
	case "list":
		ss, err := ops.Silences()
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, ss)
		}
		now := time.Now()
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tCLIENT\tDEVICE\tRULE\tENDS\tMATCHED\tBY\tCOMMENT")
		for _, s := range ss {
			state := "active"
			switch {
			case !s.Expired.IsZero():
				state = "expired by " + s.ExpiredBy
			case !now.Before(s.End):
				state = "ended"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.ID, state, s.Client, s.Device, s.Rule,
				s.End.Local().Format(time.DateTime), s.Matched, s.By, s.Comment)
		}
		return tw.Flush()
	case "expire":
		id, err := idArg(fs, "silence")
		if err != nil {
			return err
		}
		s, err := ops.ExpireSilence(id, app.Me())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "silence %d expired; the %d mails it held back are caught up (via %s)\n", s.ID, s.Matched, st.Via())
	}
	return nil
}

func cmdQuarantine(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("quarantine", stderr)
	as := fs.String("as", "", "release: handle the mail as this decision (ticket) whatever the rules say")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	usage := "psagate quarantine -config FILE list | show ID | release ID [-as ticket] | delete ID"
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: "+usage)
		return errUsage
	}
	var err error
	switch fs.Arg(0) {
	case "list":
		err = verbArgs(fs, stderr, usage, 0)
	case "show", "delete":
		err = verbArgs(fs, stderr, usage, 1)
	case "release":
		err = verbArgs(fs, stderr, usage, 1, "as")
	default:
		fmt.Fprintf(stderr, "psagate quarantine: unknown action %q (list, show ID, release ID, delete ID)\n", fs.Arg(0))
		return errUsage
	}
	if err != nil {
		return err
	}
	ops, st, err := openDayTwo(*cfgPath)
	if err != nil {
		return err
	}
	defer st.Close()
	id := fs.Arg(1)
	switch fs.Arg(0) {
	case "list":
		l, err := ops.Quarantine()
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, l)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "quarantine: %d message(s)\n", len(l))
		fmt.Fprintln(tw, "ID\tRECEIVED\tFROM\tTO\tSIZE\tREASON")
		for _, e := range l {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", e.ID, e.Received.Local().Format(time.DateTime), e.MailFrom,
				strings.Join(e.RcptTo, ","), e.Size, e.Reason)
		}
		return tw.Flush()
	case "show":
		m, err := ops.ShowQuarantined(id)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, m)
		}
		e := m.Entry
		fmt.Fprintf(stdout, "id: %s\nreceived: %s\nfrom: %s\nto: %s\nremote: %s\nreason: %s\nsize: %d\n\n%s",
			e.ID, e.Received.Local().Format(time.DateTime), e.MailFrom, strings.Join(e.RcptTo, ", "), e.RemoteIP, e.Reason, e.Size, m.Raw)
	case "release":
		v, err := ops.Release(id, *as, app.Me())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "released %s: %s by rule %q (via %s)\n", id, v.Action, v.Rule, st.Via())
	case "delete":
		if err := ops.DeleteQuarantined(id, app.Me()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s (via %s)\n", id, st.Via())
	}
	return nil
}

// atMostArgs refuses more than n positional arguments: a typo must not be
// silently ignored (today's "incidents ... close 3" listed and exited 0).
func atMostArgs(fs *flag.FlagSet, stderr io.Writer, n int) error {
	if fs.NArg() > n {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(n))
		fs.Usage()
		return errUsage
	}
	return nil
}
