package app

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"psagate/internal/testutil"
)

func readyz(t *testing.T, h *harness) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + h.app.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyzFollowsSpoolWrites makes every write to the state database
// fail as on a full disk (an injected fault), sends an alert over SMTP
// (451: the sender keeps it), and checks that /readyz reports not ready
// while the spool cannot be written and ready again once it can, by
// itself: no mail needs to arrive for it to notice.
func TestReadyzFollowsSpoolWrites(t *testing.T) {
	h := startApp(t, baseConfig(t, t.TempDir(), ""), Options{})
	if code, body := readyz(t, h); code != http.StatusOK {
		t.Fatalf("before the fault: %d %s", code, body)
	}
	h.app.DB.SetWriteFault(func() error { return syscall.ENOSPC })
	reply := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, failureMail("PVC-SRV-FULL1"))
	if !strings.HasPrefix(reply, "451 ") {
		t.Fatalf("with the disk full the reply is %q, want 451", reply)
	}
	code, body := readyz(t, h)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "spool cannot be written") || !strings.Contains(body, "no space left") {
		t.Fatalf("with the disk full /readyz answers %d %q; want 503 naming the spool", code, body)
	}
	// Still failing on a later probe.
	waitFor(t, "a second probe", 5*time.Second, func() bool {
		code, body := readyz(t, h)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "spool")
	})
	h.app.DB.SetWriteFault(nil)
	waitFor(t, "/readyz to recover without any mail", 5*time.Second, func() bool {
		code, _ := readyz(t, h)
		return code == http.StatusOK
	})
	if r := testutil.SendMail(t, h.app.SMTPAddr(), "bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, failureMail("PVC-SRV-FULL1")); !strings.HasPrefix(r, "250 2.0.0 Queued as ") {
		t.Fatalf("after recovery: %q", r)
	}
}
