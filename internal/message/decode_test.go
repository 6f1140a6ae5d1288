package message

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"psagate/internal/sanitize"
)

// msg builds a CRLF message from LF-separated lines.
func msg(lines ...string) []byte {
	return []byte(strings.ReplaceAll(strings.Join(lines, "\n"), "\n", "\r\n"))
}

func problemsOf(a *Alert, k ProblemKind) []string {
	var out []string
	for _, p := range a.Problems {
		if p.Kind == k {
			out = append(out, p.Detail)
		}
	}
	return out
}

func TestHeaderInjection(t *testing.T) {
	tests := []struct {
		name       string
		raw        []byte
		wantDetail string
		check      func(t *testing.T, a *Alert)
	}{
		{
			name:       "Q word with CR LF in Subject",
			raw:        msg("Subject: =?UTF-8?Q?x=0D=0ABcc:_a@b.example?=", "", "body"),
			wantDetail: "Subject: decoded value contained CR/LF (header injection)",
			check: func(t *testing.T, a *Alert) {
				if a.Subject != "x Bcc: a@b.example" {
					t.Errorf("Subject = %q", a.Subject)
				}
			},
		},
		{
			name:       "B word with NUL in an X- header",
			raw:        msg("X-Job: =?UTF-8?B?"+base64.StdEncoding.EncodeToString([]byte("a\x00b"))+"?=", "", "body"),
			wantDetail: "X-Job: decoded value contained NUL (header injection)",
			check: func(t *testing.T, a *Alert) {
				if got := a.Header["x-job"]; len(got) != 1 || got[0] != "ab" {
					t.Errorf("x-job = %q", got)
				}
			},
		},
		{
			name:       "raw bare CR in a header line",
			raw:        []byte("Subject: one\rTwo: x\r\n\r\nbody"),
			wantDetail: "Subject: decoded value contained CR/LF (header injection)",
			check: func(t *testing.T, a *Alert) {
				if a.Subject != "one Two: x" {
					t.Errorf("Subject = %q", a.Subject)
				}
			},
		},
		{
			name:       "From display name",
			raw:        msg("From: =?UTF-8?Q?Ops=0ABcc:_x@y.example?= <ops@example.com>", "", "body"),
			wantDetail: "From: decoded value contained CR/LF (header injection)",
			check: func(t *testing.T, a *Alert) {
				if a.From != "ops@example.com" || strings.ContainsAny(a.FromName, "\r\n") {
					t.Errorf("From = %q, FromName = %q", a.From, a.FromName)
				}
			},
		},
		{
			name: "RFC 2231 file name with %0D%0A",
			raw: msg("Subject: s", `Content-Type: multipart/mixed; boundary="b"`, "", "--b",
				"Content-Type: application/octet-stream",
				"Content-Disposition: attachment; filename*=utf-8''a%0D%0Ab.txt", "", "data", "--b--"),
			wantDetail: "attachment 1 name: decoded value contained CR/LF (header injection)",
			check: func(t *testing.T, a *Alert) {
				if len(a.Attachments) != 1 || a.Attachments[0].Name != "a b.txt" {
					t.Errorf("attachments = %+v", a.Attachments)
				}
			},
		},
		{
			name:       "ESC is removed without being an injection",
			raw:        msg("Subject: =?UTF-8?Q?red_=1B[31m?=", "", "body"),
			wantDetail: "",
			check: func(t *testing.T, a *Alert) {
				if a.Subject != "red [31m" {
					t.Errorf("Subject = %q", a.Subject)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Decode(tt.raw, Envelope{}, Limits{})
			checkInvariants(t, tt.raw, a, Limits{})
			got := problemsOf(a, ProblemInjection)
			if tt.wantDetail == "" {
				if len(got) != 0 {
					t.Errorf("unexpected injection problems %q", got)
				}
			} else if !containsString(got, tt.wantDetail) {
				t.Errorf("injection problems = %q, want one %q", got, tt.wantDetail)
			}
			tt.check(t, a)
		})
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestHeaderFields(t *testing.T) {
	raw := msg(
		`From: "Doe, Jane" <Jane.Doe@Example.COM>, second@example.com`,
		"To: a@example.com, =?UTF-8?Q?B=C3=B6b?= <B@Example.com>",
		"Cc: undisclosed-recipients:;",
		"Cc: c@example.com",
		"Subject: first",
		"Subject: second",
		"Message-ID: no-brackets-no-at",
		"X-Folded: one",
		"\ttwo",
		"",
		"body")
	a := Decode(raw, Envelope{}, Limits{})
	if a.From != "jane.doe@example.com" || a.FromName != "Doe, Jane" {
		t.Errorf("From = %q, FromName = %q", a.From, a.FromName)
	}
	if want := []string{"a@example.com", "b@example.com", "c@example.com"}; fmt.Sprint(a.To) != fmt.Sprint(want) {
		t.Errorf("To = %q, want %q", a.To, want)
	}
	if a.Subject != "first" || len(a.Header["subject"]) != 2 || a.Header["subject"][1] != "second" {
		t.Errorf("Subject = %q, header = %q", a.Subject, a.Header["subject"])
	}
	if a.MessageID != "no-brackets-no-at" {
		t.Errorf("MessageID = %q", a.MessageID)
	}
	if got := a.Header["x-folded"]; len(got) != 1 || got[0] != "one two" {
		t.Errorf("x-folded = %q", got)
	}
	if !a.Date.IsZero() || len(a.Problems) != 0 {
		t.Errorf("missing Date: Date = %v, problems = %+v (want zero and none)", a.Date, a.Problems)
	}
}

func TestMalformedStructure(t *testing.T) {
	tests := []struct {
		name     string
		raw      []byte
		wantText string
		wantAtt  int
		want     ProblemKind // "" for none
	}{
		{"no header at all", []byte("just a line of text\nand another"), "just a line of text\nand another", 0, ProblemMalformed},
		{"header only, no body", []byte("Subject: only a header"), "", 0, ""},
		{"continuation first", msg(" folded: x", "Subject: s", "", "body"), "body", 0, ProblemMalformed},
		{"bad boundary never found", msg(`Content-Type: multipart/mixed; boundary="zz"`, "", "--other", "", "text"), "--other\n\ntext", 0, ProblemMalformed},
		{"longer boundary is content", msg(`Content-Type: multipart/mixed; boundary="b"`, "", "--b", "", "keep --b-1 and", "--b-1", "--b--"), "keep --b-1 and\n--b-1", 0, ""},
		{"unknown transfer encoding", msg("Content-Transfer-Encoding: x-uuencode", "", "begin 644 x"), "begin 644 x", 0, ProblemMalformed},
		{"bad QP escape kept", msg("Content-Transfer-Encoding: quoted-printable", "", "100=% done=3D"), "100=% done=", 0, ProblemMalformed},
		{"unparseable Content-Type", msg("Content-Type: ???", "", "text"), "text", 0, ProblemMalformed},
		{"broken Content-Type params keep the boundary", msg(`Content-Type: multipart/mixed; boundary="q"; junk`, "", "--q", "", "inner", "--q--"), "inner", 0, ProblemMalformed},
		{"empty message", []byte{}, "", 0, ProblemMalformed},
		{"bare CR before CRLF is two line ends", []byte("Subject: s\r\n\r\n0\r\r\n0\r\n"), "0\n\n0", 0, ""},
		{"multipart with empty parts", msg(`Content-Type: multipart/mixed; boundary="e"`, "", "--e", "--e", "", "x", "--e--"), "x", 0, ""},
		{"text/plain attachment disposition", msg(`Content-Type: multipart/mixed; boundary="e"`, "", "--e", "", "body", "--e", "Content-Disposition: attachment", "", "file", "--e--"), "body", 1, ""},
		{"image at top level", msg("Content-Type: image/gif", "Content-Transfer-Encoding: base64", "", "R0lGODlhAQABAAAAACw="), "", 1, ""},
		{"message/rfc822 part is an attachment", msg(`Content-Type: multipart/mixed; boundary="e"`, "", "--e", "", "see attached", "--e", "Content-Type: message/rfc822", "", "Subject: inner", "", "inner body", "--e--"), "see attached", 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Decode(tt.raw, Envelope{}, Limits{})
			checkInvariants(t, tt.raw, a, Limits{})
			if a.Text != tt.wantText {
				t.Errorf("Text = %q, want %q", a.Text, tt.wantText)
			}
			if len(a.Attachments) != tt.wantAtt {
				t.Errorf("%d attachments, want %d", len(a.Attachments), tt.wantAtt)
			}
			if tt.want == "" && len(a.Problems) > 0 {
				t.Errorf("unexpected problems %+v", a.Problems)
			}
			if tt.want != "" && !a.HasProblem(tt.want) {
				t.Errorf("no %s problem in %+v", tt.want, a.Problems)
			}
		})
	}
}

func TestAlternativeChoice(t *testing.T) {
	part := func(ct, body string) string { return "--a\nContent-Type: " + ct + "\n\n" + body + "\n" }
	tests := []struct {
		name     string
		parts    []string
		wantText string
		wantHTML bool
	}{
		{"plain wins even when last", []string{part("text/html", "<p>html</p>"), part("text/plain", "plain")}, "plain", false},
		{"last HTML without plain", []string{part("text/html", "<p>first</p>"), part("text/html", "<p>second</p>")}, "second", true},
		{"plain inside a nested mixed", []string{part("text/html", "<p>html</p>"),
			"--a\nContent-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\nnested plain\n--m--\n"}, "nested plain", false},
		{"blank plain loses", []string{part("text/plain", "  "), part("text/html", "<b>real</b>")}, "real", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := msg("Content-Type: multipart/alternative; boundary=a", "", strings.Join(tt.parts, "")+"--a--")
			a := Decode(raw, Envelope{}, Limits{})
			if a.Text != tt.wantText || a.FromHTML != tt.wantHTML {
				t.Errorf("Text = %q, FromHTML = %v; want %q, %v", a.Text, a.FromHTML, tt.wantText, tt.wantHTML)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	t.Run("text cut at a rune boundary", func(t *testing.T) {
		raw := msg("Content-Type: text/plain; charset=utf-8", "", strings.Repeat("ö", 100))
		a := Decode(raw, Envelope{}, Limits{MaxTextBytes: 51})
		if len(a.Text) != 50 || !utf8.ValidString(a.Text) {
			t.Errorf("Text = %d bytes (%q)", len(a.Text), a.Text)
		}
		if !a.HasProblem(ProblemLimit) {
			t.Error("no ProblemLimit")
		}
	})
	t.Run("text from a converted charset", func(t *testing.T) {
		raw := append(msg("Content-Type: text/plain; charset=iso-8859-2", "", ""), bytes.Repeat([]byte{0xb1}, 100)...)
		a := Decode(raw, Envelope{}, Limits{MaxTextBytes: 21})
		if len(a.Text) != 20 || a.Text != strings.Repeat("ą", 10) || !a.HasProblem(ProblemLimit) {
			t.Errorf("Text = %q, problems %+v", a.Text, a.Problems)
		}
	})
	t.Run("html rendering stops at the limit", func(t *testing.T) {
		raw := msg("Content-Type: text/html", "", strings.Repeat("<p>paragraph</p>", 1000))
		a := Decode(raw, Envelope{}, Limits{MaxTextBytes: 100})
		if len(a.Text) > 100 || !a.HasProblem(ProblemLimit) {
			t.Errorf("Text = %d bytes, problems %+v", len(a.Text), a.Problems)
		}
	})
	t.Run("headers", func(t *testing.T) {
		var lines []string
		for i := range 10 {
			lines = append(lines, fmt.Sprintf("X-H%d: %d", i, i))
		}
		lines = append(lines, "Subject: after the cap", "", "body")
		raw := msg(lines...)
		a := Decode(raw, Envelope{}, Limits{MaxHeaders: 5})
		if len(a.Header) != 5 || a.Subject != "" || a.Text != "body" || !a.HasProblem(ProblemLimit) {
			t.Errorf("headers %d, Subject %q, Text %q, problems %+v", len(a.Header), a.Subject, a.Text, a.Problems)
		}
	})
	t.Run("attachments and parts", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=p\n\n")
		for i := range 10 {
			fmt.Fprintf(&b, "--p\nContent-Type: image/png\nContent-Disposition: attachment; filename=%d.png\n\nx\n", i)
		}
		b.WriteString("--p--\n")
		raw := []byte(b.String())
		a := Decode(raw, Envelope{}, Limits{MaxAttachments: 3})
		if len(a.Attachments) != 3 || a.Attachments[2].Name != "2.png" || !a.HasProblem(ProblemLimit) {
			t.Errorf("attachments %d, problems %+v", len(a.Attachments), a.Problems)
		}
		a = Decode(raw, Envelope{}, Limits{MaxParts: 4})
		if len(a.Attachments) != 3 || len(problemsOf(a, ProblemLimit)) != 1 {
			t.Errorf("MaxParts 4 (root + 3): attachments %d, problems %+v", len(a.Attachments), a.Problems)
		}
	})
	t.Run("problems are capped", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=p\n\n")
		for i := range 100 {
			fmt.Fprintf(&b, "--p\nContent-Transfer-Encoding: x-enc-%d\n\nx\n", i)
		}
		a := Decode([]byte(b.String()), Envelope{}, Limits{MaxParts: 200})
		if len(a.Problems) != maxProblems+1 || a.Problems[maxProblems].Kind != ProblemLimit {
			t.Errorf("%d problems, last %+v", len(a.Problems), a.Problems[len(a.Problems)-1])
		}
	})
}

func TestAttachmentNames(t *testing.T) {
	tests := []struct{ cd, ct, want string }{
		{`attachment; filename="..\..\evil.exe"`, "application/octet-stream", "evil.exe"},
		{`attachment; filename="/etc/passwd"`, "text/plain", "passwd"},
		{`attachment; filename="C:evil.bat"`, "application/octet-stream", "evil.bat"},
		{`attachment; filename=".."`, "image/png", "attachment-1.png"},
		{`attachment`, "application/x-unknown", "attachment-1.bin"},
		{`attachment; filename="=?UTF-8?B?w7xiZXIudHh0?="`, "text/plain", "über.txt"},
		{`attachment; filename*=iso-8859-1''%E9t%E9.txt`, "text/plain", "été.txt"},
		{`attachment; filename*0="long"; filename*1="name.txt"`, "text/plain", "longname.txt"},
		{`attachment; filename="bidi` + "\u202e" + `gnp.exe"`, "text/plain", "bidignp.exe"},
		{`attachment; filename="` + strings.Repeat("x", 300) + `.pdf"`, "application/pdf", strings.Repeat("x", 251) + ".pdf"},
		{``, `application/pdf; name="from-type.pdf"`, "from-type.pdf"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			lines := []string{"Content-Type: multipart/mixed; boundary=n", "", "--n", "Content-Type: " + tt.ct}
			if tt.cd != "" {
				lines = append(lines, "Content-Disposition: "+tt.cd)
			}
			lines = append(lines, "", "data", "--n--")
			a := Decode(msg(lines...), Envelope{}, Limits{})
			if len(a.Attachments) != 1 {
				t.Fatalf("%d attachments, problems %+v", len(a.Attachments), a.Problems)
			}
			if got := a.Attachments[0].Name; got != tt.want {
				t.Errorf("Name = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecodeQP(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{"a=3Db", "a=b", false},
		{"soft=\r\nbreak", "softbreak", false},
		{"soft=\nbreak", "softbreak", false},
		{"hard\r\nbreak\nlf", "hard\r\nbreak\nlf", false},
		{"padding   \r\nx", "padding\r\nx", false},
		{"soft with padding=  \r\nx", "soft with paddingx", false},
		{"lower =c3=b6", "lower ö", false},
		{"soft break at the end =", "soft break at the end ", false},
		{"bad =G1 mid", "bad =G1 mid", true},
		{"trailing =4", "trailing =4", true},
		{"ctrl \x00 kept", "ctrl \x00 kept", false},
	}
	for _, tt := range tests {
		got, bad := decodeQP([]byte(tt.in))
		if string(got) != tt.want || bad != tt.bad {
			t.Errorf("decodeQP(%q) = %q, %v; want %q, %v", tt.in, got, bad, tt.want, tt.bad)
		}
	}
}

func TestDecodeBase64(t *testing.T) {
	data := []byte("The quick brown fox jumps over the lazy dog.\x00\xff")
	enc := base64.StdEncoding.EncodeToString(data)
	tests := []struct {
		name, in string
		want     []byte
		bad      bool
	}{
		{"plain", enc, data, false},
		{"CRLF lines", enc[:20] + "\r\n" + enc[20:40] + "\r\n" + enc[40:] + "\r\n", data, false},
		{"spaces and tabs", " " + enc[:20] + "\t\r\n  " + enc[20:], data, false},
		{"junk characters", enc[:8] + "!!" + enc[8:], data, true},
		{"missing padding", strings.TrimRight(enc, "="), data, false},
		{"dangling character", enc + "Q", data, true},
		{"concatenated blobs", "YWI=\r\nY2Q=", []byte("abcd"), false},
		{"empty", "", []byte{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bad := decodeBase64([]byte(tt.in))
			if !bytes.Equal(got, tt.want) || bad != tt.bad {
				t.Errorf("got %q, bad=%v; want %q, bad=%v", got, bad, tt.want, tt.bad)
			}
		})
	}
}

func TestSplitMultipart(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		want          []string
		found, closed bool
	}{
		{"basic", "pre\r\n--b\r\none\r\n--b\r\ntwo\r\n--b--\r\nepilogue", []string{"one", "two"}, true, true},
		{"LF", "--b\nA\n--b--\n", []string{"A"}, true, true},
		{"white space after delimiter", "--b \t\r\nA\r\n--b-- \r\n", []string{"A"}, true, true},
		{"not at line start", "x--b\r\n--b\r\nA\r\n--b--", []string{"A"}, true, true},
		{"longer boundary is content", "--b\r\nA\r\n--bb\r\n--b--", []string{"A\r\n--bb"}, true, true},
		{"missing end", "--b\r\nA\r\n--b\r\nB\r\n", []string{"A", "B\r\n"}, true, false},
		{"not found", "no delimiter here", nil, false, false},
		{"final at EOF without line end", "--b\r\nA\r\n--b--", []string{"A"}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, found, closed := splitMultipart([]byte(tt.body), "b")
			var got []string
			for _, p := range parts {
				got = append(got, string(p))
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) || found != tt.found || closed != tt.closed {
				t.Errorf("got %q found=%v closed=%v; want %q %v %v", got, found, closed, tt.want, tt.found, tt.closed)
			}
		})
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"script style head title", "<html><head><title>T</title><style>p{}</style></head><body><script>x<y</script>Hi</body></html>", "Hi"},
		{"comments", "a<!-- <b>c</b> -->b<!---->c<!-->d", "abcd"},
		{"unclosed script hides the rest", "shown<script>hidden", "shown"},
		{"unclosed title hides nothing", "<title>shown", "shown"},
		{"tracking pixel and alt", `<img src=x width="1" height=1 alt="pixel">a <img alt="[ok]">`, "a [ok]"},
		{"links", `<a href="https://x.example/a">Open</a> <a href="https://x.example/">x.example</a> <a href="#top">top</a>`, "Open (https://x.example/a) x.example top"},
		{"entities", "&lt;a&gt; &amp; &quot;q&quot; &#169; &euro;&nbsp;5", `<a> & "q" © € 5`},
		{"whitespace collapses", "  a \n\t b  ", "a b"},
		{"br and paragraphs", "a<br>b<br><br>c<p>d</p>e", "a\nb\n\nc\n\nd\n\ne"},
		{"table", "<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>after", "A | B\n1 | 2\nafter"},
		{"empty middle cell", "<table><tr><td>1</td><td></td><td>3</td></tr></table>", "1 | | 3"},
		{"nested table", "<table><tr><td>out<table><tr><td>i1</td><td>i2</td></tr></table></td><td>o2</td></tr></table>", "out\ni1 | i2\no2"},
		{"list", "<ul><li>one</li><li>two</li></ul>", "- one\n- two"},
		{"pre keeps spaces", "<pre>a  b\n  c</pre>", "a  b\n  c"},
		{"stray less-than", "1 < 2 <3", "1 < 2 <3"},
		{"attribute with >", `<div title="a>b">text</div>`, "text"},
		{"uppercase tags", "<P>A</P><BR><SCRIPT>x</SCRIPT>B", "A\n\nB"},
		{"unterminated tag", "text<div class=", "text"},
		{"doctype and cdata (a bogus comment in HTML)", "<!DOCTYPE html><![CDATA[x]]>y", "y"},
		// What the HTML5 tokenizer decides, kept because a mail reader shows
		// the same.
		{"self-closing script still opens one", "<script/>x</script>y", "y"},
		{"noscript is shown: mail readers run no scripts", "<noscript><p>a</p></noscript>b", "a\n\nb"},
		{"xmp shows its markup", "<xmp><b>x</b></xmp>", "<b>x</b>"},
		{"textarea holds text, not markup", "<textarea>a<b>c</textarea>d", "a<b>cd"},
		{"template is hidden", "<template><p>x</p></template>y", "y"},
		{"comment closed by --!>", "a<!-- x --!>b", "ab"},
		{"entity without semicolon in an attribute stays", `<a href="https://x.example/?a=1&copy=2">go</a>`, "go (https://x.example/?a=1&copy=2)"},
		{"unclosed style hides the rest", "a<style>b", "a"},
		// Where alert mail wins over HTML5: an unclosed raw-text element is
		// ordinary markup, so a sloppy template loses no alert text.
		{"unclosed textarea is markup", "<textarea>a<b>c</b>", "ac"},
		{"unclosed template hides nothing", "<template>x", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := htmlToText(tt.in, 1<<20)
			if got = sanitize.Text(got); got != tt.want || cut {
				t.Errorf("htmlToText(%q) = %q (cut %v), want %q", tt.in, got, cut, tt.want)
			}
		})
	}
}

// TestHTMLToTextLimits checks that the output never exceeds the limit and
// that tokens longer than the tokenizer may buffer (minTokenBuf) are
// rendered or skipped from the source, not lost with what follows them.
func TestHTMLToTextLimits(t *testing.T) {
	big := strings.Repeat("p{} ", minTokenBuf/3)
	tests := []struct {
		name, in string
		limit    int
		want     string // the text starts with this
		cut      bool
	}{
		{"separators count", "<table><tr><td>a" + strings.Repeat("<td>", 100000) + "x", 100, "a | | |", true},
		{"runes are not split", strings.Repeat("é", 100), 51, strings.Repeat("é", 25), true},
		{"exactly the limit", "abc", 3, "abc", false},
		{"long pre", "<pre>" + strings.Repeat("log line\n", minTokenBuf/8) + "</pre><p>after</p>", 1 << 20, "log line\nlog line", false},
		{"long text", strings.Repeat("word ", minTokenBuf/4) + "<p>after</p>", 1 << 20, "word word", false},
		{"long closed style", "<style>" + big + "</style>shown", 1 << 20, "shown", false},
		{"long closed title", "<title>" + big + "</title>shown", 1 << 20, "shown", false},
		{"long closed comment", "<!--" + big + "-->shown", 1 << 20, "shown", false},
		{"long textarea", "<textarea>" + big + "</textarea>shown", 1 << 20, "p{} p{}", false},
		{"unclosed titles are searched once", strings.Repeat("<title>x", 1<<17), 1 << 20, "xxxx", false},
		{"long unclosed script", "a<script>" + big, 1 << 20, "a", false},
		{"long unclosed comment", "a<!--" + big, 1 << 20, "a", false},
		{"data: image within the buffer", `<img alt="logo" src="data:image/png;base64,` + big + `">after`, 1 << 20, "logo after", false},
		{"data: image beyond the buffer cuts", `a<img alt="logo" src="data:image/png;base64,` + big + `">after`, 8 << 10, "a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := htmlToText(tt.in, tt.limit)
			if len(got) > tt.limit || !utf8.ValidString(got) {
				t.Fatalf("%d bytes (limit %d), valid UTF-8 %v", len(got), tt.limit, utf8.ValidString(got))
			}
			if !strings.HasPrefix(got, tt.want) || cut != tt.cut {
				t.Errorf("got %.60q... (%d bytes, cut %v), want prefix %.60q, cut %v", got, len(got), cut, tt.want, tt.cut)
			}
			if strings.Contains(tt.in, "after") && !tt.cut && !strings.HasSuffix(got, "after") {
				t.Errorf("the text after the long token is lost: ...%q", got[max(0, len(got)-40):])
			}
		})
	}
}

// TestHTMLToTextMemory renders 20 MB of hostile HTML and checks that the
// renderer allocates a bounded amount, whatever the input's size: the
// tokenizer's buffer is capped (SetMaxBuf) and long runs are not copied.
func TestHTMLToTextMemory(t *testing.T) {
	const size = 20 << 20
	const limit = 64 << 10
	tests := []struct{ name, in string }{
		{"white space", strings.Repeat(" \n\t", size/3)},
		{"unclosed comment", "<!--" + strings.Repeat("x", size)},
		{"huge attribute", `<img alt="a" src="` + strings.Repeat("x", size) + `">`},
		{"closed style", "<style>" + strings.Repeat("x ", size/2) + "</style>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got, _ := htmlToText(tt.in, limit)
			runtime.ReadMemStats(&after)
			if len(got) > limit {
				t.Errorf("%d bytes of text, limit %d", len(got), limit)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
				t.Errorf("rendering %d bytes allocated %d bytes", len(tt.in), n)
			}
		})
	}
}

