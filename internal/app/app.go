// Package app assembles a running gateway from a config file: the state
// database, the rule set, the gateway pipeline, the delivery workers and
// their providers, the SMTP listener and the HTTP listener (metrics, health,
// and the loopback admin API used by `psagate queue` and friends). The CLI's
// `serve` and the end-to-end tests both start it through Start.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"psagate/internal/auth"
	"psagate/internal/config"
	"psagate/internal/deliver"
	"psagate/internal/gateway"
	"psagate/internal/message"
	"psagate/internal/metrics"
	"psagate/internal/psa"
	"psagate/internal/rules"
	"psagate/internal/sdnotify"
	"psagate/internal/smtpd"
	"psagate/internal/store"
)

// Options tune Start, mostly for tests.
type Options struct {
	Logger *slog.Logger
	// LogOutput receives the log provider's ticket lines (default stdout).
	LogOutput io.Writer
	// HTTPClient is given to the PSA providers (tests pass a TLS fake's client).
	HTTPClient *http.Client
	Now        func() time.Time
	// ProviderFactory replaces the default providers (tests).
	Providers map[string]psa.Provider
	// Auth authenticates senders ([auth]); its caches live across reloads.
	Auth *auth.Checker
	// FreshState sets a damaged state file aside (renamed, never deleted)
	// and starts with an empty one: `psagate serve -fresh-state`. An
	// undamaged file is used as it is.
	FreshState bool
	// OnReload runs after a successful reload with the new config, for
	// what the caller owns (the logger's level and secret scrubber).
	OnReload func(*config.Config)
	// Notify, when set, is told of each reload in systemd's words
	// (internal/sdnotify): RELOADING=1 before, READY=1 and a STATUS=
	// after, whichever way the reload came (SIGHUP, admin API, rules watch).
	Notify func(assignments ...string) error
}

