package message

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current decoder output")

// goldenLimits are smaller than the defaults so that the limit files in
// testdata (too_many_parts, deep_nesting) exercise them.
var goldenLimits = Limits{MaxParts: 20, MaxDepth: 5, MaxHeaders: 40, MaxTextBytes: 8 << 10, MaxAttachments: 8}

var testEnvelope = Envelope{
	MailFrom: "bdr@acme.example",
	RcptTo:   []string{"acme@alerts.example.net"},
	RemoteIP: netip.MustParseAddr("192.0.2.10"),
	Helo:     "bdr.acme.example",
	Received: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
}

// TestMain makes every test fail loudly if Decode ever reaches its
// last-resort recover: that path exists for production, never as a crutch.
func TestMain(m *testing.M) {
	hook := func(v any, stack []byte) {
		panic(fmt.Sprintf("Decode recovered from a panic: %v\n%s", v, stack))
	}
	recoverHook.Store(&hook)
	os.Exit(m.Run())
}

// goldenAlert is the stable rendering of an Alert: attachment data is
// replaced by its SHA-256, times are RFC 3339, maps are sorted by
// encoding/json.
type goldenAlert struct {
	MailFrom    string              `json:"mail_from"`
	RcptTo      []string            `json:"rcpt_to"`
	From        string              `json:"from"`
	FromName    string              `json:"from_name"`
	To          []string            `json:"to"`
	Subject     string              `json:"subject"`
	Date        string              `json:"date"`
	MessageID   string              `json:"message_id"`
	Header      map[string][]string `json:"header"`
	Text        string              `json:"text"`
	FromHTML    bool                `json:"from_html"`
	Attachments []goldenAttachment  `json:"attachments"`
	Size        int                 `json:"size"`
	Problems    []Problem           `json:"problems"`
}

type goldenAttachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"`
	SHA256      string `json:"sha256"`
}

func renderGolden(t *testing.T, a *Alert) []byte {
	t.Helper()
	g := goldenAlert{
		MailFrom: a.MailFrom, RcptTo: a.RcptTo, From: a.From, FromName: a.FromName, To: a.To,
		Subject: a.Subject, MessageID: a.MessageID, Header: a.Header, Text: a.Text,
		FromHTML: a.FromHTML, Size: a.Size, Problems: a.Problems,
	}
	if !a.Date.IsZero() {
		g.Date = a.Date.Format(time.RFC3339)
	}
	for _, at := range a.Attachments {
		sum := sha256.Sum256(at.Data)
		g.Attachments = append(g.Attachments, goldenAttachment{
			Name: at.Name, ContentType: at.ContentType, Size: at.Size, SHA256: hex.EncodeToString(sum[:]),
		})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(g); err != nil {
		t.Fatalf("encode golden: %v", err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.eml (%v)", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			a := Decode(raw, testEnvelope, goldenLimits)
			checkInvariants(t, raw, a, goldenLimits)
			got := renderGolden(t, a)
			golden := strings.TrimSuffix(file, ".eml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the decoder output; review with -update and git diff.\ngot:\n%s", golden, got)
			}
		})
	}
}
