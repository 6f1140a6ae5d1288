package smtpd

import (
	"bytes"
	"errors"
	"io"

	gosmtp "github.com/emersion/go-smtp"
)

// Receiving a message: one copy, counted against a budget, with an eye on
// the end-of-data shapes go-smtp's dot reader gets wrong.
//
// Memory. The message is read in chunks that are charged to the server's
// in-flight budget (smtp.max_inflight_bytes) as they arrive, so a sender
// that would overrun it is stopped while it streams, not after its message
// is held; the rest of its data is discarded by go-smtp as it arrives and
// the sender gets 452 4.3.1 (try again later). The chunks are joined once,
// into a buffer of the exact size with room at its end for the spool
// record's header (store.Accept then writes the record without a copy).
// Storing needs one more copy (bbolt writes a large value through a page
// buffer of its own), so a message is charged twice its size from the
// moment it is complete until the handler has answered.
//
// The bare CR before the end of data. go-smtp's dot reader (v0.25.1,
// data.go) leaves its "maybe end of line" state on any byte but LF without
// looking at that byte again, so in <CR><CR><LF>.<CR><LF> the second CR is
// taken as data, the <CR><LF> that follows does not start a line, and the
// end of data that every RFC 5321 reader sees there is missed: the sender
// waits for a reply until smtp.data_timeout, and whatever it pipelined after
// it (a second transaction) is read as part of the first message. psagate
// watches the stream go-smtp hands over for that shape (the bytes pass
// through verbatim, since go-smtp did not take the line for a dot line) and
// refuses it like the other smuggling patterns. To see it even when the
// sender sends nothing more, conn.Read reports each time go-smtp's buffer
// runs dry with a transient error (errStall) before it blocks on the
// socket, so the dot reader returns what it has instead of waiting to fill
// a whole buffer. After the refusal the session is closed: the bytes after
// the marker have been consumed as data, so the stream cannot be resynced.

// errStall is returned by conn.Read in DATA, once before each blocking
// read: go-smtp's buffer is empty and the receiver may look at what it has.
// It is temporary, so a TLS layer in between does not make it permanent.
var errStall error = stallError{}

type stallError struct{}

func (stallError) Error() string   { return "smtpd: no more buffered data" }
func (stallError) Timeout() bool   { return false }
func (stallError) Temporary() bool { return true }

// errAborted is what conn.Read returns once a message is refused in the
// middle of its data: go-smtp's final drain stops at once, writes the
// reply, and the session ends.
var errAborted = errors.New("smtpd: message refused in mid-transfer; closing")

// errBareCREnd reports <CR><CR><LF>.<CR><LF> in the data; errOverBudget a
// message that does not fit in smtp.max_inflight_bytes.
var (
	errBareCREnd  = errors.New("end of data after a bare CR")
	errOverBudget = errors.New("in-flight budget exhausted")
)

// bareCREnd is the shape: a bare CR, then what an RFC 5321 reader takes
// for the end of data.
const bareCREndText = "\r\r\n.\r\n"

var bareCREnd = []byte(bareCREndText)

// receiveChunk is the size of the chunks a message is read into: large
// enough that a big message takes few, small enough that one session's
// last, partly filled chunk wastes little.
const receiveChunk = 256 << 10

// spoolRoom is the spare capacity left after the message for the spool
// record's header (the verdict, envelope and metadata as JSON: a few KiB;
// a larger one makes the store copy the message instead).
const spoolRoom = 16 << 10

// receiver reads one message.
type receiver struct {
	s       *Server
	limit   int64 // smtp.max_message_bytes
	hint    int64 // SIZE= from MAIL FROM, 0 if none
	watch   bool  // DATA (not BDAT): look for the bare-CR end
	charged int64 // bytes of the budget held
	tail    [len(bareCREndText) - 1]byte
	ntail   int
}

// charge takes n more bytes of the budget.
func (rc *receiver) charge(n int64) bool {
	if !rc.s.reserve(n) {
		return false
	}
	rc.charged += n
	return true
}

