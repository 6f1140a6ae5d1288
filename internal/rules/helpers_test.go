package rules

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"psagate/internal/message"
)

// compileOne compiles src as the file "t.toml" and fails the test on error.
func compileOne(t testing.TB, src string) *Set {
	t.Helper()
	s, err := Compile([]File{{Name: "t.toml", Data: []byte(src)}}, Options{})
	if err != nil {
		t.Fatalf("compile:\n%v\nsource:\n%s", err, src)
	}
	return s
}

// compileErrs compiles files and returns the error lines.
func compileErrs(t *testing.T, files []File, opt Options) []string {
	t.Helper()
	_, err := Compile(files, opt)
	if err == nil {
		return nil
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error is %T, not *LoadError: %v", err, err)
	}
	var out []string
	for _, e := range le.Errs {
		out = append(out, e.Error())
	}
	return out
}

// testAlert is a decoded x360Recover failure alert.
func testAlert() *message.Alert {
	return &message.Alert{
		Envelope: message.Envelope{
			MailFrom: "bounce@mailer.axcient.net",
			RcptTo:   []string{"acme@alerts.example.net"},
			RemoteIP: netip.MustParseAddr("10.1.2.3"),
			Received: time.Date(2025, 2, 11, 8, 0, 5, 0, time.UTC),
		},
		From:      "alerts@axcient.net",
		FromName:  "x360Recover",
		To:        []string{"it@acme.example"},
		Subject:   "[ACME-BDR1] Failed Backup: ACME-SRV-PAY",
		Date:      time.Date(2025, 2, 11, 9, 0, 0, 0, time.FixedZone("CET", 3600)),
		MessageID: "abc123@axcient.net",
		Header: map[string][]string{
			"x-mailer": {"x360Recover Mailer 2.1"},
			"x-prio":   {"high"},
		},
		Text:        "The backup of ACME-SRV-PAY failed.\nThis alert was generated automatically by x360Recover.",
		Attachments: []message.Attachment{{Name: "screenshot.png", ContentType: "image/png", Size: 2048}},
		Size:        40000,
	}
}

// checkConsistent runs Explain and Evaluate on in and checks that they
// agree, and that every traced condition's plain evaluation (the one that
// writes Detail) agrees with the fast one.
func checkConsistent(t testing.TB, s *Set, in Input) Decision {
	t.Helper()
	d := s.Evaluate(in)
	de, tr := s.Explain(in)
	if !sameDecision(d, de) {
		t.Fatalf("Evaluate and Explain disagree: %s vs %s", describe(d), describe(de))
	}
	a := in.Alert
	if a == nil {
		a = &message.Alert{}
	}
	st := s.acquire(a, in.Client)
	defer s.release(st)
	for _, r := range s.rules {
		for _, sec := range [][]*cond{r.ifs, r.excepts} {
			for _, c := range sec {
				fast := st.holds(c)
				slow, detail := st.explain(c)
				if fast != slow {
					t.Fatalf("rule %q %s: fast path says %v, plain path %v (%s)", r.Name, c.key, fast, slow, detail)
				}
			}
		}
	}
	if len(tr) != len(s.rules) {
		t.Fatalf("trace has %d entries for %d rules", len(tr), len(s.rules))
	}
	return d
}

func sameDecision(a, b Decision) bool {
	return a.Rule == b.Rule && a.Action == b.Action && a.Then == b.Then &&
		maps.Equal(a.Fields, b.Fields) && slices.Equal(a.Audit, b.Audit) && slices.Equal(a.Matched, b.Matched)
}

func describe(d Decision) string {
	name := "(default)"
	if d.Rule != nil {
		name = d.Rule.Name
	}
	var b strings.Builder
	b.WriteString(name + " " + string(d.Action))
	for _, k := range slices.Sorted(maps.Keys(d.Fields)) {
		b.WriteString(" " + k + "=" + d.Fields[k])
	}
	return b.String()
}

func ruleNames(rs []*Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}
