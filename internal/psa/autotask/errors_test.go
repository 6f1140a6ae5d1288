package autotask_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"psagate/internal/psa"
	"psagate/internal/psa/autotask"
	"psagate/internal/psa/autotask/fake"
)

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name       string
		fault      fake.Fault
		settings   []string
		kind       psa.Kind
		status     int
		field      string
		want       string
		retryAfter time.Duration
	}{
		{name: "401 empty", fault: fake.Fault{Kind: fake.Fault401}, kind: psa.Auth, status: 401, want: "autotask.secret"},
		{name: "403", fault: fake.Fault{Kind: fake.Fault403}, kind: psa.Auth, status: 403, want: "API User (API-only)"},
		{name: "500 permissions", fault: fake.Fault{Kind: fake.Fault500Envelope, Message: "The logged in Resource does not have the adequate permissions to create this entity."},
			kind: psa.Auth, status: 500, want: "security level"},
		{name: "500 integration code", fault: fake.Fault{Kind: fake.Fault500Envelope, Message: "IntegrationCode is invalid."}, kind: psa.Auth, status: 500, want: "autotask.integration_code"},
		{name: "500 validation", fault: fake.Fault{Kind: fake.Fault500Envelope, Message: "Picklist value [9] does not exist for priority."},
			kind: psa.Permanent, status: 500, field: "autotask.priority", want: "Picklist value [9] does not exist for priority."},
		// A 500 with an envelope that is no validation message is a server
		// fault: retried (issue 13). A validation 500 names field and key.
		{name: "500 transient envelope", fault: fake.Fault{Kind: fake.Fault500Envelope, Message: "An unexpected error has occurred. Please try again later."},
			kind: psa.Transient, status: 500, want: "unexpected error"},
		{name: "500 due date", fault: fake.Fault{Kind: fake.Fault500Envelope, Message: "dueDateTime is required.; on record number [0]."},
			kind: psa.Permanent, status: 500, field: "autotask.due_in", want: "(set autotask.due_in)"},
		{name: "500 billing code", fault: fake.Fault{Kind: fake.Fault500Envelope, Message: "Missing required field: billingCodeID."},
			kind: psa.Permanent, status: 500, field: "autotask.billing_code_id", want: "billingCodeID"},
		{name: "500 thread limit", fault: fake.Fault{Kind: fake.Fault500Envelope, Message: "Thread Threshold Exceeded (Itgenatr005)"},
			kind: psa.Transient, status: 500, want: "thread limit", retryAfter: 2 * time.Second},
		{name: "500 html", fault: fake.Fault{Kind: fake.Fault500HTML}, kind: psa.Transient, status: 500, want: "HTTP 500"},
		{name: "500 empty", fault: fake.Fault{Kind: fake.Fault500Empty}, kind: psa.Transient, status: 500, want: "HTTP 500"},
		{name: "503 retry-after", fault: fake.Fault{Kind: fake.Fault503, RetryAfter: "7"}, kind: psa.Transient, status: 503, retryAfter: 7 * time.Second},
		{name: "429", fault: fake.Fault{Kind: fake.Fault429}, kind: psa.Transient, status: 429, want: "hourly request threshold", retryAfter: time.Minute},
		{name: "reset", fault: fake.Fault{Kind: fake.FaultReset}, kind: psa.Transient, want: "network error"},
		{name: "slow", fault: fake.Fault{Kind: fake.FaultSlow, Delay: 10 * time.Second}, settings: []string{"autotask.timeout", "150ms"},
			kind: psa.Transient, want: "within 150ms"},
		{name: "unknown company (real validation)", settings: []string{"autotask.company_id", "999"}, kind: psa.Permanent, status: 500,
			field: "autotask.company_id", want: "companyID of type: Company does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			if tt.fault.Kind != 0 {
				tt.fault.Method, tt.fault.Path = http.MethodPost, "Tickets"
				e.fk.Inject(tt.fault)
			}
			_, err := e.create(e.with(tt.settings...), false, sample)
			pe := asPSA(t, err)
			if pe.Kind != tt.kind || pe.Status != tt.status || pe.Field != tt.field || pe.Op != "create" || pe.Provider != "autotask" {
				t.Errorf("got kind %v status %d field %q op %q, want %v %d %q", pe.Kind, pe.Status, pe.Field, pe.Op, tt.kind, tt.status, tt.field)
			}
			if !strings.Contains(pe.Error(), tt.want) {
				t.Errorf("error %q lacks %q", pe.Error(), tt.want)
			}
			if pe.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", pe.RetryAfter, tt.retryAfter)
			}
			e.noSecrets("error", pe.Error())
		})
	}
}

