package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options are the settings of one load run (the command's flags).
type Options struct {
	Duration time.Duration // how long to send
	Clients  int           // concurrent SMTP connections
	Size     int           // approximate message size in bytes
	Rate     float64       // total messages per second; 0 = as fast as the server answers
	Noise    float64       // fraction of messages that are no-op recoveries
	Report   time.Duration // progress line interval; 0 = none
	Rcpt     string        // envelope recipient; default load@alerts.example.net

	Addr     string // target a running gateway at HOST:PORT instead of starting one
	HTTPAddr string // with Addr: its HTTP listener, for /metrics (optional)
	PID      int    // with Addr: its process id, for RSS and CPU (optional)

	Keep         bool          // keep the temp dir (binary, config, state)
	TempDir      string        // where to make the temp dir; default os.TempDir() (a tmpfs takes fsync out of the figures)
	ServerLog    string        // the child's log level; default warn
	RepoRoot     string        // default: the directory holding go.mod above the working directory
	DrainTimeout time.Duration // how long to wait for the spool to empty; default 30s

	// MaxPeakRSS, when set, is the memory target of the run: it fails if
	// the server's peak RSS (VmHWM) goes past it, and 452 4.3.1 replies
	// (smtp.max_inflight_bytes at work) are counted apart, not as errors.
	MaxPeakRSS int64
}

func (o *Options) defaults() error {
	if o.Duration <= 0 {
		return errors.New("-duration must be positive")
	}
	if o.Clients < 1 {
		return errors.New("-clients must be at least 1")
	}
	if o.Size < 0 || o.Rate < 0 {
		return errors.New("-size and -rate must not be negative")
	}
	if o.Noise < 0 || o.Noise > 1 {
		return fmt.Errorf("-noise %v is not a fraction between 0 and 1", o.Noise)
	}
	if o.Rcpt == "" {
		o.Rcpt = "load@alerts.example.net"
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.Addr == "" && (o.HTTPAddr != "" || o.PID != 0) {
		return errors.New("-http and -pid go with -addr (without -addr psaload starts its own psagate)")
	}
	return nil
}

// Outcome classes of a message.
const (
	outQueued    = iota // 250 Queued as: spooled durably
	outDiscarded        // 250 ... discarded by rule: dropped at once
	outDuplicate        // 250 Already queued: the dedupe took it for a retry
	outOther2xx         // any other 2xx
	out4xx
	outBusy // 452 4.3.1: the in-flight budget is full, try again later
	out5xx
	outConnErr // dial, read or write failure, or a reply that is not SMTP
	nOutcomes
)

// stats are the counters shared by every client.
type stats struct {
	hist     histogram
	outcomes [nOutcomes]atomic.Int64
	kinds    [nKinds]atomic.Int64 // messages whose DATA was sent, by kind
	bytes    atomic.Int64         // message bytes sent
	conns    atomic.Int64         // connections opened (first ones included)
	missed   atomic.Int64         // rate tokens no client was free to take

	mu      sync.Mutex
	samples []string // the first distinct error replies
}

const maxSamples = 10

func (s *stats) sample(stage string, text []byte, err error) {
	var msg string
	if err != nil {
		msg = stage + ": " + err.Error()
	} else {
		msg = stage + ": " + string(bytes.TrimSpace(text))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) >= maxSamples {
		return
	}
	for _, m := range s.samples {
		if m == msg {
			return
		}
	}
	s.samples = append(s.samples, msg)
}

// completed is every message with an outcome.
func (s *stats) completed() int64 {
	var n int64
	for i := range s.outcomes {
		n += s.outcomes[i].Load()
	}
	return n
}

func (s *stats) errors() int64 {
	return s.outcomes[out4xx].Load() + s.outcomes[out5xx].Load() + s.outcomes[outConnErr].Load()
}

// Run drives the gateway for o.Duration and returns what it measured.
// Progress lines and notes go to status. It starts (and stops) its own
// psagate unless o.Addr is set. The error is for a run that could not be
// made; a run that was made but saw failures returns a Report whose
// Failed method says so.
func Run(ctx context.Context, o Options, status io.Writer) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	rep := &Report{Clients: o.Clients, Rate: o.Rate, Noise: o.Noise, Target: o.Addr, CPUs: runtime.NumCPU()}
	pid, smtpAddr, httpAddr := o.PID, o.Addr, o.HTTPAddr
	var srv *server
	if o.Addr == "" {
		var err error
		if srv, err = startServer(ctx, &o, status); err != nil {
			return nil, err
		}
		defer srv.cleanup()
		pid, smtpAddr, httpAddr = srv.pid, srv.smtpAddr, srv.httpAddr
		rep.Target = "child psagate pid " + strconv.Itoa(pid) + " smtp " + smtpAddr + " http " + httpAddr
		if o.Keep {
			rep.KeptDir = srv.dir
		}
		// If anything below fails, the child must not outlive the run.
		defer func() {
			select {
			case <-srv.exited:
			default:
				srv.kill()
			}
		}()
	}

	var disk *fsyncProbe
	if srv != nil {
		disk = newFsyncProbe(srv.dir)
	}
	var rss *rssWatch
	if pid > 0 {
		rss = newRSSWatch(pid)
	}
	st := &stats{}
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	pad := newPadding(o.Size)

	// Every client connects and says EHLO before the clock starts, so the
	// window measures mail, not connection set-up.
	start := make(chan struct{})
	stop := make(chan struct{})
	var tokens chan struct{}
	if o.Rate > 0 {
		tokens = make(chan struct{}, o.Clients)
	}
	var ready, done sync.WaitGroup
	for c := range o.Clients {
		w := &worker{
			addr: smtpAddr, st: st, tokens: tokens, stop: stop,
			gen:  newGenerator(c, o.Clients, o.Noise, o.Size, runID, o.Rcpt, pad, uint64(time.Now().UnixNano())),
			rcpt: o.Rcpt,
		}
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			w.run(&ready, start)
		}()
	}
	ready.Wait()

	if rss != nil {
		rss.start()
	}
	if disk != nil {
		disk.start()
	}
	rep.LoadAvgStart = readLoadAvg()
	cpu0, cpuOK := int64(0), errors.New("no server pid")
	if pid > 0 {
		cpu0, cpuOK = readCPUTicks(pid)
	}
	self0, selfOK := readCPUTicks(0)
	t0 := time.Now()
	close(start)
	if tokens != nil {
		go pace(o.Rate, t0, tokens, stop, &st.missed)
	}
	var reporter sync.WaitGroup
	if o.Report > 0 {
		reporter.Add(1)
		go func() {
			defer reporter.Done()
			progress(status, o.Report, t0, st, rss, pid, stop)
		}()
	}

	timer := time.NewTimer(o.Duration)
	interrupted := false
	select {
	case <-timer.C:
	case <-ctx.Done():
		interrupted = true
		fmt.Fprintln(status, "psaload: interrupted; stopping the clients")
	}
	timer.Stop()
	close(stop)
	done.Wait()
	window := time.Since(t0)
	reporter.Wait()
	rep.LoadAvgEnd = readLoadAvg()

	if cpuOK == nil {
		if cpu1, err := readCPUTicks(pid); err == nil {
			v := float64(cpu1-cpu0) / clockTicks / window.Seconds() * 100
			rep.ServerCPUPercent = &v
		}
	}
	if selfOK == nil {
		if self1, err := readCPUTicks(0); err == nil {
			v := float64(self1-self0) / clockTicks / window.Seconds() * 100
			rep.ClientCPUPercent = &v
		}
	}
	if rss != nil {
		rep.RSS = rss.finish()
	}
	if disk != nil {
		rep.Fsync = disk.finish()
	}
	rep.MaxPeakRSS = o.MaxPeakRSS
	rep.fill(st, window, o.Duration)
	if interrupted {
		rep.Notes = append(rep.Notes, fmt.Sprintf("interrupted after %s of %s", window.Round(time.Second), o.Duration))
	}

	if httpAddr != "" {
		// An interrupted run still reports its backlog: the drain has its
		// own time limit.
		post := context.WithoutCancel(ctx)
		hc := &http.Client{Timeout: 5 * time.Second}
		m, err := fetchMetrics(post, hc, httpAddr, backlogMetrics)
		if err != nil {
			rep.Notes = append(rep.Notes, "backlog not read: "+err.Error())
		} else {
			rep.Backlog = backlogOf(m)
			rep.Drain = drain(post, hc, httpAddr, o.DrainTimeout, m)
		}
	}
	if rep.RSS != nil {
		// The kernel's high-water mark again: the drain's work counts too.
		if _, _, hwm, err := readRSS(pid); err == nil {
			rep.RSS.Peak = hwm
		}
	}
	if srv != nil {
		stopStart := time.Now()
		if err := srv.stop(40 * time.Second); err != nil {
			rep.Notes = append(rep.Notes, err.Error())
			rep.ServerFailed = true
		}
		rep.StopSeconds = time.Since(stopStart).Seconds()
		if n := srv.log.suppressedLines(); n > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%d more psagate warning/error lines were not shown", n))
		}
	}
	return rep, nil
}

