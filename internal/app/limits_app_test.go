package app

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"psagate/internal/store"
)

// Issue 12's loop guard and issue 14's SMTP findings against the whole
// gateway and its real bbolt file: a looping message (51 Received:
// fields), and an end of data after a bare CR with a second transaction
// pipelined behind it, leave nothing in the database but their refusals'
// audit entries; an alert with an
// 8 KB header line is taken, and its audit entry says the line was folded.
func TestLoopBareCREndAndLongLinesAgainstTheFullGateway(t *testing.T) {
	dir := t.TempDir()
	h := startApp(t, baseConfig(t, dir, ""), Options{})
	addr := h.app.SMTPAddr()
	const env = "HELO c\r\nMAIL FROM:<bdr1@pinecrest-vet.example>\r\nRCPT TO:<pinecrest@alerts.example.net>\r\nDATA\r\n"
	pre := []string{
		"220 psagate.test ESMTP Service Ready",
		"250 2.0.0 Hello c",
		"250 2.0.0 Roger, accepting mail from <bdr1@pinecrest-vet.example>",
		"250 2.0.0 I'll make sure <pinecrest@alerts.example.net> gets this",
		"354 Go ahead. End your data with <CR><LF>.<CR><LF>",
	}
	alert := func(dev, extraHeader string) string {
		return extraHeader + "From: bdr1@pinecrest-vet.example\r\nTo: pinecrest@alerts.example.net\r\nSubject: [PVC-BDR1] Failed Backup: " + dev +
			"\r\nMessage-ID: <" + dev + "@limits.test>\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\n"
	}
	var hops strings.Builder
	for i := range 51 {
		fmt.Fprintf(&hops, "Received: from mx%d.example (mx%d.example [192.0.2.%d]) by mx%d.example; Mon, 7 Dec 2026 02:00:00 +0000\r\n", i, i, i%250+1, i+1)
	}
	check := func(name string, got, want []string) {
		t.Helper()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: replies differ\n got: %q\nwant: %q", name, got, want)
		}
	}
	got := smugConverse(t, addr, env+alert("PVC-SRV-LOOP", hops.String())+".\r\nQUIT\r\n")
	check("loop", got, append(append([]string{}, pre...),
		"554 5.4.6 Too many hops: 51 Received: headers, more than 50 (smtp.max_hops); the message is looping", "221 2.0.0 Bye"))

	smuggled := "MAIL FROM:<evil@b.example>\r\nRCPT TO:<pinecrest@alerts.example.net>\r\nDATA\r\n" + alert("PVC-EVIL", "") + ".\r\nQUIT\r\n"
	got = smugConverse(t, addr, env+alert("PVC-SRV-BARECR", "")+"\r\r\n.\r\n"+smuggled)
	check("bare CR end", got, append(append([]string{}, pre...),
		"550 5.5.2 Message refused: a bare CR before <CR><LF>.<CR><LF> (an SMTP smuggling pattern); closing"))

	html := "X-Alert-Html: " + strings.Repeat("<td>PVC-BDR1 volume C: backup failed</td> ", 200) + "\r\n"
	got = smugConverse(t, addr, env+alert("PVC-SRV-LONG", html)+".\r\nQUIT\r\n")
	if len(got) != 7 || !queuedLine.MatchString(got[5]) {
		t.Fatalf("long header line: %q", got)
	}
	id := queuedLine.FindStringSubmatch(got[5])[1]

	waitFor(t, "spool and outbox to drain", 10*time.Second, func() bool { return idle(h.app.DB) })
	h.app.Gateway.CloseAudit()
	spool, quarantine, incs, all := dbContents(t, h.app.DB)
	// The refused messages are audited as SMTP refusals, with their reason.
	var audit []*store.AuditEntry
	var refused []string
	for _, e := range all {
		if e.Rule == "(smtp)" && e.Decision == "reject" {
			refused = append(refused, e.Effect)
			continue
		}
		audit = append(audit, e)
	}
	slices.Sort(refused)
	if !slices.Equal(refused, []string{"bare_lf", "loop"}) {
		t.Errorf("SMTP refusals audited: %q, want bare_lf and loop", refused)
	}
	if len(spool) != 0 || len(quarantine) != 0 || len(incs) != 1 || len(audit) != 1 {
		t.Fatalf("spool %d, quarantine %d, incidents %d, audit %d; want only the long-line alert's incident and audit entry",
			len(spool), len(quarantine), len(incs), len(audit))
	}
	if e := audit[0]; e.Message != id || e.Device != "PVC-SRV-LONG" || !strings.Contains(e.Detail, "1 header line(s) longer than 998 bytes folded") {
		t.Fatalf("audit entry: message %s device %s detail %q", e.Message, e.Device, e.Detail)
	}
	body, err := h.app.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	loops := 0.0
	for _, mf := range body {
		if mf.GetName() == "psagate_smtp_refused_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == "loop" {
						loops = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if loops != 1 {
		t.Fatalf("psagate_smtp_refused_total{reason=\"loop\"} = %v, want 1", loops)
	}
}