// App is a running gateway.
type App struct {
	opts    Options
	cfgPath string
	log     *slog.Logger
	// reloadMu serialises reloads (SIGHUP and POST /admin/reload).
	reloadMu sync.Mutex

	DB      *store.DB
	Metrics *metrics.Metrics
	Gateway *gateway.Gateway
	// Auth authenticates senders ([auth]); its caches live across reloads.
	Auth      *auth.Checker
	Deliverer *deliver.Deliverer
	Providers map[string]psa.Provider

	smtp      *smtpd.Server
	smtpLn    net.Listener
	httpSrv   *http.Server
	httpLn    net.Listener
	adminSrv  *http.Server
	adminLn   net.Listener
	adminSock string
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// LoadSnapshot reads the config and its rules.
func LoadSnapshot(cfgPath string) (*gateway.Snapshot, error) {
	return loadSnapshot(cfgPath, config.Load)
}

// LoadSnapshotWithoutSecrets is LoadSnapshot for `try`, which never calls a
// PSA: it works without the PSA keys in the environment.
func LoadSnapshotWithoutSecrets(cfgPath string) (*gateway.Snapshot, error) {
	return loadSnapshot(cfgPath, config.LoadWithoutSecrets)
}

func loadSnapshot(cfgPath string, load func(string) (*config.Config, error)) (*gateway.Snapshot, error) {
	cfg, err := load(cfgPath)
	if err != nil {
		return nil, err
	}
	rs, err := rules.Load(cfg.Rules.Dir, rules.Options{DefaultAction: rules.Action(cfg.Rules.DefaultAction)})
	if err != nil {
		return nil, err
	}
	if err := rules.GuardCount(cfg.Rules.Dir, len(rs.Rules()), 0, cfg.Rules.AllowEmpty); err != nil {
		return nil, err
	}
	return gateway.NewSnapshot(cfg, rs), nil
}

// Start opens everything and begins serving.
func Start(ctx context.Context, cfgPath string, o Options) (*App, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LogOutput == nil {
		o.LogOutput = os.Stdout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	snap, err := LoadSnapshot(cfgPath)
	if err != nil {
		return nil, err
	}
	cfg := snap.Config
	a := &App{opts: o, cfgPath: cfgPath, log: o.Logger}

	if o.FreshState {
		if err := freshState(cfg.State.Path, o); err != nil {
			return nil, err
		}
	}
	db, err := store.Open(cfg.State.Path, store.Options{AuditMax: cfg.State.AuditMax})
	if err != nil {
		return nil, err
	}
	a.DB = db
	a.Metrics = metrics.New(func() (metrics.StateCounts, error) {
		c, err := db.Counts()
		return metrics.StateCounts(c), err
	})
	a.Metrics.InitProviders(cfg.UsedProviders())
	a.Metrics.InitRules(ruleActions(snap))
	a.Metrics.RulesLoaded.Set(float64(len(snap.Rules.Rules())))
	a.Metrics.ConfigReloadSuccess.Set(1)
	a.Metrics.ConfigReloadTimestamp.Set(float64(o.Now().Unix()))

	a.Providers = o.Providers
	if a.Providers == nil {
		a.Providers = DefaultProviders(o.LogOutput, o.HTTPClient, o.Logger)
	}
	a.Deliverer = deliver.New(deliver.Options{
		DB:        db,
		Providers: a.Providers,
		Settings: func(client, device string, ov map[string]string) psa.Settings {
			return a.Snapshot().Router.Effective(client, device, ov)
		},
		Limits:  func() config.Deliver { return a.Snapshot().Config.Deliver },
		Metrics: a.Metrics,
		Logger:  o.Logger.With("component", "deliver"),
		Now:     o.Now,
		Secrets: func() []string { return a.Snapshot().Config.Secrets() },
		TicketEnded: func(tx *store.Tx, id, fromJob uint64, st psa.TicketState) error {
			return a.Gateway.TicketEnded(tx, id, fromJob, st)
		},
	})
	a.Auth = NewAuthChecker(cfg, o.Now)
	a.Metrics.Registry.MustRegister(a.Auth.Collectors()...)
	a.Gateway = gateway.New(snap, gateway.Options{DB: db, Metrics: a.Metrics, Logger: o.Logger, Now: o.Now, OnJobs: a.Deliverer.Wake, Auth: a.Auth})

	a.smtp, err = smtpd.New(cfg.SMTP, a.handle, a.Metrics, o.Logger.With("component", "smtp"))
	if err != nil {
		db.Close()
		return nil, err
	}
	a.smtp.SetOnRefuse(func(r smtpd.Refusal) { a.Gateway.Refused(r.Reason, r.RemoteIP, r.From, r.Rcpt, r.Reply) })
	a.smtpLn, err = a.smtp.Listen()
	if err != nil {
		db.Close()
		return nil, err
	}
	if cfg.HTTP.Listen != "" {
		a.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			a.smtpLn.Close()
			db.Close()
			return nil, fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
		}
		a.httpSrv = &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	a.adminSock = cfg.HTTP.AdminSocket
	a.adminLn, err = listenAdmin(a.adminSock)
	if err != nil {
		if a.httpLn != nil {
			a.httpLn.Close()
		}
		a.smtpLn.Close()
		db.Close()
		return nil, err
	}
	a.adminSrv = &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 10 * time.Second, ConnContext: adminConnContext}

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.Gateway.Run(rctx) }()
	go func() { defer a.wg.Done(); _ = a.Deliverer.Run(rctx) }()
	go func() {
		defer a.wg.Done()
		rules.Watch(rctx, cfg.Rules.Dir, cfg.Rules.WatchInterval.D(), func() {
			if err := a.Reload(); err != nil {
				a.log.Error("rules changed but the new set has errors; the previous rules stay active", "err", err)
			}
		})
	}()
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.housekeeping(rctx) }()
	a.startIMAP(rctx, cfg)
	go func() { defer a.wg.Done(); a.reconcileLoop(rctx) }()
	go func() {
		if err := a.smtp.Serve(a.smtpLn); err != nil {
			a.log.Error("smtp server stopped", "err", err)
		}
	}()
	if a.httpSrv != nil {
		go func() {
			if err := a.httpSrv.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("http server stopped", "err", err)
			}
		}()
	}
	go func() {
		if err := a.adminSrv.Serve(a.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin API server stopped", "err", err)
		}
	}()
	a.log.Info("psagate started", "smtp", a.smtpLn.Addr().String(), "http", a.HTTPAddr(), "admin", a.adminSock, "state", cfg.State.Path,
		"rules", len(snap.Rules.Rules()), "clients", len(cfg.Clients), "provider", cfg.PSA.Provider())
	return a, nil
}

