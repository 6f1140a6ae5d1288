package app

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	cwfake "psagate/internal/psa/connectwise/fake"
	"psagate/internal/testutil"
)

// attachMail is an x360Recover boot verification failure (its pack rule
// says attach = true) carrying the given files.
func attachMail(files map[string][]byte, order []string) []byte {
	var b strings.Builder
	b.WriteString("From: PVC-BDR1 <bdr1@pinecrest-vet.example>\r\nTo: pinecrest@alerts.example.net\r\n" +
		"Subject: [PVC-BDR1] Boot VM Check Failed: PVC-SRV-XRAY\r\nMessage-ID: <attach-1@pvc-bdr1>\r\n" +
		"Date: Tue, 11 Feb 2025 13:00:26 -0700\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nx360Recover alert from appliance PVC-BDR1\r\nProtected system: PVC-SRV-XRAY\r\n")
	for _, name := range order {
		fmt.Fprintf(&b, "--b1\r\nContent-Type: image/png; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\n"+
			"Content-Transfer-Encoding: base64\r\n\r\n", name, name)
		enc := base64.StdEncoding.EncodeToString(files[name])
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--b1--\r\n")
	return []byte(b.String())
}

// TestAttachmentsDecidedByContentAndName sends, over SMTP, a failure whose
// rule uploads attachments, carrying one real screenshot and the files a
// name-only check let through: PE bytes named screenshot.png, a
// trailing-dot .exe., and .pif, .cpl, .xll, .chm, .one, .url and .mht files,
// all claiming image/png. The ConnectWise fake (a real HTTP server) must
// receive the screenshot only, under its type as sniffed, and a note naming
// every file withheld; the audit says the same.
func TestAttachmentsDecidedByContentAndName(t *testing.T) {
	fk := cwfake.Start(cwfake.DefaultConfig())
	defer fk.Close()
	h := startApp(t, cwConfig(t, fk, t.TempDir(), ""), Options{})
	png := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"), bytes.Repeat([]byte{7}, 200)...)
	pe := append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"), bytes.Repeat([]byte{0}, 200)...)
	files := map[string][]byte{
		"bootvm.png":     png,
		"screenshot.png": pe,
		"report.exe.":    pe,
		"viewer.pif":     pe,
		"panel.cpl":      pe,
		"addin.xll":      pe,
		"help.chm":       []byte("ITSF\x03\x00\x00\x00`\x00\x00\x00\x01\x00\x00\x00"),
		"notes.one":      []byte("\xe4\x52\x5c\x7b\x8c\xd8\xa7\x4d\xae\xb1\x53\x78\xd0\x29\x96\xd3"),
		"portal.url":     []byte("[InternetShortcut]\r\nURL=https://login.example.invalid/\r\n"),
		"page.mht":       []byte("MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<script>x()</script>\r\n"),
	}
	order := []string{"bootvm.png", "screenshot.png", "report.exe.", "viewer.pif", "panel.cpl", "addin.xll", "help.chm", "notes.one", "portal.url", "page.mht"}
	reply := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, attachMail(files, order))
	if !strings.HasPrefix(reply, "250 2.0.0 Queued as ") {
		t.Fatalf("reply %q", reply)
	}
	waitFor(t, "delivery", 15*time.Second, func() bool { return idle(h.app.DB) })
	tks := fk.Tickets()
	if len(tks) != 1 {
		t.Fatalf("%d tickets, want 1", len(tks))
	}
	tk := tks[0]
	if len(tk.Documents) != 1 || tk.Documents[0].FileName != "bootvm.png" || !bytes.Equal(tk.Documents[0].Data, png) {
		var got []string
		for _, d := range tk.Documents {
			got = append(got, fmt.Sprintf("%s (%d bytes)", d.FileName, len(d.Data)))
		}
		t.Errorf("uploaded %q; want only bootvm.png", got)
	}
	var note string
	for _, n := range tk.Notes {
		if strings.Contains(n.Text, "did not upload") {
			note = n.Text
		}
	}
	entries, err := ReadAudit(h.app.DB, AuditFilter{Decision: "ticket", Limit: 5})
	if err != nil || len(entries) != 1 {
		t.Fatalf("audit: %v, %d entries", err, len(entries))
	}
	for _, name := range order[1:] {
		if !strings.Contains(note, fmt.Sprintf("%q", name)) {
			t.Errorf("the ticket's note does not name withheld %q:\n%s", name, note)
		}
		if !strings.Contains(entries[0].Detail, fmt.Sprintf("%q", name)) {
			t.Errorf("the audit detail does not name withheld %q: %s", name, entries[0].Detail)
		}
	}
}
