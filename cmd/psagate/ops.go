package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"psagate/internal/app"
	"psagate/internal/config"
	"psagate/internal/version"
)

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := parseFlags(fs, nil, args); err != nil {
		return err
	}
	v := version.Get()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"version": v.Version, "revision": v.Revision, "time": v.Time, "dirty": v.Dirty, "goversion": v.GoVersion,
		})
	}
	fmt.Fprintln(stdout, v.String())
	return nil
}

// cmdReload is systemd's ExecReload: it asks the running gateway to reload
// and waits for the answer, so `systemctl reload` fails when the new config
// is refused (a bare `kill -HUP` always succeeds). It goes through the
// admin socket; when that does not answer and -pid is given, it validates
// the config the way the gateway will and sends SIGHUP.
func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlags("reload", stderr)
	pid := fs.Int("pid", 0, "the gateway's process ID ($MAINPID): signal it if the admin socket does not answer")
	timeout := fs.Duration("timeout", 60*time.Second, "give up waiting for the gateway after this long")
	if err := parseFlags(fs, cfgPath, args); err != nil {
		return err
	}
	// A config with problems is still read as far as it goes: the running
	// gateway is asked all the same, so that its refusal shows where an
	// operator looks (systemctl status, the log, the reload metric).
	cfg, err := config.LoadPartial(*cfgPath)
	if cfg == nil {
		return &exitError{code: 1, err: fmt.Errorf("reload refused, the running config stays active: %w", err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", app.AdminURL("/admin/reload"), nil)
	if err != nil {
		return err
	}
	resp, err := app.AdminClient(cfg.HTTP.AdminSocket, *timeout).Do(req)
	if err != nil {
		if *pid <= 0 {
			return fmt.Errorf("the admin socket %s did not answer (is psagate running? as this user?): %w", cfg.HTTP.AdminSocket, err)
		}
		return reloadBySignal(*cfgPath, *pid, stdout)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	msg := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusOK:
		fmt.Fprintln(stdout, msg)
		return nil
	case http.StatusUnprocessableEntity:
		return &exitError{code: 1, err: fmt.Errorf("reload refused, the running config stays active:\n%s", msg)}
	}
	return fmt.Errorf("admin API: %s: %s", resp.Status, msg)
}

// reloadBySignal validates the config as the gateway will, then sends
// SIGHUP either way (so the gateway's status and metric show a refusal
// too), and fails when the config did not validate.
func reloadBySignal(cfgPath string, pid int, stdout io.Writer) error {
	_, verr := app.LoadSnapshot(cfgPath)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling process %d: %w", pid, err)
	}
	if verr != nil {
		return &exitError{code: 1, err: fmt.Errorf("reload refused, the running config stays active: %w", verr)}
	}
	fmt.Fprintln(stdout, "config valid; SIGHUP sent to", pid)
	return nil
}

// cmdHealthcheck is a container HEALTHCHECK for images without curl.
func cmdHealthcheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", stderr)
	cfgPath := fs.String("config", "", "take the address from this config's [http] listen")
	url := fs.String("url", "", "the URL to ask (default http://127.0.0.1:9725/healthz, [http] listen's default)")
	timeout := fs.Duration("timeout", 5*time.Second, "fail after this long")
	if err := parseFlags(fs, nil, args); err != nil {
		return err
	}
	u := *url
	switch {
	case u != "" && *cfgPath != "":
		fmt.Fprintln(stderr, "psagate healthcheck: give -config or -url, not both")
		return errUsage
	case u == "" && *cfgPath != "":
		cfg, err := config.LoadWithoutSecrets(*cfgPath)
		if err != nil {
			return err
		}
		if cfg.HTTP.Listen == "" {
			return fmt.Errorf("%s: [http] listen is off, so there is no /healthz to ask", cfg.File)
		}
		u = "http://" + dialable(cfg.HTTP.Listen) + "/healthz"
	case u == "":
		u = "http://" + config.DefaultHTTPListen + "/healthz"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s answered %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(stdout, "healthy:", u)
	return nil
}

// dialable turns a listen address into one a client can connect to: an
// unspecified host (":9725", "0.0.0.0:9725", "[::]:9725") means this host.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}