// freshState sets the state file at path aside if it is damaged.
func freshState(path string, o Options) error {
	err := store.Check(path, 2*time.Second)
	if err == nil {
		o.Logger.Warn("-fresh-state: the state file is not damaged; it is used as it is", "state", path)
		return nil
	}
	var de *store.DamagedError
	if !errors.As(err, &de) {
		return err
	}
	to, serr := store.SetAside(path, o.Now())
	if serr != nil {
		return serr
	}
	o.Logger.Warn("-fresh-state: the damaged state file was set aside; starting with an empty state (close the tickets of open incidents by hand)",
		"state", path, "damaged_copy", to, "problem", de.Problem)
	return nil
}

func (a *App) handle(ctx context.Context, raw []byte, env message.Envelope) smtpd.Reply {
	r := a.Gateway.Accept(ctx, raw, env)
	return smtpd.Reply{Code: r.Code, Enhanced: r.Enhanced, Text: r.Text}
}

// NewAuthChecker is the sender authentication of cfg's [auth] section.
func NewAuthChecker(cfg *config.Config, now func() time.Time) *auth.Checker {
	return auth.New(auth.Options{DNS: cfg.Auth.DNS, Timeout: cfg.Auth.Timeout.D(), CacheTTL: cfg.Auth.CacheTTL.D(),
		AuthServID: cfg.SMTP.Hostname, Now: now})
}

// Snapshot is the active configuration.
func (a *App) Snapshot() *gateway.Snapshot { return a.Gateway.Snapshot() }

// SMTPAddr is the SMTP listener's address.
func (a *App) SMTPAddr() string { return a.smtpLn.Addr().String() }

// AdminSocket is the path of the admin API's Unix socket.
func (a *App) AdminSocket() string { return a.adminSock }

// HTTPAddr is the HTTP listener's address, or "".
func (a *App) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// Reload re-reads the config and the rules. On any error the running
// configuration stays in force and the failure shows in the metrics.
func (a *App) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.notify(sdnotify.Reloading(), sdnotify.Status("reloading "+a.cfgPath))
	err := a.reload()
	if err != nil {
		a.notify(sdnotify.Ready, sdnotify.Status("reload refused, the previous config stays active: "+err.Error()))
	} else {
		a.notify(sdnotify.Ready, sdnotify.Status(a.Status()))
	}
	return err
}

// Status is one line for `systemctl status`: what is being served.
func (a *App) Status() string {
	snap := a.Snapshot()
	return fmt.Sprintf("serving SMTP on %s, %d rules, %d clients", a.SMTPAddr(), len(snap.Rules.Rules()), len(snap.Config.Clients))
}

func (a *App) notify(assignments ...string) {
	if a.opts.Notify == nil {
		return
	}
	if err := a.opts.Notify(assignments...); err != nil {
		a.log.Warn("telling systemd the service state failed", "err", err)
	}
}

