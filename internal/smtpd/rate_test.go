package smtpd

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConnectionRatePerIP: the third connection of a minute from one
// address is refused with 421; a minute later it is admitted again.
func TestConnectionRatePerIP(t *testing.T) {
	t.Parallel()
	s, _, addr := start(t, testConfig(t, "max_connections_per_minute_per_ip = 2\n"), nil)
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	s.mu.Lock()
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s.mu.Unlock()
	greetOK(t, addr).quit()
	greetOK(t, addr).quit()
	refusedWith(t, addr, "421 4.7.0 gw.test: too many connections from 127.0.0.1 in the last minute (2); try again later")
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	greetOK(t, addr).quit()
}

// TestRecipientAllowlist: with smtp.accept_recipients only the listed
// addresses are taken (case-insensitive); others in an accepted domain get
// 550 5.1.1.
func TestRecipientAllowlist(t *testing.T) {
	t.Parallel()
	_, _, addr := start(t, testConfig(t, "accept_recipients = [\"acme@alerts.example.net\"]\n"), nil)
	c := greetOK(t, addr)
	c.cmd("EHLO x.test")
	if r := c.cmd("MAIL FROM:<a@datto.com>"); !strings.HasPrefix(r, "250") {
		t.Fatalf("MAIL: %q", r)
	}
	if r := c.cmd("RCPT TO:<ACME@alerts.example.net>"); !strings.HasPrefix(r, "250") {
		t.Errorf("listed recipient: %q", r)
	}
	if r := c.cmd("RCPT TO:<other@alerts.example.net>"); !strings.HasPrefix(r, "550 5.1.1 <other@alerts.example.net>: no such recipient here") {
		t.Errorf("unlisted recipient: %q", r)
	}
	c.quit()
}
