//go:build !linux

package app

import (
	"errors"
	"net"
)

// unixPeerUID is not available here: the socket's 0600 mode is the guard.
func unixPeerUID(*net.UnixConn) (int, error) {
	return -1, errors.New("peer credentials not supported on this platform")
}
