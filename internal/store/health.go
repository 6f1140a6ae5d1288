package store

import (
	"bytes"
	"fmt"
	"sync"
	"time"
)

// spoolHealth remembers whether the last spool write failed, so that
// readiness can say "cannot accept mail" while the disk is full, and find
// out by itself when it no longer is.
type spoolHealth struct {
	mu        sync.Mutex
	err       error
	since     time.Time
	size      int // of the write that failed: a probe tries as much
	lastProbe time.Time
	fault     func() error // tests: fails writes as a full disk would
}

func (h *spoolHealth) record(err error, size int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.err = nil
		return
	}
	if h.err == nil {
		h.since = time.Now()
	}
	h.err, h.size = err, size
}

func (h *spoolHealth) injected() error {
	h.mu.Lock()
	f := h.fault
	h.mu.Unlock()
	if f == nil {
		return nil
	}
	return f()
}

// SetWriteFault makes every spool write and write probe fail with what
// fn returns (nil: succeed), as a full or read-only disk would; nil fn
// removes the fault. For fault-injection tests.
func (d *DB) SetWriteFault(fn func() error) {
	d.health.mu.Lock()
	d.health.fault = fn
	d.health.mu.Unlock()
}

// probeInterval limits write probes while the spool is failing.
const probeInterval = time.Second

// maxProbeBytes caps a probe's size: enough to see that a disk has room
// again for a typical alert with a screenshot.
const maxProbeBytes = 4 << 20

// SpoolWritable returns nil when the spool can take messages: the last
// spool write succeeded, or a write probe (one at most every second, of the
// size of the write that failed, at most 4 MiB) does now. The probe writes
// and then deletes a scratch record in two transactions, so it grows the
// file as a real message would.
func (d *DB) SpoolWritable() error {
	h := &d.health
	h.mu.Lock()
	if h.err == nil {
		h.mu.Unlock()
		return nil
	}
	failing := fmt.Errorf("the spool cannot be written since %s: %w", h.since.UTC().Format(time.RFC3339), h.err)
	if time.Since(h.lastProbe) < probeInterval {
		h.mu.Unlock()
		return failing
	}
	h.lastProbe = time.Now()
	size := min(max(h.size, 4096), maxProbeBytes)
	h.mu.Unlock()
	if err := d.probeWrite(size); err != nil {
		h.record(err, size)
		return fmt.Errorf("the spool cannot be written since %s: %w", h.since.UTC().Format(time.RFC3339), err)
	}
	h.record(nil, 0)
	return nil
}

var probeKey = []byte("write-probe")

func (d *DB) probeWrite(size int) error {
	if err := d.health.injected(); err != nil {
		return err
	}
	if err := d.Update(func(tx *Tx) error { return tx.b(bMeta).Put(probeKey, bytes.Repeat([]byte{0}, size)) }); err != nil {
		return err
	}
	return d.Update(func(tx *Tx) error { return tx.b(bMeta).Delete(probeKey) })
}
