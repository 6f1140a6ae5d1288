package logpsa

// The tests write settings with other providers' secrets in them; those
// keys are secret once the providers have registered (builtin would import
// this package again).
import (
	_ "psagate/internal/psa/autotask"
	_ "psagate/internal/psa/connectwise"
)
