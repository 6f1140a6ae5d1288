//go:build !unix

package store

import (
	"os"
	"time"
)

// lockShared is a no-op where flock does not exist; bbolt's own lock
// still keeps two servers apart.
func lockShared(f *os.File, timeout time.Duration) (unlock func(), err error) {
	return func() {}, nil
}