func TestWrongCredentials(t *testing.T) {
	tests := []struct {
		name     string
		settings []string
		want     string
	}{
		{"user", []string{"autotask.username", "nobody@example.com"}, "does not know the API user"},
		{"secret", []string{"autotask.secret", "wrong-secret-value"}, "check autotask.username and autotask.secret"},
		{"integration code", []string{"autotask.integration_code", "WRONGCODE1234567890"}, "check autotask.integration_code"},
		{"missing secret", []string{"autotask.secret", ""}, "autotask.secret is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			s := e.with(tt.settings...)
			_, err := e.create(s, false, sample)
			pe := asPSA(t, err)
			if pe.Kind != psa.Auth || !strings.Contains(pe.Message, tt.want) {
				t.Errorf("create: %+v", pe)
			}
			e.noSecrets("error", pe.Error())
			perr := e.p.Probe(t.Context(), s)
			if psa.KindOf(perr) != psa.Auth {
				t.Errorf("probe: %v", perr)
			}
			if len(e.fk.Tickets()) != 0 {
				t.Error("a ticket was created")
			}
		})
	}
}

func TestProbe(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.p.Probe(t.Context(), e.s); err != nil {
		t.Fatal(err)
	}
	r := e.reqs(http.MethodGet, "/Version")
	if len(r) != 1 || r[0].Status != 200 {
		t.Errorf("probe requests: %v", r)
	}
	// A probe needs no company: it is the check of the credentials alone.
	if err := e.p.Probe(t.Context(), e.with("autotask.company_id", "")); err != nil {
		t.Errorf("probe without company: %v", err)
	}
}

