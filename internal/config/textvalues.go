package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Duration is a time.Duration written as "60s", "15m", "24h".
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like \"60s\", \"15m\" or \"24h\")", string(b))
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", string(b))
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Secret is a value that must never be printed. It is written as
// "env:NAME" (read from the environment), "file:/path" (read from a file,
// trailing newline removed) or a literal.
type Secret struct {
	ref   string
	value string
}

func (s *Secret) UnmarshalText(b []byte) error {
	s.ref = string(b)
	return nil
}

// Value is the resolved secret.
func (s Secret) Value() string { return s.value }

// Ref is how the secret was given, with a literal hidden.
func (s Secret) Ref() string {
	if strings.HasPrefix(s.ref, "env:") || strings.HasPrefix(s.ref, "file:") {
		return s.ref
	}
	return "[literal]"
}

func (s Secret) String() string { return "[redacted]" }

func (s Secret) GoString() string { return "config.Secret{[redacted]}" }

func (s Secret) MarshalText() ([]byte, error) { return []byte(s.Ref()), nil }

// resolveSecret reads a secret reference.
func resolveSecret(ref string) (string, error) {
	switch {
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		return v, nil
	case strings.HasPrefix(ref, "file:"):
		p := strings.TrimPrefix(ref, "file:")
		b, err := os.ReadFile(p)
		if err != nil {
			// The path is not secret; the error from os names it.
			return "", fmt.Errorf("cannot read secret file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return ref, nil
}
