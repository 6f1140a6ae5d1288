package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/gateway"
	"psagate/internal/incident"
	"psagate/internal/mailbox"
	"psagate/internal/message"
	"psagate/internal/psa"
	"psagate/internal/rules"
	"psagate/internal/store"
)

// tryLine is one message's result in `try -json`.
type tryLine struct {
	File     string          `json:"file"`
	ID       string          `json:"id"`
	At       string          `json:"at"`
	Decision rules.Action    `json:"decision"`
	Effect   incident.Effect `json:"effect,omitempty"`
	Rule     string          `json:"rule"`
	Audit    []string        `json:"audit,omitempty"`
	Client   string          `json:"client"`
	Device   string          `json:"device,omitempty"`
	Key      string          `json:"key"`
	Summary  string          `json:"summary"`
	Incident uint64          `json:"incident,omitempty"`
	Jobs     []string        `json:"jobs,omitempty"`
	Timers   []string        `json:"timers,omitempty"`
	Detail   string          `json:"detail,omitempty"`
	Problems []string        `json:"problems,omitempty"`
	Reject   string          `json:"reject_text,omitempty"`
	Auth     string          `json:"auth,omitempty"`
	Guard    string          `json:"guard,omitempty"`
	Was      rules.Action    `json:"was,omitempty"`
}

func cmdTry(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("try", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object a line")
	explain := fs.Bool("explain", false, "show, per rule, which condition held or failed")
	statePath := fs.String("state", "", "start from a copy of this state database (default: empty state)")
	from := fs.String("from", "", "envelope sender (default: the From header)")
	rcpt := fs.String("rcpt", "", "envelope recipient (default: the To header)")
	ip := fs.String("ip", "", "SMTP client address, for the SPF check of [auth] (default: none, SPF is not checked)")
	helo := fs.String("helo", "", "HELO name, for the SPF check of a bounce")
	summary := fs.Bool("summary", false, "print counts per decision, rule and client, and the mails left to the fallback or default_action, instead of each message")
	candidate := fs.String("rules", "", "also run the rule set in this directory and print only the messages whose decision changes")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "psagate try: give one or more .eml files, mbox files or Maildir directories")
		return errUsage
	}
	snap, err := app.LoadSnapshotWithoutSecrets(*cfgPath)
	if err != nil {
		return err
	}
	var seed func(string) error
	if *statePath != "" {
		seed = func(dst string) error { return copyState(snap.Config, *statePath, dst) }
	}
	var remote netip.Addr
	if *ip != "" {
		if remote, err = netip.ParseAddr(*ip); err != nil {
			return fmt.Errorf("-ip %q: %w", *ip, err)
		}
	}
	tr, err := gateway.NewTrial(snap, seed)
	if err != nil {
		return err
	}
	defer tr.Close()
	tr.Auth = app.NewAuthChecker(snap.Config, time.Now)
	// -rules: a second trial, with its own scratch state, runs the
	// candidate rule set over the same messages in the same order.
	var cand *gateway.Trial
	if *candidate != "" {
		rs, err := rules.Load(*candidate, rules.Options{DefaultAction: rules.Action(snap.Config.Rules.DefaultAction)})
		if err != nil {
			return fmt.Errorf("-rules %s: %w", *candidate, err)
		}
		if cand, err = gateway.NewTrial(gateway.NewSnapshot(snap.Config, rs), seed); err != nil {
			return err
		}
		defer cand.Close()
		cand.Auth = app.NewAuthChecker(snap.Config, time.Now)
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	sumNow, sumCand := newTrySummary(), newTrySummary()
	perMessage := !*summary && cand == nil
	failed, changed := 0, 0
	for _, path := range fs.Args() {
		err := mailbox.Each(path, int(snap.Config.SMTP.MaxMessageBytes), func(m mailbox.Message) error {
			if m.Err != nil {
				fmt.Fprintf(stderr, "psagate try: %s: %v\n", m.Name, m.Err)
				failed++
				return nil
			}
			env := envelopeFor(m.Raw, snap, *from, *rcpt)
			env.RemoteIP, env.Helo = remote, *helo
			id := gateway.NewID(time.Now())
			res, err := tr.Run(id, m.Raw, env, *explain && perMessage)
			if err != nil {
				return &runError{fmt.Errorf("%s: %w", m.Name, err)}
			}
			sumNow.add(m.Name, res)
			if cand != nil {
				cres, err := cand.Run(id, m.Raw, env, false)
				if err != nil {
					return &runError{fmt.Errorf("%s (candidate rules): %w", m.Name, err)}
				}
				sumCand.add(m.Name, cres)
				if decisionChanged(res, cres) {
					changed++
					if err := printChange(stdout, enc, *asJSON, m.Name, res, cres); err != nil {
						return &runError{err}
					}
				}
			}
			if !perMessage {
				return nil
			}
			line := toTryLine(m.Name, res)
			if *asJSON {
				if err := enc.Encode(line); err != nil {
					return &runError{err}
				}
			} else {
				printTry(stdout, line, res, snap)
			}
			if *explain {
				w := stdout
				if *asJSON {
					w = stderr
				}
				fmt.Fprintf(w, "  trace of %s:\n", m.Name)
				rules.FormatTrace(indent{w}, res.Trace)
			}
			return nil
		})
		var re *runError
		if errors.As(err, &re) {
			return re.err
		}
		if err != nil { // the file or mailbox could not be read
			fmt.Fprintln(stderr, "psagate try:", err)
			failed++
		}
	}
	switch {
	case cand != nil && !*asJSON:
		fmt.Fprintf(stdout, "%d of %d message(s) change decision with the rules in %s\n", changed, sumNow.total, *candidate)
	case perMessage && !*asJSON:
		printPending(stdout, tr)
	}
	if *summary {
		if err := sumNow.print(stdout, enc, *asJSON, "configured rules in "+snap.Config.Rules.Dir); err != nil {
			return err
		}
		if cand != nil {
			if err := sumCand.print(stdout, enc, *asJSON, "candidate rules in "+*candidate); err != nil {
				return err
			}
		}
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d file(s) or message(s) could not be read", failed)}
	}
	return nil
}

