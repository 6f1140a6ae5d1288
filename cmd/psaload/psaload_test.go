package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunAgainstBuiltServer builds psagate, starts it as a child and loads
// it for two seconds: messages must be durably queued with no error, the
// latencies must be ordered, the child's memory read and its spool drained.
func TestRunAgainstBuiltServer(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is not on PATH; this test builds psagate with it: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var status bytes.Buffer
	rep, err := Run(ctx, Options{Duration: 2 * time.Second, Clients: 4, Size: 2048, Noise: 0.3, Report: time.Second, TempDir: t.TempDir()}, &status)
	if err != nil {
		t.Fatalf("Run: %v\nstatus output:\n%s", err, status.String())
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Logf("status:\n%s\nreport:\n%s", status.String(), text.String())

	if rep.Failed() {
		t.Errorf("run failed: %d errors, samples %q, notes %q", rep.Outcomes.ErrorsTotal, rep.ErrorSamples, rep.Notes)
	}
	if rep.Outcomes.Queued == 0 || rep.QueuedPerS <= 0 {
		t.Errorf("nothing was queued: %+v", rep.Outcomes)
	}
	if rep.Outcomes.Duplicate != 0 {
		t.Errorf("%d messages were taken for duplicates: Message-IDs must be unique", rep.Outcomes.Duplicate)
	}
	if rep.Mix.Noise == 0 || rep.Mix.Failure == 0 {
		t.Errorf("mix lacks noise or failures: %+v", rep.Mix)
	}
	l := rep.Latency
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("latencies not positive and ordered: %+v", l)
	}
	if rep.RSS == nil || rep.RSS.Start <= 0 || rep.RSS.Max < rep.RSS.End || rep.RSS.Max < rep.RSS.Start {
		t.Errorf("RSS not read or inconsistent: %+v", rep.RSS)
	}
	if rep.Backlog == nil || rep.Drain == nil {
		t.Fatalf("backlog not read from /metrics; notes %q", rep.Notes)
	}
	if !rep.Drain.Drained {
		t.Errorf("spool not drained: %+v", rep.Drain)
	}
	if rep.Drain.Backlog.Dead != 0 {
		t.Errorf("%d dead jobs with the log provider", rep.Drain.Backlog.Dead)
	}
	if !strings.Contains(status.String(), "psaload: t=1s") {
		t.Errorf("no progress line for the first second in:\n%s", status.String())
	}
	b, err := json.Marshal(rep)
	if err != nil || !bytes.Contains(b, []byte(`"p99":`)) {
		t.Errorf("JSON report %s: %v", b, err)
	}
}

