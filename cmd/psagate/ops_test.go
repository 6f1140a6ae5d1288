package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"psagate/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite docs/man/psagate.1 from the code")

// TestMain lets a test run the real psagate as a child process: the test
// binary is psagate when PSAGATE_TEST_MAIN=1 (signals then reach that child
// only, never the test process).
func TestMain(m *testing.M) {
	if os.Getenv("PSAGATE_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commandDocs {
		args := append(strings.Fields(c.name), "-h")
		code, stdout, stderr := runCLI(args...)
		if code != 0 {
			t.Errorf("%v: exit %d (stderr %q)", args, code, stderr)
		}
		if want := "Usage: psagate " + c.name; !strings.Contains(stderr+stdout, want) {
			t.Errorf("%v: no %q in %q", args, want, stderr+stdout)
		}
		for _, f := range flagsOf(c.name) {
			if !strings.Contains(stderr, "-"+f.name) {
				t.Errorf("%v: flag -%s not in the help", args, f.name)
			}
		}
	}
	if code, out, _ := runCLI("help"); code != 0 || !strings.Contains(out, "psagate completion bash|zsh|fish") {
		t.Errorf("help: exit %d, %q", code, out)
	}
	// The flag lists come from the commands themselves.
	if fl := flagsOf("try"); len(fl) < 5 {
		t.Errorf("flagsOf(try) = %v", fl)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != 0 || !strings.HasPrefix(out, "psagate ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	code, out, _ = runCLI("version", "-json")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["version"] == "" || v["goversion"] == nil {
		t.Fatalf("version -json: exit %d, %q", code, out)
	}
}

func TestManPageIsCurrent(t *testing.T) {
	path := filepath.Join(testutil.RepoRoot(t), "docs", "man", "psagate.1")
	code, out, _ := runCLI("man")
	if code != 0 {
		t.Fatalf("man: exit %d", code)
	}
	for _, c := range commandDocs {
		if !strings.Contains(out, ".SS \""+roff("psagate "+c.name)+"\"") {
			t.Errorf("the man page has no section for %s", c.name)
		}
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, err := os.ReadFile(path)
	if err != nil || string(old) != out {
		t.Fatalf("docs/man/psagate.1 is stale: run `go test ./cmd/psagate -run TestManPageIsCurrent -update` (%v)", err)
	}
	if _, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", path)
		if msg, err := cmd.CombinedOutput(); err != nil || len(msg) > 0 {
			t.Errorf("groff warns about the man page: %v\n%s", err, msg)
		}
	} else {
		t.Log("groff not installed: the man page's roff is not linted here")
	}
}

// complete runs the bash completion function as bash would for the words.
func complete(t *testing.T, script string, words ...string) string {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "c.bash")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	var q []string
	for _, w := range words {
		q = append(q, fmt.Sprintf("%q", w))
	}
	prog := fmt.Sprintf(`source %q; COMP_WORDS=(%s); COMP_CWORD=%d; _psagate; printf '%%s\n' "${COMPREPLY[@]}"`,
		f, strings.Join(q, " "), len(words)-1)
	cmd := exec.Command("bash", "--norc", "-c", prog)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestCompletion(t *testing.T) {
	code, bash, _ := runCLI("completion", "bash")
	if code != 0 {
		t.Fatal("completion bash failed")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed: the completion script cannot be run here")
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"psagate", "que"}, "queue"},
		{[]string{"psagate", "quar"}, "quarantine"},
		{[]string{"psagate", "incidents", "-config", "x.toml", "fo"}, "forget"},
		{[]string{"psagate", "psa", ""}, "test\nlookup\nfake"},
		{[]string{"psagate", "queue", "-config", "x.toml", "retry-"}, "retry-dead"},
		{[]string{"psagate", "try", "-exp"}, "-explain"},
		{[]string{"psagate", "psa", "test", "-cl"}, "-client"},
		{[]string{"psagate", "completion", "f"}, "fish"},
	} {
		if got := complete(t, bash, tc.words...); got != tc.want {
			t.Errorf("%q: completed %q, want %q", tc.words, got, tc.want)
		}
	}
	for _, sh := range []string{"zsh", "fish"} {
		code, script, _ := runCLI("completion", sh)
		if code != 0 || !strings.Contains(script, "psagate") {
			t.Errorf("completion %s: exit %d", sh, code)
			continue
		}
		if _, err := exec.LookPath(sh); err != nil {
			t.Logf("%s is not installed: its completion script is not syntax-checked here", sh)
			continue
		}
		f := filepath.Join(t.TempDir(), "c."+sh)
		if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sh, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, out)
		}
	}
	if code, _, _ := runCLI("completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: exit %d, want 2", code)
	}
}

