package message

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

// checkInvariants asserts what Decode promises for any input: valid UTF-8
// everywhere, no line breaks or NUL in header-ish fields, Text free of CR and
// NUL, Size and the limits respected.
func checkInvariants(t *testing.T, raw []byte, a *Alert, lim Limits) {
	t.Helper()
	lim = lim.withDefaults()
	if a == nil {
		t.Fatal("Decode returned nil")
	}
	if a.Size != len(raw) {
		t.Errorf("Size = %d, want %d", a.Size, len(raw))
	}
	line := func(field, s string) {
		t.Helper()
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", field, s)
		}
		if strings.ContainsAny(s, "\r\n\x00\x1b") {
			t.Errorf("%s holds a control character: %q", field, s)
		}
	}
	line("Subject", a.Subject)
	line("From", a.From)
	line("FromName", a.FromName)
	line("MessageID", a.MessageID)
	line("MailFrom", a.MailFrom)
	line("Helo", a.Helo)
	for _, r := range a.RcptTo {
		line("RcptTo", r)
	}
	for _, to := range a.To {
		line("To", to)
	}
	for k, vs := range a.Header {
		line("Header name", k)
		if k != strings.ToLower(k) {
			t.Errorf("Header name %q is not lower-case", k)
		}
		for _, v := range vs {
			line("Header "+k, v)
		}
	}
	if !utf8.ValidString(a.Text) || strings.ContainsAny(a.Text, "\r\x00\x1b") {
		t.Errorf("Text holds invalid UTF-8 or a control character: %q", a.Text)
	}
	if len(a.Text) > lim.MaxTextBytes {
		t.Errorf("Text is %d bytes, limit %d", len(a.Text), lim.MaxTextBytes)
	}
	if len(a.Attachments) > lim.MaxAttachments {
		t.Errorf("%d attachments, limit %d", len(a.Attachments), lim.MaxAttachments)
	}
	for i, at := range a.Attachments {
		line("attachment name", at.Name)
		line("attachment content type", at.ContentType)
		if at.Name == "" || strings.ContainsAny(at.Name, `/\`) {
			t.Errorf("attachment %d name %q is empty or has a path", i, at.Name)
		}
		if at.Size != len(at.Data) {
			t.Errorf("attachment %d Size = %d, len(Data) = %d", i, at.Size, len(at.Data))
		}
	}
	if len(a.Problems) > maxProblems+1 {
		t.Errorf("%d problems, cap %d", len(a.Problems), maxProblems+1)
	}
	for _, p := range a.Problems {
		line("problem detail", p.Detail)
	}
}

// FuzzDecode feeds arbitrary bytes to Decode. A panic that Decode's
// last-resort recover caught fails the input: the recover is for production,
// the fuzzer must see the bug.
func FuzzDecode(f *testing.F) {
	var recovered atomic.Pointer[string]
	hook := func(v any, stack []byte) {
		msg := fmt.Sprintf("%v\n%s", v, stack)
		recovered.Store(&msg)
	}
	prev := recoverHook.Swap(&hook)
	f.Cleanup(func() { recoverHook.Store(prev) })

	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if dir, err := sharedSamplesDir(); err == nil {
		more, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		seeds = append(seeds, more...)
	}
	for _, s := range seeds {
		raw, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{})
	f.Add([]byte("Subject: =?utf-8?q?a=0D=0Ab?=\n\n"))
	// Small limits so the limit paths are reached with small inputs.
	lim := Limits{MaxParts: 8, MaxDepth: 3, MaxHeaders: 16, MaxTextBytes: 512, MaxAttachments: 3}
	f.Fuzz(func(t *testing.T, raw []byte) {
		buf := bytes.Clone(raw)
		a := Decode(buf, testEnvelope, lim)
		if p := recovered.Swap(nil); p != nil {
			t.Fatalf("Decode recovered from a panic: %s", *p)
		}
		checkInvariants(t, raw, a, lim)
		if !bytes.Equal(buf, raw) {
			t.Fatal("Decode modified its input")
		}
		// Nothing in the Alert may share memory with the input: the SMTP
		// layer reuses its buffer. Overwrite it and compare.
		before := renderGolden(t, a)
		for i := range buf {
			buf[i] = 0xAA
		}
		if after := renderGolden(t, a); !bytes.Equal(before, after) {
			t.Fatalf("the Alert changed when the input buffer was overwritten:\n%s\n%s", before, after)
		}

		a = Decode(raw, testEnvelope, Limits{})
		if p := recovered.Swap(nil); p != nil {
			t.Fatalf("Decode (default limits) recovered from a panic: %s", *p)
		}
		checkInvariants(t, raw, a, Limits{})
	})
}

// FuzzHTMLToText feeds arbitrary markup to the HTML renderer, with a small
// limit and a source longer than the tokenizer's buffer now and then, so
// that the limit and the recovery from over-long tokens are reached.
func FuzzHTMLToText(f *testing.F) {
	for _, s := range []string{
		"<p>a<br>b</p>", "<table><tr><td>1<td>2</table>", "<title>x", "<script>x</script>y",
		"<!-- a -->b", `<a href="https://x.example">y</a>`, "<pre>a\r\n b</pre>", "&amp;&nbsp;é",
		"<textarea>a<b>", "<template>x</template>y", "<xmp><b></xmp>", `<img alt="a" width=1>`,
	} {
		f.Add(s, uint16(64), false)
	}
	f.Fuzz(func(t *testing.T, s string, limit uint16, long bool) {
		if long {
			// Repeat the input past minTokenBuf: long text runs, comments,
			// tags and raw-text elements.
			s = strings.Repeat(s, minTokenBuf/max(len(s), 1)+1)
		}
		got, cut := htmlToText(s, int(limit))
		if len(got) > int(limit) {
			t.Fatalf("%d bytes of text, limit %d", len(got), limit)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8 from valid input: %q", got)
		}
		if !cut && int(limit) >= 4*len(s)+64 {
			if again, _ := htmlToText(s, int(limit)); again != got {
				t.Fatalf("not deterministic: %q then %q", got, again)
			}
		}
	})
}
