package message

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sharedSamplesDir finds ../shared/samples relative to the repository root
// (the directory holding go.mod).
func sharedSamplesDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test directory")
		}
		dir = parent
	}
	samples := filepath.Join(dir, "..", "shared", "samples")
	if _, err := os.Stat(samples); err != nil {
		return "", err
	}
	return samples, nil
}

// expectedRow is one row of the samples' EXPECTED.tsv.
type expectedRow struct {
	file, deviceKey, dateUTC, mailFrom, rcptTo, malformed string
}

func readExpected(t *testing.T, dir string) []expectedRow {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "EXPECTED.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []expectedRow
	col := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "\t")
		if len(col) == 0 {
			for i, c := range cells {
				col[c] = i
			}
			continue
		}
		get := func(name string) string {
			i, ok := col[name]
			if !ok || i >= len(cells) {
				t.Fatalf("EXPECTED.tsv: no column %q in %q", name, sc.Text())
			}
			return cells[i]
		}
		rows = append(rows, expectedRow{
			file: get("file"), deviceKey: get("device_key"), dateUTC: get("date_utc"),
			mailFrom: get("mail_from"), rcptTo: get("rcpt_to"), malformed: get("malformed"),
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestSharedSamples(t *testing.T) {
	dir, err := sharedSamplesDir()
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("shared samples are absent (%v): nothing to replay; the golden tests still run", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	wantSubject := map[string]string{
		"x360_noise_PVC-WS-FRONT2_01.eml":                "[PVC-BDR1] Connection: Agent connection lost - PVC-WS-FRONT2",
		"x360_noise_PVC-WS-FRONT2_02.eml":                "[PVC-BDR1] Agent PVC-WS-FRONT2 connection restored",
		"x360_failure_PVC-SRV-DB2_01.eml":                "[PVC-BDR1] Failed Backup: PVC-SRV-DB2",
		"x360_failure_PVC-SRV-DB2_02.eml":                "[PVC-BDR1] Failed Backup: PVC-SRV-DB2",
		"x360_recovery_PVC-SRV-DB2_03.eml":               "[PVC-BDR1] Successful Backup: PVC-SRV-DB2",
		"x360_failure_PVC-SRV-XRAY_01.eml":               "[PVC-BDR1] Boot VM Check Failed: PVC-SRV-XRAY",
		"veeam_warning_Woechentliche-Dateiserver_01.eml": "[Warning] Wöchentliche-Dateiserver (3 VMs) 1 warning",
		"x360_hostile_PVC-SRV-PAY_01.eml":                "[PVC-BDR1] Failed Backup: PVC-SRV-PAY Cc: leak@evil.example",
	}
	rows := readExpected(t, dir)
	if len(rows) != len(wantSubject) {
		t.Fatalf("EXPECTED.tsv has %d rows, this test knows %d samples", len(rows), len(wantSubject))
	}
	for _, row := range rows {
		t.Run(row.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, row.file))
			if err != nil {
				t.Fatal(err)
			}
			env := Envelope{MailFrom: row.mailFrom, RcptTo: []string{row.rcptTo}}
			a := Decode(raw, env, Limits{})
			checkInvariants(t, raw, a, Limits{})

			want, ok := wantSubject[row.file]
			if !ok {
				t.Fatalf("unknown sample %s", row.file)
			}
			if a.Subject != want {
				t.Errorf("Subject = %q, want %q", a.Subject, want)
			}
			if wantDate, err := time.Parse(time.RFC3339, row.dateUTC); err != nil {
				t.Fatal(err)
			} else if !a.Date.Equal(wantDate) {
				t.Errorf("Date = %v, want %v", a.Date, wantDate)
			}
			if a.From != row.mailFrom {
				t.Errorf("From = %q, want %q (the envelope sender in EXPECTED.tsv)", a.From, row.mailFrom)
			}
			if len(a.To) != 1 || a.To[0] != row.rcptTo {
				t.Errorf("To = %q, want [%q]", a.To, row.rcptTo)
			}
			if a.MessageID == "" || strings.ContainsAny(a.MessageID, "<>") {
				t.Errorf("MessageID = %q", a.MessageID)
			}
			if !strings.Contains(a.Subject+"\n"+a.Text, row.deviceKey) {
				t.Errorf("device key %q is in neither Subject nor Text", row.deviceKey)
			}
			if a.Text == "" {
				t.Error("Text is empty")
			}
			if row.malformed == "no" && len(a.Problems) > 0 {
				t.Errorf("problems on a well-formed sample: %+v", a.Problems)
			}
		})
	}

	t.Run("hostile subject", func(t *testing.T) {
		raw := readSample(t, dir, "x360_hostile_PVC-SRV-PAY_01.eml")
		if !bytes.Contains(raw, []byte("=0D=0A")) {
			t.Fatal("the hostile sample no longer hides CR LF in its Subject")
		}
		a := Decode(raw, Envelope{}, Limits{})
		if strings.ContainsAny(a.Subject, "\r\n") {
			t.Errorf("Subject kept CR/LF: %q", a.Subject)
		}
		if !a.HasProblem(ProblemInjection) {
			t.Errorf("no ProblemInjection recorded: %+v", a.Problems)
		}
		want := Problem{Kind: ProblemInjection, Detail: "Subject: decoded value contained CR/LF (header injection)"}
		if len(a.Problems) != 1 || a.Problems[0] != want {
			t.Errorf("Problems = %+v, want [%+v]", a.Problems, want)
		}
	})

	t.Run("veeam body", func(t *testing.T) {
		a := Decode(readSample(t, dir, "veeam_warning_Woechentliche-Dateiserver_01.eml"), Envelope{}, Limits{})
		if a.FromHTML {
			t.Error("FromHTML is set: the text/plain alternative should have won")
		}
		if !strings.HasPrefix(a.Text, "Backup job: Wöchentliche-Dateiserver\nResult: Warning\n") {
			t.Errorf("Text does not start with the decoded text/plain alternative:\n%s", a.Text)
		}
		// The soft line break in the QP source must be joined.
		if !strings.Contains(a.Text, "Changed block tracking was reset; full read of disk 2 was needed") {
			t.Errorf("QP soft line break not joined:\n%s", a.Text)
		}
		if strings.Contains(a.Text, "<td") || strings.Contains(a.Text, "=C3") {
			t.Errorf("Text holds HTML or undecoded QP:\n%s", a.Text)
		}
		if len(a.Attachments) != 0 {
			t.Errorf("%d attachments, want 0", len(a.Attachments))
		}
	})

	t.Run("xray screenshot", func(t *testing.T) {
		raw := readSample(t, dir, "x360_failure_PVC-SRV-XRAY_01.eml")
		want := pngFromSampleText(t, raw)
		a := Decode(raw, Envelope{}, Limits{})
		if len(a.Attachments) != 1 {
			t.Fatalf("%d attachments, want 1", len(a.Attachments))
		}
		at := a.Attachments[0]
		if at.Name != "PVC-SRV-XRAY_bootvm_2025-02-12.png" || at.ContentType != "image/png" {
			t.Errorf("attachment = %q %q", at.Name, at.ContentType)
		}
		if !bytes.Equal(at.Data, want) {
			t.Errorf("attachment data (%d bytes) differs from the base64 in the file (%d bytes)", len(at.Data), len(want))
		}
		if !bytes.HasPrefix(at.Data, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("attachment does not start with the PNG signature: % x", at.Data[:min(8, len(at.Data))])
		}
		if at.Size != len(at.Data) {
			t.Errorf("Size = %d, len(Data) = %d", at.Size, len(at.Data))
		}
		if strings.Contains(a.Text, "iVBOR") {
			t.Error("the base64 of the image leaked into Text")
		}
	})
}

func readSample(t *testing.T, dir, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// pngFromSampleText decodes the base64 lines after the image/png part's
// header straight from the file text, independently of the decoder.
func pngFromSampleText(t *testing.T, raw []byte) []byte {
	t.Helper()
	text := strings.ReplaceAll(string(raw), "\r\n", "\n")
	_, part, ok := strings.Cut(text, "Content-Type: image/png")
	if !ok {
		t.Fatal("no image/png part in the sample")
	}
	_, body, ok := strings.Cut(part, "\n\n")
	if !ok {
		t.Fatal("image/png part has no body")
	}
	var b64 strings.Builder
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "--") {
			break
		}
		b64.WriteString(strings.TrimSpace(line))
	}
	data, err := base64.StdEncoding.DecodeString(b64.String())
	if err != nil {
		t.Fatalf("sample base64: %v", err)
	}
	return data
}
