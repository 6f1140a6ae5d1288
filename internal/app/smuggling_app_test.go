package app

import (
	"bufio"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"psagate/internal/store"
)

// smugConverse writes chunks to a raw connection to addr, byte for byte
// and each as its own write (from a goroutine, so a server that stops
// reading cannot block the test), and returns every reply line (CRLF
// removed) until the server closes the connection.
func smugConverse(t *testing.T, addr string, chunks ...string) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, ch := range chunks {
			if _, err := io.WriteString(c, ch); err != nil {
				return
			}
		}
	}()
	var out []string
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			if !strings.HasSuffix(line, "\r\n") {
				t.Fatalf("reply line %q does not end in CRLF", line)
			}
			out = append(out, strings.TrimSuffix(line, "\r\n"))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("reading replies: %v (so far %q)", err, out)
			}
			break
		}
	}
	<-done
	return out
}

var queuedLine = regexp.MustCompile(`^250 2\.0\.0 Queued as ([a-z0-9]{16})$`)

// TestSmugglingAgainstTheFullGateway sends SMTP smuggling shapes over a
// raw socket to the whole gateway (go-smtp, the smtpd policy, the
// gateway and the real bbolt store), with bare_lf in both modes, and
// checks the exact replies and that the database holds exactly the
// intended messages: no smuggled "forged" message in the spool, the
// quarantine, the audit trail, the incidents or the PSA.
func TestSmugglingAgainstTheFullGateway(t *testing.T) {
	const (
		helo    = "HELO c\r\nMAIL FROM:<bdr1@pinecrest-vet.example>\r\nRCPT TO:<pinecrest@alerts.example.net>\r\nDATA\r\n"
		hidden  = "MAIL FROM:<evil@b.example>\r\nRCPT TO:<pinecrest@alerts.example.net>\r\nDATA\r\nSubject: forged\r\n\r\nx360Recover alert from appliance EVIL\r\nforged\r\n"
		smugged = hidden + ".\r\n"
		queued  = "250 2.0.0 Queued as *"
	)
	alert := func(dev string) string {
		return "From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: " + dev +
			"\r\nMessage-ID: <" + dev + "@smuggling.test>\r\n\r\nx360Recover alert from appliance PVC-BDR1"
	}
	pre := []string{
		"220 psagate.test ESMTP Service Ready",
		"250 2.0.0 Hello c",
		"250 2.0.0 Roger, accepting mail from <bdr1@pinecrest-vet.example>",
		"250 2.0.0 I'll make sure <pinecrest@alerts.example.net> gets this",
		"354 Go ahead. End your data with <CR><LF>.<CR><LF>",
	}
	const (
		bye      = "221 2.0.0 Bye"
		smuggle  = `550 5.5.2 Message refused: it contains a "." line with bare LF/CR line endings (an SMTP smuggling pattern)`
		bareLF   = `550 5.5.2 Message refused: it contains bare LF or CR line endings; SMTP requires CRLF (RFC 5321 section 2.3.8). Fix the sender, or set smtp.bare_lf = "normalize"`
		smugDev1 = "PVC-SRV-SMUG1"
	)
	type step struct {
		name   string
		writes []string
		want   map[string]string // mode -> the reply to the end of DATA
		device string            // the device of the one message accepted, if any
	}
	refused := map[string]string{"normalize": smuggle, "reject": bareLF}
	steps := []step{
		{name: "LF.LF", writes: []string{helo + alert("PVC-SRV-LFLF") + "\n.\n" + smugged + "QUIT\r\n"}, want: refused},
		{name: "LF.LF, smuggled part in its own write", writes: []string{helo + alert("PVC-SRV-LFLF2") + "\n.\n", smugged, "QUIT\r\n"}, want: refused},
		{name: "CR.CR", writes: []string{helo + alert("PVC-SRV-CRCR") + "\r.\r" + smugged + "QUIT\r\n"}, want: refused},
		// go-smtp drops the "." and the bare CR of <CR><LF>.<CR>: one
		// message whose body holds the would-be transaction as text.
		{name: "CRLF.CR is one message", writes: []string{helo + alert(smugDev1) + "\r\n.\r" + smugged + "QUIT\r\n"},
			want: map[string]string{"normalize": queued, "reject": queued}, device: smugDev1},
		{name: "clean", writes: []string{helo + alert("PVC-SRV-CLEAN") + "\r\n.\r\nQUIT\r\n"},
			want: map[string]string{"normalize": queued, "reject": queued}, device: "PVC-SRV-CLEAN"},
	}
	for _, mode := range []string{"normalize", "reject"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			cfg := baseConfig(t, dir, "")
			data := strings.Replace(string(readAll(t, cfg)), `hostname = "psagate.test"`, "hostname = \"psagate.test\"\nbare_lf = \""+mode+"\"", 1)
			if err := writeFile(cfg, data); err != nil {
				t.Fatal(err)
			}
			h := startApp(t, cfg, Options{})

			accepted := map[string]string{} // psagate id -> device
			for _, s := range steps {
				got := smugConverse(t, h.app.SMTPAddr(), s.writes...)
				want := append(append(append([]string{}, pre...), s.want[mode]), bye)
				ok := len(got) == len(want)
				for i := 0; ok && i < len(want); i++ {
					if want[i] == queued {
						m := queuedLine.FindStringSubmatch(got[i])
						ok = m != nil
						if ok {
							accepted[m[1]] = s.device
						}
					} else {
						ok = got[i] == want[i]
					}
				}
				if !ok {
					t.Fatalf("%s: replies differ\n got: %q\nwant: %q", s.name, got, want)
				}
			}
			if len(accepted) != 2 {
				t.Fatalf("%d messages accepted, want 2", len(accepted))
			}

			waitFor(t, "spool and outbox to drain", 10*time.Second, func() bool { return idle(h.app.DB) })
			h.app.Gateway.CloseAudit() // flush the drops' and rejects' audit entries, if any

			spool, quarantine, incs, audit := dbContents(t, h.app.DB)
			if len(spool) != 0 || len(quarantine) != 0 {
				t.Errorf("%d messages in the spool and %d in the quarantine, want none", len(spool), len(quarantine))
			}
			for _, e := range audit {
				if e.Rule == "(smtp)" && e.Decision == "reject" && e.Message == "" {
					continue // a smuggling attempt refused at the SMTP level, audited with its reason
				}
				if dev, ok := accepted[e.Message]; !ok || e.Device != dev || e.Decision != "ticket" || e.Effect != "opened" ||
					e.From != "bdr1@pinecrest-vet.example" || !strings.Contains(e.Subject, dev) {
					t.Errorf("unexpected audit entry: message %s from %s subject %q device %s: %s (%s)", e.Message, e.From, e.Subject, e.Device, e.Decision, e.Effect)
				}
				delete(accepted, e.Message)
			}
			for id, dev := range accepted {
				t.Errorf("accepted message %s (%s) has no audit entry", id, dev)
			}
			if len(incs) != 2 {
				t.Errorf("%d incidents, want 2 (one a message accepted)", len(incs))
			}
			for _, i := range incs {
				if strings.Contains(strings.ToLower(i.Summary+i.Device+i.Key), "forged") || strings.Contains(i.Key, "EVIL") {
					t.Errorf("incident from the smuggled message: %+v", i)
				}
			}
			creates := 0
			for _, l := range logLines(t, h.out) {
				if l.Op == "create" {
					creates++
				}
				if strings.Contains(l.Summary, "forged") || strings.Contains(l.Summary, "EVIL") {
					t.Errorf("the PSA was called for the smuggled message: %+v", l)
				}
			}
			if creates != 2 {
				t.Errorf("%d tickets created, want 2", creates)
			}
		})
	}
}

// dbContents is everything a message can leave behind in the database:
// the spool, the quarantine, the incidents and the audit trail.
func dbContents(t *testing.T, db *store.DB) (spool, quarantine []*store.SpoolEntry, incs []*store.Incident, audit []*store.AuditEntry) {
	t.Helper()
	err := db.View(func(tx *store.Tx) error {
		var err error
		if spool, err = tx.SpoolHead(1 << 30); err != nil {
			return err
		}
		if quarantine, err = tx.Quarantined(1 << 30); err != nil {
			return err
		}
		if err := tx.Incidents(func(i *store.Incident) bool { incs = append(incs, i); return true }); err != nil {
			return err
		}
		return tx.Audit(func(e *store.AuditEntry) bool { audit = append(audit, e); return true })
	})
	if err != nil {
		t.Fatal(err)
	}
	return spool, quarantine, incs, audit
}
