package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/sdnotify"
)

func cmdServe(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("serve", stderr)
	fresh := fs.Bool("fresh-state", false, "if the state file is damaged, move it aside (to STATE.damaged-TIME) and start with an empty state")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	if err := atMostArgs(fs, stderr, 0); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	logger, lc := newLogger(cfg.Log, stderr, cfg.Secrets())
	slog.SetDefault(logger)
	setMemoryLimit(cfg.SMTP.MaxInflightBytes, logger)

	ctx := context.Background()
	opts := app.Options{Logger: logger, LogOutput: stdout, OnReload: lc.update, FreshState: *fresh}
	// Under systemd (Type=notify) the unit is "started" only once the
	// listeners are up, and a reload lasts until its outcome is known.
	sd := sdnotify.FromEnv()
	if sd != nil {
		opts.Notify = sd.Notify
	}
	a, err := app.Start(ctx, *cfgPath, opts)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := sd.Notify(sdnotify.Ready, sdnotify.Status(a.Status())); err != nil {
		logger.Warn("telling systemd the service is ready failed", "err", err)
	}
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			logger.Info("SIGHUP: reloading config and rules")
			if err := a.Reload(); err != nil {
				logger.Error("reload failed; the previous config and rules stay active", "err", err)
			} else {
				setMemoryLimit(a.Snapshot().Config.SMTP.MaxInflightBytes, logger)
				a.Deliverer.ProbeNow(ctx)
			}
			continue
		}
		logger.Info("signal received", "signal", sig.String())
		break
	}
	signal.Stop(sigs)
	_ = sd.Notify(sdnotify.Stopping, sdnotify.Status("stopping: letting SMTP transfers finish"))
	sctx, cancel := context.WithTimeout(ctx, a.Snapshot().Config.SMTP.ShutdownTimeout.D())
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newLogger builds the slog logger of [log], with a last line of defence
// that blanks any configured secret from every log line. The control it
// returns applies a reloaded config's level and secrets.
func newLogger(c config.Log, w io.Writer, secrets []string) (*slog.Logger, *logControl) {
	lc := &logControl{sw: &scrubWriter{w: w}}
	lc.level.Set(levelOf(c.Level))
	lc.sw.add(secrets)
	opts := &slog.HandlerOptions{Level: &lc.level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(lc.sw, opts)), lc
	}
	return slog.New(slog.NewTextHandler(lc.sw, opts)), lc
}

func levelOf(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// logControl changes a running logger. The format cannot change without a
// restart (the reload says so).
type logControl struct {
	level slog.LevelVar
	sw    *scrubWriter
}

// update applies a reloaded config. Secrets are added, never removed: a
// rotated-out key or password is still one that must not be printed.
func (lc *logControl) update(c *config.Config) {
	lc.level.Set(levelOf(c.Log.Level))
	lc.sw.add(c.Secrets())
}

type scrubWriter struct {
	w       io.Writer
	mu      sync.RWMutex
	secrets []string
}

func (s *scrubWriter) add(secrets []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range secrets {
		if len(sec) >= 4 && !slices.Contains(s.secrets, sec) {
			s.secrets = append(s.secrets, sec)
		}
	}
}

func (s *scrubWriter) Write(p []byte) (int, error) {
	s.mu.RLock()
	secrets := s.secrets
	s.mu.RUnlock()
	if len(secrets) == 0 {
		return s.w.Write(p)
	}
	line := string(p)
	for _, sec := range secrets {
		line = strings.ReplaceAll(line, sec, "[redacted]")
	}
	if _, err := io.WriteString(s.w, line); err != nil {
		return 0, err
	}
	return len(p), nil
}

// memoryHeadroom is what psagate needs besides the messages in transfer:
// the runtime, the rules, the decoder's working set, delivery, and the
// copy of a neighbouring spool record bbolt makes when it rewrites a leaf.
// With 160 MiB, 50 concurrent 20 MB messages peaked at 580 MiB RSS; with
// 64 MiB at 394 MiB (make bench-memory), the collector using ~60% of a core.
const memoryHeadroom = 64 << 20

// setMemoryLimit gives the Go runtime a soft memory limit of the in-flight
// budget plus headroom, unless GOMEMLIMIT sets one. Without it the heap may
// grow to twice what is live before a collection: 256 MiB of messages in
// transfer would let the process pass 600 MiB. It is a soft limit: the
// collector works harder near it, nothing fails.
func setMemoryLimit(inflight int64, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := inflight + memoryHeadroom
	debug.SetMemoryLimit(limit)
	log.Debug("Go soft memory limit set", "bytes", limit)
}
