package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"

	atfake "psagate/internal/psa/autotask/fake"
	cwfake "psagate/internal/psa/connectwise/fake"
)

// psa test checks every effective scope: a status that only a device
// override sets, and that its board lacks, is found before the first alert.
func TestPSATestChecksEveryScope(t *testing.T) {
	fk := cwfake.Start(cwfake.DefaultConfig())
	defer fk.Close()
	org := fk.Settings()
	org["connectwise.company"] = "PVC01"
	device := "[[client.device]]\nname = \"PVC-VAULT-01\"\n[client.device.psa]\nconnectwise.board = \"Vault Alerts\"\nconnectwise.status = \"In Progress\"\n"
	cfg := writeConfig(t, psaSection(org), device)
	code, out, stderr := runCLI("psa", "test", "-config", cfg)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, stderr)
	}
	for _, want := range []string{
		"Testing connectwise (organisation settings)",
		"Testing connectwise (client pinecrest): the same settings as organisation settings: OK",
		"Testing connectwise (client pinecrest, device PVC-VAULT-01)",
		`connectwise.status "In Progress"`,
		"3 scope(s) tested, 1 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "client pinecrest, device PVC-VAULT-01") {
		t.Errorf("stderr does not name the failing scope: %s", stderr)
	}
	// -client limits the run to that client and its devices.
	code, out, _ = runCLI("psa", "test", "-config", cfg, "-client", "pinecrest", "-device", "PVC-VAULT-01")
	if code != 1 || strings.Contains(out, "organisation settings") {
		t.Errorf("-device: exit %d\n%s", code, out)
	}
}

func TestPSATestLiveAutotask(t *testing.T) {
	for _, ro := range []bool{false, true} {
		c := atfake.DefaultConfig()
		c.ReadOnly = ro
		fk := atfake.Start(c)
		defer fk.Close()
		code, out, stderr := runCLI("psa", "test", "-live", "-config", writeConfig(t, psaSection(fk.Settings()), ""))
		if ro {
			if code != 1 || !strings.Contains(out, "create: FAILED") || !strings.Contains(out, "security level") ||
				!strings.Contains(stderr, "live test failed at create") || len(fk.Tickets()) != 0 {
				t.Errorf("read-only user: exit %d\n%s%s", code, out, stderr)
			}
			continue
		}
		if code != 0 || !strings.Contains(out, "Live test succeeded") {
			t.Fatalf("exit %d\n%s%s", code, out, stderr)
		}
		tks := fk.Tickets()
		if len(tks) != 1 || !strings.Contains(tks[0].Title, "psagate connection test") || tks[0].Status != 5 ||
			len(tks[0].Attachments) != 1 || len(tks[0].Notes) != 2 || tks[0].DueDateTime.IsZero() {
			t.Errorf("tickets = %+v", tks)
		}
	}
}

func TestPSATestLiveConnectWise(t *testing.T) {
	for _, ro := range []bool{false, true} {
		c := cwfake.DefaultConfig()
		c.ReadOnlyMember = ro
		fk := cwfake.Start(c)
		defer fk.Close()
		s := fk.Settings()
		s["connectwise.company"] = "PVC01"
		code, out, stderr := runCLI("psa", "test", "-live", "-config", writeConfig(t, psaSection(s), ""))
		if ro {
			if code != 1 || !strings.Contains(out, "create: FAILED") || !strings.Contains(out, "security role") || len(fk.Tickets()) != 0 {
				t.Errorf("read-only member: exit %d\n%s%s", code, out, stderr)
			}
			continue
		}
		if code != 0 || !strings.Contains(out, "Live test succeeded") {
			t.Fatalf("exit %d\n%s%s", code, out, stderr)
		}
		tks := fk.Tickets()
		if len(tks) != 1 || !tks[0].ClosedFlag || len(tks[0].Documents) != 1 {
			t.Errorf("tickets = %+v", tks)
		}
	}
}

// psa fake prints a config that works: psa test against it succeeds.
func TestPSAFakeRehearsal(t *testing.T) {
	for _, which := range []string{"autotask", "connectwise"} {
		t.Run(which, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			old := interrupted
			interrupted = func() (context.Context, context.CancelFunc) { return ctx, cancel }
			defer func() { interrupted = old }()
			pr, pw := io.Pipe()
			done := make(chan int, 1)
			go func() {
				done <- run([]string{"psa", "fake", which, "-listen", "127.0.0.1:0"}, pw, io.Discard)
				pw.Close()
			}()
			// Read the snippet up to its last line, then stop reading into
			// a discarding copy so the fake never blocks on the pipe.
			sc := bufio.NewScanner(pr)
			var snippet strings.Builder
			for sc.Scan() && sc.Text() != "# end of config" {
				snippet.WriteString(sc.Text() + "\n")
			}
			go io.Copy(io.Discard, pr) // the fake's last line must not block on the pipe
			text := snippet.String()
			code, out, stderr := runCLI("psa", "test", "-config", writeConfig(t, text, ""))
			if code != 0 || !strings.Contains(out, "Connection Succeeded") {
				t.Errorf("psa test against the printed config: exit %d\n%s\n%s%s", code, text, out, stderr)
			}
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("psa fake exit %d", code)
			}
		})
	}
}