func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()
	if code, out, errs := runCLI("healthcheck", "-url", srv.URL+"/healthz"); code != 0 || !strings.Contains(out, "healthy") {
		t.Fatalf("healthy server: exit %d %q %q", code, out, errs)
	}
	// -config reads [http] listen.
	cfg := writeConfig(t, "", "")
	data, _ := os.ReadFile(cfg)
	data = []byte(strings.Replace(string(data), "[http]\nlisten = \"\"", "[http]\nlisten = \""+strings.TrimPrefix(srv.URL, "http://")+"\"", 1))
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI("healthcheck", "-config", cfg); code != 0 {
		t.Fatalf("-config: exit %d %q", code, errs)
	}
	status = http.StatusServiceUnavailable
	if code, _, errs := runCLI("healthcheck", "-url", srv.URL+"/healthz"); code != 1 || !strings.Contains(errs, "unhealthy") {
		t.Fatalf("503: exit %d %q", code, errs)
	}
	srv.Close()
	if code, _, errs := runCLI("healthcheck", "-url", srv.URL+"/healthz", "-timeout", "2s"); code != 1 || !strings.Contains(errs, "unhealthy") {
		t.Fatalf("nothing listening: exit %d %q", code, errs)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		":9725":          "127.0.0.1:9725",
		"0.0.0.0:9725":   "127.0.0.1:9725",
		"[::]:9725":      "[::1]:9725",
		"127.0.0.1:9725": "127.0.0.1:9725",
		"10.0.0.5:9725":  "10.0.0.5:9725",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

// notifySocket is a stand-in for systemd's notification socket.
type notifySocket struct {
	t    *testing.T
	path string
	c    *net.UnixConn
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{t: t, path: path, c: c}
}

// next returns the assignments of the next datagram.
func (n *notifySocket) next() map[string]string {
	n.t.Helper()
	buf := make([]byte, 4096)
	_ = n.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	k, err := n.c.Read(buf)
	if err != nil {
		n.t.Fatalf("no notification: %v", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(buf[:k])), "\n") {
		name, val, _ := strings.Cut(line, "=")
		out[name] = val
	}
	return out
}

// expect reads the next datagram and checks it holds want (key: value, or
// key: "*" for any value) and a STATUS containing status.
func (n *notifySocket) expect(what string, want map[string]string, status string) {
	n.t.Helper()
	got := n.next()
	for k, v := range want {
		if g, ok := got[k]; !ok || (v != "*" && g != v) {
			n.t.Fatalf("%s: got %v, want %s=%s", what, got, k, v)
		}
	}
	if !strings.Contains(got["STATUS"], status) {
		n.t.Fatalf("%s: STATUS %q does not contain %q", what, got["STATUS"], status)
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSystemdNotifyReload runs `psagate serve` as systemd would with
// Type=notify, and `psagate reload` as its ExecReload: READY=1 once up;
// RELOADING=1 then READY=1 around each reload; a refused reload makes
// `psagate reload` exit 1 and says so in STATUS; STOPPING=1 at the end.
func TestSystemdNotifyReload(t *testing.T) {
	sock := newNotifySocket(t)
	cfg := writeConfig(t, "", "")
	good, _ := os.ReadFile(cfg)
	good = []byte(strings.Replace(string(good), "[http]\nlisten = \"\"", "[http]\nlisten = \""+freePort(t)+"\"", 1))
	if err := os.WriteFile(cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), "PSAGATE_TEST_MAIN=1", "NOTIFY_SOCKET="+sock.path)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	}()

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", logs.String())
		}
	})
	sock.expect("start", map[string]string{"READY": "1"}, "serving SMTP on 127.0.0.1:")

	// ExecReload with a good config: exit 0, RELOADING=1 then READY=1.
	if code, out, errs := runCLI("reload", "-config", cfg); code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("reload: exit %d %q %q", code, out, errs)
	}
	sock.expect("reload", map[string]string{"RELOADING": "1", "MONOTONIC_USEC": "*"}, "reloading")
	sock.expect("reloaded", map[string]string{"READY": "1"}, "serving SMTP")

	// A config the gateway refuses: exit 1 naming the problem, and the
	// STATUS systemctl shows says so.
	bad := strings.Replace(string(good), "[smtp]\n", "[smtp]\nmax_recipients = \"many\"\n", 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI("reload", "-config", cfg)
	if code != 1 || !strings.Contains(errs, "reload refused") || !strings.Contains(errs, "max_recipients") {
		t.Fatalf("refused reload: exit %d, stderr %q", code, errs)
	}
	sock.expect("refused reload", map[string]string{"RELOADING": "1"}, "reloading")
	sock.expect("refused reload", map[string]string{"READY": "1"}, "reload refused")

	// Plain SIGHUP (and `psagate reload -pid` when the admin API is off):
	// the same notifications.
	if err := os.WriteFile(cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	// A config whose admin socket nobody serves: reload falls back to the signal.
	other := filepath.Join(t.TempDir(), "nosocket.toml")
	noSocket := strings.Replace(string(good), "[http]\n", "[http]\nadmin_socket = \""+filepath.Join(filepath.Dir(other), "none.sock")+"\"\n", 1)
	if err := os.WriteFile(other, []byte(noSocket), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI("reload", "-config", other, "-pid", fmt.Sprint(cmd.Process.Pid)); code != 0 || !strings.Contains(out, "SIGHUP sent") {
		t.Fatalf("reload -pid: exit %d %q %q", code, out, errs)
	}
	sock.expect("SIGHUP", map[string]string{"RELOADING": "1"}, "reloading")
	sock.expect("SIGHUP", map[string]string{"READY": "1"}, "serving SMTP")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sock.expect("stop", map[string]string{"STOPPING": "1"}, "stopping")
	if err := <-done; err != nil {
		t.Fatalf("serve exited with %v\n%s", err, logs.String())
	}
}

// Every command run() dispatches has a commandDoc, so it is in the usage,
// the completions and the man page.
func TestEveryCommandIsDocumented(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	body := string(src)
	body = body[strings.Index(body, "func run("):]
	body = body[:strings.Index(body, "\n}\n")]
	cases := regexp.MustCompile(`case ((?:"[a-z-]+"(?:, )?)+):`).FindAllStringSubmatch(body, -1)
	if len(cases) < 10 {
		t.Fatalf("found only %d cases in run(): the pattern no longer fits main.go", len(cases))
	}
	tops := topLevel()
	for _, c := range cases {
		name := strings.Trim(strings.Split(c[1], ",")[0], `"`)
		if !slices.Contains(tops, name) {
			t.Errorf("command %q has no entry in commandDocs (commands.go): add one", name)
		}
	}
}
