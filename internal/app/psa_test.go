package app

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
func checkAgainstExpected(t *testing.T, set string, rows []testutil.Row, got []ticket) {
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
			// The expected attachments come from the sample itself, not
			// from asking the gateway: a mail that opens a ticket has its
			// files uploaded to it. (EXPECTED.tsv has no attachment column;
			// every attachment in the sample sets is a screenshot of a
			// failure whose pack rule says attach = true, so a rule that
			// lost it fails here.)
			w := &want{attach: emlAttachments(t, filepath.Join(set, r.File))}
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

// emlAttachments reads the files attached to a sample mail with the
// standard library's MIME parser (independent of psagate's decoder): the
// decoded content of every part that is an attachment (a
// Content-Disposition of attachment, or a file name), in mail order.
func emlAttachments(t *testing.T, path string) [][]byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(readAll(t, path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][]byte
	var walk func(h textproto.MIMEHeader, body io.Reader)
	walk = func(h textproto.MIMEHeader, body io.Reader) {
		mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
		if err != nil {
			mt = "text/plain"
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				walk(p.Header, p)
			}
		}
		disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
		if disp != "attachment" && dparams["filename"] == "" && params["name"] == "" {
			return
		}
		r := body
		if strings.EqualFold(strings.TrimSpace(h.Get("Content-Transfer-Encoding")), "base64") {
			r = base64.NewDecoder(base64.StdEncoding, body)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: attachment: %v", path, err)
		}
		out = append(out, data)
	}
	walk(textproto.MIMEHeader(m.Header), m.Body)
	return out
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
			checkAgainstExpected(t, set, rows, cwTickets(fk))
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
			checkAgainstExpected(t, set, rows, atTickets(fk))
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
		return []byte(fmt.Sprintf("From: bdr@pinecrest-vet.example\r\nTo: %s\r\nSubject: [BDR] Failed Backup: %s\r\nMessage-ID: <%s@x>\r\n\r\nx360Recover alert from appliance BDR\r\n", to, dev, dev))
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