func TestCharsets(t *testing.T) {
	tests := []struct {
		name, subject, want string
		problem             ProblemKind
	}{
		{"iso-8859-15 Q", "=?iso-8859-15?q?=A4uro?=", "€uro", ""},
		{"gb2312 B", "=?gb2312?B?1tC5+g==?=", "中国", ""},
		{"unknown charset stays readable", "=?x-unknown?Q?plain_ascii?=", "plain ascii", ProblemCharset},
		{"unknown charset with 8-bit", "=?x-unknown?Q?caf=E9?=", "café", ProblemCharset},
		{"RFC 2231 language in word", "=?utf-8*en?Q?hello?=", "hello", ""},
		{"malformed word kept", "=?utf-8?B?###?=", "=?utf-8?B?###?=", ""},
		{"raw UTF-8 (RFC 6532)", "Größe", "Größe", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Decode(msg("Subject: "+tt.subject, "", "b"), Envelope{}, Limits{})
			if a.Subject != tt.want {
				t.Errorf("Subject = %q, want %q", a.Subject, tt.want)
			}
			if tt.problem == "" && len(a.Problems) > 0 || tt.problem != "" && !a.HasProblem(tt.problem) {
				t.Errorf("problems = %+v, want kind %q", a.Problems, tt.problem)
			}
		})
	}
}

