package main

import (
	"os"
	"path/filepath"
	"time"
)

// fsyncProbe writes and fsyncs a small file beside the server's state four
// times a second during the load. The disk is shared with the server (and,
// on a busy machine, with everything else): when the durable-acceptance
// latency has outliers, this tells whether the disk itself stalled.
type fsyncProbe struct {
	path       string
	hist       histogram
	err        error
	stop, done chan struct{}
}

func newFsyncProbe(dir string) *fsyncProbe {
	return &fsyncProbe{path: filepath.Join(dir, "fsync-probe"), stop: make(chan struct{}), done: make(chan struct{})}
}

func (p *fsyncProbe) start() {
	go func() {
		defer close(p.done)
		f, err := os.OpenFile(p.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			p.err = err
			return
		}
		defer os.Remove(p.path)
		defer f.Close()
		block := make([]byte, 4096)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for i := int64(0); ; i++ {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			t0 := time.Now()
			if _, err := f.WriteAt(block, (i%16)*4096); err != nil {
				p.err = err
				return
			}
			if err := f.Sync(); err != nil {
				p.err = err
				return
			}
			p.hist.record(time.Since(t0))
		}
	}()
}

func (p *fsyncProbe) finish() *Fsync {
	close(p.stop)
	<-p.done
	var s histSnap
	p.hist.snapshot(&s)
	if p.err != nil || s.total == 0 {
		return nil
	}
	return &Fsync{Samples: int64(s.total), P50: ms(s.quantile(0.5)), P99: ms(s.quantile(0.99)), Max: ms(time.Duration(s.max))}
}
