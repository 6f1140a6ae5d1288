package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/psa"
	"psagate/internal/route"
)

func cmdPSA(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "test" && args[0] != "lookup" && args[0] != "fake") {
		fmt.Fprintln(stderr, "usage: psagate psa test|lookup -config FILE [-client NAME] [-live] [WHAT]\n       psagate psa fake "+strings.Join(fakeNames(), "|")+" [-listen ADDR]")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	sub, args := args[0], args[1:]
	if sub == "fake" {
		return cmdPSAFake(args, stdout, stderr)
	}
	fs, cfgPath := newFlags("psa "+sub, stderr)
	client := fs.String("client", "", "use this client's effective settings (test: this client and its devices; default: every scope)")
	device := fs.String("device", "", "use this device's effective settings (with -client)")
	live := fs.Bool("live", false, "test: also create a test ticket, add a note and an attachment, and close it (writes to the PSA)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *client != "" && cfg.Client(*client) == nil {
		return fmt.Errorf("no client %q in %s", *client, cfg.File)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	providers := app.DefaultProviders(io.Discard, nil, quiet)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// Whatever a PSA or a library echoes, no configured secret reaches the terminal.
	out := &scrubWriter{w: stdout}
	out.add(cfg.Secrets())
	router := route.New(cfg)
	switch sub {
	case "test":
		if *live {
			return psaLive(ctx, out, cfg, router, providers, *client, *device)
		}
		return psaTestScopes(ctx, out, cfg, router, providers, testScopes(cfg, *client, *device))
	case "lookup":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: psagate psa lookup -config FILE [-client NAME] WHAT")
			return errUsage
		}
		s := router.Effective(*client, *device, nil)
		p, ok := providers[s.Provider()].(psa.Checker)
		if !ok {
			return nothingToTest(s.Provider())
		}
		vals, err := p.Lookup(ctx, s, strings.ToLower(fs.Arg(0)))
		if err != nil {
			return fmt.Errorf("%s", s.Scrub(err.Error()))
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tDETAIL")
		for _, v := range vals {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", v.ID, v.Name, v.Detail)
		}
		return tw.Flush()
	}
	fmt.Fprintf(stderr, "psagate psa: unknown subcommand %q (test, lookup or fake)\n", sub)
	return errUsage
}

// nothingToTest is the error for a provider without a connection test.
func nothingToTest(prov string) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var testable []string
	for _, d := range psa.Registered() {
		if _, ok := d.New(psa.Env{Logger: quiet}).(psa.Checker); ok {
			testable = append(testable, fmt.Sprintf("%q", d.Name))
		}
	}
	return &exitError{code: 1, err: fmt.Errorf("provider %q has nothing to test: set [psa] provider = %s", prov, strings.Join(testable, " or "))}
}

// scope is one place whose effective PSA settings psa test checks.
type scope struct{ title, client, device string }

// testScopes lists the scopes psa test checks: by default the organisation
// defaults, every client and every device override, so a value that only a
// device sets (a status its board lacks) is found before its first alert;
// with -client that client and its devices; with -device that device.
func testScopes(cfg *config.Config, client, device string) []scope {
	if client != "" && device != "" {
		return []scope{{"client " + client + ", device " + device, client, device}}
	}
	var out []scope
	if client == "" {
		out = append(out, scope{"organisation settings", "", ""})
	}
	for _, c := range cfg.Clients {
		if client != "" && !strings.EqualFold(client, c.Name) {
			continue
		}
		out = append(out, scope{"client " + c.Name, c.Name, ""})
		for _, d := range c.Device {
			out = append(out, scope{"client " + c.Name + ", device " + d.Name, c.Name, d.Name})
		}
	}
	return out
}

