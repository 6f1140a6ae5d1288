package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"psagate/internal/app"
	"psagate/internal/config"
)

func cmdServe(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("serve", stderr)
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr, cfg.Secrets())
	slog.SetDefault(logger)

	ctx := context.Background()
	a, err := app.Start(ctx, *cfgPath, app.Options{Logger: logger, LogOutput: stdout})
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			logger.Info("SIGHUP: reloading config and rules")
			if err := a.Reload(); err != nil {
				logger.Error("reload failed; the previous config and rules stay active", "err", err)
			} else {
				a.Deliverer.ProbeNow(ctx)
			}
			continue
		}
		logger.Info("signal received", "signal", sig.String())
		break
	}
	signal.Stop(sigs)
	sctx, cancel := context.WithTimeout(ctx, a.Snapshot().Config.SMTP.ShutdownTimeout.D())
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newLogger builds the slog logger of [log], with a last line of defence
// that blanks any configured secret from every log line.
func newLogger(c config.Log, w io.Writer, secrets []string) *slog.Logger {
	lvl := slog.LevelInfo
	switch c.Level {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	sw := &scrubWriter{w: w}
	for _, s := range secrets {
		if len(s) >= 4 {
			sw.secrets = append(sw.secrets, s)
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(sw, opts))
	}
	return slog.New(slog.NewTextHandler(sw, opts))
}

type scrubWriter struct {
	w       io.Writer
	secrets []string
}

func (s *scrubWriter) Write(p []byte) (int, error) {
	if len(s.secrets) == 0 {
		return s.w.Write(p)
	}
	line := string(p)
	for _, sec := range s.secrets {
		line = strings.ReplaceAll(line, sec, "[redacted]")
	}
	if _, err := io.WriteString(s.w, line); err != nil {
		return 0, err
	}
	return len(p), nil
}
