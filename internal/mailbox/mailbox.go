// Package mailbox reads the mail an admin can export from an existing
// mailbox, so that `psagate try` can replay it: a single RFC 5322 message
// (.eml), an mbox file (mboxo or mboxrd: messages separated by "From "
// lines, body lines that began with "From " escaped as ">From ") and a
// Maildir directory (one message a file in cur/ and new/).
//
// Everything here reads untrusted input: a message is never larger than
// the caller's limit, a broken mbox is split as well as it goes and never
// panics, and nothing is read outside the given file or directory's
// cur/ and new/.
package mailbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Message is one message of a mailbox.
type Message struct {
	// Name says where the message is, for output: the .eml file name,
	// "archive.mbox#3" (1-based) or "cur/1700000000.M1P2.host:2,S".
	Name string
	Raw  []byte // from an mbox or Maildir with CRLF line ends, as it would arrive over SMTP
	// Err is set when the message could not be read (too large, or an I/O
	// error on a Maildir file); Raw is then nil. Reading goes on.
	Err error
}

// ErrTooLarge is a message over the size limit.
var ErrTooLarge = errors.New("message larger than the limit")

// Kind names what Open found at a path.
type Kind string

// The kinds.
const (
	KindEML     Kind = "eml"
	KindMbox    Kind = "mbox"
	KindMaildir Kind = "maildir"
)

// Detect says what path holds: a directory is a Maildir (it must have cur/
// or new/), a file whose first line starts with "From " is an mbox, any
// other file one message.
func Detect(path string) (Kind, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		for _, sub := range []string{"cur", "new"} {
			if st, err := os.Stat(filepath.Join(path, sub)); err == nil && st.IsDir() {
				return KindMaildir, nil
			}
		}
		return "", fmt.Errorf("%s: a directory, but not a Maildir (it has neither cur/ nor new/)", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 5)
	n, _ := io.ReadFull(f, head)
	if n == 5 && string(head) == "From " {
		return KindMbox, nil
	}
	return KindEML, nil
}

// Each calls fn for every message at path (see Detect), in mailbox order:
// file order for an mbox, delivery order for a Maildir. maxBytes bounds
// one message (0: 64 MiB). It stops at the first error fn returns.
func Each(path string, maxBytes int, fn func(Message) error) error {
	if maxBytes <= 0 {
		maxBytes = 64 << 20
	}
	kind, err := Detect(path)
	if err != nil {
		return err
	}
	switch kind {
	case KindMaildir:
		return eachMaildir(path, maxBytes, fn)
	case KindMbox:
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		base := filepath.Base(path)
		return SplitMbox(f, maxBytes, func(i int, raw []byte, err error) error {
			return fn(Message{Name: fmt.Sprintf("%s#%d", base, i), Raw: raw, Err: err})
		})
	}
	// A single message is passed as it is, line ends included, as `try`
	// always did.
	raw, err := readFile(path, maxBytes, false)
	if err != nil {
		return fn(Message{Name: filepath.Base(path), Err: err})
	}
	return fn(Message{Name: filepath.Base(path), Raw: raw})
}

func readFile(path string, maxBytes int, toCRLF bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, int64(maxBytes)+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxBytes {
		return nil, fmt.Errorf("%w of %d bytes", ErrTooLarge, maxBytes)
	}
	if toCRLF {
		raw = ToCRLF(raw)
	}
	return raw, nil
}

