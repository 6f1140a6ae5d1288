package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"psagate/internal/config"
	"psagate/internal/psa"
	"psagate/internal/psa/autotask"
	atfake "psagate/internal/psa/autotask/fake"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/route"
	"psagate/internal/testutil"
)

// strictAutotask is a tenant whose ticket categories make the work type
// (billingCodeID) and the category required, besides dueDateTime, which
// Autotask always requires (issue 13).
func strictAutotask() atfake.Config {
	c := atfake.DefaultConfig()
	c.RequiredTicketFields = []string{"billingCodeID", "ticketCategory"}
	return c
}

// strictSettings satisfy strictAutotask, with per-kind note publish:
// repeats and other notes internal, the close note visible to all.
func strictSettings(fk *atfake.Server, unset string) psa.Settings {
	s := fk.Settings()
	s["autotask.billing_code_id"] = "Monitoring"
	s["autotask.ticket_category"] = "Alert"
	s["autotask.due_in"] = "8h"
	s["autotask.note_publish.default"] = "Internal Only"
	s["autotask.note_publish.repeat"] = "Internal Only"
	s["autotask.note_publish.close"] = "All Autotask Users"
	s["autotask.attachment_publish"] = "Internal Only"
	delete(s, unset)
	return s
}

// The sample flows (open, repeat, attach, close) on a strict tenant: every
// ticket carries the configured values and each note the publish value of
// its kind. TestSamplesOnAutotask runs the same flows on a permissive one.
func TestSamplesOnStrictAutotask(t *testing.T) {
	for _, set := range testutil.SampleSets(t) {
		t.Run(filepath.Base(filepath.Dir(set))+"/"+filepath.Base(set), func(t *testing.T) {
			fk := atfake.Start(strictAutotask())
			defer fk.Close()
			start := time.Now()
			cfg := withPSA(t, t.TempDir(), psaTOML("psa", strictSettings(fk, ""))+"[deliver.autotask]\nrate_per_minute = 100000\n", "")
			h := startApp(t, cfg, Options{})
			rows := testutil.ReadExpected(t, set)
			sendRows(t, h, set, rows)
			checkAgainstExpected(t, set, rows, atTickets(fk))
			var resolved, other, attached int
			for _, tk := range fk.Tickets() {
				if tk.BillingCodeID != 29682802 || tk.TicketCategory != 4 {
					t.Errorf("ticket %d: billing code %d, category %d", tk.ID, tk.BillingCodeID, tk.TicketCategory)
				}
				if due := tk.DueDateTime.Sub(tk.CreateDate); due < 8*time.Hour-time.Minute || due > 8*time.Hour+time.Minute || tk.CreateDate.Before(start.Add(-time.Minute)) {
					t.Errorf("ticket %d: due %v after creation, want 8h (due_in)", tk.ID, due)
				}
				for _, n := range tk.Notes {
					want := 2
					if n.Title == "Resolved" {
						want = 1
						resolved++
					} else {
						other++
					}
					if n.Publish != want {
						t.Errorf("ticket %d note %q: publish %d, want %d", tk.ID, n.Title, n.Publish, want)
					}
				}
				for _, a := range tk.Attachments {
					attached++
					if a.Publish != 2 {
						t.Errorf("ticket %d attachment %q: publish %d, want 2", tk.ID, a.Title, a.Publish)
					}
				}
			}
			if resolved == 0 || other == 0 || attached == 0 {
				t.Errorf("the flows wrote %d close notes, %d other notes and %d attachments: the check saw nothing", resolved, other, attached)
			}
		})
	}
}

