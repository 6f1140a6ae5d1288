package app

import (
	"io"
	"log/slog"
	"net/http"

	"psagate/internal/psa"
	_ "psagate/internal/psa/builtin" // the providers psagate ships register themselves
)

// DefaultProviders returns one instance of every registered provider.
func DefaultProviders(logOut io.Writer, client *http.Client, log *slog.Logger) map[string]psa.Provider {
	return psa.NewAll(psa.Env{HTTPClient: client, Logger: log, Out: logOut})
}
