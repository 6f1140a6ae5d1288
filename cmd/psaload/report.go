package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Report is what one run measured. Durations are in milliseconds, memory in
// bytes; pointers are nil where a figure could not be taken (no /proc, no
// -pid or -http with -addr).
type Report struct {
	Target       string  `json:"target"`
	Clients      int     `json:"clients"`
	Rate         float64 `json:"rate_target"`
	Noise        float64 `json:"noise"`
	AvgBytes     int64   `json:"message_bytes_avg"`
	Duration     float64 `json:"duration_seconds"` // as asked
	Window       float64 `json:"window_seconds"`   // as measured, until the last reply
	Sent         int64   `json:"sent"`             // messages whose DATA was sent
	Connections  int64   `json:"connections"`
	RateMissed   int64   `json:"rate_missed,omitempty"`
	Mix          Mix     `json:"mix"`
	Outcomes     Counts  `json:"outcomes"`
	AcceptedPerS float64 `json:"accepted_per_second"` // every 2xx to DATA
	QueuedPerS   float64 `json:"queued_per_second"`   // durably spooled ones
	Latency      Latency `json:"latency_ms"`

	RSS              *RSS     `json:"rss_bytes,omitempty"`
	ServerCPUPercent *float64 `json:"server_cpu_percent,omitempty"` // of one core, over the window
	ClientCPUPercent *float64 `json:"client_cpu_percent,omitempty"`
	Fsync            *Fsync   `json:"fsync_probe_ms,omitempty"`
	Backlog          *Backlog `json:"backlog_after_load,omitempty"`
	Drain            *Drain   `json:"drain,omitempty"`
	StopSeconds      float64  `json:"stop_seconds,omitempty"`
	ServerFailed     bool     `json:"server_failed,omitempty"`
	CPUs             int      `json:"cpus"`
	LoadAvgStart     float64  `json:"loadavg_1m_start"` // -1 when unknown
	LoadAvgEnd       float64  `json:"loadavg_1m_end"`

	MaxPeakRSS int64 `json:"max_peak_rss_bytes,omitempty"` // the memory target, if one was set

	ErrorSamples []string `json:"error_samples,omitempty"`
	Notes        []string `json:"notes,omitempty"`
	KeptDir      string   `json:"kept_dir,omitempty"`
}

// Mix counts the messages sent by kind.
type Mix struct {
	Failure  int64 `json:"failure"`
	Repeat   int64 `json:"repeat"`
	Recovery int64 `json:"recovery"`
	Noise    int64 `json:"noise"`
}

// Counts are the outcomes by reply class.
type Counts struct {
	Queued      int64 `json:"queued"`
	Discarded   int64 `json:"discarded"`
	Duplicate   int64 `json:"duplicate"`
	Other2xx    int64 `json:"other_2xx"`
	Temp4xx     int64 `json:"4xx"`
	Busy        int64 `json:"busy_452"` // 452 4.3.1 (in-flight budget full); errors unless a memory target is set
	Perm5xx     int64 `json:"5xx"`
	ConnErrors  int64 `json:"connection_errors"`
	ErrorsTotal int64 `json:"errors_total"`
}

// Latency is the end-of-DATA to reply time.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// RSS is the server's resident memory (VmRSS), and the part of it that is
// not file-backed (RssAnon: heap and stacks, without the binary's pages and
// the mapped database).
type RSS struct {
	Start     int64 `json:"start"`
	End       int64 `json:"end"`
	Max       int64 `json:"max"`
	Peak      int64 `json:"peak"` // VmHWM: the highest VmRSS, between samples too
	AnonStart int64 `json:"anon_start"`
	AnonEnd   int64 `json:"anon_end"`
	AnonMax   int64 `json:"anon_max"`
}

// Fsync is what a 4 KiB write and fsync beside the server's state took,
// four times a second during the load.
type Fsync struct {
	Samples int64   `json:"samples"`
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
}

// Backlog is the server's queues as its /metrics tells.
type Backlog struct {
	Spool  int64 `json:"spool_messages"`
	Outbox int64 `json:"outbox_jobs"`
	Dead   int64 `json:"dead_jobs"`
}

