// Command psaload is the load and soak tool of psagate: it builds psagate,
// starts it as a child on loopback with a generated config (log provider,
// state in a temp dir, the repository's rules), drives it with concurrent
// SMTP clients sending x360Recover alert mail (failures, repeats,
// recoveries and noise), and reports throughput, the durable-acceptance
// latency (end of DATA to the reply, which for a queued message comes after
// the spool commit), error counts, the server's memory and CPU, and the
// backlog left when the load stops. `make bench` and `make soak` run it.
//
// It exits 1 when any message got a 4xx or 5xx reply or a connection
// failed, so a soak run fails loudly.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("psaload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.DurationVar(&o.Duration, "duration", 15*time.Second, "how long to send")
	fs.IntVar(&o.Clients, "clients", 20, "concurrent SMTP connections")
	fs.IntVar(&o.Size, "size", 4096, "approximate message size in bytes")
	fs.Float64Var(&o.Rate, "rate", 0, "total messages per second (0 = as fast as the server answers)")
	fs.Float64Var(&o.Noise, "noise", 0, "fraction 0..1 of messages that are recoveries with nothing open (no-op closes)")
	fs.DurationVar(&o.Report, "report", 0, "print a progress line at this interval (0 = final report only)")
	jsonOut := fs.Bool("json", false, "print the final report as JSON")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir (psagate binary, config, state) and print its path")
	fs.StringVar(&o.Addr, "addr", "", "SMTP HOST:PORT of a running gateway to load instead of starting one")
	fs.StringVar(&o.HTTPAddr, "http", "", "with -addr: the gateway's HTTP HOST:PORT, to read its backlog from /metrics")
	fs.IntVar(&o.PID, "pid", 0, "with -addr: the gateway's process id, to read its RSS and CPU")
	fs.StringVar(&o.Rcpt, "rcpt", "load@alerts.example.net", "envelope recipient (with -addr: one that the gateway accepts)")
	fs.StringVar(&o.TempDir, "tmpdir", "", "where to create the temp dir (default $TMPDIR; /dev/shm takes disk fsync out of the figures)")
	fs.StringVar(&o.ServerLog, "server-log", "warn", "log level of the started psagate (its warnings and errors are shown)")
	maxRSS := fs.Int64("max-peak-rss", 0, "memory target in MiB: fail if the server's peak RSS (VmHWM) exceeds it; 452 4.3.1 replies then count apart, not as errors")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: psaload [flags]\n\nDrives psagate over loopback SMTP and reports throughput, latency, errors and memory.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.MaxPeakRSS = *maxRSS << 20
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "psaload: unexpected argument %q\n", fs.Arg(0))
		return 2
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	// With -json, stdout carries the report only.
	status := stdout
	if *jsonOut {
		status = stderr
	}
	rep, err := Run(ctx, o, status)
	if err != nil {
		fmt.Fprintln(stderr, "psaload:", err)
		return 1
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "psaload:", err)
			return 1
		}
	} else {
		rep.WriteText(stdout)
	}
	if rep.Failed() {
		return 1
	}
	return 0
}
