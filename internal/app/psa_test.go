package app

import (
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"psagate/internal/gateway"
	"psagate/internal/message"
	"psagate/internal/psa"
	atfake "psagate/internal/psa/autotask/fake"
	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/testutil"
)

// psaTOML renders provider settings as [psa] table lines.
func psaTOML(table string, s psa.Settings) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n", table)
	for _, k := range slices.Sorted(maps.Keys(s)) {
		fmt.Fprintf(&b, "%s = %q\n", k, s[k])
	}
	return b.String()
}

// withPSA replaces the [psa] provider = "log" of the base config.
func withPSA(t *testing.T, dir string, psaSection string, clients string) string {
	t.Helper()
	path := baseConfig(t, dir, clients)
	data := strings.Replace(string(readAll(t, path)), "[psa]\nprovider = \"log\"\n", psaSection, 1)
	if err := writeFile(path, data); err != nil {
		t.Fatal(err)
	}
	return path
}

// ticket is what the tests read back from either fake.
type ticket struct {
	Summary     string
	Closed      bool
	Notes       int // notes added after creation (repeats, resolution)
	Attachments [][]byte
}

func cwTickets(s *cwfake.Server) []ticket {
	var out []ticket
	for _, t := range s.Tickets() {
		tk := ticket{Summary: t.Summary, Closed: t.ClosedFlag, Notes: len(t.Notes) - 1} // the first note is initialDescription
		for _, d := range t.Documents {
			tk.Attachments = append(tk.Attachments, d.Data)
		}
		out = append(out, tk)
	}
	return out
}

func atTickets(s *atfake.Server) []ticket {
	var out []ticket
	for _, t := range s.Tickets() {
		tk := ticket{Summary: t.Title, Closed: t.Status == 5, Notes: len(t.Notes)}
		for _, a := range t.Attachments {
			tk.Attachments = append(tk.Attachments, a.Data)
		}
		out = append(out, tk)
	}
	return out
}

// checkAgainstExpected verifies that the PSA holds exactly the tickets,
// notes, attachments and closures that the EXPECTED.tsv rows imply.
func checkAgainstExpected(t *testing.T, set string, rows []testutil.Row, snap *gateway.Snapshot, got []ticket) {
	t.Helper()
	type want struct {
		notes  int
		closed bool
		attach [][]byte
	}
	wants := map[string]*want{} // by the file that opened the ticket
	var order []string
	deviceOf := map[string]string{}
	for _, r := range rows {
		switch r.Decision {
		case "ticket":
			w := &want{}
			// Attachments go to the ticket when the deciding rule says so.
			raw := readAll(t, filepath.Join(set, r.File))
			v, a, _ := snap.Decide("x", raw, message.Envelope{MailFrom: r.MailFrom, RcptTo: []string{r.RcptTo}})
			if v.Attach {
				for _, at := range a.Attachments {
					w.attach = append(w.attach, at.Data)
				}
			}
			wants[r.File] = w
			order = append(order, r.File)
			deviceOf[r.File] = r.DeviceKey
		case "note":
			wants[r.IncidentOf].notes++
		case "close":
			if w := wants[r.IncidentOf]; w != nil {
				w.closed = true
				w.notes++ // the resolution note
			}
		}
	}
	if len(got) != len(order) {
		var sums []string
		for _, g := range got {
			sums = append(sums, g.Summary)
		}
		t.Fatalf("PSA holds %d tickets, EXPECTED.tsv implies %d; summaries: %q", len(got), len(order), sums)
	}
	for _, f := range order {
		w := wants[f]
		var match []ticket
		for _, g := range got {
			if strings.Contains(g.Summary, deviceOf[f]) {
				match = append(match, g)
			}
		}
		if len(match) != 1 {
			t.Errorf("%s: %d tickets mention %q, want 1", f, len(match), deviceOf[f])
			continue
		}
		g := match[0]
		if g.Closed != w.closed {
			t.Errorf("%s: ticket %q closed=%v, want %v", f, g.Summary, g.Closed, w.closed)
		}
		if g.Notes != w.notes {
			t.Errorf("%s: ticket %q has %d notes, want %d", f, g.Summary, g.Notes, w.notes)
		}
		if len(g.Attachments) != len(w.attach) {
			t.Errorf("%s: %d attachments, want %d", f, len(g.Attachments), len(w.attach))
			continue
		}
		for i := range w.attach {
			if !bytes.Equal(g.Attachments[i], w.attach[i]) {
				t.Errorf("%s: attachment %d differs from the mail's (%d vs %d bytes)", f, i, len(g.Attachments[i]), len(w.attach[i]))
			}
		}
	}
}

