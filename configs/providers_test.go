package configs

// example.toml carries provider sections, which exist once the shipped
// providers have registered.
import _ "psagate/internal/psa/builtin"
