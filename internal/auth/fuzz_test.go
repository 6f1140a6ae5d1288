package auth

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"psagate/internal/auth/dnstest"
)

// FuzzCheck feeds arbitrary mail (untrusted: any internet host can send
// it) to the authentication, against a stub DNS that publishes a real key:
// it must never panic, and it must never say "authenticated" without an
// aligned pass behind it.
func FuzzCheck(f *testing.F) {
	dns, err := dnstest.Start()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(dns.Close)
	sg := dnstest.NewSigner("datto.com", "s1")
	sg.Publish(dns)
	dns.TXT("datto.com", "v=spf1 ip4:192.0.2.0/24 -all")
	dns.TXT("_dmarc.datto.com", "v=DMARC1; p=reject; adkim=s")
	c := New(Options{DNS: dns.Addr, Timeout: 200 * time.Millisecond, CacheTTL: time.Nanosecond})
	f.Add(sg.Sign([]byte(vendorMail)), "bounce@datto.com", "alerts@datto.com")
	f.Add([]byte(vendorMail), "x@evil.example", "alerts@datto.com")
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=datto.com; s=s1; h=from; bh=; b=\r\nFrom: a@datto.com\r\n\r\nx"), "", "a@datto.com")
	f.Fuzz(func(t *testing.T, raw []byte, mailFrom, from string) {
		r := c.Check(context.Background(), Input{Raw: raw, IP: netip.MustParseAddr("198.51.100.1"), Helo: "h.example", MailFrom: mailFrom, From: from})
		if r.Authenticated && r.DMARC != "pass" {
			t.Fatalf("authenticated with dmarc=%s", r.DMARC)
		}
		if r.Authenticated && len(r.DKIMDomains) == 0 {
			// 198.51.100.1 is in no SPF record here: only DKIM can pass.
			t.Fatalf("authenticated without a verified signature: %s", r.Header)
		}
		if !strings.HasPrefix(r.Header, "psagate; spf=") || strings.ContainsAny(r.Header, "\r\n") {
			t.Fatalf("header %q", r.Header)
		}
	})
}