func TestThresholdSlowDownAndHold(t *testing.T) {
	e := newEnv(t, func(c *fake.Config) { c.RequestThreshold = 1000 }, nil)
	ctx := t.Context()

	e.mustCreate(e.s, sample)
	if s := e.Sleeps(); len(s) != 0 {
		t.Errorf("slept %v at low usage", s)
	}
	if n := len(e.reqs(http.MethodGet, "ThresholdInformation")); n != 1 {
		t.Errorf("%d threshold reads at start, want 1", n)
	}

	// Other integrations of the tenant push usage past 50%; the next read
	// comes after the interval.
	e.fk.AddExternalRequests(550)
	e.clock.Advance(11 * time.Minute)
	e.mustCreate(e.s, psa.Ticket{Summary: "half", ExternalRef: "h"})
	s := e.Sleeps()
	if len(s) == 0 || s[0] != 500*time.Millisecond {
		t.Errorf("sleeps above 50%% = %v, want 500ms each", s)
	}

	e.fk.AddExternalRequests(250)
	e.clock.Advance(11 * time.Minute)
	before := len(e.Sleeps())
	e.mustCreate(e.s, psa.Ticket{Summary: "three quarters", ExternalRef: "q"})
	if s := e.Sleeps()[before:]; len(s) == 0 || s[len(s)-1] != time.Second {
		t.Errorf("sleeps above 75%% = %v, want 1s", s)
	}

	// Above 90% ticket calls are held without reaching Autotask.
	e.fk.AddExternalRequests(150)
	e.clock.Advance(11 * time.Minute)
	tickets := len(e.fk.Tickets())
	_, err := e.create(e.s, false, psa.Ticket{Summary: "held", ExternalRef: "held"})
	pe := asPSA(t, err)
	if pe.Kind != psa.Transient || pe.RetryAfter != 5*time.Minute || !strings.Contains(pe.Message, "90%") {
		t.Errorf("held create: %+v", pe)
	}
	if len(e.fk.Tickets()) != tickets {
		t.Error("a ticket was created above 90%")
	}
	reads := len(e.reqs(http.MethodGet, "ThresholdInformation"))
	// Within the re-check minute nothing is sent at all.
	if _, err := e.create(e.s, false, psa.Ticket{Summary: "held", ExternalRef: "held"}); psa.KindOf(err) != psa.Transient {
		t.Errorf("second held create: %v", err)
	}
	if n := len(e.reqs(http.MethodGet, "ThresholdInformation")); n != reads {
		t.Errorf("threshold re-read within the minute")
	}
	// Test and lookups still work: a human is waiting for them.
	if _, err := e.p.Lookup(ctx, e.s, "queues"); err != nil {
		t.Errorf("lookup while held: %v", err)
	}

	// When the window frees (the fake's hour passes), tickets flow again.
	e.clock.Advance(61 * time.Minute)
	if _, err := e.create(e.s, false, psa.Ticket{Summary: "free again", ExternalRef: "free"}); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestThresholdIsReadEveryNCalls(t *testing.T) {
	e := newEnv(t, nil, func(o *autotask.Options) { o.ThresholdEvery = 5 })
	for i := range 6 {
		e.mustCreate(e.s, psa.Ticket{Summary: "n", ExternalRef: "n" + itoa(int64(i))})
	}
	// 6 creates of 2 calls (+1 fields read) ≈ 13 calls: reads at the start,
	// then after every 5 calls.
	n := len(e.reqs(http.MethodGet, "ThresholdInformation"))
	if n < 3 || n > 4 {
		t.Errorf("%d threshold reads for ~13 calls every 5, want 3..4", n)
	}
}

func TestServerThresholdRejectionHoldsFurtherCalls(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.mustCreate(e.s, sample)
	e.fk.Inject(fake.Fault{Kind: fake.Fault429, Method: http.MethodPost, Path: "Tickets", RetryAfter: "120"})
	_, err := e.create(e.s, false, psa.Ticket{Summary: "x", ExternalRef: "x"})
	if pe := asPSA(t, err); pe.Kind != psa.Transient || pe.RetryAfter != 2*time.Minute {
		t.Fatalf("429: %+v", pe)
	}
	count := len(e.fk.Requests())
	_, err = e.create(e.s, false, psa.Ticket{Summary: "y", ExternalRef: "y"})
	if pe := asPSA(t, err); pe.Kind != psa.Transient || pe.RetryAfter != 5*time.Minute {
		t.Fatalf("after 429: %+v", pe)
	}
	if n := len(e.fk.Requests()); n != count {
		t.Errorf("%d requests sent while the tenant is over its threshold", n-count)
	}
}

func TestRealThreadLimitIsTransient(t *testing.T) {
	// A provider allowed more in flight than Autotask accepts gets the
	// fake's thread-limit rejections, and they are transient.
	e := newEnv(t, func(c *fake.Config) { c.Latency = 40 * time.Millisecond }, func(o *autotask.Options) { o.MaxInFlight = 8 })
	e.mustCreate(e.s, sample) // warm the caches
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			_, err := e.create(e.s, false, psa.Ticket{Summary: "burst", ExternalRef: "burst" + itoa(int64(i))})
			errs <- err
		}()
	}
	rejected := 0
	for range 8 {
		if err := <-errs; err != nil {
			pe := asPSA(t, err)
			if pe.Kind != psa.Transient || !strings.Contains(pe.Message, "thread limit") {
				t.Errorf("rejection: %+v", pe)
			}
			rejected++
		}
	}
	if rejected == 0 {
		t.Error("8 concurrent creates with a limit of 3 were all accepted")
	}
}
