package mailbox

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func split(t *testing.T, in string, max int) ([]string, []error) {
	t.Helper()
	var msgs []string
	var errs []error
	err := SplitMbox(strings.NewReader(in), max, func(i int, raw []byte, err error) error {
		if i != len(msgs)+1 {
			t.Fatalf("message number %d, want %d", i, len(msgs)+1)
		}
		msgs = append(msgs, string(raw))
		errs = append(errs, err)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return msgs, errs
}

func TestSplitMbox(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"not an mbox", "Subject: x\n\nbody\n", nil},
		{"one", "From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\nbody\n", []string{"Subject: x\r\n\r\nbody\r\n"}},
		{"two, blank line between", "From a\nSubject: 1\n\nb1\n\nFrom b\nSubject: 2\n\nb2\n",
			[]string{"Subject: 1\r\n\r\nb1\r\n", "Subject: 2\r\n\r\nb2\r\n"}},
		{"mboxrd unescaping", "From a\nS: 1\n\n>From here\n>>From there\n>>>From far\n> From not\n>Fromage\n",
			[]string{"S: 1\r\n\r\nFrom here\r\n>From there\r\n>>From far\r\n> From not\r\n>Fromage\r\n"}},
		{"From inside a paragraph is no separator", "From a\nS: 1\n\nline\nFrom the desk\n",
			[]string{"S: 1\r\n\r\nline\r\nFrom the desk\r\n"}},
		{"CRLF mbox", "From a\r\nS: 1\r\n\r\nb\r\n\r\nFrom b\r\nS: 2\r\n",
			[]string{"S: 1\r\n\r\nb\r\n", "S: 2\r\n"}},
		{"no final newline", "From a\nS: 1\n\nlast", []string{"S: 1\r\n\r\nlast\r\n"}},
		{"inner blank lines kept", "From a\nS: 1\n\np1\n\n\np2\n\n\n", []string{"S: 1\r\n\r\np1\r\n\r\n\r\np2\r\n"}},
		{"text before the first separator is skipped", "junk\n\nFrom a\nS: 1\n", []string{"S: 1\r\n"}},
		{"empty message", "From a\n\nFrom b\nS: 2\n", []string{"", "S: 2\r\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, errs := split(t, tt.in, 1<<20)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestSplitMboxTooLarge(t *testing.T) {
	in := "From a\nS: 1\n\n" + strings.Repeat("x", 300) + "\n\nFrom b\nS: 2\n\nshort\n\nFrom c\nS: 3\n\n" +
		strings.Repeat("y", 100) + strings.Repeat("z", 200<<10) + "\n"
	got, errs := split(t, in, 200)
	if len(got) != 3 || got[1] != "S: 2\r\n\r\nshort\r\n" {
		t.Fatalf("got %q", got)
	}
	for _, i := range []int{0, 2} {
		if !errors.Is(errs[i], ErrTooLarge) || got[i] != "" {
			t.Errorf("message %d: %q, %v; want ErrTooLarge", i+1, got[i], errs[i])
		}
	}
}

func TestWriteMboxrdRoundTrip(t *testing.T) {
	msgs := [][]byte{[]byte("S: 1\r\n\r\nFrom me\r\n>From you\r\n"), []byte("S: 2\r\n\r\nbody\r\n")}
	var b bytes.Buffer
	if err := WriteMboxrd(&b, msgs); err != nil {
		t.Fatal(err)
	}
	got, _ := split(t, b.String(), 1<<20)
	if len(got) != 2 || got[0] != string(msgs[0]) || got[1] != string(msgs[1]) {
		t.Fatalf("round trip %q", got)
	}
}

func TestEachMaildirOrderAndSkips(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp", "cur/sub"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel, s string) {
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cur/300.M1.host:2,S", "S: third\n\nb\n")
	write("new/200.M1.host", "S: second\n")
	write("cur/100.M1.host:2,", "S: first\n")
	write("cur/.dovecot-keywords", "0 $Junk\n")
	write("tmp/150.M1.host", "S: being delivered\n")
	write("cur/sub/50.M1.host", "S: in a subdirectory\n")
	var names, raws []string
	if err := Each(dir, 1<<20, func(m Message) error {
		if m.Err != nil {
			t.Fatal(m.Err)
		}
		names = append(names, m.Name)
		raws = append(raws, string(m.Raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "cur/100.M1.host:2,,new/200.M1.host,cur/300.M1.host:2,S" {
		t.Fatalf("order %q", names)
	}
	if raws[2] != "S: third\r\n\r\nb\r\n" {
		t.Errorf("line ends not CRLF: %q", raws[2])
	}
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	mbox := filepath.Join(dir, "a.mbox")
	eml := filepath.Join(dir, "a.eml")
	os.WriteFile(mbox, []byte("From a\nS: 1\n"), 0o644)
	os.WriteFile(eml, []byte("From: a@b\nS: 1\n"), 0o644)
	for path, want := range map[string]Kind{mbox: KindMbox, eml: KindEML} {
		if k, err := Detect(path); err != nil || k != want {
			t.Errorf("%s: %q, %v; want %q", path, k, err, want)
		}
	}
	if _, err := Detect(dir); err == nil || !strings.Contains(err.Error(), "not a Maildir") {
		t.Errorf("plain directory: %v", err)
	}
	if _, err := Detect(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing path: no error")
	}
	// A single message is passed as it is, line ends included.
	var raw []byte
	if err := Each(eml, 0, func(m Message) error { raw = m.Raw; return m.Err }); err != nil || string(raw) != "From: a@b\nS: 1\n" {
		t.Errorf("eml: %q, %v", raw, err)
	}
}

// FuzzSplitMbox: an mbox is untrusted input. Splitting never panics, no
// message is over the limit or keeps a bare LF, and every message split
// out survives writing as mboxrd and splitting again unchanged.
func FuzzSplitMbox(f *testing.F) {
	f.Add([]byte("From a\nS: 1\n\n>From x\n\nFrom b\nS: 2\n"), 64)
	f.Add([]byte("From a\r\nS: 1\r\n\r\n>>From x\r\nFrom y\r\n"), 1000)
	f.Add([]byte("\n\nFrom \n\n\nFrom From \n>From "), 3)
	if b, err := os.ReadFile("../../testdata/mailbox/alerts.mbox"); err == nil {
		f.Add(b, 1<<20)
	}
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<20 {
			max = 1 << 20
		}
		var msgs [][]byte
		err := SplitMbox(bytes.NewReader(in), max, func(_ int, raw []byte, err error) error {
			if err != nil {
				if !errors.Is(err, ErrTooLarge) || raw != nil {
					t.Fatalf("error %v with %d bytes", err, len(raw))
				}
				return nil
			}
			if len(raw) > max {
				t.Fatalf("message of %d bytes over the limit %d", len(raw), max)
			}
			if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("bare LF in %q", raw)
			}
			msgs = append(msgs, raw)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// A bare CR at a line's end cannot survive a round trip (it reads
		// as part of the line end), so such inputs check the rest only.
		for _, m := range msgs {
			if bytes.Contains(bytes.ReplaceAll(m, []byte("\r\n"), nil), []byte("\r")) {
				return
			}
		}
		var b bytes.Buffer
		if err := WriteMboxrd(&b, msgs); err != nil {
			t.Fatal(err)
		}
		var again [][]byte
		if err := SplitMbox(&b, 1<<30, func(_ int, raw []byte, err error) error {
			again = append(again, raw)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if len(again) != len(msgs) {
			t.Fatalf("%d messages after the round trip, want %d", len(again), len(msgs))
		}
		for i := range msgs {
			if !bytes.Equal(again[i], msgs[i]) {
				t.Fatalf("message %d: %q after the round trip, want %q", i+1, again[i], msgs[i])
			}
		}
	})
}
