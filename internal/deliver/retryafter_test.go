package deliver_test

// Retry-After is honoured end to end: the PSA answers 429 with a
// Retry-After much longer than the configured backoff, and the next request
// it sees from psagate comes no earlier than it asked.

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/psa"
	"psagate/internal/psa/autotask"
	atfake "psagate/internal/psa/autotask/fake"
	"psagate/internal/psa/connectwise"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/psa/fakehttp"
	"psagate/internal/store"
)

// fastRetries: a backoff of 10-40ms, far below any Retry-After used here.
func fastRetries() config.Deliver {
	return config.Deliver{
		MaxAge:     config.Duration(time.Hour),
		BackoffMin: config.Duration(20 * time.Millisecond),
		BackoffMax: config.Duration(40 * time.Millisecond),
	}
}

// arrival is one request as the PSA's front door saw it.
type arrival struct {
	at     time.Time
	method string
	path   string
	status int
}

// cwFrontDoor serves a ConnectWise fake through a handler that notes when
// each request arrived (the fake records requests but not their times).
type cwFrontDoor struct {
	mu       sync.Mutex
	arrivals []arrival
}

func startCWFrontDoor(t *testing.T, cw *cwfake.Server) (*cwFrontDoor, psa.Settings) {
	fd := &cwFrontDoor{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		sw := &fakehttp.StatusWriter{ResponseWriter: w}
		cw.ServeHTTP(sw, r)
		fd.mu.Lock()
		fd.arrivals = append(fd.arrivals, arrival{at: at, method: r.Method, path: r.URL.Path, status: sw.Status})
		fd.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	st := cw.Settings()
	st["connectwise.endpoint"] = srv.URL + "/" + cw.Config().Codebase + "apis/3.0"
	return fd, st
}

func (fd *cwFrontDoor) list() []arrival {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	return append([]arrival(nil), fd.arrivals...)
}

// rateLimitedThenNext finds the single request answered 429 and the first
// request that arrived after it.
func rateLimitedThenNext(t *testing.T, as []arrival) (limited, next arrival) {
	t.Helper()
	n := 0
	for _, a := range as {
		if a.status == http.StatusTooManyRequests {
			limited = a
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d requests answered 429, want 1: %+v", n, as)
	}
	for _, a := range as {
		if a.at.After(limited.at) && (next.at.IsZero() || a.at.Before(next.at)) {
			next = a
		}
	}
	if next.at.IsZero() {
		t.Fatalf("no request after the 429: %+v", as)
	}
	return limited, next
}

// runCreateThrough429 queues a create, lets the Deliverer run it through
// the injected 429 to success, and checks there is exactly one ticket.
func runCreateThrough429(t *testing.T, cw *cwfake.Server, st psa.Settings) {
	t.Helper()
	db := openTestDB(t)
	d := startDeliverer(t, db, connectwise.Name, connectwise.New(connectwise.Options{Logger: testLogger(t)}), st, fastRetries(), nil)
	inc := addIncident(t, db, "veeam:pinecrest:srv01:nightly", psa.TicketRef{}, time.Now())
	job := addJob(t, db, inc, store.Job{Op: store.OpCreate}, time.Now())
	d.Wake()
	waitJob(t, db, job.ID, "delivered", jobState.Gone)
	if n := len(cwTicketsWithXRef(cw, inc.ExternalRef)); n != 1 {
		t.Fatalf("%d tickets for the incident, want exactly 1", n)
	}
	if n := cwRequests(cw, "POST", "/service/tickets"); n != 2 {
		t.Errorf("%d ticket POSTs, want 2 (the rate-limited one and the one that created the ticket)", n)
	}
}

func TestRetryAfterSecondsHonouredConnectWise(t *testing.T) {
	t.Parallel()
	cw := cwfake.Start(cwfake.DefaultConfig())
	t.Cleanup(cw.Close)
	fd, st := startCWFrontDoor(t, cw)
	cw.Inject(cwfake.Fault{Method: "POST", Path: "/service/tickets", Status: http.StatusTooManyRequests, RetryAfter: "1"})

	runCreateThrough429(t, cw, st)

	limited, next := rateLimitedThenNext(t, fd.list())
	if !strings.HasSuffix(limited.path, "/service/tickets") || limited.method != "POST" {
		t.Fatalf("the 429 went to %s %s", limited.method, limited.path)
	}
	if gap := next.at.Sub(limited.at); gap < time.Second {
		t.Fatalf("next request (%s %s) came %v after the 429 with Retry-After: 1, want at least 1s", next.method, next.path, gap)
	}
}

func TestRetryAfterHTTPDateHonouredConnectWise(t *testing.T) {
	t.Parallel()
	cw := cwfake.Start(cwfake.DefaultConfig())
	t.Cleanup(cw.Close)
	fd, st := startCWFrontDoor(t, cw)
	// An HTTP-date has whole seconds: this one is 1 to 2 seconds away.
	header := time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)
	until, err := http.ParseTime(header)
	if err != nil {
		t.Fatal(err)
	}
	cw.Inject(cwfake.Fault{Method: "POST", Path: "/service/tickets", Status: http.StatusTooManyRequests, RetryAfter: header})

	runCreateThrough429(t, cw, st)

	limited, next := rateLimitedThenNext(t, fd.list())
	if until.Sub(limited.at) < 500*time.Millisecond {
		t.Fatalf("the test's Retry-After date %s was only %v after the 429: too close to tell it from the backoff", header, until.Sub(limited.at))
	}
	if next.at.Before(until) {
		t.Fatalf("next request (%s %s) came at %s, before the Retry-After date %s (%v early)",
			next.method, next.path, next.at.UTC().Format(time.StampMilli), header, until.Sub(next.at))
	}
}

// Autotask's fake records the arrival time of every request itself.
func TestRetryAfterSecondsHonouredAutotask(t *testing.T) {
	t.Parallel()
	at := atfake.Start(atfake.DefaultConfig())
	t.Cleanup(at.Close)
	// The thread-limit 429 (not the hourly threshold one, which also makes
	// the provider hold ticket calls for minutes on its own account).
	at.Inject(atfake.Fault{Kind: atfake.Fault429, Method: "POST", Path: "Tickets", RetryAfter: "1",
		Message: "Thread Threshold Exceeded: more than 3 concurrent requests for this integration and entity (Itgenatr005)."})
	db := openTestDB(t)
	d := startDeliverer(t, db, autotask.Name, autotask.New(autotask.Options{Logger: testLogger(t)}), at.Settings(), fastRetries(), nil)
	inc := addIncident(t, db, "veeam:pinecrest:srv01:nightly", psa.TicketRef{}, time.Now())
	job := addJob(t, db, inc, store.Job{Op: store.OpCreate}, time.Now())
	d.Wake()
	waitJob(t, db, job.ID, "delivered", jobState.Gone)

	if n := len(atTicketsWithExternalID(at, inc.ExternalRef)); n != 1 {
		t.Fatalf("%d tickets for the incident, want exactly 1", n)
	}
	var as []arrival
	for _, r := range at.Requests() {
		as = append(as, arrival{at: r.Time, method: r.Method, path: r.Path, status: r.Status})
	}
	limited, next := rateLimitedThenNext(t, as)
	if limited.method != "POST" || !strings.HasSuffix(strings.ToLower(limited.path), "/tickets") {
		t.Fatalf("the 429 went to %s %s", limited.method, limited.path)
	}
	if gap := next.at.Sub(limited.at); gap < time.Second {
		t.Fatalf("next request (%s %s) came %v after the 429 with Retry-After: 1, want at least 1s", next.method, next.path, gap)
	}
}
