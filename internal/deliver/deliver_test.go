package deliver

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	min, max := time.Second, time.Minute
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 10: time.Minute, 60: time.Minute} {
		for range 50 {
			got := Backoff(attempts, min, max)
			if got < want/2 || got > want {
				t.Fatalf("Backoff(%d) = %v, want within [%v, %v]", attempts, got, want/2, want)
			}
		}
	}
	// Jitter: many jobs failing together do not all retry at once.
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[Backoff(5, min, max)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct backoffs in 50 draws", len(seen))
	}
}
