package auth

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"psagate/internal/auth/dnstest"
)

const vendorMail = "From: Datto Alerts <alerts@datto.com>\r\n" +
	"To: acme@alerts.example.net\r\n" +
	"Subject: Backup succeeded: ACME-SRV01\r\n" +
	"Date: Mon, 07 Dec 2026 01:00:00 +0000\r\n" +
	"Message-ID: <b1@datto.com>\r\n" +
	"\r\n" +
	"The backup of ACME-SRV01 completed successfully.\r\n"

type world struct {
	dns   *dnstest.Server
	datto *dnstest.Signer
	evil  *dnstest.Signer
	c     *Checker
}

func newWorld(t *testing.T) *world {
	t.Helper()
	s, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	w := &world{dns: s, datto: dnstest.NewSigner("datto.com", "s1"), evil: dnstest.NewSigner("evil.example", "k")}
	w.datto.Publish(s)
	w.evil.Publish(s)
	s.TXT("datto.com", "v=spf1 ip4:192.0.2.0/24 -all")
	s.TXT("_dmarc.datto.com", "v=DMARC1; p=reject")
	s.TXT("evil.example", "v=spf1 ip4:198.51.100.7 -all")
	s.TXT("tempfail.example", "v=spf1 include:broken.example -all")
	s.Fail("broken.example")
	s.Drop("slow.example")
	w.c = New(Options{DNS: s.Addr, Timeout: 300 * time.Millisecond})
	return w
}

func TestCheck(t *testing.T) {
	w := newWorld(t)
	signed := w.datto.Sign([]byte(vendorMail))
	tampered := bytes.Replace(signed, []byte("completed successfully"), []byte("completed successfully!"), 1)
	otherSigned := w.evil.Sign([]byte(vendorMail))
	vendorIP := netip.MustParseAddr("192.0.2.10")
	evilIP := netip.MustParseAddr("198.51.100.7")

	cases := []struct {
		name      string
		raw       []byte
		ip        netip.Addr
		mailFrom  string
		wantAuth  bool
		spf, dmrc string
		dkimDoms  string
		header    []string
	}{
		{"signed by the vendor, sent from the vendor", signed, vendorIP, "bounce@datto.com", true, "pass", "pass", "datto.com",
			[]string{"spf=pass smtp.mailfrom=datto.com", "dkim=pass header.d=datto.com", "dmarc=pass header.from=datto.com (p=reject)"}},
		{"signed by the vendor, relayed from elsewhere", signed, evilIP, "relay@evil.example", true, "pass", "pass", "datto.com",
			[]string{"dkim=pass header.d=datto.com"}},
		{"body changed after signing", tampered, evilIP, "x@evil.example", false, "pass", "fail", "",
			[]string{"dkim=fail header.d=datto.com", "dmarc=fail"}},
		{"signed by another domain", otherSigned, evilIP, "x@evil.example", false, "pass", "fail", "evil.example",
			[]string{"dkim=pass header.d=evil.example", "dmarc=fail"}},
		{"unsigned from a forger", []byte(vendorMail), evilIP, "alerts@datto.com", false, "fail", "fail", "",
			[]string{"spf=fail", "dkim=none"}},
		{"unsigned, SPF pass and aligned", []byte(vendorMail), vendorIP, "alerts@datto.com", true, "pass", "pass", "", nil},
		{"SPF temperror (SERVFAIL in an include)", []byte(vendorMail), evilIP, "a@tempfail.example", false, "temperror", "temperror", "",
			[]string{"spf=temperror"}},
		{"SPF temperror (resolver timeout)", []byte(vendorMail), evilIP, "a@slow.example", false, "temperror", "temperror", "", nil},
		{"no client IP (try)", signed, netip.Addr{}, "", true, "none", "pass", "datto.com", []string{"spf=none"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := w.c.Check(context.Background(), Input{Raw: tc.raw, IP: tc.ip, Helo: "mx.example", MailFrom: tc.mailFrom, From: "alerts@datto.com"})
			if r.Authenticated != tc.wantAuth || r.SPF != tc.spf || r.DMARC != tc.dmrc || strings.Join(r.DKIMDomains, ",") != tc.dkimDoms {
				t.Errorf("got authenticated=%v spf=%s dmarc=%s dkim=%v; want %v %s %s %s\n%s",
					r.Authenticated, r.SPF, r.DMARC, r.DKIMDomains, tc.wantAuth, tc.spf, tc.dmrc, tc.dkimDoms, r.Header)
			}
			for _, h := range tc.header {
				if !strings.Contains(r.Header, h) {
					t.Errorf("header %q lacks %q", r.Header, h)
				}
			}
		})
	}
	if n := testutil.ToFloat64(w.c.Lookups.WithLabelValues("txt", "timeout")); n < 1 {
		t.Errorf("timeouts counted: %v, want ≥ 1", n)
	}
	if n := testutil.ToFloat64(w.c.Lookups.WithLabelValues("txt", "error")); n < 1 {
		t.Errorf("errors (SERVFAIL) counted: %v, want ≥ 1", n)
	}
}

// A DNS failure while the DKIM key is looked up is a temperror: never a
// pass, and never cached, so the next delivery asks again.
func TestDKIMKeyUnavailableIsTemperror(t *testing.T) {
	w := newWorld(t)
	w.dns.Fail("s1._domainkey.datto.com")
	signed := w.datto.Sign([]byte(vendorMail))
	in := Input{Raw: signed, MailFrom: "", From: "alerts@datto.com"}
	r := w.c.Check(context.Background(), in)
	if r.Authenticated || r.DMARC != "temperror" || !strings.Contains(r.Header, "dkim=temperror") {
		t.Fatalf("got %+v", r)
	}
	before := w.dns.Queries()
	w.c.Check(context.Background(), in)
	if w.dns.Queries() == before {
		t.Error("a temperror result was served from the cache")
	}
}

func TestResultsAreCached(t *testing.T) {
	w := newWorld(t)
	signed := w.datto.Sign([]byte(vendorMail))
	in := Input{Raw: signed, IP: netip.MustParseAddr("192.0.2.10"), MailFrom: "b@datto.com", From: "alerts@datto.com"}
	first := w.c.Check(context.Background(), in)
	n := w.dns.Queries()
	second := w.c.Check(context.Background(), in)
	if w.dns.Queries() != n || second != first {
		t.Errorf("second check asked DNS again (%d → %d queries)", n, w.dns.Queries())
	}
	// Another message from the same vendor reuses the cached key and records.
	other := w.datto.Sign([]byte(strings.Replace(vendorMail, "b1@", "b2@", 1)))
	in.Raw = other
	if r := w.c.Check(context.Background(), in); !r.Authenticated {
		t.Fatalf("second mail: %s", r.Header)
	}
	if w.dns.Queries() != n {
		t.Errorf("TXT answers not reused: %d → %d queries", n, w.dns.Queries())
	}
}

func TestAligned(t *testing.T) {
	for _, tc := range []struct {
		d, from string
		strict  bool
		want    bool
	}{
		{"datto.com", "datto.com", true, true},
		{"mail.datto.com", "datto.com", false, true},
		{"mail.datto.com", "datto.com", true, false},
		{"a.datto.com", "b.datto.com", false, true},
		{"datto.com.evil.example", "datto.com", false, false},
		{"x.co.uk", "y.co.uk", false, false},
		{"", "datto.com", false, false},
	} {
		if got := Aligned(tc.d, tc.from, tc.strict); got != tc.want {
			t.Errorf("Aligned(%q, %q, %v) = %v", tc.d, tc.from, tc.strict, got)
		}
	}
}
