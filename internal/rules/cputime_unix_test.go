//go:build unix

package rules

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the test process has used.
// Benchmarks report it per operation as well as wall time, because on a
// shared machine wall time measures the neighbours too.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
