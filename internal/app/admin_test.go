package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// otherUID is the user the cross-user test connects as (nobody).
const otherUID = 65534

// TestAdminDialHelper is not a test: TestAdminSocketRefusesOtherUsers runs
// the test binary as another user with this test selected, to connect to
// the admin socket and print what happened.
func TestAdminDialHelper(t *testing.T) {
	sock := os.Getenv("PSAGATE_ADMIN_DIAL")
	if sock == "" {
		t.Skip("helper process only")
	}
	resp, err := AdminClient(sock, 5*time.Second).Get(AdminURL("/admin/backup"))
	if err != nil {
		fmt.Printf("result=error %v\n", err)
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("result=status %d %d bytes\n", resp.StatusCode, len(b))
}

// TestAdminSocketRefusesOtherUsers: the admin API (database backup with
// every mail body, queue drops) is on a 0600 socket owned by the service
// user; another local user cannot connect, and if an admin loosens the
// socket's mode, the peer-credential check still refuses them. The service
// user itself gets through. /metrics stays on TCP and the admin API is not
// there.
func TestAdminSocketRefusesOtherUsers(t *testing.T) {
	dir := t.TempDir()
	h := startApp(t, baseConfig(t, dir, ""), Options{})
	sock := h.app.AdminSocket()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode %v, want a socket with 0600", fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Geteuid() {
		t.Fatalf("admin socket owned by uid %d, want the service's %d", st.Uid, os.Geteuid())
	}
	// The service user reaches it.
	var q QueueView
	if err := getJSONFrom(sock, "/admin/queue", &q); err != nil {
		t.Fatalf("the service user cannot use the admin API: %v", err)
	}
	// Not on TCP.
	resp, err := http.Get("http://" + h.app.HTTPAddr() + "/admin/backup")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /admin/backup on TCP: %s, want 404", resp.Status)
	}

	if os.Geteuid() != 0 {
		t.Skip("running another user's process needs root (CI runs as root)")
	}
	// Let the other user reach the directory, so that only the socket's
	// own mode and the peer check stand in the way.
	for p := dir; p != filepath.Dir(os.TempDir()) && p != "/"; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o005); err != nil {
				t.Fatal(err)
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "app.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	asOther := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-test.run=^TestAdminDialHelper$", "-test.v")
		cmd.Env = []string{"PSAGATE_ADMIN_DIAL=" + sock, "HOME=/"}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherUID, Gid: otherUID}}
		out, _ := cmd.CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if r, ok := strings.CutPrefix(l, "result="); ok {
				return r
			}
		}
		t.Fatalf("helper printed no result:\n%s", out)
		return ""
	}
	if got := asOther(); !strings.Contains(got, "permission denied") {
		t.Fatalf("uid %d connecting to the 0600 socket: %s, want permission denied", otherUID, got)
	}
	// An admin loosened the mode: the peer check still refuses.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := asOther(); !strings.HasPrefix(got, "status 403") {
		t.Fatalf("uid %d through a 0666 socket: %s, want status 403", otherUID, got)
	}
}
