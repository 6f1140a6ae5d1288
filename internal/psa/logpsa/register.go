package logpsa

import "psagate/internal/psa"

var _ psa.Provider = (*Provider)(nil)

func init() {
	psa.Register(psa.Descriptor{
		Name:   "log",
		Title:  "log (no PSA: prints the calls it would make)",
		Limits: psa.Limits{Concurrency: 16},
		New:    func(env psa.Env) psa.Provider { return New(env.Out) },
	})
}
