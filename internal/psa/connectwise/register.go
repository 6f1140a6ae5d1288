package connectwise

import (
	"psagate/internal/psa"
	cwfake "psagate/internal/psa/connectwise/fake"
)

var (
	_ psa.Provider = (*Provider)(nil)
	_ psa.Checker  = (*Provider)(nil)
)

func init() {
	psa.Register(psa.Descriptor{
		Name:  Name,
		Title: "ConnectWise Manage",
		Keys: []string{
			"site", "endpoint", "company_id", "public_key", "private_key", "client_id", "api_version",
			"company", "board", "status", "type", "subtype", "item", "priority", "contact",
			"closed_status", "timeout",
			// The ticket's address and location, as x360Recover Manager's
			// per-client ConnectWise settings have them.
			"address_line1", "address_line2", "city", "state", "zip", "country", "location",
		},
		Secrets: []string{"public_key", "private_key", "client_id"},
		// company_id is the login company here (the ticket's company is
		// "company"), so it is a connection setting.
		Connection: []string{"site", "endpoint", "company_id", "api_version"},
		DerivedSecrets: func(s psa.Settings) []string {
			pub, priv := s[Name+".public_key"], s[Name+".private_key"]
			if pub == "" || priv == "" {
				return nil
			}
			// The Basic credential before and after base64 (SecretForms adds
			// the encodings).
			return []string{s[Name+".company_id"] + "+" + pub + ":" + priv}
		},
		// ConnectWise throttles above ~1,000 requests/minute.
		Limits: psa.Limits{Concurrency: 4, RatePerMinute: 300},
		Fake: func(listen string) (*psa.FakeServer, error) {
			srv, err := cwfake.Listen(listen, cwfake.DefaultConfig())
			if err != nil {
				return nil, err
			}
			return &psa.FakeServer{Settings: srv.Settings(), Close: srv.Close,
				About: "boards Help Desk, Backup Alerts and Vault Alerts, companies PVC01 and ACME01"}, nil
		},
		New: func(env psa.Env) psa.Provider {
			return New(Options{HTTPClient: env.HTTPClient, Logger: env.Logger})
		},
	})
}