func TestGeneratorMessages(t *testing.T) {
	for _, size := range []int{0, 600, 4096, 20000} {
		pad := newPadding(size)
		const clients = 3
		g := newGenerator(1, clients, 0.3, size, "run", "load@alerts.example.net", pad, 42)
		ids := map[string]bool{}
		var noise int
		history := map[string][]int{}
		now := time.Date(2025, 2, 11, 13, 0, 0, 0, time.UTC)
		const n = 1000
		for i := range n {
			kind, msg := g.next(now.Add(time.Duration(i) * 300 * time.Millisecond))
			if !bytes.HasSuffix(msg, []byte("\r\n.\r\n")) {
				t.Fatalf("size %d: message %d does not end DATA: %q", size, i, msg[max(0, len(msg)-20):])
			}
			body := msg[:len(msg)-3]
			if bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("size %d: bare LF in message %d", size, i)
			}
			if size > 1000 && (len(body) < size || len(body) > size+100) {
				t.Errorf("size %d: message %d has %d bytes", size, i, len(body))
			}
			var id, subject string
			for line := range strings.SplitSeq(strings.TrimSuffix(string(body), "\r\n"), "\r\n") {
				if len(line) > 78 {
					t.Errorf("size %d: line of %d chars: %q", size, len(line), line)
				}
				if strings.HasPrefix(line, ".") {
					t.Errorf("size %d: line needs dot-stuffing: %q", size, line)
				}
				if v, ok := strings.CutPrefix(line, "Message-ID: "); ok {
					id = v
				}
				if v, ok := strings.CutPrefix(line, "Subject: "); ok {
					subject = v
				}
			}
			if id == "" || ids[id] {
				t.Fatalf("size %d: message %d has a missing or repeated Message-ID %q", size, i, id)
			}
			ids[id] = true
			if !bytes.Contains(body, []byte("x360Recover")) || !bytes.Contains(body, []byte("\r\nDate: ")) {
				t.Fatalf("size %d: message %d lacks the x360Recover marker or a Date", size, i)
			}
			f := strings.Fields(subject)
			device := f[len(f)-1]
			switch kind {
			case kindNoise:
				noise++
				if !strings.HasPrefix(device, "PVC-WS-") && !strings.Contains(subject, "connection restored") {
					t.Errorf("noise subject %q", subject)
				}
			case kindFailure, kindRepeat:
				if !strings.Contains(subject, "Failed Backup: PVC-LOAD-") {
					t.Errorf("failure subject %q", subject)
				}
			case kindRecovery:
				if !strings.Contains(subject, "Successful Backup: PVC-LOAD-") {
					t.Errorf("recovery subject %q", subject)
				}
			}
			if kind != kindNoise {
				history[device] = append(history[device], kind)
			}
		}
		// Each failing device goes through fail, repeat, repeat, recover in
		// order, and several devices are in use.
		if len(history) < 10 {
			t.Errorf("size %d: only %d distinct failing devices", size, len(history))
		}
		for dev, kinds := range history {
			for i, k := range kinds {
				if k != cycle[i%len(cycle)] {
					t.Fatalf("size %d: device %s had kinds %v, not the cycle %v", size, dev, kinds, cycle)
				}
			}
		}
		if noise < n*20/100 || noise > n*40/100 {
			t.Errorf("size %d: %d noise messages of %d for noise 0.3", size, noise, n)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	// Every value maps into a bucket whose upper edge is at or above it
	// and within 1/subCount of it.
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 1000, 999_999, 1_000_000, 49_999_999, 1 << 40} {
		b := bucketOf(v)
		hi := bucketHigh(b)
		if hi < v || (v >= subCount && float64(hi-v) > float64(v)/subCount) {
			t.Errorf("value %d: bucket %d upper edge %d", v, b, hi)
		}
		if b > 0 && bucketHigh(b-1) >= v && v < 1<<40 {
			t.Errorf("value %d: bucket %d, but bucket %d already reaches %d", v, b, b-1, bucketHigh(b-1))
		}
	}
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	var s histSnap
	h.snapshot(&s)
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}}
	for _, tc := range tests {
		got := s.quantile(tc.q)
		if got < tc.want || float64(got-tc.want) > float64(tc.want)/subCount {
			t.Errorf("quantile(%v) = %v, want %v within 1/%d", tc.q, got, tc.want, subCount)
		}
	}
	if s.quantile(1) != time.Second || s.max != int64(time.Second) {
		t.Errorf("max %v, quantile(1) %v: want exactly 1s", time.Duration(s.max), s.quantile(1))
	}
	// The interval histogram is the difference of two snapshots.
	h.record(5 * time.Millisecond)
	var s2, d histSnap
	h.snapshot(&s2)
	d.sub(&s2, &s)
	if d.total != 1 || d.quantile(0.99) < 5*time.Millisecond || d.quantile(0.99) > 5100*time.Microsecond {
		t.Errorf("interval: total %d p99 %v, want one value of 5ms", d.total, d.quantile(0.99))
	}
}

// TestProcReads reads a fixture /proc tree: a process with three sockets
// (two listening, one established), another process's listener, status,
// stat and loadavg.
func TestProcReads(t *testing.T) {
	root := t.TempDir()
	pid := filepath.Join(root, "4242")
	files := map[string]string{
		"net/tcp": `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0A2D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:25FD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0A2D 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
`,
		"status": "Name:\tpsagate\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nRssAnon:\t   30720 kB\n",
		"stat":   "4242 (psa gate) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 8 0 100 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
	}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(pid, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pid, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "loadavg"), []byte("1.50 0.75 0.25 2/300 4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(pid, "fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	for fd, target := range map[string]string{"0": "/dev/null", "3": "socket:[1111]", "4": "socket:[2222]", "5": "socket:[3333]"} {
		if err := os.Symlink(target, filepath.Join(pid, "fd", fd)); err != nil {
			t.Fatal(err)
		}
	}
	prev := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = prev })

	ports, err := listeningPorts(4242)
	slices.Sort(ports)
	if err != nil || !slices.Equal(ports, []int{2605, 9725}) {
		t.Errorf("listeners = %v, %v; want [2605 9725] (the established socket and another process's listener excluded)", ports, err)
	}
	rss, anon, hwm, err := readRSS(4242)
	if err != nil || rss != 40960<<10 || anon != 30720<<10 || hwm != 51200<<10 {
		t.Errorf("readRSS = %d %d %d, %v", rss, anon, hwm, err)
	}
	if ticks, err := readCPUTicks(4242); err != nil || ticks != 325 {
		t.Errorf("readCPUTicks = %d, %v; want 325 (utime 250 + stime 75)", ticks, err)
	}
	if l := readLoadAvg(); l != 1.5 {
		t.Errorf("readLoadAvg = %v, want 1.5", l)
	}
	if _, err := listeningPorts(4343); err == nil {
		t.Error("listeningPorts of a process that does not exist: no error")
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-nosuchflag"}, 2, "flag provided but not defined"},
		{[]string{"-noise", "1.5"}, 1, "-noise 1.5 is not a fraction"},
		{[]string{"-clients", "0"}, 1, "-clients must be at least 1"},
		{[]string{"-pid", "1"}, 1, "-http and -pid go with -addr"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.msg)
		}
	}
}

