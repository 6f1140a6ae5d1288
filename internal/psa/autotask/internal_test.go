package autotask

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"psagate/internal/psa"
	"psagate/internal/psa/autotask/fake"
)

func TestCutCountsUTF16Units(t *testing.T) {
	tests := []struct {
		in     string
		max    int
		marker string
		want   string
	}{
		{"short", 10, "…", "short"},
		{"abcdef", 4, "…", "abc…"},
		{"ööööö", 3, "", "ööö"},
		{"a😀b", 2, "", "a"}, // the emoji is two units and does not fit
		{"a😀b", 3, "", "a😀"},
		{"abcdef", 2, "[cut]", "ab"}, // a marker longer than max is dropped
	}
	for _, tt := range tests {
		got := cut(tt.in, tt.max, tt.marker)
		if got != tt.want || !utf8.ValidString(got) || units(got) > tt.max {
			t.Errorf("cut(%q, %d, %q) = %q, want %q", tt.in, tt.max, tt.marker, got, tt.want)
		}
	}
}

func TestDiscoveryBase(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"", DefaultZoneURL, ""},
		{"https://webservices2.autotask.net/ATServicesRest/", "https://webservices2.autotask.net/ATServicesRest/v1.0/", ""},
		{"https://webservices2.autotask.net/atservicesrest/v1.0", "https://webservices2.autotask.net/atservicesrest/v1.0/", ""},
		{"http://127.0.0.1:18082/atservicesrest/v1.0/", "http://127.0.0.1:18082/atservicesrest/v1.0/", ""},
		{"webservices2.autotask.net", "", "https://"},
		{"ftp://webservices.autotask.net/atservicesrest/v1.0/", "", "https://"},
		{"https://user:pw@webservices.autotask.net/atservicesrest/v1.0/", "", "user or password"},
		{"https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation?user=x", "", "query"},
		{"https://webservices.autotask.net/api/", "", "/atservicesrest/v1.0/"},
	}
	for _, tt := range tests {
		u, err := discoveryBase(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: err = %v, want one mentioning %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || u.String() != tt.want):
			t.Errorf("%q = %v, %v; want %q", tt.in, u, err, tt.want)
		}
	}
}

func TestFieldOfMessages(t *testing.T) {
	tests := map[string]string{
		"Reference value on field: companyID of type: Company does not exist or is invalid.": "autotask.company_id",
		"Picklist value [99] does not exist for priority.":                                   "autotask.priority",
		"Missing required field: title.":                                                     "title",
		"Something else went wrong.":                                                         "",
	}
	for msg, want := range tests {
		if got := fieldOf(msg); got != want {
			t.Errorf("fieldOf(%q) = %q, want %q", msg, got, want)
		}
	}
}

func testProvider(t *testing.T, now func() time.Time) (*Provider, *fake.Server) {
	t.Helper()
	cfg := fake.DefaultConfig()
	cfg.Now = now
	fk := fake.Start(cfg)
	t.Cleanup(fk.Close)
	return New(Options{Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), fk
}

func TestAttachmentWindowIsRespected(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 2, 11, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	p, fk := testProvider(t, now)
	p.windowBytes = 10_000
	s := fk.Settings()
	ctx := context.Background()
	ref, err := p.Create(ctx, psa.Call{Settings: s}, psa.Ticket{Summary: "x"})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4000)
	for _, m := range []string{"w1", "w2"} {
		if err := p.Attach(ctx, psa.Call{Settings: s}, ref, psa.Attachment{Name: "a.bin", Data: data, Marker: m}); err != nil {
			t.Fatal(err)
		}
	}
	err = p.Attach(ctx, psa.Call{Settings: s}, ref, psa.Attachment{Name: "c.bin", Data: data, Marker: "w3"})
	var pe *psa.Error
	if !errors.As(err, &pe) || pe.Kind != psa.Transient || pe.RetryAfter <= 0 || pe.RetryAfter > attachWindow {
		t.Fatalf("third upload: %v", err)
	}
	uploads := 0
	for _, r := range fk.Requests() {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/Attachments") {
			uploads++
		}
	}
	if uploads != 2 {
		t.Errorf("%d uploads reached Autotask, want 2 (the third would block the tenant's uploads)", uploads)
	}
	mu.Lock()
	clock = clock.Add(pe.RetryAfter)
	mu.Unlock()
	if err := p.Attach(ctx, psa.Call{Settings: s}, ref, psa.Attachment{Name: "c.bin", Data: data, Marker: "w3"}); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestNextPageOnAnotherHostGetsNoCredentials(t *testing.T) {
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer other.Close()
	p, fk := testProvider(t, time.Now)
	j, err := p.job(fk.Settings(), "lookup", false, false)
	if err != nil {
		t.Fatal(err)
	}
	err = j.callAbs(context.Background(), http.MethodPost, other.URL+"/ATServicesRest/V1.0/Companies/query/next?paging=x", []byte(`{}`), nil)
	var pe *psa.Error
	if !errors.As(err, &pe) || pe.Kind != psa.Permanent || !strings.Contains(pe.Message, "another host") {
		t.Fatalf("err = %v", err)
	}
	if hits.Load() != 0 {
		t.Error("the foreign host was called")
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var leaked atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Secret") != "" {
			leaked.Store(true)
		}
	}))
	defer target.Close()
	p, fk := testProvider(t, time.Now)
	// A zone that redirects every call somewhere else.
	redirect := httptest.NewServer(http.RedirectHandler(target.URL+"/x", http.StatusTemporaryRedirect))
	defer redirect.Close()
	j, err := p.job(fk.Settings(), "probe", false, false)
	if err != nil {
		t.Fatal(err)
	}
	z, _, err := j.zone(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	moved := *z
	moved.base = mustParse(t, redirect.URL+"/ATServicesRest/V1.0/")
	resp, err := j.send(context.Background(), &moved, http.MethodGet, "Version", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.status != http.StatusTemporaryRedirect || leaked.Load() {
		t.Errorf("status %d, leaked %v", resp.status, leaked.Load())
	}
	if e := j.classify(resp); e.Kind != psa.Permanent || !strings.Contains(e.Message, "redirect") {
		t.Errorf("classify = %+v", e)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