// runError is a failure of the trial itself, not of reading a mailbox: it
// ends the run.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }

// envelopeFor builds the SMTP envelope: the flags, else the Return-Path
// header (which the delivering server sets to the envelope sender; "<>"
// is the null sender of a bounce), else the From header, and the To
// header, as an appliance would have sent it. -from "<>" gives a null
// sender.
func envelopeFor(raw []byte, snap *gateway.Snapshot, from, rcpt string) message.Envelope {
	a := message.Decode(raw, message.Envelope{}, snap.Limits())
	env := message.Envelope{MailFrom: a.From, RcptTo: a.To}
	if rp := a.Header["return-path"]; len(rp) > 0 {
		env.MailFrom = returnPath(rp[0])
	}
	switch from {
	case "":
	case "<>":
		env.MailFrom = ""
	default:
		env.MailFrom = from
	}
	if rcpt != "" {
		env.RcptTo = strings.Split(rcpt, ",")
	}
	return env
}

func toTryLine(file string, r *gateway.TrialResult) tryLine {
	v := r.Verdict
	l := tryLine{File: file, ID: r.ID, At: r.At.UTC().Format(time.RFC3339), Decision: r.Decision, Effect: r.Effect,
		Rule: v.Rule, Audit: v.Audit, Client: v.Client, Device: v.Device, Key: v.Key, Summary: v.Summary,
		Problems: v.Problems, Auth: v.Auth, Guard: v.Guard, Was: v.Was}
	if r.Decision == rules.ActionReject {
		l.Reject = v.RejectText
	}
	if o := r.Outcome; o != nil {
		l.Detail = o.Detail
		if o.Incident != nil {
			l.Incident = o.Incident.ID
		}
		for _, j := range o.Jobs {
			d := j.Op
			if j.Op == store.OpAttach {
				d += " " + j.AttachName
			}
			l.Jobs = append(l.Jobs, d)
		}
	}
	for _, t := range r.Timers {
		s := fmt.Sprintf("%s (%s)", t.Decision, t.Effect)
		if t.Incident != nil {
			s += " " + t.Incident.Key
		}
		if t.Detail != "" {
			s += ": " + t.Detail
		}
		l.Timers = append(l.Timers, s)
	}
	return l
}

