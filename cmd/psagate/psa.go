package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/psa"
	"psagate/internal/route"
)

func cmdPSA(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: psagate psa test|lookup -config FILE [-client NAME] [WHAT]")
		return errUsage
	}
	sub, args := args[0], args[1:]
	fs, cfgPath := newFlags("psa "+sub, stderr)
	client := fs.String("client", "", "use this client's effective settings (default: the organisation's)")
	device := fs.String("device", "", "use this device's effective settings (with -client)")
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
	s := route.New(cfg).Effective(*client, *device, nil)
	prov := s.Provider()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, ok := app.DefaultProviders(io.Discard, nil, quiet)[prov].(psa.Checker)
	if !ok {
		var testable []string
		for _, d := range psa.Registered() {
			if _, ok := d.New(psa.Env{Logger: quiet}).(psa.Checker); ok {
				testable = append(testable, fmt.Sprintf("%q", d.Name))
			}
		}
		return &exitError{code: 1, err: fmt.Errorf("provider %q has nothing to test: set [psa] provider = %s", prov, strings.Join(testable, " or "))}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// Whatever a PSA or a library echoes, no configured secret reaches the terminal.
	out := &scrubWriter{w: stdout}
	out.add(cfg.Secrets())
	switch sub {
	case "test":
		scope := "organisation settings"
		if *client != "" {
			scope = "client " + *client
		}
		fmt.Fprintf(out, "Testing %s (%s)\n", prov, scope)
		if errs := p.Validate(s); len(errs) > 0 {
			for _, e := range errs {
				fmt.Fprintf(out, "  ✗ %s\n", s.Scrub(e.Error()))
			}
			return &exitError{code: 1, err: fmt.Errorf("connection test failed: fix the settings above in %s", cfg.File)}
		}
		if err := p.Test(ctx, s, out); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("connection test failed: %s", s.Scrub(err.Error()))}
		}
		return nil
	case "lookup":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: psagate psa lookup -config FILE [-client NAME] WHAT")
			return errUsage
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
	fmt.Fprintf(stderr, "psagate psa: unknown subcommand %q (test or lookup)\n", sub)
	return errUsage
}

func cmdClients(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("clients", stderr)
	if err := parseFlags(fs, cfgPath, args); err != nil {
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
