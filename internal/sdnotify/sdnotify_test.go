package sdnotify

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket like systemd's and returns a function
// that reads the next message.
func listen(t *testing.T, path string) func() string {
	t.Helper()
	name := path
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func() string {
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading the notify socket: %v", err)
		}
		return string(buf[:n])
	}
}

func TestNotifyPathAndAbstract(t *testing.T) {
	for _, path := range []string{
		filepath.Join(t.TempDir(), "notify"),
		"@psagate-sdnotify-test-" + strconv.FormatInt(time.Now().UnixNano(), 36),
	} {
		next := listen(t, path)
		n := New(path)
		if err := n.Notify(Ready, Status("serving:\n 3 rules")); err != nil {
			t.Fatal(err)
		}
		if got := next(); got != "READY=1\nSTATUS=serving: 3 rules\n" {
			t.Errorf("%s: got %q", path, got)
		}
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	r := Reloading()
	lines := strings.Split(r, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("Reloading() = %q", r)
	}
	a, _ := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	b, _ := strconv.ParseInt(strings.TrimPrefix(strings.Split(Reloading(), "\n")[1], "MONOTONIC_USEC="), 10, 64)
	if a <= 0 || b < a {
		t.Errorf("MONOTONIC_USEC %d then %d", a, b)
	}
}

func TestNilAndUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if n := FromEnv(); n != nil {
		t.Fatalf("FromEnv with no socket = %+v", n)
	}
	var n *Notifier
	if err := n.Notify(Ready); err != nil {
		t.Fatal(err)
	}
	// A socket nobody listens on is an error the caller can log.
	if err := New(filepath.Join(t.TempDir(), "none")).Notify(Ready); err == nil {
		t.Error("no error for a missing socket")
	}
}

func TestStatusIsOneBoundedLine(t *testing.T) {
	s := Status(strings.Repeat("x ", 300) + "\nREADY=1")
	if strings.Contains(s, "\n") || len(s) > len("STATUS=")+200 {
		t.Errorf("Status = %q", s)
	}
}
