package config

// The tests use provider settings ("connectwise.board"), which exist once
// the shipped providers have registered.
import _ "psagate/internal/psa/builtin"