// psaTestScopes runs the provider's Test once for each distinct set of
// effective settings and reports every scope; it fails when any does.
func psaTestScopes(ctx context.Context, out io.Writer, cfg *config.Config, router *route.Router, providers map[string]psa.Provider, scopes []scope) error {
	done := map[string]string{} // settings → title of the scope that tested them
	results := map[string]error{}
	var failed []string
	for i, sc := range scopes {
		if i > 0 {
			fmt.Fprintln(out)
		}
		s := router.Effective(sc.client, sc.device, nil)
		prov := s.Provider()
		key := s.String()
		if first, ok := done[key]; ok {
			status := "OK"
			if results[key] != nil {
				status = "FAILED"
				failed = append(failed, sc.title)
			}
			fmt.Fprintf(out, "Testing %s (%s): the same settings as %s: %s\n", prov, sc.title, first, status)
			continue
		}
		done[key] = sc.title
		p, ok := providers[prov].(psa.Checker)
		if !ok {
			fmt.Fprintf(out, "Testing %s (%s): provider %q makes no PSA calls: nothing to test\n", prov, sc.title, prov)
			continue
		}
		fmt.Fprintf(out, "Testing %s (%s)\n", prov, sc.title)
		var err error
		if errs := p.Validate(s); len(errs) > 0 {
			for _, e := range errs {
				fmt.Fprintf(out, "  ✗ %s\n", s.Scrub(e.Error()))
			}
			err = fmt.Errorf("settings")
		} else {
			err = p.Test(ctx, s, out)
		}
		results[key] = err
		if err != nil {
			failed = append(failed, sc.title)
		}
	}
	if len(scopes) > 1 {
		fmt.Fprintf(out, "\n%d scope(s) tested, %d failed\n", len(scopes), len(failed))
	}
	if len(failed) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("connection test failed for %s: fix the settings above in %s", strings.Join(failed, "; "), cfg.File)}
	}
	return nil
}

// psaLive proves write access: it opens a ticket marked as a test, adds a
// note and a small attachment and closes it, printing what the PSA
// answered at each step. The first failure ends it with exit status 1.
func psaLive(ctx context.Context, out io.Writer, cfg *config.Config, router *route.Router, providers map[string]psa.Provider, client, device string) error {
	s := router.Effective(client, device, nil)
	prov := s.Provider()
	p := providers[prov]
	if _, ok := p.(psa.Checker); !ok || p == nil {
		return nothingToTest(prov)
	}
	title := "organisation settings"
	if client != "" {
		title = "client " + client
	}
	fmt.Fprintf(out, "Live test of %s (%s): this writes a test ticket to the PSA\n", prov, title)
	call := psa.Call{Settings: s}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	fail := func(step string, err error) error {
		msg := s.Scrub(err.Error())
		fmt.Fprintf(out, "  ✗ %s: FAILED: %s\n", step, msg)
		var pe *psa.Error
		if errors.As(err, &pe) && pe.Reason == psa.ReasonPermission {
			fmt.Fprintf(out, "    the API user can read but not %s: give it the permissions to create and edit tickets, notes and attachments\n", step)
		}
		return &exitError{code: 1, err: fmt.Errorf("live test failed at %s: %s", step, msg)}
	}
	ref, err := p.Create(ctx, call, psa.Ticket{
		Summary:     "psagate connection test - safe to close and delete",
		Description: "psagate opened this ticket to prove it can create, note, attach and close tickets (psagate psa test -live). It closes it at once.",
		ExternalRef: "psagate-test:" + stamp,
		Key:         "psagate/connection-test",
		Client:      client,
		Device:      device,
	})
	if err != nil {
		return fail("create", err)
	}
	fmt.Fprintf(out, "  ✓ create: OK, ticket %s\n", ref)
	if err := p.AddNote(ctx, call, ref, psa.Note{Title: "psagate connection test", Text: "A note from psagate's connection test.", Kind: psa.NoteDiscussion, Marker: "test-note-" + stamp}); err != nil {
		return fail("note", err)
	}
	fmt.Fprintln(out, "  ✓ note: OK")
	if err := p.Attach(ctx, call, ref, psa.Attachment{Name: "psagate-test.txt", ContentType: "text/plain", Data: []byte("psagate connection test attachment\n"), Marker: "test-attach-" + stamp}); err != nil {
		return fail("attach", err)
	}
	fmt.Fprintln(out, "  ✓ attach: OK, psagate-test.txt (35 bytes)")
	if err := p.Close(ctx, call, ref, psa.Note{Title: "Resolved", Text: "psagate connection test finished.", Kind: psa.NoteResolution, Marker: "test-close-" + stamp}); err != nil {
		return fail("close", err)
	}
	fmt.Fprintf(out, "  ✓ close: OK, ticket %s closed\n", ref)
	fmt.Fprintln(out, "Live test succeeded: psagate can create, note, attach and close tickets")
	return nil
}