func TestHTMLMetaCharset(t *testing.T) {
	tests := []struct {
		name, ct, head string
		body           []byte
		want           string
	}{
		{"meta charset", "text/html", `<meta charset="ISO-8859-1">`, []byte("caf\xe9"), "café"},
		{"http-equiv", "text/html", `<META HTTP-EQUIV="Content-Type" CONTENT="text/html; CHARSET=windows-1251">`, []byte("\xcf\xf0\xe8"), "При"},
		{"MIME header wins", "text/html; charset=utf-8", `<meta charset="iso-8859-1">`, []byte("café"), "café"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := append([]byte("Content-Type: "+tt.ct+"\r\n\r\n<html><head>"+tt.head+"</head><body>"), tt.body...)
			raw = append(raw, "</body></html>"...)
			a := Decode(raw, Envelope{}, Limits{})
			if a.Text != tt.want || len(a.Problems) > 0 {
				t.Errorf("Text = %q, problems %+v; want %q", a.Text, a.Problems, tt.want)
			}
		})
	}
}

func TestEnvelopeAndAliasing(t *testing.T) {
	env := Envelope{MailFrom: "a@b.example\x1b", RcptTo: []string{"x@y.example"}, Helo: "h\x00"}
	raw := msg("Subject: s", "Content-Type: multipart/mixed; boundary=b", "", "--b",
		"Content-Type: application/octet-stream", "", "seven-bit data", "--b--")
	a := Decode(raw, env, Limits{})
	if a.MailFrom != "a@b.example" || a.Helo != "h" {
		t.Errorf("envelope not sanitised: %q %q", a.MailFrom, a.Helo)
	}
	env.RcptTo[0] = "changed"
	if a.RcptTo[0] != "x@y.example" {
		t.Error("Alert.RcptTo aliases the caller's slice")
	}
	if len(a.Attachments) != 1 || string(a.Attachments[0].Data) != "seven-bit data" {
		t.Fatalf("attachments %+v", a.Attachments)
	}
	for i := range raw {
		raw[i] = 'X' // the SMTP layer may reuse its buffer
	}
	if string(a.Attachments[0].Data) != "seven-bit data" || a.Subject != "s" {
		t.Error("the Alert shares memory with raw")
	}
}

func TestRecoverRecordsMalformed(t *testing.T) {
	var recovered any
	hook := func(v any, _ []byte) { recovered = v }
	prev := recoverHook.Swap(&hook)
	testForcePanic.Store(true)
	t.Cleanup(func() {
		testForcePanic.Store(false)
		recoverHook.Store(prev)
	})
	a := Decode(msg("Subject: s", "", "body"), Envelope{}, Limits{})
	if recovered == nil {
		t.Fatal("the recover hook was not called")
	}
	if a.Subject != "s" || !a.HasProblem(ProblemMalformed) || !strings.Contains(a.Problems[0].Detail, "internal error") {
		t.Errorf("Subject %q, problems %+v", a.Subject, a.Problems)
	}
}

// FuzzCleanBodyText checks the fast path of cleanBodyText against
// sanitize.Text, which defines clean text.
func FuzzCleanBodyText(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", "a \nb", "\n\na\n\n\n\nb\n", "tab\tend\t", "x\u00a0\ny", "\u2028", "é\xff", "a\x00b", "\ufeff", "a\n\n\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := cleanBodyText(s), sanitize.Text(s); got != want {
			t.Fatalf("cleanBodyText(%q) = %q, sanitize.Text = %q", s, got, want)
		}
	})
}