// drain polls /metrics until the spool is empty or timeout passes.
func drain(ctx context.Context, hc *http.Client, addr string, timeout time.Duration, first map[string]float64) *Drain {
	t0 := time.Now()
	deadline := t0.Add(timeout)
	m := first
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for m["psagate_spool_messages"] > 0 && time.Now().Before(deadline) {
		<-tick.C
		next, err := fetchMetrics(ctx, hc, addr, backlogMetrics)
		if err != nil {
			continue
		}
		m = next
	}
	return &Drain{Drained: m["psagate_spool_messages"] == 0, Seconds: time.Since(t0).Seconds(), Backlog: *backlogOf(m)}
}

func backlogOf(m map[string]float64) *Backlog {
	return &Backlog{Spool: int64(m["psagate_spool_messages"]), Outbox: int64(m["psagate_outbox_jobs"]), Dead: int64(m["psagate_dead_jobs"])}
}

// pace hands out rate tokens on an absolute schedule: at any moment the
// number issued is rate × elapsed time, so ticker jitter never accumulates
// into drift. A token no client is free to take is counted as missed, not
// saved up: a slow server shows as a shortfall, not as a burst later.
func pace(rate float64, t0 time.Time, tokens chan<- struct{}, stop <-chan struct{}, missed *atomic.Int64) {
	every := time.Duration(float64(time.Second) / rate)
	every = min(max(every, time.Millisecond), 20*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var issued int64
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			due := int64(now.Sub(t0).Seconds() * rate)
			for ; issued < due; issued++ {
				select {
				case tokens <- struct{}{}:
				default:
					missed.Add(1)
				}
			}
		}
	}
}

