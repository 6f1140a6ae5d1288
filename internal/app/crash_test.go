package app

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cwfake "psagate/internal/psa/connectwise/fake"
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
	admin  string // the admin API's Unix socket
	stdout *testutil.Buffer
	exited chan error
}

var startedRe = regexp.MustCompile(`msg="psagate started" smtp=(\S+) http=(\S+) admin=(\S+)`)

func startChild(t *testing.T, cfg string) *child {
	t.Helper()
	c := &child{t: t, stdout: &testutil.Buffer{}, exited: make(chan error, 1)}
	c.cmd = exec.Command(psagateBinary(t), "serve", "-config", cfg)
	c.cmd.Stdout = c.stdout
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan [3]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := startedRe.FindStringSubmatch(sc.Text()); m != nil {
				started <- [3]string{m[1], m[2], m[3]}
			}
		}
	}()
	go func() { c.exited <- c.cmd.Wait() }()
	select {
	case a := <-started:
		c.smtp, c.http, c.admin = a[0], a[1], a[2]
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

func (c *child) getJSON(path string, v any) error { return getJSONFrom(c.admin, path, v) }

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

// restartable is a `psagate serve` child that a chaos loop kills and
// restarts; senders always dial the current instance.
type restartable struct {
	t   *testing.T
	cfg string
	mu  sync.Mutex
	cur *child
}

func (r *restartable) addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur.smtp
}

func (r *restartable) killAndRestart() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cur.kill()
	r.cur = startChild(r.t, r.cfg)
}

// TestRepeatedKillsWithSlowPSA kills `psagate serve` with SIGKILL again
// and again while 500 messages flow and the PSA answers slowly; after the
// final restart every ticket, note and close that the messages imply exists
// exactly once on the PSA.
func TestRepeatedKillsWithSlowPSA(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: runs a gateway process through repeated SIGKILLs")
	}
	fk := cwfake.Start(cwfake.DefaultConfig())
	defer fk.Close()
	// Every PSA call takes 30 ms: kills land while calls are in flight.
	fk.Inject(cwfake.Fault{Delay: 30 * time.Millisecond, Times: 1 << 30})
	dir := t.TempDir()
	cfg := cwConfig(t, fk, dir, "[deliver.connectwise]\nrate_per_minute = 100000\nconcurrency = 8\n")
	data := strings.Replace(string(readAll(t, cfg)), `level = "warn"`, `level = "info"`, 1)
	os.WriteFile(cfg, []byte(data), 0o600)

	r := &restartable{t: t, cfg: cfg}
	r.cur = startChild(t, cfg)

	const devices = 125 // x 4 messages: fail, fail, fail, ok = 500
	// A kill after every 100th acknowledged message, wherever the gateway
	// is at that moment (accepting, processing, calling the PSA).
	killNow := make(chan struct{}, 8)
	var acks atomic.Int64
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				dev := fmt.Sprintf("PVC-SRV-C%03d", d)
				for n, kind := range []string{"fail", "fail", "fail", "ok"} {
					raw := x360(dev, kind, n)
					// An MTA retries until it gets a 250: so do we.
					for {
						if reply := sendNoFatal(r.addr(), raw); strings.HasPrefix(reply, "250") {
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
					if acks.Add(1)%100 == 0 {
						killNow <- struct{}{}
					}
				}
			}
		}()
	}
	kills := 0
	chaos := make(chan struct{})
	go func() {
		defer close(chaos)
		for range killNow {
			r.killAndRestart()
			kills++
		}
	}()
	for d := 0; d < devices; d++ {
		work <- d
	}
	close(work)
	wg.Wait()
	close(killNow) // the 500th ack queued one more kill, while delivery is under way
	<-chaos
	t.Logf("%d SIGKILLs during the run", kills)
	if kills != 5 {
		t.Fatalf("only %d kills happened; the test did not exercise restarts", kills)
	}
	waitFor(t, "delivery after the final restart", 90*time.Second, func() bool {
		var q QueueView
		return r.cur.getJSON("/admin/queue", &q) == nil && len(q.Outbox) == 0 && len(fk.Tickets()) >= devices
	})
	var q QueueView
	if err := r.cur.getJSON("/admin/queue", &q); err != nil || len(q.Dead) != 0 {
		t.Fatalf("dead letters after the run: %v %+v", err, q.Dead)
	}
	searches, lost := 0, 0
	for _, rq := range fk.Requests() {
		if rq.Method == "GET" && rq.APIPath == "/service/tickets" && strings.Contains(rq.Query.Get("conditions"), "externalXRef") {
			searches++
		}
		if rq.Status == 0 {
			lost++
		}
	}
	t.Logf("PSA saw %d requests cut off by a kill and %d retry searches by external reference", lost, searches)
	perDevice := map[string]int{}
	for _, tk := range fk.Tickets() {
		dev := tk.Summary[:strings.Index(tk.Summary, ":")]
		perDevice[dev]++
		// initialDescription + 2 repeat notes + 1 resolution note.
		if len(tk.Notes) != 4 || !tk.ClosedFlag {
			t.Errorf("ticket %d %s: %d notes, closed=%v; want 4 notes and closed", tk.ID, dev, len(tk.Notes), tk.ClosedFlag)
		}
	}
	for d := 0; d < devices; d++ {
		if dev := fmt.Sprintf("PVC-SRV-C%03d", d); perDevice[dev] != 1 {
			t.Errorf("%s has %d tickets, want exactly 1", dev, perDevice[dev])
		}
	}
}