// reload does Reload's work with a.reloadMu held.
func (a *App) reload() error {
	snap, err := LoadSnapshot(a.cfgPath)
	if err != nil {
		a.Metrics.ConfigReloadSuccess.Set(0)
		return err
	}
	if err := rules.GuardCount(snap.Config.Rules.Dir, len(snap.Rules.Rules()), len(a.Snapshot().Rules.Rules()), snap.Config.Rules.AllowEmpty); err != nil {
		a.Metrics.ConfigReloadSuccess.Set(0)
		return err
	}
	old := a.Snapshot().Config
	// The SMTP side first: it is the only part that can still refuse (a
	// certificate that does not load), and then nothing has changed.
	restart, err := a.smtp.Update(snap.Config.SMTP)
	if err != nil {
		a.Metrics.ConfigReloadSuccess.Set(0)
		return err
	}
	for _, f := range []struct {
		key     string
		changed bool
	}{
		{"http.listen", old.HTTP.Listen != snap.Config.HTTP.Listen},
		{"http.admin_socket", old.HTTP.AdminSocket != snap.Config.HTTP.AdminSocket},
		{"state.path", old.State.Path != snap.Config.State.Path},
		{"rules.dir", old.Rules.Dir != snap.Config.Rules.Dir},
		{"log.format", old.Log.Format != snap.Config.Log.Format},
		{"auth.dns", old.Auth.DNS != snap.Config.Auth.DNS},
		{"imap", !reflect.DeepEqual(old.IMAP, snap.Config.IMAP)},
		{"auth.timeout", old.Auth.Timeout != snap.Config.Auth.Timeout},
		{"auth.cache_ttl", old.Auth.CacheTTL != snap.Config.Auth.CacheTTL},
	} {
		if f.changed {
			restart = append(restart, f.key)
		}
	}
	if len(restart) > 0 {
		a.log.Warn("some changed settings take effect only after a restart; the old values stay in force until then", "keys", strings.Join(restart, ", "))
	}
	a.Gateway.Swap(snap)
	if a.opts.OnReload != nil {
		a.opts.OnReload(snap.Config)
	}
	a.Metrics.InitProviders(snap.Config.UsedProviders())
	a.Metrics.InitRules(ruleActions(snap))
	a.Metrics.RulesLoaded.Set(float64(len(snap.Rules.Rules())))
	a.Metrics.ConfigReloadSuccess.Set(1)
	a.Metrics.ConfigReloadTimestamp.Set(float64(a.opts.Now().Unix()))
	a.log.Info("config and rules reloaded", "rules", len(snap.Rules.Rules()), "clients", len(snap.Config.Clients))
	a.Deliverer.SettingsChanged()
	return nil
}

// housekeeping prunes old dedupe entries.
func (a *App) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		ttl := a.Snapshot().Config.State.SeenTTL.D()
		if n, err := a.DB.PruneSeen(a.opts.Now().Add(-ttl)); err != nil {
			a.log.Warn("pruning the dedupe table failed", "err", err)
		} else if n > 0 {
			a.log.Debug("pruned dedupe entries", "n", n)
		}
		if n, err := a.ops().PruneQuarantine(); err != nil {
			a.log.Warn("pruning the quarantine failed", "err", err)
		} else if n > 0 {
			a.Metrics.QuarantinePruned.Add(float64(n))
			a.log.Info("pruned quarantined messages ([quarantine] max_messages / max_age)", "n", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcileLoop reads back, once a minute, the state of the open
// incidents' tickets that were not read within [incidents] reconcile_every,
// at most reconcile_per_minute of them.
func (a *App) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		in := a.Snapshot().Config.Incidents
		if _, _, err := a.Deliverer.Reconcile(ctx, in.ReconcileEvery.D(), in.ReconcilePerMinute); err != nil {
			a.log.Warn("reconciling ticket states failed", "err", err)
		}
	}
}

// Shutdown stops intake first (sessions in DATA may finish until ctx
// ends), then the workers (calls in flight finish or are parked), then
// closes the database. Whatever is still spooled or queued resumes on the
// next start.
func (a *App) Shutdown(ctx context.Context) error {
	a.log.Info("shutting down: no new connections")
	err := a.smtp.Shutdown(ctx)
	if a.httpSrv != nil {
		hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = a.httpSrv.Shutdown(hctx)
		cancel()
	}
	hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = a.adminSrv.Shutdown(hctx)
	cancel()
	os.Remove(a.adminSock)
	a.cancel()
	a.wg.Wait()
	a.Gateway.CloseAudit()
	if cerr := a.DB.Close(); cerr != nil && err == nil {
		err = cerr
	}
	a.log.Info("stopped")
	return err
}

// ruleActions lists each rule with the action its matches are counted under.
func ruleActions(snap *gateway.Snapshot) []metrics.RuleAction {
	var out []metrics.RuleAction
	for _, r := range snap.Rules.Rules() {
		if r.Then == nil {
			continue
		}
		out = append(out, metrics.RuleAction{Name: r.Name, Action: string(r.Then.Action), Audit: r.Mode == rules.ModeAudit})
	}
	return out
}