// sendRows sends the rows of a sample set in order and waits until every
// PSA call they caused is done.
func sendRows(t *testing.T, h *harness, set string, rows []testutil.Row) {
	t.Helper()
	for _, r := range rows {
		raw := readAll(t, filepath.Join(set, r.File))
		reply := testutil.SendMail(t, h.app.SMTPAddr(), r.MailFrom, []string{r.RcptTo}, raw)
		if !strings.HasPrefix(reply, "250") && !strings.HasPrefix(reply, "550") {
			t.Fatalf("%s: %q", r.File, reply)
		}
	}
	waitFor(t, "the outbox to drain", 30*time.Second, func() bool { return idle(h.app.DB) })
	q, err := ReadQueue(h.app.DB)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Dead) > 0 {
		t.Fatalf("dead letters: %s: %s", q.Dead[0].Op, q.Dead[0].Reason)
	}
}

func TestSamplesOnConnectWise(t *testing.T) {
	for _, set := range testutil.SampleSets(t) {
		t.Run(filepath.Base(filepath.Dir(set))+"/"+filepath.Base(set), func(t *testing.T) {
			fk := cwfake.Start(cwfake.DefaultConfig())
			defer fk.Close()
			s := fk.Settings()
			s["connectwise.company"] = "PVC01"
			cfg := withPSA(t, t.TempDir(), psaTOML("psa", s), "")
			h := startApp(t, cfg, Options{})
			rows := testutil.ReadExpected(t, set)
			sendRows(t, h, set, rows)
			checkAgainstExpected(t, set, rows, h.app.Snapshot(), cwTickets(fk))
			for _, tk := range fk.Tickets() {
				if !strings.HasPrefix(tk.ExternalXRef, "psagate:") {
					t.Errorf("ticket %d externalXRef = %q", tk.ID, tk.ExternalXRef)
				}
			}
		})
	}
}

func TestSamplesOnAutotask(t *testing.T) {
	for _, set := range testutil.SampleSets(t) {
		t.Run(filepath.Base(filepath.Dir(set))+"/"+filepath.Base(set), func(t *testing.T) {
			fk := atfake.Start(atfake.DefaultConfig())
			defer fk.Close()
			// The default rate (60 jobs a minute, well inside Autotask's
			// hourly threshold) would make this test take a minute.
			cfg := withPSA(t, t.TempDir(), psaTOML("psa", fk.Settings())+"[deliver.autotask]\nrate_per_minute = 100000\n", "")
			h := startApp(t, cfg, Options{})
			rows := testutil.ReadExpected(t, set)
			sendRows(t, h, set, rows)
			checkAgainstExpected(t, set, rows, h.app.Snapshot(), atTickets(fk))
			if n := fk.MaxInFlightSeen(); n > 3 {
				t.Errorf("%d requests in flight at once, Autotask allows 3", n)
			}
		})
	}
}

// TestClientsOnDifferentPSAs runs one gateway whose organisation uses
// ConnectWise while one client uses Autotask.
func TestClientsOnDifferentPSAs(t *testing.T) {
	cw := cwfake.Start(cwfake.DefaultConfig())
	defer cw.Close()
	at := atfake.Start(atfake.DefaultConfig())
	defer at.Close()
	org := cw.Settings()
	org["connectwise.company"] = "PVC01"
	// The org section also carries the Autotask credentials; the client
	// selects the provider and its company.
	for k, v := range at.Settings() {
		if k != "provider" {
			org[k] = v
		}
	}
	clients := `
[[client]]
name = "acme"
recipients = ["acme@alerts.example.net"]
[client.psa]
provider = "autotask"
autotask.company_id = 501
`
	cfg := withPSA(t, t.TempDir(), psaTOML("psa", org)+"[deliver.autotask]\nrate_per_minute = 100000\n", clients)
	h := startApp(t, cfg, Options{})
	mail := func(to, dev string) []byte {
		return []byte(fmt.Sprintf("From: bdr@x.example\r\nTo: %s\r\nSubject: [BDR] Failed Backup: %s\r\nMessage-ID: <%s@x>\r\n\r\nx360Recover alert from appliance BDR\r\n", to, dev, dev))
	}
	for _, m := range []struct{ to, dev string }{{"pinecrest@alerts.example.net", "PVC-SRV-1"}, {"acme@alerts.example.net", "ACME-SRV-1"}} {
		if r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr@x.example", []string{m.to}, mail(m.to, m.dev)); !strings.HasPrefix(r, "250") {
			t.Fatal(r)
		}
	}
	waitFor(t, "delivery", 20*time.Second, func() bool { return idle(h.app.DB) })
	cwt, att := cw.Tickets(), at.Tickets()
	if len(cwt) != 1 || !strings.Contains(cwt[0].Summary, "PVC-SRV-1") {
		t.Fatalf("ConnectWise tickets: %+v", cwt)
	}
	if len(att) != 1 || !strings.Contains(att[0].Title, "ACME-SRV-1") || att[0].CompanyID != 501 {
		t.Fatalf("Autotask tickets: %+v", att)
	}
}
