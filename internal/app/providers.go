package app

import (
	"io"
	"log/slog"
	"net/http"

	"psagate/internal/psa"
	"psagate/internal/psa/autotask"
	"psagate/internal/psa/connectwise"
	"psagate/internal/psa/logpsa"
)

// DefaultProviders returns one instance of every provider.
func DefaultProviders(logOut io.Writer, client *http.Client, log *slog.Logger) map[string]psa.Provider {
	if log == nil {
		log = slog.Default()
	}
	return map[string]psa.Provider{
		"log":         logpsa.New(logOut),
		"connectwise": connectwise.New(connectwise.Options{HTTPClient: client, Logger: log.With("provider", "connectwise")}),
		"autotask":    autotask.New(autotask.Options{HTTPClient: client, Logger: log.With("provider", "autotask")}),
	}
}
