package deliver

import (
	"context"
	"time"

	"psagate/internal/psa"
)

// probe tries each paused provider with the settings that failed.
func (d *Deliverer) probe(ctx context.Context) {
	d.mu.Lock()
	paused := map[string]*pause{}
	for k, v := range d.paused {
		paused[k] = v
	}
	d.mu.Unlock()
	for name, ps := range paused {
		chk, ok := d.o.Providers[name].(psa.Checker)
		if !ok {
			d.unpause(name)
			continue
		}
		// The settings are re-resolved from the current config: the admin
		// may have fixed the keys in the meantime (config reload).
		s := d.o.Settings("", "", nil)
		if s.Provider() != name {
			s = ps.settings
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := chk.Probe(pctx, s)
		cancel()
		if err == nil {
			d.o.Logger.Info("provider works again: resuming delivery", "provider", name)
			d.unpause(name)
			continue
		}
		d.o.Logger.Warn("provider still failing authentication", "provider", name, "err", d.scrub(s.Scrub(err.Error())))
	}
}

func (d *Deliverer) unpause(name string) {
	d.mu.Lock()
	delete(d.paused, name)
	d.mu.Unlock()
	if d.o.Metrics != nil {
		d.o.Metrics.ProviderPaused.WithLabelValues(name).Set(0)
	}
	d.Wake()
}

// ProbeNow runs the probes at once (SIGHUP after a credentials fix).
func (d *Deliverer) ProbeNow(ctx context.Context) { d.probe(ctx) }