// eachMaildir reads cur/ and new/ (never tmp/, where deliveries are still
// being written), ordered by the delivery time that starts a Maildir file
// name, then by name.
func eachMaildir(dir string, maxBytes int, fn func(Message) error) error {
	type entry struct {
		rel  string
		time int64
	}
	var list []entry
	for _, sub := range []string{"cur", "new"} {
		des, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, de := range des {
			name := de.Name()
			// Dot files are not messages (Dovecot and Courier keep their
			// own files there); subdirectories are not read.
			if strings.HasPrefix(name, ".") || !de.Type().IsRegular() {
				continue
			}
			ts, _ := strconv.ParseInt(name[:len(name)-len(strings.TrimLeft(name, "0123456789"))], 10, 64)
			list = append(list, entry{rel: sub + "/" + name, time: ts})
		}
	}
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].time != list[j].time {
			return list[i].time < list[j].time
		}
		return list[i].rel < list[j].rel
	})
	for _, e := range list {
		m := Message{Name: e.rel}
		m.Raw, m.Err = readFile(filepath.Join(dir, filepath.FromSlash(e.rel)), maxBytes, true)
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// SplitMbox splits an mbox into messages and calls fn with each (i counts
// from 1). A message starts at a line beginning with "From " at the start
// of the file or after an empty line; that separator line is not part of
// it, nor are the empty lines before the next separator. Lines of the form
// ">From ", ">>From ", ... lose one ">" (mboxrd; in mboxo only ">From "
// occurs, and it is unescaped the same way). Line ends become CRLF. A
// message over maxBytes is passed as ErrTooLarge and the rest of it is
// skipped. fn's error stops the split and is returned.
func SplitMbox(r io.Reader, maxBytes int, fn func(i int, raw []byte, err error) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		cur      bytes.Buffer
		started  bool // a separator has been seen
		tooLarge bool
		n        int
		afterGap = true // at the start, or the previous line was empty: a separator may follow
		gap      int    // empty lines held back: they belong to the message only if it goes on
	)
	flush := func() error {
		if !started {
			return nil
		}
		n++
		if tooLarge {
			return fn(n, nil, fmt.Errorf("%w of %d bytes", ErrTooLarge, maxBytes))
		}
		return fn(n, bytes.Clone(cur.Bytes()), nil)
	}
	write := func(line []byte) {
		if tooLarge {
			return
		}
		if cur.Len()+len(line)+2 > maxBytes {
			tooLarge = true
			cur.Reset()
			return
		}
		cur.Write(line)
		cur.Write(crlf)
	}
	for {
		line, long, err := readLine(br, maxBytes)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		eof := err != nil
		if eof && line == nil {
			return flush()
		}
		switch {
		case afterGap && !long && bytes.HasPrefix(line, []byte("From ")):
			if err := flush(); err != nil {
				return err
			}
			started, tooLarge, gap = true, false, 0
			cur.Reset()
			afterGap = false
		case !started:
			afterGap = len(line) == 0
		case len(line) == 0:
			gap++
			afterGap = true
		default:
			for ; gap > 0; gap-- {
				write(nil)
			}
			if long {
				tooLarge = true
				cur.Reset()
			}
			if isEscapedFrom(line) {
				line = line[1:]
			}
			write(line)
			afterGap = false
		}
		if eof {
			return flush()
		}
	}
}

// readLine returns the next line without its line end (LF or CRLF), and
// nil at the end of input. A line longer than max is returned cut to max
// with long set; the rest of it is read and discarded.
func readLine(br *bufio.Reader, max int) (line []byte, long bool, err error) {
	var buf []byte
	for {
		part, err := br.ReadSlice('\n')
		if !long {
			if len(buf)+len(part) > max+2 {
				long = true
				part = part[:max+2-len(buf)]
			}
			buf = append(buf, part...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && len(buf) == 0 {
			return nil, false, err
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(buf, []byte("\n")), []byte("\r")), long, err
	}
}

var crlf = []byte("\r\n")

// isEscapedFrom reports whether line is ">From ", ">>From ", ...
func isEscapedFrom(line []byte) bool {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	return i > 0 && bytes.HasPrefix(line[i:], []byte("From "))
}

// ToCRLF makes every line end CRLF (a message exported to a file usually
// has LF ends; over SMTP it would have CRLF).
func ToCRLF(raw []byte) []byte {
	if !bytes.Contains(raw, []byte("\n")) {
		return raw
	}
	var b bytes.Buffer
	b.Grow(len(raw) + bytes.Count(raw, []byte("\n")))
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			b.Write(raw)
			break
		}
		b.Write(bytes.TrimSuffix(raw[:i], []byte("\r")))
		b.Write(crlf)
		raw = raw[i+1:]
	}
	return b.Bytes()
}

// WriteMboxrd writes messages as an mboxrd file: the separator line, the
// message with ">From " escaping and LF line ends, an empty line. It is
// the inverse of SplitMbox, used by tests and by whoever builds fixtures.
func WriteMboxrd(w io.Writer, msgs [][]byte) error {
	bw := bufio.NewWriter(w)
	for _, m := range msgs {
		bw.WriteString("From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n")
		for line := range bytes.SplitSeq(bytes.TrimSuffix(ToCRLF(m), crlf), crlf) {
			if isEscapedFrom(line) || bytes.HasPrefix(line, []byte("From ")) {
				bw.WriteByte('>')
			}
			bw.Write(line)
			bw.WriteByte('\n')
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