// progress prints one line per interval until stop.
func progress(w io.Writer, every time.Duration, t0 time.Time, st *stats, rss *rssWatch, pid int, stop <-chan struct{}) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	prev, cur, diff := &histSnap{}, &histSnap{}, &histSnap{}
	prevDone, prevErr := int64(0), int64(0)
	prevT := t0
	prevCPU, cpuErr := int64(0), errors.New("no server pid")
	if pid > 0 {
		prevCPU, cpuErr = readCPUTicks(pid)
	}
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			st.hist.snapshot(cur)
			diff.sub(cur, prev)
			n, e := st.completed(), st.errors()
			secs := now.Sub(prevT).Seconds()
			line := fmt.Sprintf("psaload: t=%-6s msgs/s=%-8.1f p99=%-9s errors=%d (+%d)",
				now.Sub(t0).Round(time.Second), float64(n-prevDone)/secs, fmtDur(diff.quantile(0.99)), e, e-prevErr)
			if rss != nil {
				if v := rss.current(); v > 0 {
					line += fmt.Sprintf("  rss=%s", fmtBytes(v))
				}
			}
			if cpuErr == nil {
				if c, err := readCPUTicks(pid); err == nil {
					line += fmt.Sprintf("  server-cpu=%.0f%%", float64(c-prevCPU)/clockTicks/secs*100)
					prevCPU = c
				}
			}
			fmt.Fprintln(w, line)
			prev, cur = cur, prev
			prevDone, prevErr, prevT = n, e, now
		}
	}
}

// rssWatch samples the server's resident memory every second.
type rssWatch struct {
	pid                          int
	first, last, peak, hwm       atomic.Int64
	anonFirst, anonLast, anonMax atomic.Int64
	stop, done                   chan struct{}
}

func newRSSWatch(pid int) *rssWatch {
	return &rssWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
}

func (r *rssWatch) sample() {
	v, anon, hwm, err := readRSS(r.pid)
	if err != nil {
		return
	}
	r.hwm.Store(hwm)
	r.last.Store(v)
	r.anonLast.Store(anon)
	if v > r.peak.Load() {
		r.peak.Store(v)
	}
	if anon > r.anonMax.Load() {
		r.anonMax.Store(anon)
	}
}

func (r *rssWatch) start() {
	r.sample()
	r.first.Store(r.last.Load())
	r.anonFirst.Store(r.anonLast.Load())
	go func() {
		defer close(r.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.sample()
			}
		}
	}()
}

func (r *rssWatch) current() int64 { return r.last.Load() }

// finish stops sampling and returns the figures, or nil when /proc could
// not be read.
func (r *rssWatch) finish() *RSS {
	close(r.stop)
	<-r.done
	r.sample()
	if r.first.Load() == 0 || r.last.Load() == 0 {
		return nil
	}
	return &RSS{Start: r.first.Load(), End: r.last.Load(), Max: r.peak.Load(), Peak: r.hwm.Load(),
		AnonStart: r.anonFirst.Load(), AnonEnd: r.anonLast.Load(), AnonMax: r.anonMax.Load()}
}

const (
	ioTimeout = 60 * time.Second
	redialGap = 100 * time.Millisecond
)

var (
	cmdEHLO = []byte("EHLO psaload.localdomain\r\n")
	cmdRSET = []byte("RSET\r\n")
	cmdQUIT = []byte("QUIT\r\n")
)
