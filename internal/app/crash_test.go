package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"psagate/internal/store"
	"psagate/internal/testutil"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// psagateBinary builds cmd/psagate once per test run.
func psagateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "psagate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "psagate")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/psagate")
		cmd.Dir = testutil.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// child is a `psagate serve` process.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	smtp   string
	http   string
	stdout *syncBuffer
	exited chan error
}

var startedRe = regexp.MustCompile(`msg="psagate started" smtp=(\S+) http=(\S+)`)

func startChild(t *testing.T, cfg string) *child {
	t.Helper()
	c := &child{t: t, stdout: &syncBuffer{}, exited: make(chan error, 1)}
	c.cmd = exec.Command(psagateBinary(t), "serve", "-config", cfg)
	c.cmd.Stdout = c.stdout
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := startedRe.FindStringSubmatch(sc.Text()); m != nil {
				started <- [2]string{m[1], m[2]}
			}
		}
	}()
	go func() { c.exited <- c.cmd.Wait() }()
	select {
	case a := <-started:
		c.smtp, c.http = a[0], a[1]
	case err := <-c.exited:
		t.Fatalf("psagate serve exited at start: %v", err)
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		t.Fatal("psagate serve did not start within 30s")
	}
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
	c.exited <- nil // let Cleanup's receive return
}

func (c *child) getJSON(path string, v any) error {
	resp, err := http.Get("http://" + c.http + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

func failureMail(device string) []byte {
	return []byte(fmt.Sprintf("From: PVC-BDR1 <bdr1@pinecrest-vet.example>\r\nTo: pinecrest@alerts.example.net\r\n"+
		"Subject: [PVC-BDR1] Failed Backup: %s\r\nMessage-ID: <crash-%s@pvc-bdr1>\r\nDate: Tue, 11 Feb 2025 13:00:26 -0700\r\n\r\n"+
		"x360Recover alert from appliance PVC-BDR1\r\n\r\n  Protected system:  %s\r\n  Alert type:        Failed Backup\r\n", device, device, device))
}

// TestKillAndRestartLosesNothing runs `psagate serve` as a child process,
// kills it with SIGKILL while messages arrive, restarts it, lets the
// clients retry what was not acknowledged, and checks that every message
// that got 250 is processed exactly once and that no message makes two
// incidents.
func TestKillAndRestartLosesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig(t, dir, "")
	data := strings.Replace(string(readAll(t, cfg)), `level = "warn"`, `level = "info"`, 1)
	os.WriteFile(cfg, []byte(data), 0o600)

	const total = 60
	devices := make([]string, total)
	for i := range devices {
		devices[i] = fmt.Sprintf("PVC-SRV-K%03d", i)
	}
	c1 := startChild(t, cfg)

	var mu sync.Mutex
	acked := map[string]string{} // device -> psagate id
	var pending []string         // devices without a 250: the client will retry them
	var wg sync.WaitGroup
	next := make(chan string)
	killAt := make(chan struct{})
	var killOnce sync.Once
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dev := range next {
				reply := sendNoFatal(c1.smtp, failureMail(dev))
				mu.Lock()
				if strings.HasPrefix(reply, "250") {
					acked[dev] = testutil.QueuedID(reply)
					if len(acked) == total/3 {
						killOnce.Do(func() { close(killAt) })
					}
				} else {
					pending = append(pending, dev)
				}
				mu.Unlock()
			}
		}()
	}
	go func() {
		<-killAt
		c1.kill()
	}()
	for _, d := range devices {
		next <- d
	}
	close(next)
	wg.Wait()
	killOnce.Do(func() { close(killAt); c1.kill() })
	if len(acked) < total/3 {
		t.Fatalf("only %d messages acknowledged before the kill", len(acked))
	}
	t.Logf("before SIGKILL: %d acknowledged, %d not", len(acked), len(pending))

	c2 := startChild(t, cfg)
	for _, dev := range pending {
		reply := sendNoFatal(c2.smtp, failureMail(dev))
		if !strings.HasPrefix(reply, "250") {
			t.Fatalf("retry of %s after restart: %q", dev, reply)
		}
		// Either new, or recognised as already spooled before the kill.
		acked[dev] = testutil.QueuedID(reply)
	}

	var incs []*store.Incident
	waitFor(t, "all incidents", 30*time.Second, func() bool {
		var q QueueView
		if err := c2.getJSON("/admin/queue", &q); err != nil || len(q.Outbox) > 0 {
			return false
		}
		return c2.getJSON("/admin/incidents?n=10000", &incs) == nil && len(incs) >= total
	})
	perDevice := map[string]int{}
	for _, i := range incs {
		perDevice[i.Device]++
	}
	for _, d := range devices {
		if perDevice[d] != 1 {
			t.Errorf("device %s has %d incidents, want exactly 1", d, perDevice[d])
		}
	}
	var audit []*store.AuditEntry
	if err := c2.getJSON("/admin/audit?n=100000", &audit); err != nil {
		t.Fatal(err)
	}
	perMsg := map[string]int{}
	for _, e := range audit {
		perMsg[e.Message]++
	}
	for dev, id := range acked {
		if perMsg[id] != 1 {
			t.Errorf("message %s (%s) was processed %d times, want exactly 1", id, dev, perMsg[id])
		}
	}

	// A graceful stop exits 0 and leaves a database the next start opens.
	c2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c2.exited:
		if err != nil {
			t.Fatalf("SIGTERM exit: %v", err)
		}
		c2.exited <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
}

// sendNoFatal sends one message and returns the DATA reply, or the error
// text if the server went away mid-transaction.
func sendNoFatal(addr string, raw []byte) (reply string) {
	defer func() {
		if r := recover(); r != nil {
			reply = fmt.Sprint(r)
		}
	}()
	ft := &fatalTB{}
	c, greet := testutil.Dial(ft, addr)
	if !strings.HasPrefix(greet, "220") {
		return greet
	}
	defer c.C.Close()
	if r := c.Cmd("EHLO t"); !strings.HasPrefix(r, "250") {
		return r
	}
	r := c.Send("bdr1@pinecrest-vet.example", []string{"pinecrest@alerts.example.net"}, raw)
	if r == "" {
		return "connection lost"
	}
	return r
}

// fatalTB turns the SMTP helper's fatal errors into panics that
// sendNoFatal recovers: a killed server is expected here.
type fatalTB struct{ testing.TB }

func (f *fatalTB) Helper()                   {}
func (f *fatalTB) Cleanup(func())            {}
func (f *fatalTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (f *fatalTB) Fatalf(s string, a ...any) { panic(fmt.Sprintf(s, a...)) }