func printTry(w io.Writer, l tryLine, r *gateway.TrialResult, snap *gateway.Snapshot) {
	fmt.Fprintf(w, "%s\n", l.File)
	for _, t := range l.Timers {
		fmt.Fprintf(w, "  timer:    %s\n", t)
	}
	dec := string(l.Decision)
	if l.Effect != "" {
		dec += " (" + string(l.Effect) + ")"
	}
	fmt.Fprintf(w, "  decision: %s\n", dec)
	if l.Guard != "" {
		fmt.Fprintf(w, "  safety:   not %s, because %s\n", l.Was, l.Guard)
	}
	rule := l.Rule
	if r.Verdict.RuleFile != "" {
		rule += "  [" + r.Verdict.RuleFile + "]"
	}
	fmt.Fprintf(w, "  rule:     %s\n", rule)
	for _, a := range l.Audit {
		fmt.Fprintf(w, "  audit:    rule %q (mode = \"audit\") would have matched\n", a)
	}
	fmt.Fprintf(w, "  client:   %s\n", l.Client)
	if l.Auth != "" {
		fmt.Fprintf(w, "  auth:     Authentication-Results: %s\n", l.Auth)
	}
	if l.Device != "" {
		fmt.Fprintf(w, "  device:   %s\n", l.Device)
	}
	if l.Key != "" && l.Decision != rules.ActionDrop && l.Decision != rules.ActionReject {
		fmt.Fprintf(w, "  key:      %s\n", l.Key)
	}
	fmt.Fprintf(w, "  summary:  %s\n", l.Summary)
	if l.Reject != "" {
		fmt.Fprintf(w, "  reply:    550 %s\n", l.Reject)
	}
	if l.Incident != 0 {
		fmt.Fprintf(w, "  incident: %d\n", l.Incident)
	}
	if len(l.Jobs) > 0 {
		s := snap.Router.Effective(r.Verdict.Client, r.Verdict.Device, r.Verdict.Overrides)
		fmt.Fprintf(w, "  psa:      %s: %s\n", s.Provider(), strings.Join(l.Jobs, ", "))
		fmt.Fprintf(w, "  settings: %s\n", ticketSettings(s))
	}
	if l.Detail != "" {
		fmt.Fprintf(w, "  detail:   %s\n", l.Detail)
	}
	for _, p := range l.Problems {
		fmt.Fprintf(w, "  warning:  %s\n", p)
	}
}

// ticketSettings shows the effective settings that shape a ticket.
func ticketSettings(s psa.Settings) string {
	prov := s.Provider()
	sec := s.Redacted().Section(prov)
	var parts []string
	d, _ := psa.Lookup(prov)
	for _, k := range d.TicketKeys() {
		if v := sec[k]; v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return "(provider defaults)"
	}
	return strings.Join(parts, " ")
}

func printPending(w io.Writer, tr *gateway.Trial) {
	timers, open, err := tr.Pending()
	if err != nil || (len(timers) == 0 && len(open) == 0) {
		return
	}
	fmt.Fprintln(w, "after the last message:")
	for _, inc := range open {
		state := inc.State
		if inc.State == store.StatePending {
			state = "pending (hold-down until " + inc.DueAt.UTC().Format(time.RFC3339) + ")"
		}
		fmt.Fprintf(w, "  incident %d %s: %s — %s\n", inc.ID, state, inc.Key, inc.Summary)
	}
	for _, t := range timers {
		if t.Kind == "expect" {
			parts := strings.SplitN(t.Ref, "\x00", 3)
			if len(parts) == 3 {
				fmt.Fprintf(w, "  expected mail: rule %q, client %s, device %q due by %s\n", parts[0], parts[1], parts[2], t.At.UTC().Format(time.RFC3339))
			}
		}
	}
}

type indent struct{ w io.Writer }

func (i indent) Write(p []byte) (int, error) {
	s := strings.ReplaceAll(string(p), "\n", "\n    ")
	if strings.HasSuffix(s, "\n    ") {
		s = s[:len(s)-4]
	}
	if _, err := io.WriteString(i.w, "    "+s); err != nil {
		return 0, err
	}
	return len(p), nil
}

// copyState copies a state database for `try -state`: directly when no
// server holds it, else through the running server's admin API.
func copyState(cfg *config.Config, src, dst string) error {
	db, err := store.Open(src, store.Options{ReadOnly: true, LockTimeout: 300 * time.Millisecond})
	if err == nil {
		defer db.Close()
		return db.CopyTo(dst)
	}
	if !errors.Is(err, store.ErrLocked) {
		return err
	}
	resp, herr := app.AdminClient(cfg.HTTP.AdminSocket, 10*time.Minute).Get(app.AdminURL("/admin/backup"))
	if herr != nil {
		return fmt.Errorf("%w; and the admin API at %s did not answer: %v", err, cfg.HTTP.AdminSocket, herr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API backup: %s", resp.Status)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// returnPath takes the address of a Return-Path value: "<a@b>" gives
// "a@b", "<>" the null sender "".
func returnPath(v string) string {
	v = strings.TrimSpace(v)
	if lt := strings.IndexByte(v, '<'); lt >= 0 {
		if gt := strings.IndexByte(v[lt:], '>'); gt > 0 {
			v = v[lt+1 : lt+gt]
		}
	}
	return strings.ToLower(strings.TrimSpace(v))
}