// Drain is the wait for the spool to empty after the load.
type Drain struct {
	Drained bool    `json:"drained"`
	Seconds float64 `json:"seconds"`
	Backlog Backlog `json:"backlog"`
}

// Failed reports whether the run saw any 4xx, 5xx or connection error, or
// the server did not stop cleanly.
func (r *Report) Failed() bool {
	return r.Outcomes.ErrorsTotal > 0 || r.ServerFailed || r.overMemory()
}

// overMemory reports whether a memory target was set and missed (or could
// not be measured).
func (r *Report) overMemory() bool {
	return r.MaxPeakRSS > 0 && (r.RSS == nil || r.RSS.Peak == 0 || r.RSS.Peak > r.MaxPeakRSS)
}

func (r *Report) fill(st *stats, window, asked time.Duration) {
	r.Duration = asked.Seconds()
	r.Window = window.Seconds()
	r.Connections = st.conns.Load()
	r.RateMissed = st.missed.Load()
	r.Mix = Mix{st.kinds[kindFailure].Load(), st.kinds[kindRepeat].Load(), st.kinds[kindRecovery].Load(), st.kinds[kindNoise].Load()}
	r.Sent = r.Mix.Failure + r.Mix.Repeat + r.Mix.Recovery + r.Mix.Noise
	if r.Sent > 0 {
		r.AvgBytes = st.bytes.Load() / r.Sent
	}
	o := &st.outcomes
	r.Outcomes = Counts{
		Queued: o[outQueued].Load(), Discarded: o[outDiscarded].Load(), Duplicate: o[outDuplicate].Load(),
		Other2xx: o[outOther2xx].Load(), Temp4xx: o[out4xx].Load(), Busy: o[outBusy].Load(), Perm5xx: o[out5xx].Load(), ConnErrors: o[outConnErr].Load(),
	}
	r.Outcomes.ErrorsTotal = r.Outcomes.Temp4xx + r.Outcomes.Perm5xx + r.Outcomes.ConnErrors
	if r.MaxPeakRSS == 0 {
		r.Outcomes.ErrorsTotal += r.Outcomes.Busy
	}
	accepted := r.Outcomes.Queued + r.Outcomes.Discarded + r.Outcomes.Duplicate + r.Outcomes.Other2xx
	if s := window.Seconds(); s > 0 {
		r.AcceptedPerS = float64(accepted) / s
		r.QueuedPerS = float64(r.Outcomes.Queued) / s
	}
	var h histSnap
	st.hist.snapshot(&h)
	r.Latency = Latency{P50: ms(h.quantile(0.50)), P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)), Max: ms(time.Duration(h.max))}
	st.mu.Lock()
	r.ErrorSamples = append([]string(nil), st.samples...)
	st.mu.Unlock()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteText prints the report for a person.