// One required value unset: psa test names it before the first mail, and
// the first mail's ticket becomes a dead letter whose reason names the field
// and the setting, counted with reason="validation"; nothing is retried.
func TestStrictAutotaskMissingValueIsPredictedAndDeadLettered(t *testing.T) {
	fk := atfake.Start(strictAutotask())
	defer fk.Close()
	cfgPath := withPSA(t, t.TempDir(), psaTOML("psa", strictSettings(fk, "autotask.billing_code_id"))+"[deliver.autotask]\nrate_per_minute = 100000\n", "")

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = autotask.New(autotask.Options{}).Test(context.Background(), route.New(cfg).Effective("pinecrest", "", nil), &out)
	if err == nil || !strings.Contains(out.String(), "billingCodeID") || !strings.Contains(out.String(), "autotask.billing_code_id is not set") {
		t.Fatalf("psa test did not predict the missing billing code (err %v):\n%s", err, out.String())
	}

	h := startApp(t, cfgPath, Options{})
	mail := []byte("From: bdr@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: PVC-SRV-DB2\r\nMessage-ID: <strict-1@x>\r\n\r\nThe backup failed.\r\n")
	if r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, mail); !strings.HasPrefix(r, "250") {
		t.Fatal(r)
	}
	waitFor(t, "the dead letter", 20*time.Second, func() bool {
		q, err := ReadQueue(h.app.DB)
		return err == nil && len(q.Dead) > 0
	})
	q, err := ReadQueue(h.app.DB)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Dead) != 1 || !strings.Contains(q.Dead[0].Reason, "billingCodeID") || !strings.Contains(q.Dead[0].Reason, "autotask.billing_code_id") {
		t.Fatalf("dead letters = %+v", q.Dead)
	}
	if n := len(fk.Tickets()); n != 0 {
		t.Errorf("%d tickets, want 0", n)
	}
	posts := 0
	for _, r := range fk.Requests() {
		if r.Method == http.MethodPost && strings.EqualFold(r.Path, "/ATServicesRest/V1.0/Tickets") {
			posts++
		}
	}
	if posts != 1 {
		t.Errorf("%d ticket creates, want 1: a validation error is not retried", posts)
	}
	resp, err := http.Get("http://" + h.app.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf(`psagate_psa_errors_total{op=%q,provider="autotask",reason="validation"} 1`, "create")
	if !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %s", want)
	}
}

// A 500 whose envelope is no validation message is a server fault: the
// create is retried and the ticket opened once (issue 13).
func TestAutotaskServerFault500IsRetried(t *testing.T) {
	fk := atfake.Start(strictAutotask())
	defer fk.Close()
	fk.Inject(atfake.Fault{Kind: atfake.Fault500Envelope, Method: http.MethodPost, Path: "Tickets",
		Message: "An unexpected error has occurred. Please try again later."})
	section := psaTOML("psa", strictSettings(fk, "")) +
		"[deliver]\nbackoff_min = \"20ms\"\nbackoff_max = \"200ms\"\n[deliver.autotask]\nrate_per_minute = 100000\n"
	h := startApp(t, withPSA(t, t.TempDir(), section, ""), Options{})
	mail := []byte("From: bdr@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: PVC-SRV-DB2\r\nMessage-ID: <retry-1@x>\r\n\r\nThe backup failed.\r\n")
	if r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, mail); !strings.HasPrefix(r, "250") {
		t.Fatal(r)
	}
	waitFor(t, "the ticket", 20*time.Second, func() bool { return len(fk.Tickets()) == 1 && idle(h.app.DB) })
	q, err := ReadQueue(h.app.DB)
	if err != nil || len(q.Dead) != 0 {
		t.Fatalf("dead letters %+v (%v)", q.Dead, err)
	}
	if fk.PendingFaults() != 0 {
		t.Error("the fault was never met")
	}
}

// The sample flows on a strict ConnectWise board that requires the ticket
// address and location: the configured values reach every ticket.
// TestSamplesOnConnectWise runs the same flows on a permissive board.
func TestSamplesOnStrictConnectWise(t *testing.T) {
	for _, set := range testutil.SampleSets(t) {
		t.Run(filepath.Base(filepath.Dir(set))+"/"+filepath.Base(set), func(t *testing.T) {
			c := cwfake.DefaultConfig()
			for i := range c.Boards {
				if c.Boards[i].Name == "Backup Alerts" {
					c.Boards[i].Required = []string{"addressLine1", "city", "zip", "country", "location"}
				}
			}
			fk := cwfake.Start(c)
			defer fk.Close()
			s := fk.Settings()
			s["connectwise.company"] = "PVC01"
			s["connectwise.address_line1"] = "1 Harbor Way"
			s["connectwise.city"] = "Tampa"
			s["connectwise.state"] = "FL"
			s["connectwise.zip"] = "33602"
			s["connectwise.country"] = "United States"
			s["connectwise.location"] = "Tampa Office"
			h := startApp(t, withPSA(t, t.TempDir(), psaTOML("psa", s), ""), Options{})
			rows := testutil.ReadExpected(t, set)
			sendRows(t, h, set, rows)
			checkAgainstExpected(t, set, rows, cwTickets(fk))
			tks := fk.Tickets()
			if len(tks) == 0 {
				t.Fatal("no tickets")
			}
			for _, tk := range tks {
				if tk.AddressLine1 != "1 Harbor Way" || tk.City != "Tampa" || tk.StateIdentifier != "FL" || tk.Zip != "33602" ||
					tk.CountryID != 1 || tk.LocationID != 2 {
					t.Errorf("ticket %d address = %q %q %q %q country %d location %d", tk.ID, tk.AddressLine1, tk.City,
						tk.StateIdentifier, tk.Zip, tk.CountryID, tk.LocationID)
				}
			}
		})
	}
}
