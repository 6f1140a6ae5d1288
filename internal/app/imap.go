package app

import (
	"context"

	"psagate/internal/config"
	"psagate/internal/imapin"
)

// startIMAP runs one intake per [[imap]] source until ctx ends; each mail
// goes through the gateway's Accept, as SMTP mail does.
func (a *App) startIMAP(ctx context.Context, cfg *config.Config) {
	if len(cfg.IMAP) == 0 {
		return
	}
	counter := imapin.NewMessagesCounter()
	a.Metrics.Registry.MustRegister(counter)
	for _, src := range cfg.IMAP {
		in := &imapin.Intake{Src: src, DB: a.DB, Accept: a.Gateway.Accept, Messages: counter,
			Log: a.log.With("component", "imap")}
		a.wg.Add(1)
		go func() { defer a.wg.Done(); in.Run(ctx) }()
	}
}
