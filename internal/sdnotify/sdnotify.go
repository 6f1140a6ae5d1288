// Package sdnotify speaks systemd's service notification protocol: one
// datagram of newline-separated VAR=value assignments to the AF_UNIX socket
// named by $NOTIFY_SOCKET (sd_notify(3)). It is a few lines, so psagate does
// not take a dependency for it. With Type=notify in the unit, systemd waits
// for READY=1 before it calls the service started, and treats RELOADING=1 ...
// READY=1 as the span of a reload (systemd.service(5), "Type=notify-reload";
// the messages are the same under Type=notify).
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends to one socket. The zero or nil Notifier sends nothing, so
// callers need not care whether systemd is watching.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET, or nil when it is unset
// (not started by systemd, or by a unit that is not Type=notify).
func FromEnv() *Notifier {
	return New(os.Getenv("NOTIFY_SOCKET"))
}

// New returns a Notifier for the socket path; a leading "@" names a Linux
// abstract socket, as systemd writes it. An empty path gives nil.
func New(path string) *Notifier {
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Notify sends the assignments as one datagram. A nil Notifier does
// nothing. Values must not contain newlines; Status makes a safe one.
func (n *Notifier) Notify(assignments ...string) error {
	if n == nil || len(assignments) == 0 {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready, Stopping and Reloading are the state messages psagate sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Reloading is RELOADING=1 with the MONOTONIC_USEC systemd requires beside
// it (since v253) to tell this reload from an older one.
func Reloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "RELOADING=1"
	}
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/int64(time.Microsecond))
}

// Status is a STATUS= line shown by `systemctl status`, made one line and
// at most 200 bytes.
func Status(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return "STATUS=" + s
}
