package rules

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"psagate/internal/message"
	"psagate/internal/sanitize"
)

func FuzzCompile(f *testing.F) {
	for _, dir := range []string{"testdata", filepath.Join("..", "..", "rules")} {
		names, _ := ruleFiles(dir)
		for _, n := range names {
			if data, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("[[rule]]\nname = \"x\"\n[rule.if]\nsubject_matches = '(a|b'\n[rule.then]\naction = \"tiket\"\n"))
	f.Add([]byte("[[rule]]\nname = \"x\"\n[rule.then]\naction = \"ticket\"\nsummary = \"{{{a}}\"\n[rule.then.psa]\nconnectwise.private_key = \"k\"\n"))
	f.Add([]byte("rule = [{name = \"i\", then = {action = \"note\", note = \"{device}\"}}]\n"))
	f.Add([]byte("[[rule]]\n[[rule]]\nname=1\n[rule.if.header]\n\"\" = []\n"))
	a := testAlert()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Compile([]File{{Name: "f.toml", Data: data}}, Options{})
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || len(le.Errs) == 0 {
				t.Fatalf("error is not a LoadError with errors: %v", err)
			}
			for _, e := range le.Errs {
				if e.Line < 0 || e.File != "f.toml" || e.Msg == "" {
					t.Fatalf("bad error %#v", e)
				}
			}
			return
		}
		d := checkConsistent(t, s, Input{Alert: a, Client: "acme"})
		v := d.Vars(a, "acme")
		for _, tp := range []*Template{d.Then.Key, d.Then.Summary, d.Then.Description, d.Then.Note} {
			tp.Render(v)
		}
	})
}

// FuzzEvaluate runs arbitrary messages through a fixed rule set: no
// panics, the same decision every time, Evaluate (indexed) and Explain
// (every rule) agree, and every condition's two implementations agree.
func FuzzEvaluate(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "fuzz.toml"))
	if err != nil {
		f.Fatal(err)
	}
	s, err := Compile([]File{{Name: "testdata/fuzz.toml", Data: data}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("[BDR1] Connection: agent connection lost", "x360Recover says hi", "alerts@axcient.net", "b@mail.axcient.net", "acme@alerts.example.net", "high", "shot.png", 500, []byte{10, 1, 2, 3}, "acme")
	f.Add("[BDR1] Failed Backup: SRV-1", "Status: Failed\nBÜRO", "x@y.example", "", "it@acme.example", "Veeam 12", "a.jpg", 5000, []byte{}, "")
	f.Add("Sicherung fehlgeschlagen: Straße-1", "STRASSE İSTANBUL ǆ", "a@spam.example", "", "", "text/plain", "", 1, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "internal")
	f.Add("\xff\xfe[\u212a] Failed Backup:", "unsubscribe\x00\r\n", "\u212a@SPAM.example", "<B@MAIL.AXCIENT.NET>", "\u0130@alerts.example.net", "X360", "\u202e.png", -1, []byte{192, 0, 2, 7}, "ACME")
	f.Fuzz(func(t *testing.T, subject, body, from, mailFrom, rcpt, headerVal, attach string, size int, ip []byte, client string) {
		a := &message.Alert{
			Envelope: message.Envelope{MailFrom: mailFrom, RcptTo: []string{rcpt}},
			From:     from, To: []string{rcpt, from}, Subject: subject, Text: body, Size: size,
			Header: map[string][]string{"x-prio": {headerVal}, "x-mailer": {headerVal}, "content-type": {headerVal, subject}},
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			a.RemoteIP = addr
		}
		if attach != "" {
			a.Attachments = []message.Attachment{{Name: attach}}
		}
		in := Input{Alert: a, Client: client}
		d := checkConsistent(t, s, in)
		if d2 := s.Evaluate(in); !sameDecision(d, d2) {
			t.Fatalf("not deterministic: %s then %s", describe(d), describe(d2))
		}
		for k, v := range d.Fields {
			if v == "" || sanitize.Line(v) != v {
				t.Fatalf("field %s = %q is not one clean line", k, v)
			}
		}
		v := d.Vars(a, client)
		for k, x := range v {
			if k != "body" && sanitize.Line(x) != x {
				t.Fatalf("Vars[%s] = %q is not one clean line", k, x)
			}
		}
		for _, tp := range []*Template{d.Then.Key, d.Then.Summary, d.Then.Description, d.Then.Note} {
			tp.Render(v)
		}
	})
}