// fakeSMTP answers every fourth end of DATA with 451, 550 and 421 (closing
// the connection) in turn, the others with 250 Queued.
func fakeSMTP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				io.WriteString(c, "220 fake ESMTP\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.Fields(line + " x")[0]); cmd {
					case "EHLO":
						io.WriteString(c, "250-fake\r\n250 PIPELINING\r\n")
					case "DATA":
						io.WriteString(c, "354 go ahead\r\n")
						for {
							l, err := r.ReadString('\n')
							if err != nil {
								return
							}
							if l == ".\r\n" {
								break
							}
						}
						switch n.Add(1) % 4 {
						case 1:
							io.WriteString(c, "451 4.3.0 try again later\r\n")
						case 2:
							io.WriteString(c, "550 5.7.1 refused\r\n")
						case 3:
							io.WriteString(c, "421 4.7.0 closing\r\n")
							return
						default:
							io.WriteString(c, "250 2.0.0 Queued as X\r\n")
						}
					case "QUIT":
						io.WriteString(c, "221 bye\r\n")
						return
					default:
						io.WriteString(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRefusalsAreCountedAndFailTheRun(t *testing.T) {
	addr := fakeSMTP(t)
	rep, err := Run(context.Background(), Options{Duration: 300 * time.Millisecond, Clients: 2, Size: 1000, Addr: addr}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o := rep.Outcomes
	if o.Queued == 0 || o.Temp4xx == 0 || o.Perm5xx == 0 {
		t.Errorf("outcomes %+v: want queued, 4xx and 5xx", o)
	}
	if o.ErrorsTotal != o.Temp4xx+o.Perm5xx+o.ConnErrors || !rep.Failed() {
		t.Errorf("errors_total %d, failed %v for %+v", o.ErrorsTotal, rep.Failed(), o)
	}
	if rep.Connections <= 2 {
		t.Errorf("%d connections: the clients did not reconnect after 421", rep.Connections)
	}
	if rep.RSS != nil || rep.Backlog != nil {
		t.Errorf("RSS %+v and backlog %+v measured without -pid and -http", rep.RSS, rep.Backlog)
	}
	if len(rep.ErrorSamples) == 0 || !strings.Contains(strings.Join(rep.ErrorSamples, "|"), "451 4.3.0 try again later") {
		t.Errorf("error samples %q", rep.ErrorSamples)
	}
}

func TestStderrWatch(t *testing.T) {
	var fwd bytes.Buffer
	w := newStderrWatch(&fwd)
	line := `time=2025-02-11T13:00:00.000Z level=INFO msg="psagate started" smtp=127.0.0.1:41567 http=127.0.0.1:37981 state=/tmp/x/state/psagate.db rules=12` + "\n"
	// Written in two pieces, as a pipe may deliver it.
	w.Write([]byte(line[:40]))
	w.Write([]byte(line[40:]))
	select {
	case a := <-w.started:
		if a != [2]string{"127.0.0.1:41567", "127.0.0.1:37981"} {
			t.Errorf("addresses %q", a)
		}
	default:
		t.Fatal("the started line was not recognised")
	}
	for i := range forwardLines + 5 {
		fmt.Fprintf(w, "time=x level=WARN msg=\"slow\" n=%d\n", i)
	}
	if got := strings.Count(fwd.String(), "psagate: "); got != forwardLines || w.suppressedLines() != 5 {
		t.Errorf("forwarded %d lines and suppressed %d; want %d and 5", got, w.suppressedLines(), forwardLines)
	}
	if strings.Contains(fwd.String(), "level=INFO") {
		t.Error("an info line was forwarded")
	}
}
