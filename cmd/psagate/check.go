package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/psa"
	"psagate/internal/route"
	"psagate/internal/rules"
)

// cmdCheck validates the config and every rule file and prints every
// problem, one "file:line: message" a line, not only the first.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("check", stderr)
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	if err := atMostArgs(fs, stderr, 0); err != nil {
		return err
	}
	problems := 0
	report := func(err error) {
		var ce config.Errors
		var le *rules.LoadError
		switch {
		case errors.As(err, &ce):
			for _, e := range ce {
				fmt.Fprintln(stdout, e.Error())
				problems++
			}
		case errors.As(err, &le):
			for _, e := range le.Errs {
				fmt.Fprintln(stdout, e.Error())
				problems++
			}
		default:
			fmt.Fprintln(stdout, err.Error())
			problems++
		}
	}
	// LoadPartial, not Load: with it a config error does not stop the check
	// of the rule files, which need only [rules] dir.
	cfg, cerr := config.LoadPartial(*cfgPath)
	if cerr != nil {
		report(cerr)
	}
	if cfg == nil { // unreadable, or not TOML: nothing more to go on
		return &exitError{code: 1, err: fmt.Errorf("%d problem(s) found", problems)}
	}
	var rs *rules.Set
	if rulesDirKnown(cerr) {
		var rerr error
		rs, rerr = rules.Load(cfg.Rules.Dir, rules.Options{DefaultAction: rules.Action(cfg.Rules.DefaultAction)})
		if rerr != nil {
			report(rerr)
		} else if gerr := rules.GuardCount(cfg.Rules.Dir, len(rs.Rules()), 0, cfg.Rules.AllowEmpty); gerr != nil {
			report(gerr)
		}
	}
	if cerr != nil {
		// The provider checks below would look at settings the loader had to
		// leave out (an unresolved secret, a key of the wrong type) and
		// report the same fault a second time, in other words.
		return &exitError{code: 1, err: fmt.Errorf("%d problem(s) found", problems)}
	}
	// Static provider checks (site form, missing credentials) for every
	// distinct effective setting: the org and each client and device.
	providers := app.DefaultProviders(io.Discard, nil, nil)
	r := route.New(cfg)
	type scope struct{ label, client, device string }
	scopes := []scope{{label: "[psa]"}}
	for _, c := range cfg.Clients {
		scopes = append(scopes, scope{label: fmt.Sprintf("client %q", c.Name), client: c.Name})
		for _, d := range c.Device {
			scopes = append(scopes, scope{label: fmt.Sprintf("client %q device %q", c.Name, d.Name), client: c.Name, device: d.Name})
		}
	}
	seen := map[string]bool{}
	for _, sc := range scopes {
		s := r.Effective(sc.client, sc.device, nil)
		chk, ok := providers[s.Provider()].(psa.Checker)
		if !ok {
			continue
		}
		var msgs []string
		for _, e := range chk.Validate(s) {
			msgs = append(msgs, s.Scrub(e.Error()))
		}
		sort.Strings(msgs)
		for _, m := range msgs {
			line := fmt.Sprintf("%s: %s: %s", cfg.File, sc.label, m)
			if !seen[m] { // one report per problem, not per client that inherits it
				seen[m] = true
				fmt.Fprintln(stdout, line)
				problems++
			}
		}
	}
	if problems > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d problem(s) found", problems)}
	}
	for _, w := range internetWarnings(cfg, rs) {
		fmt.Fprintf(stdout, "%s: warning: %s\n", cfg.File, w)
	}
	files := map[string]bool{}
	for _, ru := range rs.Rules() {
		files[ru.File] = true
	}
	fmt.Fprintf(stdout, "OK: %s: %d rules in %d files, %d clients, provider %s\n", cfg.File, len(rs.Rules()), len(files), len(cfg.Clients), cfg.PSA.Provider())
	return nil
}

// rulesDirKnown reports whether the config's [rules] dir can be trusted
// despite err: not when the value itself, or its section, was bad and the
// default stands in for it, which would check some other directory.
func rulesDirKnown(err error) bool {
	var ce config.Errors
	if !errors.As(err, &ce) {
		return err == nil
	}
	for _, e := range ce {
		if e.Key == "rules" || e.Key == "rules.dir" {
			return false
		}
	}
	return true
}

// internetWarnings are what is legal but dangerous in a config whose SMTP
// listener is open to the whole internet (allowed_networks holds 0.0.0.0/0
// or ::/0) without SMTP AUTH: anyone can then send a mail that claims to
// be a vendor's "backup succeeded" and close a real ticket, unless
// require_auth makes psagate check the vendor's DKIM/SPF. They do not fail
// the check: a lab set-up may mean it.
func internetWarnings(cfg *config.Config, rs *rules.Set) []string {
	open := ""
	for _, p := range cfg.SMTP.AllowedPrefixes {
		if p.Bits() == 0 {
			open = p.String()
			break
		}
	}
	smtpAuth := len(cfg.SMTP.Users) > 0 // require_auth defaults to true when users exist
	if cfg.SMTP.RequireAuth != nil {
		smtpAuth = *cfg.SMTP.RequireAuth
	}
	if open == "" || smtpAuth {
		return nil
	}
	var without []string
	for _, c := range cfg.Clients {
		if len(c.RequireAuth) == 0 {
			without = append(without, c.Name)
		}
	}
	ruleAuth := false
	for _, r := range rs.Rules() {
		ruleAuth = ruleAuth || len(r.RequireAuth) > 0
	}
	switch {
	case len(without) == len(cfg.Clients) && !ruleAuth:
		return []string{fmt.Sprintf("smtp.allowed_networks includes %s (the whole internet) and no client or rule has require_auth: "+
			"anyone can send a forged vendor recovery that closes a real ticket; set require_auth = [\"vendor.example\"] on every client (docs/internet.md)", open)}
	case len(without) > 0:
		return []string{fmt.Sprintf("smtp.allowed_networks includes %s (the whole internet) and these clients have no require_auth: %s (docs/internet.md)",
			open, strings.Join(without, ", "))}
	}
	return nil
}