func (r *Report) WriteText(w io.Writer) {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("psaload report")
	p("  target:      %s", r.Target)
	rate := "as fast as possible"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%g msg/s", r.Rate)
	}
	p("  load:        %d clients, %s, ~%d-byte messages, noise %.0f%%, %s (window %.2fs)",
		r.Clients, rate, r.AvgBytes, r.Noise*100, time.Duration(r.Duration*float64(time.Second)), r.Window)
	p("  sent:        %d messages on %d connections (failure %d, repeat %d, recovery %d, noise %d)",
		r.Sent, r.Connections, r.Mix.Failure, r.Mix.Repeat, r.Mix.Recovery, r.Mix.Noise)
	if r.RateMissed > 0 {
		p("  rate:        %d scheduled messages not sent: every client was still waiting for a reply", r.RateMissed)
	}
	p("  replies:     queued %d, discarded %d, duplicate %d, other 2xx %d | 452 4.3.1 (budget full) %d, other 4xx %d, 5xx %d, connection errors %d",
		r.Outcomes.Queued, r.Outcomes.Discarded, r.Outcomes.Duplicate, r.Outcomes.Other2xx,
		r.Outcomes.Busy, r.Outcomes.Temp4xx, r.Outcomes.Perm5xx, r.Outcomes.ConnErrors)
	p("  throughput:  %.1f accepted/s (%.1f durably queued/s)", r.AcceptedPerS, r.QueuedPerS)
	p("  latency:     p50 %s  p90 %s  p99 %s  max %s  (end of DATA to reply)",
		fmtMS(r.Latency.P50), fmtMS(r.Latency.P90), fmtMS(r.Latency.P99), fmtMS(r.Latency.Max))
	if r.RSS != nil {
		p("  server RSS:  start %s  end %s  max %s  peak (VmHWM) %s  (anonymous only, without the binary and the mapped database: %s, %s, %s)",
			fmtBytes(r.RSS.Start), fmtBytes(r.RSS.End), fmtBytes(r.RSS.Max), fmtBytes(r.RSS.Peak),
			fmtBytes(r.RSS.AnonStart), fmtBytes(r.RSS.AnonEnd), fmtBytes(r.RSS.AnonMax))
	} else {
		p("  server RSS:  not measured (no /proc, or -addr without -pid)")
	}
	if r.ServerCPUPercent != nil || r.ClientCPUPercent != nil {
		p("  CPU:         server %s, psaload %s (percent of one core over the window)", pct(r.ServerCPUPercent), pct(r.ClientCPUPercent))
	}
	if f := r.Fsync; f != nil {
		p("  disk:        fsync of 4 KiB beside the state: p50 %s  p99 %s  max %s (%d probes during the load)",
			fmtMS(f.P50), fmtMS(f.P99), fmtMS(f.Max), f.Samples)
	}
	if r.LoadAvgStart >= 0 && r.LoadAvgEnd >= 0 {
		p("  machine:     %d CPUs, 1-minute load average %.1f at the start, %.1f at the end", r.CPUs, r.LoadAvgStart, r.LoadAvgEnd)
	}
	if r.Backlog != nil {
		p("  backlog:     spool %d, outbox %d, dead %d (right after the load)", r.Backlog.Spool, r.Backlog.Outbox, r.Backlog.Dead)
	}
	if d := r.Drain; d != nil {
		if d.Drained {
			p("  drain:       spool empty after %.1fs (then outbox %d, dead %d)", d.Seconds, d.Backlog.Outbox, d.Backlog.Dead)
		} else {
			p("  drain:       spool NOT empty after %.1fs: spool %d, outbox %d, dead %d", d.Seconds, d.Backlog.Spool, d.Backlog.Outbox, d.Backlog.Dead)
		}
	}
	if r.StopSeconds > 0 {
		p("  stop:        psagate exited %.2fs after SIGTERM", r.StopSeconds)
	}
	for _, s := range r.ErrorSamples {
		p("  error:       %s", s)
	}
	for _, n := range r.Notes {
		p("  note:        %s", n)
	}
	if r.KeptDir != "" {
		p("  kept:        %s (binary, config, state)", r.KeptDir)
	}
	if r.MaxPeakRSS > 0 {
		verdict := "met"
		if r.overMemory() {
			verdict = "MISSED"
		}
		peak := int64(0)
		if r.RSS != nil {
			peak = r.RSS.Peak
		}
		p("  memory:      peak RSS %s, target below %s: %s", fmtBytes(peak), fmtBytes(r.MaxPeakRSS), verdict)
	}
	if r.Failed() {
		p("  RESULT:      FAILED (%d errors)", r.Outcomes.ErrorsTotal)
	} else {
		p("  RESULT:      ok")
	}
	io.WriteString(w, b.String())
}

func pct(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return strconv.FormatFloat(*v, 'f', 0, 64) + "%"
}

func fmtMS(v float64) string { return fmtDur(time.Duration(v * float64(time.Millisecond))) }

// fmtDur prints a latency with three significant digits in ms.
func fmtDur(d time.Duration) string {
	m := float64(d) / float64(time.Millisecond)
	switch {
	case m < 10:
		return strconv.FormatFloat(m, 'f', 2, 64) + "ms"
	case m < 100:
		return strconv.FormatFloat(m, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(m, 'f', 0, 64) + "ms"
}

func fmtBytes(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
