package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// worker is one SMTP client: one connection at a time, many messages on it.
type worker struct {
	addr   string
	rcpt   string
	st     *stats
	gen    *generator
	tokens <-chan struct{}
	stop   <-chan struct{}

	c   net.Conn
	r   *bufio.Reader
	cmd []byte
}

func (w *worker) run(ready *sync.WaitGroup, start <-chan struct{}) {
	if err := w.connect(); err != nil {
		w.st.outcomes[outConnErr].Add(1)
		w.st.sample("connect", nil, err)
	}
	ready.Done()
	<-start
	defer w.quit()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		if w.c == nil {
			if err := w.connect(); err != nil {
				w.st.outcomes[outConnErr].Add(1)
				w.st.sample("connect", nil, err)
				// A pause, or a refused dial would spin.
				select {
				case <-w.stop:
					return
				case <-time.After(redialGap):
				}
				continue
			}
		}
		if w.tokens != nil {
			select {
			case <-w.stop:
				return
			case <-w.tokens:
			}
		}
		if !w.send() {
			w.close()
		}
	}
}

func (w *worker) connect() error {
	c, err := net.DialTimeout("tcp", w.addr, 10*time.Second)
	if err != nil {
		return err
	}
	w.st.conns.Add(1)
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if w.r == nil {
		w.r = bufio.NewReaderSize(c, 4096)
	} else {
		w.r.Reset(c)
	}
	w.c = c
	code, line, err := w.reply()
	if err == nil && code != 220 {
		err = fmt.Errorf("greeting %q", bytes.TrimSpace(line))
	}
	if err == nil {
		code, line, err = w.command(cmdEHLO)
		if err == nil && code != 250 {
			err = fmt.Errorf("EHLO answered %q", bytes.TrimSpace(line))
		}
	}
	if err != nil {
		w.close()
		return err
	}
	return nil
}

func (w *worker) close() {
	if w.c != nil {
		w.c.Close()
		w.c = nil
	}
}

func (w *worker) quit() {
	if w.c == nil {
		return
	}
	_ = w.c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _, _ = w.command(cmdQUIT)
	w.close()
}

// send runs one mail transaction. It returns false when the connection
// must be dropped (an I/O error, or the server ended the session).
func (w *worker) send() bool {
	_ = w.c.SetDeadline(time.Now().Add(ioTimeout))
	w.cmd = append(append(append(w.cmd[:0], "MAIL FROM:<"...), envFrom...), ">\r\n"...)
	if ok, keep := w.step("MAIL", 250); !ok {
		return keep
	}
	w.cmd = append(append(append(w.cmd[:0], "RCPT TO:<"...), w.rcpt...), ">\r\n"...)
	if ok, keep := w.step("RCPT", 250); !ok {
		return keep
	}
	w.cmd = append(w.cmd[:0], "DATA\r\n"...)
	if ok, keep := w.step("DATA", 354); !ok {
		return keep
	}
	kind, msg := w.gen.next(time.Now())
	if _, err := w.c.Write(msg); err != nil {
		w.connErr("message", err)
		return false
	}
	// The clock runs from the moment the final "\r\n.\r\n" is written to
	// the reply: for a queued message, the spool commit's fsync is in it.
	t := time.Now()
	code, line, err := w.reply()
	lat := time.Since(t)
	w.st.kinds[kind].Add(1)
	w.st.bytes.Add(int64(len(msg)))
	if err != nil {
		w.connErr("end of DATA", err)
		return false
	}
	w.st.hist.record(lat)
	switch {
	case code == 250 && bytes.Contains(line, []byte("Queued as")):
		w.st.outcomes[outQueued].Add(1)
	case code == 250 && bytes.Contains(line, []byte("discarded")):
		w.st.outcomes[outDiscarded].Add(1)
	case code == 250 && bytes.Contains(line, []byte("Already queued")):
		w.st.outcomes[outDuplicate].Add(1)
	case code >= 200 && code < 300:
		w.st.outcomes[outOther2xx].Add(1)
	default:
		return w.refused("end of DATA", code, line)
	}
	return true
}

// step sends w.cmd and checks the reply code; ok is false when the
// transaction is over, keep false when the connection is too.
func (w *worker) step(stage string, want int) (ok, keep bool) {
	code, line, err := w.command(w.cmd)
	if err != nil {
		w.connErr(stage, err)
		return false, false
	}
	if code == want {
		return true, true
	}
	keep = w.refused(stage, code, line)
	if keep {
		// Leave the half-made transaction so the next MAIL is accepted.
		if _, _, err := w.command(cmdRSET); err != nil {
			return false, false
		}
	}
	return false, keep
}

// refused counts a 4xx/5xx (or unexpected) reply; it returns whether the
// connection can carry on (421 ends the session).
func (w *worker) refused(stage string, code int, line []byte) bool {
	switch {
	case code == 452 && bytes.HasPrefix(line, []byte("452 4.3.1")):
		w.st.outcomes[outBusy].Add(1)
	case code >= 400 && code < 500:
		w.st.outcomes[out4xx].Add(1)
	case code >= 500 && code < 600:
		w.st.outcomes[out5xx].Add(1)
	default:
		w.st.outcomes[outConnErr].Add(1)
	}
	w.st.sample(stage, line, nil)
	return code != 421 && code >= 400 && code < 600
}

func (w *worker) connErr(stage string, err error) {
	w.st.outcomes[outConnErr].Add(1)
	w.st.sample(stage, nil, err)
}

// command writes a command line and reads the reply.
func (w *worker) command(cmd []byte) (int, []byte, error) {
	if _, err := w.c.Write(cmd); err != nil {
		return 0, nil, err
	}
	return w.reply()
}

// reply reads one SMTP reply, all its lines, and returns its code and last
// line (valid until the next read).
func (w *worker) reply() (int, []byte, error) {
	for {
		line, err := w.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return 0, nil, errors.New("reply line longer than 4096 bytes")
			}
			return 0, nil, err
		}
		if len(line) < 4 || line[0] < '0' || line[0] > '9' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
			return 0, nil, fmt.Errorf("not an SMTP reply: %q", bytes.TrimSpace(line))
		}
		if line[3] == '-' {
			continue
		}
		return int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0'), line, nil
	}
}
