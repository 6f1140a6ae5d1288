package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/psa"
	"psagate/internal/route"
)

// defaultMail lists the recent mail that no [[client]] matched and so went
// to the default client (the organisation's PSA settings), grouped by
// recipient: the clients an admin has yet to add.
func defaultMail(w io.Writer, cfg *config.Config) {
	fmt.Fprintf(w, "mail routed to the %q client in the last 7 days (no [[client]] matched it):\n", route.DefaultClient)
	if _, err := os.Stat(cfg.State.Path); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintln(w, "  none (no state database yet)")
		return
	}
	st, err := openState(cfg)
	if err != nil {
		fmt.Fprintf(w, "  (cannot read the state: %v)\n", err)
		return
	}
	defer st.Close()
	entries, err := st.Audit(app.AuditFilter{Client: route.DefaultClient, Since: time.Now().Add(-7 * 24 * time.Hour), Limit: 10000})
	if err != nil {
		fmt.Fprintf(w, "  (cannot read the audit trail: %v)\n", err)
		return
	}
	type group struct {
		n          int
		last       time.Time
		from, subj string
	}
	groups := map[string]*group{}
	for _, e := range entries {
		if e.Client != route.DefaultClient || e.Message == "" {
			continue // timer entries, and clients whose name merely contains "default"
		}
		g := groups[e.Rcpt]
		if g == nil {
			g = &group{}
			groups[e.Rcpt] = g
		}
		g.n++
		if e.Time.After(g.last) {
			g.last, g.from, g.subj = e.Time, e.From, e.Subject
		}
	}
	if len(groups) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	rcpts := make([]string, 0, len(groups))
	for r := range groups {
		rcpts = append(rcpts, r)
	}
	sort.Slice(rcpts, func(i, j int) bool { return groups[rcpts[i]].n > groups[rcpts[j]].n })
	fmt.Fprintln(w, "  RECIPIENT\tMAILS\tLAST\tLAST FROM\tLAST SUBJECT")
	for _, r := range rcpts {
		g := groups[r]
		fmt.Fprintf(w, "  %s\t%d\t%s\t%s\t%s\n", r, g.n, g.last.Local().Format(time.DateTime), g.from, g.subj)
	}
}

// cmdClientsImport writes a [[client]] for every PSA company that no client
// maps yet, into a file of the [clients] dir. It never changes or
// overwrites an existing client, so running it again adds only companies
// new in the PSA; the result is loaded as the gateway would before it is
// kept.
func cmdClientsImport(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("clients import", stderr)
	matchDomain := fs.Bool("match-domain", false, "also match mail by sender: senders = [\"@domain\"] from the company's web site where the PSA has one")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.ClientsDir == "" {
		return fmt.Errorf("%s has no [clients] dir: add\n\n[clients]\ndir = \"clients.d\"\n\nand create that directory; import writes its clients there, never into %s itself", cfg.File, cfg.File)
	}
	s := route.New(cfg).Effective("", "", nil)
	prov := s.Provider()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	lister, ok := app.DefaultProviders(io.Discard, nil, quiet)[prov].(psa.CompanyLister)
	if !ok {
		return fmt.Errorf("provider %q has no companies to import: set [psa] provider to a PSA", prov)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	companies, err := lister.Companies(ctx, s)
	if err != nil {
		return fmt.Errorf("%s", s.Scrub(err.Error()))
	}
	out := &scrubWriter{w: stdout}
	out.add(cfg.Secrets())

	names, recipients, senders := map[string]bool{}, map[string]bool{}, map[string]bool{}
	mapped := map[string]string{} // PSA key=value → client
	for _, c := range cfg.Clients {
		names[strings.ToLower(c.Name)] = true
		for _, r := range c.Recipients {
			recipients[r] = true
		}
		for _, sd := range c.Senders {
			senders[sd] = true
		}
		for k, v := range c.PSA {
			mapped[k+"="+strings.ToLower(v)] = c.Name
		}
	}
	domain := cfg.SMTP.AcceptDomains[0]
	var blocks []string
	added, present := 0, 0
	for _, co := range companies {
		if who, ok := mapped[co.Key+"="+strings.ToLower(co.ID)]; ok {
			present++
			fmt.Fprintf(out, "  = %s %q: client %s\n", co.ID, co.Name, who)
			continue
		}
		name := slug(co.ID)
		if co.Numeric {
			name = slug(co.Name)
		}
		if name == "" {
			fmt.Fprintf(out, "  ! %s %q: no usable client name; add it by hand\n", co.ID, co.Name)
			continue
		}
		rcpt := name + "@" + domain
		if names[name] || recipients[rcpt] {
			fmt.Fprintf(out, "  ! %s %q: a client named %s or with recipient %s exists but maps another company; add it by hand\n", co.ID, co.Name, name, rcpt)
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "\n# %s company %s %s, imported %s\n", prov, co.ID, tomlString(co.Name), time.Now().UTC().Format(time.DateOnly))
		fmt.Fprintf(&b, "[[client]]\nname = %s\nrecipients = [%s]\n", tomlString(name), tomlString(rcpt))
		if d := psa.WebDomain(co.Website); *matchDomain && d != "" && !senders["@"+d] {
			fmt.Fprintf(&b, "senders = [%s]\n", tomlString("@"+d))
			senders["@"+d] = true
		}
		value := tomlString(co.ID)
		if co.Numeric {
			value = co.ID
		}
		fmt.Fprintf(&b, "[client.psa]\n%s = %s\n", co.Key, value)
		blocks = append(blocks, b.String())
		names[name], recipients[rcpt] = true, true
		added++
		fmt.Fprintf(out, "  + %s %q: client %s, recipient %s\n", co.ID, co.Name, name, rcpt)
	}
	if added == 0 {
		fmt.Fprintf(out, "nothing to add: %d companies, %d already mapped\n", len(companies), present)
		return nil
	}
	file := filepath.Join(cfg.ClientsDir, "psa-"+prov+".toml")
	old, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	content := string(old)
	if content == "" {
		content = fmt.Sprintf("# Clients imported from %s by `psagate clients import`. Edit freely: a client\n# already here (same PSA company) is never written again.\n", prov)
	}
	content += strings.Join(blocks, "")
	if err := writeAtomic(file, []byte(content)); err != nil {
		return err
	}
	// Load the config with the new file as serve and check would; on any
	// problem put the old file back.
	if _, err := config.LoadWithoutSecrets(*cfgPath); err != nil {
		if old != nil {
			_ = writeAtomic(file, old)
		} else {
			_ = os.Remove(file)
		}
		return fmt.Errorf("the imported clients do not load, nothing was changed: %w", err)
	}
	fmt.Fprintf(out, "added %d client(s) to %s (%d companies, %d already mapped); run `psagate check` and reload (SIGHUP)\n", added, file, len(companies), present)
	return nil
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// slug makes a client name and mailbox local part from a PSA identifier or
// company name: lower-case letters, digits and single hyphens.
func slug(s string) string {
	s = strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	return s
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeAtomic replaces path with data: a temporary file (its name starts
// with "." so the clients dir loader skips it), fsync, rename.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