// release gives back everything charged.
func (rc *receiver) release() {
	rc.s.unreserve(rc.charged)
	rc.charged = 0
}

// read reads the message up to its end. Errors: gosmtp.ErrDataTooLarge,
// errOverBudget, errBareCREnd, or what reading failed with.
func (rc *receiver) read(r io.Reader) ([]byte, error) {
	var chunks [][]byte
	var total int64
	next := int64(32 << 10)
	if rc.hint > 0 {
		// The sender said how big the message is: one chunk, if it is honest.
		next = min(rc.hint+2, rc.limit+1)
	}
	for {
		// One byte past the limit tells "too big" from "exactly the limit".
		size := min(next, rc.limit+1-total)
		if size <= 0 {
			return nil, gosmtp.ErrDataTooLarge
		}
		room := int64(0)
		if rc.hint > 0 && len(chunks) == 0 {
			room = spoolRoom // this chunk is likely the whole message
		}
		if !rc.charge(size + room) {
			return nil, errOverBudget
		}
		buf := make([]byte, size, size+room)
		n, err := rc.fill(r, buf)
		total += int64(n)
		chunks = append(chunks, buf[:n])
		if total > rc.limit {
			return nil, gosmtp.ErrDataTooLarge
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		next = min(2*next, receiveChunk)
	}
	if len(chunks) == 1 {
		// One chunk (SIZE= was given and honest, or the message is small):
		// it is the message, and stays charged at its capacity.
		return chunks[0], nil
	}
	// Join into the exact size (plus room for the spool header); the
	// budget is charged for the copy before it is made, and what the
	// chunks held is given back once it is made.
	if !rc.charge(total + spoolRoom) {
		return nil, errOverBudget
	}
	raw := make([]byte, 0, total+spoolRoom)
	for _, c := range chunks {
		raw = append(raw, c...)
	}
	chunks = nil
	held := rc.charged - (total + spoolRoom)
	rc.s.unreserve(held)
	rc.charged -= held
	return raw, nil
}

// fill reads into buf until it is full, the data ends, or reading fails.
// A stall (go-smtp's buffer ran dry) is where the bytes read so far are
// checked for the bare-CR end, which the sender may be waiting behind.
func (rc *receiver) fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		if rc.watch && m > 0 && rc.sawBareCREnd(buf[n:n+m]) {
			return n + m, errBareCREnd
		}
		n += m
		if err == nil || errors.Is(err, errStall) {
			continue
		}
		return n, err
	}
	return n, nil
}

// sawBareCREnd looks for the shape in p, and across the end of the
// previous read.
func (rc *receiver) sawBareCREnd(p []byte) bool {
	var j [2 * len(bareCREndText)]byte
	k := copy(j[:], rc.tail[:rc.ntail])
	k += copy(j[k:], p[:min(len(p), len(rc.tail))])
	if bytes.Contains(j[:k], bareCREnd) || bytes.Contains(p, bareCREnd) {
		return true
	}
	// Keep the last bytes seen (with earlier ones, if p is short).
	if len(p) >= len(rc.tail) {
		rc.ntail = copy(rc.tail[:], p[len(p)-len(rc.tail):])
	} else {
		k = copy(j[:], rc.tail[:rc.ntail])
		k += copy(j[k:], p)
		rc.ntail = copy(rc.tail[:], j[max(0, k-len(rc.tail)):k])
	}
	return false
}

// reserve takes n bytes of the in-flight budget, or reports that they do
// not fit.
func (s *Server) reserve(n int64) bool {
	limit := s.conf().MaxInflightBytes
	for {
		cur := s.inflight.Load()
		if cur+n > limit && n > 0 {
			return false
		}
		if s.inflight.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (s *Server) unreserve(n int64) {
	if n != 0 {
		s.inflight.Add(-n)
	}
}

// InflightBytes is the part of smtp.max_inflight_bytes in use.
func (s *Server) InflightBytes() int64 { return s.inflight.Load() }
