// Package builtin registers every PSA provider that psagate ships. It is
// the one place that names them: a new provider is a package under
// internal/psa plus one import line here (docs/design.md, "Adding a PSA").
package builtin

import (
	_ "psagate/internal/psa/autotask"    // Autotask REST API
	_ "psagate/internal/psa/connectwise" // ConnectWise Manage REST API
	_ "psagate/internal/psa/logpsa"      // the log provider: no PSA, prints the calls
)
