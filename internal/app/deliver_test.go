package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/testutil"
)

// cwConfig writes a config whose provider is the ConnectWise fake, with
// quick backoff so retries happen within a test.
func cwConfig(t *testing.T, fk *cwfake.Server, dir, extra string) string {
	t.Helper()
	s := fk.Settings()
	s["connectwise.company"] = "PVC01"
	s["connectwise.timeout"] = "500ms"
	section := psaTOML("psa", s) + "[deliver]\nbackoff_min = \"20ms\"\nbackoff_max = \"200ms\"\nprobe_interval = \"200ms\"\n" + extra
	return withPSA(t, dir, section, "")
}

func x360(device, kind string, n int) []byte {
	subject := "[PVC-BDR1] Failed Backup: " + device
	if kind == "ok" {
		subject = "[PVC-BDR1] Successful Backup: " + device
	}
	return []byte(fmt.Sprintf("From: PVC-BDR1 <bdr1@pinecrest-vet.example>\r\nTo: pinecrest@alerts.example.net\r\n"+
		"Subject: %s\r\nMessage-ID: <%s-%s-%d@pvc-bdr1>\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\n\r\n  Protected system:  %s\r\n",
		subject, device, kind, n, device))
}

// TestDeliveryRidesOutPSAFaults has the fake PSA answer with 500s, a 429
// with Retry-After, a timeout, a reset and a lost response for a while, then
// recover; every ticket, note and close must end up on it exactly once, in
// order per ticket, and the metrics count the transient failures.
func TestDeliveryRidesOutPSAFaults(t *testing.T) {
	fk := cwfake.Start(cwfake.DefaultConfig())
	defer fk.Close()
	h := startApp(t, cwConfig(t, fk, t.TempDir(), ""), Options{})

	create := []cwfake.Fault{
		{Method: "POST", Path: "/service/tickets", Status: 500, Times: 2},
		{Method: "POST", Path: "/service/tickets", Status: 429, RetryAfter: "1"},
		{Method: "POST", Path: "/service/tickets", Delay: 2 * time.Second}, // longer than the 500ms timeout
		{Method: "POST", Path: "/service/tickets", Drop: true},
		{Method: "POST", Path: "/service/tickets", LoseResponse: true},
	}
	later := []cwfake.Fault{
		{Method: "POST", Path: "/service/tickets/*/notes", Status: 502, Times: 2},
		{Method: "POST", Path: "/service/tickets/*/notes", Drop: true},
		{Method: "PATCH", Path: "/service/tickets/*", Status: 503},
	}
	for _, f := range append(create, later...) {
		fk.Inject(f)
	}
	const devices = 5
	send := func(raw []byte) {
		if r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, raw); !strings.HasPrefix(r, "250") {
			t.Fatal(r)
		}
	}
	for i := range devices {
		send(x360(fmt.Sprintf("PVC-SRV-F%d", i), "fail", 1))
	}
	for i := range devices {
		send(x360(fmt.Sprintf("PVC-SRV-F%d", i), "fail", 2))
		send(x360(fmt.Sprintf("PVC-SRV-F%d", i), "ok", 3))
	}
	waitFor(t, "the outbox to drain through the faults", 60*time.Second, func() bool { return idle(h.app.DB) })
	if n := len(fk.Tickets()); n != devices {
		t.Fatalf("fake holds %d tickets, want %d (one per device, no duplicates)", n, devices)
	}
	q, _ := ReadQueue(h.app.DB)
	if len(q.Dead) != 0 {
		t.Fatalf("dead letters: %+v", q.Dead[0])
	}
	for _, tk := range fk.Tickets() {
		// initialDescription, the repeat note, the resolution note.
		if len(tk.Notes) != 3 || !tk.ClosedFlag {
			t.Errorf("ticket %d %q: %d notes, closed=%v; want 3 notes and closed", tk.ID, tk.Summary, len(tk.Notes), tk.ClosedFlag)
			continue
		}
		if !tk.Notes[1].DetailDescriptionFlag || !tk.Notes[2].ResolutionFlag {
			t.Errorf("ticket %d: notes out of order (repeat then resolution)", tk.ID)
		}
	}
	// Per ticket, the successful calls came in order: create, note, close.
	seen := map[string][]string{}
	for _, r := range fk.Requests() {
		if r.Status < 200 || r.Status > 299 {
			continue
		}
		switch {
		case r.Method == "POST" && r.APIPath == "/service/tickets":
			seen[fmt.Sprint(len(seen))] = nil // creates are checked by count above
		case r.Method == "POST" && strings.HasSuffix(r.APIPath, "/notes"):
			id := strings.Split(r.APIPath, "/")[3]
			seen["t"+id] = append(seen["t"+id], "note")
		case r.Method == "PATCH":
			id := strings.Split(r.APIPath, "/")[3]
			seen["t"+id] = append(seen["t"+id], "patch")
		}
	}
	for k, ops := range seen {
		if strings.HasPrefix(k, "t") && strings.Join(ops, ",") != "note,note,patch" {
			t.Errorf("ticket %s: successful calls %v, want note,note,patch", k, ops)
		}
	}
	m := h.app.Metrics
	if got := value(m.PSAOperations.WithLabelValues("connectwise", "create", "transient_error")); got != float64(len(create)+1) {
		t.Errorf("create transient errors counted = %v, want %d", got, len(create)+1)
	}
	later4 := value(m.PSAOperations.WithLabelValues("connectwise", "note", "transient_error")) +
		value(m.PSAOperations.WithLabelValues("connectwise", "close", "transient_error"))
	if later4 != 4 {
		t.Errorf("note+close transient errors counted = %v, want 4", later4)
	}
	if got := value(m.PSAOperations.WithLabelValues("connectwise", "create", "success")); got != devices {
		t.Errorf("create successes = %v, want %d", got, devices)
	}
}

// TestAuthFailurePausesProviderUntilProbeWorks: a 401 pauses the provider
// (readyz says so) and delivery resumes by itself when the probe succeeds.
func TestAuthFailurePausesProviderUntilProbeWorks(t *testing.T) {
	fk := cwfake.Start(cwfake.DefaultConfig())
	defer fk.Close()
	h := startApp(t, cwConfig(t, fk, t.TempDir(), ""), Options{})
	// Every API call fails authentication for a while: the create, then the
	// probes (GET /system/info).
	fk.Inject(cwfake.Fault{Status: 401, Times: 4})
	testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, x360("PVC-SRV-A1", "fail", 1))
	waitFor(t, "the provider to pause", 10*time.Second, func() bool { return len(h.app.Deliverer.Paused()) == 1 })
	resp, err := http.Get("http://" + h.app.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while paused: %d", resp.StatusCode)
	}
	waitFor(t, "delivery to resume after the probe works", 20*time.Second, func() bool {
		return len(h.app.Deliverer.Paused()) == 0 && idle(h.app.DB)
	})
	if n := len(fk.Tickets()); n != 1 {
		t.Fatalf("tickets = %d, want 1", n)
	}
	q, _ := ReadQueue(h.app.DB)
	if len(q.Dead) != 0 {
		t.Fatal("an auth failure must not kill the job")
	}
}