// interrupted is the context psa fake runs under; tests replace it.
var interrupted = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// cmdPSAFake runs one of the project's PSA fakes as a server and prints
// the config that talks to it, so an admin can rehearse the whole flow
// before having API keys.
func cmdPSAFake(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("psa fake", stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (Autotask: the zone discovery listener; the zone takes a free port beside it)")
	if len(args) > 0 && args[0] == dumpFlags {
		writeFlagDump(fs.Output(), fs)
		return errFlagsDumped
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fs.Usage()
			return flag.ErrHelp
		}
		fmt.Fprintf(stderr, "usage: psagate psa fake %s [-listen ADDR]\n", strings.Join(fakeNames(), "|"))
		return errUsage
	}
	which := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	d, ok := psa.Lookup(which)
	if !ok || d.Fake == nil {
		fmt.Fprintf(stderr, "psagate psa fake: unknown PSA %q (%s)\n", which, strings.Join(fakeNames(), " or "))
		return errUsage
	}
	srv, err := d.Fake(*listen)
	if err != nil {
		return fmt.Errorf("psa fake: %w", err)
	}
	settings, stop, note := srv.Settings, srv.Close, srv.About
	defer stop()
	ctx, cancel := interrupted()
	defer cancel()
	fmt.Fprintf(stdout, "# psagate's %s fake is running (%s).\n", which, note)
	fmt.Fprintln(stdout, "# Its credentials are fixed test values, not secrets. Put this in a config and run")
	fmt.Fprintln(stdout, "# `psagate psa test` or `psagate serve`; Ctrl-C stops the fake (its tickets are kept in memory only).")
	fmt.Fprintln(stdout, "[psa]")
	fmt.Fprintf(stdout, "provider = %q\n", which)
	fmt.Fprintf(stdout, "[psa.%s]\n", which)
	keys := slices.Sorted(maps.Keys(settings.Section(which)))
	sec := settings.Section(which)
	for _, k := range keys {
		fmt.Fprintf(stdout, "%s = %q\n", k, sec[k])
	}
	fmt.Fprintln(stdout, "# end of config")
	<-ctx.Done()
	fmt.Fprintln(stdout, "# fake stopped")
	return nil
}

func cmdClients(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("clients", stderr)
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	if err := atMostArgs(fs, stderr, 1); err != nil {
		return err
	}
	cfg, err := config.LoadWithoutSecrets(*cfgPath)
	if err != nil {
		return err
	}
	r := route.New(cfg)
	want := fs.Arg(0)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	show := func(title, client, device string) {
		fmt.Fprintln(tw, title)
		for _, o := range r.Trace(client, device, nil, "") {
			fmt.Fprintf(tw, "  %s\t= %q\t(%s)\n", o.Key, o.Value, o.From)
		}
	}
	if want == "" {
		show("organisation defaults ([psa])", "", "")
		fmt.Fprintln(tw)
	}
	found := false
	for _, c := range cfg.Clients {
		if want != "" && !strings.EqualFold(want, c.Name) {
			continue
		}
		found = true
		state := "enabled"
		if !c.Enabled {
			state = "DISABLED: decisions are recorded, no PSA calls"
		}
		show(fmt.Sprintf("client %s (%s)", c.Name, state), c.Name, "")
		if len(c.Recipients) > 0 {
			fmt.Fprintf(tw, "  matched by recipients\t%s\n", strings.Join(c.Recipients, ", "))
		}
		if len(c.Senders) > 0 {
			fmt.Fprintf(tw, "  matched by senders\t%s\n", strings.Join(c.Senders, ", "))
		}
		if len(c.Devices) > 0 {
			fmt.Fprintf(tw, "  matched by devices\t%s\n", strings.Join(c.Devices, ", "))
		}
		for _, d := range c.Device {
			show(fmt.Sprintf("  device %s", d.Name), c.Name, d.Name)
		}
		fmt.Fprintln(tw)
	}
	if want != "" && !found {
		tw.Flush()
		return fmt.Errorf("no client %q in %s (messages for unknown clients use the organisation defaults, shown as client %q)", want, cfg.File, route.DefaultClient)
	}
	if want == "" {
		defaultMail(tw, cfg)
	}
	return tw.Flush()
}

// fakeNames are the providers that ship a fake.
func fakeNames() []string {
	var out []string
	for _, d := range psa.Registered() {
		if d.Fake != nil {
			out = append(out, d.Name)
		}
	}
	return out
}
