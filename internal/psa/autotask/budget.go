package autotask

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"psagate/internal/psa"
)

// The client-side request budget. Autotask allows 10,000 requests per
// rolling hour per database, shared by every integration of the tenant, and
// answers over the limit with rejections until the window frees. psagate
// reads ThresholdInformation now and then, adds its own calls since, and
// slows down before the tenant gets there.
const (
	slowAt       = 0.50
	slowDelay    = 500 * time.Millisecond
	slowerAt     = 0.75
	slowerDelay  = time.Second
	holdAt       = 0.90
	holdRetry    = 5 * time.Minute // Retry-After of a held call
	holdRecheck  = time.Minute     // re-read ThresholdInformation this often while near the limit
	defaultLimit = 10000
)

// budget is what the client knows about the tenant's request count.
type budget struct {
	known      bool
	threshold  int
	timeframe  int // minutes
	countAt    int // currentTimeframeRequestCount when last read
	since      int // our calls since
	checkedAt  time.Time
	nextCheck  time.Time
	refreshing bool
}

func (b *budget) used() int { return b.countAt + b.since }

func (b *budget) fraction() float64 {
	if !b.known || b.threshold <= 0 {
		return 0
	}
	return float64(b.used()) / float64(b.threshold)
}

// thresholdInfo is the answer of GET ThresholdInformation.
type thresholdInfo struct {
	Threshold int `json:"externalRequestThreshold"`
	Timeframe int `json:"requestThresholdTimeframe"`
	Count     int `json:"currentTimeframeRequestCount"`
}

// spend accounts for one call about to be sent: it re-reads the threshold
// when due, waits when usage is high, and holds ticket operations back when
// the tenant is close to the limit.
func (j *job) spend(ctx context.Context, z *zoneInfo) error {
	in := j.in
	now := j.p.now()
	in.mu.Lock()
	b := &in.budget
	if j.noBudget {
		b.since++
		in.mu.Unlock()
		return nil
	}
	due := !b.refreshing && (b.checkedAt.IsZero() || b.since >= j.p.thrEvery || !now.Before(b.nextCheck))
	if due {
		b.refreshing = true
	}
	in.mu.Unlock()
	if due {
		if _, err := j.readThreshold(ctx, z); err != nil {
			j.p.log.Warn("autotask: cannot read ThresholdInformation; going on without it", "user", j.c.username, "err", err)
		}
	}

	in.mu.Lock()
	frac, used, limit, tf := b.fraction(), b.used(), b.threshold, b.timeframe
	if j.hold && frac >= holdAt {
		in.mu.Unlock()
		return &psa.Error{Provider: Name, Op: j.op, Kind: psa.Transient, RetryAfter: holdRetry,
			Message: fmt.Sprintf("Autotask API usage is at %d of %d requests per %d minutes; psagate holds ticket calls back above %d%% to leave room for the tenant's other integrations",
				used, limit, tf, int(holdAt*100))}
	}
	b.since++
	in.mu.Unlock()

	var d time.Duration
	switch {
	case frac >= slowerAt:
		d = slowerDelay
	case frac >= slowAt:
		d = slowDelay
	}
	if d > 0 {
		if err := j.p.sleep(ctx, d); err != nil {
			return j.netErr(ctx, err)
		}
	}
	return nil
}

// readThreshold reads ThresholdInformation and updates the budget. The
// caller has set budget.refreshing; readThreshold clears it.
func (j *job) readThreshold(ctx context.Context, z *zoneInfo) (thresholdInfo, error) {
	var ti thresholdInfo
	resp, err := j.send(ctx, z, http.MethodGet, "ThresholdInformation", "", nil)
	if err == nil && resp.status != http.StatusOK {
		err = j.classify(resp)
	}
	if err == nil {
		if jerr := json.Unmarshal(resp.body, &ti); jerr != nil || ti.Threshold <= 0 {
			err = j.fail(psa.Transient, "ThresholdInformation answered without a threshold")
		}
	}
	now := j.p.now()
	in := j.in
	in.mu.Lock()
	defer in.mu.Unlock()
	b := &in.budget
	b.refreshing = false
	b.checkedAt = now
	if err != nil {
		b.nextCheck = now.Add(holdRecheck)
		if pe, ok := err.(*psa.Error); ok && isThresholdErr(pe) {
			if b.threshold <= 0 {
				b.threshold, b.timeframe = defaultLimit, 60
			}
			b.known, b.countAt, b.since = true, b.threshold, 0
		}
		return ti, err
	}
	b.known, b.threshold, b.timeframe, b.countAt, b.since = true, ti.Threshold, ti.Timeframe, ti.Count, 0
	b.nextCheck = now.Add(j.p.thrInterval)
	if b.fraction() >= holdAt {
		b.nextCheck = now.Add(holdRecheck)
	}
	return ti, nil
}

// thresholdFull records that Autotask refused a call for the hourly
// threshold: ticket calls are held until a re-read shows room again.
func (j *job) thresholdFull() {
	in := j.in
	in.mu.Lock()
	defer in.mu.Unlock()
	b := &in.budget
	if b.threshold <= 0 {
		b.threshold = defaultLimit
	}
	if b.timeframe <= 0 {
		b.timeframe = 60
	}
	b.known, b.countAt, b.since = true, b.threshold, 0
	b.checkedAt = j.p.now()
	b.nextCheck = b.checkedAt.Add(holdRecheck)
}

// isThresholdErr reports whether classify saw the hourly threshold rejection
// (not the thread limit, which can share its status).
func isThresholdErr(e *psa.Error) bool {
	return strings.Contains(e.Message, thresholdReached)
}
