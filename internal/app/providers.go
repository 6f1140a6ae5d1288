package app

import (
	"io"
	"log/slog"
	"net/http"

	"psagate/internal/psa"
	"psagate/internal/psa/logpsa"
)

// DefaultProviders returns one instance of every provider.
func DefaultProviders(logOut io.Writer, client *http.Client, log *slog.Logger) map[string]psa.Provider {
	return map[string]psa.Provider{
		"log": logpsa.New(logOut),
	}
}
