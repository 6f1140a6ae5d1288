package sanitize

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain subject", "plain subject"},
		{"[PVC-BDR1] Failed Backup: PVC-SRV-PAY\r\nCc: leak@evil.example\r\n", "[PVC-BDR1] Failed Backup: PVC-SRV-PAY Cc: leak@evil.example"},
		{"a\x00b\x1bc", "abc"},
		{"  lead  and   trail  ", "lead and trail"},
		{"tab\there", "tab here"},
		{"bidi \u202egnp.exe", "bidi gnp.exe"},
		{"zero\u200bwidth", "zerowidth"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"Wöchentliche-Dateiserver", "Wöchentliche-Dateiserver"},
		{"line\u2028sep", "line sep"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Line(tt.in); got != tt.want {
			t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestText(t *testing.T) {
	in := "first\r\nsecond \x00\r\n\r\n\r\n\r\n\r\nthird\rfourth\t x\x1b[31m"
	want := "first\nsecond\n\n\nthird\nfourth\t x[31m"
	if got := Text(in); got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
}

func TestTruncate(t *testing.T) {
	s := strings.Repeat("ö", 150)
	got := Truncate(s, 100, "")
	if n := utf8.RuneCountInString(got); n != 100 {
		t.Fatalf("runes = %d, want 100", n)
	}
	if !utf8.ValidString(got) {
		t.Fatal("cut inside a rune")
	}
	got = Truncate(s, 100, "…")
	if n := utf8.RuneCountInString(got); n != 100 || !strings.HasSuffix(got, "…") {
		t.Fatalf("with marker: %d runes, %q", n, got[len(got)-6:])
	}
	if got := Truncate("short", 100, "…"); got != "short" {
		t.Fatalf("short text changed: %q", got)
	}
	if got := Truncate("abcdef", 2, "[cut]"); got != "[c" {
		t.Fatalf("marker longer than max: %q", got)
	}
}

func TestTruncateBytes(t *testing.T) {
	s := strings.Repeat("€", 10) // 3 bytes each
	got := TruncateBytes(s, 10, "")
	if len(got) != 9 || !utf8.ValidString(got) {
		t.Fatalf("got %q (%d bytes)", got, len(got))
	}
	got = TruncateBytes(s, 10, "!")
	if len(got) > 10 || !strings.HasSuffix(got, "!") || !utf8.ValidString(got) {
		t.Fatalf("got %q", got)
	}
}

func FuzzLine(f *testing.F) {
	f.Add("=?UTF-8?Q?a=0D=0Ab?=\r\nCc: x")
	f.Add("\xff\xfe\x00")
	f.Add("line one\nline two\n\n\nthree\tx")
	f.Add("ok \u00a0\nnbsp")
	f.Fuzz(func(t *testing.T, s string) {
		got := Line(s)
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 out of %q", s)
		}
		if strings.ContainsAny(got, "\r\n\x00\t") {
			t.Fatalf("control char survived: %q", got)
		}
		if Line(got) != got {
			t.Fatalf("not idempotent: %q -> %q", got, Line(got))
		}
		tx := Text(s)
		if !utf8.ValidString(tx) || strings.ContainsAny(tx, "\r\x00") {
			t.Fatalf("Text left control chars: %q", tx)
		}
		if isCleanText(s) && textSlow(s) != s {
			t.Fatalf("fast path accepted %q, which Text would change to %q", s, textSlow(s))
		}
		if Text(tx) != tx {
			t.Fatalf("Text not idempotent (fast path disagrees): %q -> %q", tx, Text(tx))
		}
	})
}
