package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The admin API (queue, incidents, audit, silences, quarantine, backup,
// reload) holds every mail body and can drop or release what psagate
// keeps, so it is served only on a Unix socket: mode 0600, owned by the
// service user, and each connection's peer user is checked again (so a
// socket whose mode an admin loosened still refuses other users). /metrics
// and the health endpoints stay on TCP for Prometheus and load balancers.

// AdminHost is the Host the CLI sends over the socket.
const AdminHost = "psagate"

// AdminClient returns an HTTP client that reaches the admin API on the
// Unix socket at path; use it with AdminURL.
func AdminClient(path string, timeout time.Duration) *http.Client {
	var d net.Dialer
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// AdminURL is the URL of an admin API path for AdminClient.
func AdminURL(path string) string { return "http://" + AdminHost + path }

// listenAdmin creates the admin socket at path, mode 0600 from its first
// moment: it is made under a temporary name, restricted, then renamed into
// place, so no other user can connect in between. A socket left by a
// process that died is replaced; one that answers is another psagate.
func listenAdmin(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("http.admin_socket %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("http.admin_socket %s: another psagate is answering on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("http.admin_socket %s: removing the stale socket: %w", path, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("http.admin_socket %s: %w", path, err)
	}
	// Short, so it fits where the final name does.
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%d.sock", os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("http.admin_socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, path)
		if err == nil {
			return ln, nil
		}
	}
	ln.Close()
	os.Remove(tmp)
	return nil, fmt.Errorf("http.admin_socket %s: could not restrict the socket to its owner: %w", path, err)
}

type peerKey struct{}

// peerUID is the user id of the process at the other end of an admin
// connection, or -1 where the platform cannot say.
func peerUID(ctx context.Context) int {
	if v, ok := ctx.Value(peerKey{}).(int); ok {
		return v
	}
	return -1
}

func adminConnContext(ctx context.Context, c net.Conn) context.Context {
	uid := -1
	if uc, ok := c.(*net.UnixConn); ok {
		if u, err := unixPeerUID(uc); err == nil {
			uid = u
		}
	}
	return context.WithValue(ctx, peerKey{}, uid)
}

// sameUserOnly lets through connections from the service's own user and
// root; anyone else gets 403 even if the socket's mode lets them connect.
func sameUserOnly(h http.Handler) http.Handler {
	self := os.Geteuid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if uid := peerUID(r.Context()); uid != self && uid != 0 && uid != -1 {
			http.Error(w, fmt.Sprintf("the admin API answers the service user (uid %d) and root only, not uid %d", self, uid), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// sameOrigin refuses state-changing requests that a browser could have
// been made to send: any Origin header (the CLI never sends one), or a Host
// other than the admin socket's or loopback's (DNS rebinding).
func sameOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := checkOrigin(r); err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func checkOrigin(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" {
		return fmt.Errorf("cross-origin request refused (Origin %q): the admin API is for the psagate CLI", o)
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, AdminHost) || strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	return errors.New("request refused: Host " + r.Host + " is not this gateway's admin API")
}
