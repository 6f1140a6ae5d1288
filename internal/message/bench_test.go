package message

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// plainAlert4K builds a 4 KiB plain-text alert in the style of the
// x360Recover samples: CRLF lines, a detail block padded with log lines.
// With messy=true every log line ends in spaces, so the body text takes
// sanitize.Text's slow path instead of the clean-text fast path.
func plainAlert4K(messy bool) []byte {
	var b bytes.Buffer
	b.WriteString("Return-Path: <bdr1@pinecrest-vet.example>\r\n" +
		"Received: from pvc-bdr1.pinecrest.lan (pvc-bdr1 [192.0.2.10])\r\n\tby psagate.example.net with ESMTP; Tue, 11 Feb 2025 20:00:27 +0000\r\n" +
		"From: PVC-BDR1 backup appliance <bdr1@pinecrest-vet.example>\r\n" +
		"To: pinecrest@alerts.example.net\r\n" +
		"Subject: [PVC-BDR1] Failed Backup: PVC-SRV-DB2\r\n" +
		"Date: Tue, 11 Feb 2025 13:00:26 -0700\r\n" +
		"Message-ID: <1739304026.backup.5120@pvc-bdr1.pinecrest.lan>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n" +
		"Content-Transfer-Encoding: 7bit\r\n\r\n" +
		"x360Recover alert from appliance PVC-BDR1\r\n\r\n" +
		"  Client:            Pinecrest Veterinary Clinic\r\n" +
		"  Protected system:  PVC-SRV-DB2\r\n" +
		"  Alert type:        Failed Backup\r\n\r\n" +
		"Details:\r\n")
	line := "  2025-02-11 13:00:26 read of volume E: failed (0x80070015), retry scheduled\r\n"
	if messy {
		line = "  2025-02-11 13:00:26 read of volume E: failed (0x80070015), retry sched   \r\n"
	}
	tail := "\r\nThis message was generated automatically by x360Recover.\r\n"
	for b.Len()+len(line)+len(tail) <= 4096 {
		b.WriteString(line)
	}
	b.WriteString(tail)
	b.WriteString(strings.Repeat("-", 4096-b.Len()))
	return b.Bytes()
}

func BenchmarkDecode(b *testing.B) {
	veeam, err := os.ReadFile(filepath.Join("testdata", "veeam_alternative.eml"))
	if err != nil {
		b.Fatal(err)
	}
	htmlOnly, err := os.ReadFile(filepath.Join("testdata", "html_only.eml"))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		raw  []byte
	}{
		{"plain4KiB", plainAlert4K(false)},
		{"plain4KiBSanitizeSlowPath", plainAlert4K(true)},
		{"veeamMultipart", veeam},
		{"htmlOnly", htmlOnly},
	}
	if dir, err := sharedSamplesDir(); err == nil {
		if raw, err := os.ReadFile(filepath.Join(dir, "veeam_warning_Woechentliche-Dateiserver_01.eml")); err == nil {
			cases = append(cases, struct {
				name string
				raw  []byte
			}{"veeamSample10KiB", raw})
		}
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.raw)))
			for b.Loop() {
				if a := Decode(c.raw, testEnvelope, Limits{}); a.Subject == "" {
					b.Fatal("no subject")
				}
			}
		})
	}
}

// htmlReport builds an HTML report in the style of Veeam's job mails: a
// styled head, a summary table and one table row per object, repeated to
// about n bytes.
func htmlReport(n int) string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html><html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">` +
		`<title>Job report</title><style>td { font-family: Tahoma; font-size: 12px; } /* <b>no</b> */</style></head>` +
		`<body><table cellspacing="0" cellpadding="0" width="100%" border="0" style="border-collapse: collapse;">` +
		`<tr><td style="background-color:#fbb234;color:#fff;font-size:16px"><b>Backup job: W&ouml;chentliche Dateiserver</b></td></tr>` +
		`<tr><td>Warning&nbsp;&ndash; 3 of 4 VMs processed</td></tr></table>` +
		`<table border="1"><tr><th>Name</th><th>Status</th><th>Start time</th><th>Details</th></tr>`)
	row := `<tr><td nowrap>FS-%02d</td><td style="color:#fbb234">Warning</td><td>21:00:07</td>` +
		`<td>Changed block tracking is disabled &amp; <a href="https://kb.example.com/kb1940?id=%02d">see KB</a></td></tr>` + "\n"
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, row, i%100, i%100)
	}
	b.WriteString(`</table><img src="https://t.example.com/o.gif" width="1" height="1" alt="x"></body></html>`)
	return b.String()
}

// BenchmarkHTMLToText measures the HTML renderer alone: a small report, a
// large one, and hostile markup (tags that never close) cut at the limit.
func BenchmarkHTMLToText(b *testing.B) {
	cases := []struct {
		name  string
		html  string
		limit int
	}{
		{"report8KiB", htmlReport(8 << 10), 1 << 20},
		{"report256KiB", htmlReport(256 << 10), 1 << 20},
		{"report256KiBLimit64KiB", htmlReport(256 << 10), 64 << 10},
		{"unclosedTags1MiB", strings.Repeat("<div class=a><span>x</span><title>y", 1<<20/36), 64 << 10},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.html)))
			for b.Loop() {
				if s, _ := htmlToText(c.html, c.limit); s == "" {
					b.Fatal("no text")
				}
			}
		})
	}
}
