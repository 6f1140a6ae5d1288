package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram is log-linear (HdrHistogram's layout): values below
// subCount nanoseconds have a bucket each, and every power of two above is
// split into subCount buckets, so any value is known to within 1/subCount
// (1.6%) in a fixed 18 KiB of counters. Counters are atomics: every client
// records into the one histogram without a lock, and the progress reporter
// reads it while they do.
//
// It is ours rather than github.com/HdrHistogram/hdrhistogram-go (issue 15
// looked): that port is not safe for concurrent recording (RecordValue is a
// plain counts[i] += n), so every client would take a lock per request on
// the path being measured; it cannot subtract two snapshots for the
// per-interval p99 of the progress line; and it would be a new dependency
// for these hundred lines.
const (
	subBits  = 6
	subCount = 1 << subBits
	maxShift = 34 // values are clamped below 2^(maxShift+subBits+1) ns, about 36 minutes
	nBuckets = (maxShift + 2) * subCount
)

type histogram struct {
	counts [nBuckets]atomic.Uint64
	max    atomic.Int64
}

func bucketOf(ns int64) int {
	if ns < 0 {
		ns = 0
	}
	v := uint64(ns)
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits
	if shift > maxShift {
		return nBuckets - 1
	}
	return (shift+1)*subCount + int(v>>uint(shift)) - subCount
}

// bucketHigh is the largest value that falls in bucket b.
func bucketHigh(b int) int64 {
	if b < subCount {
		return int64(b)
	}
	shift := b/subCount - 1
	mant := int64(b%subCount + subCount)
	return (mant+1)<<uint(shift) - 1
}

func (h *histogram) record(d time.Duration) {
	ns := int64(d)
	h.counts[bucketOf(ns)].Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// histSnap is a copy of the counters at one moment; two snapshots subtract
// into the histogram of the interval between them.
type histSnap struct {
	counts [nBuckets]uint64
	total  uint64
	max    int64 // the running maximum (not per interval)
}

func (h *histogram) snapshot(s *histSnap) {
	s.total = 0
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.total += c
	}
	s.max = h.max.Load()
}

// sub sets d to a - b (a taken after b).
func (d *histSnap) sub(a, b *histSnap) {
	d.total = 0
	for i := range d.counts {
		d.counts[i] = a.counts[i] - b.counts[i]
		d.total += d.counts[i]
	}
	d.max = a.max
}

// quantile returns the upper edge of the bucket holding the q-th value,
// never above the exact maximum, so p50 <= p90 <= p99 <= max always holds.
// It returns 0 for an empty histogram.
func (s *histSnap) quantile(q float64) time.Duration {
	if s.total == 0 {
		return 0
	}
	rank := uint64(q*float64(s.total) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > s.total {
		rank = s.total
	}
	var cum uint64
	for i, c := range s.counts {
		cum += c
		if cum >= rank {
			v := bucketHigh(i)
			if s.max > 0 && v > s.max {
				v = s.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(s.max)
}
