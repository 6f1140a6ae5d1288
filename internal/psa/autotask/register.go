package autotask

import (
	"psagate/internal/psa"
	atfake "psagate/internal/psa/autotask/fake"
)

var (
	_ psa.Provider = (*Provider)(nil)
	_ psa.Checker  = (*Provider)(nil)
)

func init() {
	psa.Register(psa.Descriptor{
		Name:  Name,
		Title: "Autotask",
		Keys: []string{
			"username", "secret", "integration_code", "zone_url",
			"company_id", "queue_id", "priority", "status", "complete_status",
			"issue_type", "sub_issue_type", "ticket_type", "source",
			"note_type", "note_publish", "timeout",
			"due_in", "ticket_category", "billing_code_id", "contact", "attachment_publish", "fields",
		},
		// note_publish may be a table by kind of note; fields (the
		// tenant's user-defined fields) is one, by field name.
		Tables:  map[string][]string{"note_publish": psa.NotePurposes, "fields": nil},
		Secrets: []string{"secret", "integration_code"},
		// company_id is the ticket's company here, so a rule may set it.
		Connection: []string{"username", "zone_url"},
		// Autotask allows 10,000 requests/hour per database and 3
		// concurrent requests per integration.
		Limits: psa.Limits{Concurrency: 3, RatePerMinute: 60, MaxConcurrency: 3,
			MaxConcurrencyWhy: "Autotask allows at most 3 concurrent requests per integration"},
		Fake: func(listen string) (*psa.FakeServer, error) {
			srv, err := atfake.Listen(listen, atfake.DefaultConfig())
			if err != nil {
				return nil, err
			}
			return &psa.FakeServer{Settings: srv.Settings(), Close: srv.Close,
				About: "a tenant that requires dueDateTime, with companies 500 and 501, queues, statuses, priorities, ticket categories and billing codes"}, nil
		},
		New: func(env psa.Env) psa.Provider {
			return New(Options{HTTPClient: env.HTTPClient, Logger: env.Logger})
		},
	})
}
