package message

import (
	"bytes"
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
	cases := []struct {
		name string
		raw  []byte
	}{
		{"plain4KiB", plainAlert4K(false)},
		{"plain4KiBSanitizeSlowPath", plainAlert4K(true)},
		{"veeamMultipart", veeam},
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
