package psa_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	// An external test package with a dot import, as the Go FAQ allows for
	// tests that the package cannot hold: the real providers register the
	// secret keys these tests use, and they import this package.
	. "psagate/internal/psa"
	_ "psagate/internal/psa/builtin"
)

func TestKindOf(t *testing.T) {
	tests := []struct {
		err  error
		want Kind
	}{
		{&Error{Kind: Permanent}, Permanent},
		{fmt.Errorf("wrapped: %w", &Error{Kind: Auth}), Auth},
		{context.DeadlineExceeded, Transient},
		{io.ErrUnexpectedEOF, Transient},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, Transient},
		{errors.New("nobody classified this"), Permanent},
	}
	for _, tt := range tests {
		if got := KindOf(tt.err); got != tt.want {
			t.Errorf("KindOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if d := ParseRetryAfter("30", now); d != 30*time.Second {
		t.Errorf("seconds: %v", d)
	}
	if d := ParseRetryAfter(now.Add(2*time.Minute).Format(time.RFC1123), now); d != 2*time.Minute {
		t.Errorf("date: %v", d)
	}
	// RFC 9110 5.6.7: the obsolete RFC 850 and asctime forms must be
	// accepted too.
	for _, v := range []string{"Thursday, 01-Jan-26 12:03:00 GMT", "Thu Jan  1 12:03:00 2026"} {
		if d := ParseRetryAfter(v, now); d != 3*time.Minute {
			t.Errorf("date %q: %v", v, d)
		}
	}
	if d := ParseRetryAfter("soon", now); d != 0 {
		t.Errorf("garbage: %v", d)
	}
}

func TestSettingsNeverPrintSecrets(t *testing.T) {
	s := Settings{"provider": "connectwise", "connectwise.private_key": "pk-very-secret", "connectwise.board": "B", "autotask.secret": "at-secret"}
	for _, out := range []string{s.String(), fmt.Sprint(s.Redacted()), s.LogValue().String()} {
		if strings.Contains(out, "pk-very-secret") || strings.Contains(out, "at-secret") {
			t.Fatalf("secret printed: %s", out)
		}
	}
	if s.Get("connectwise.private_key") != "pk-very-secret" {
		t.Fatal("Redacted changed the original")
	}
	if got := s.Scrub("error: key pk-very-secret refused"); got != "error: key [redacted] refused" {
		t.Fatalf("Scrub = %q", got)
	}
	if sec := s.Section("connectwise"); sec["board"] != "B" || len(sec) != 2 {
		t.Fatalf("Section = %v", sec)
	}
}
