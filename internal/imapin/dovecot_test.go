package imapin

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap"
	"github.com/emersion/go-imap/client"

	"psagate/internal/config"
	"psagate/internal/gateway"
	"psagate/internal/store"
)

// startDovecot runs the Debian dovecot-imapd binary in the foreground on a
// free loopback port, with its whole state in a temporary directory, one
// user (static passdb) and Maildir storage. It skips the test, saying why,
// when Dovecot is not installed.
func startDovecot(t *testing.T) (addr, user, pass string) {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/dovecot"); err2 != nil {
			t.Skip("dovecot is not installed (Debian package dovecot-imapd): skipping the test against a real IMAP server")
		}
		bin = "/usr/sbin/dovecot"
	}
	// Mail processes run as nobody, so the directory must be reachable by
	// it (t.TempDir is private to this user).
	dir, err := os.MkdirTemp("", "psagate-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"run", "state", "mail"} {
		os.MkdirAll(filepath.Join(dir, d), 0o777)
	}
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Join(dir, "mail"), 0o777)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 65534, 65534 // Dovecot refuses to run a mail process as root
	}
	conf := fmt.Sprintf(`protocols = imap
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:%[1]s/mail/%%u
first_valid_uid = 1
passdb {
  driver = static
  args = password=alerts-secret
}
userdb {
  driver = static
  args = uid=%[2]d gid=%[3]d home=%[1]s/mail/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[4]d
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
}
`, dir, uid, gid, port)
	cfgPath := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(cfgPath, []byte(conf), 0o644)
	cmd := exec.Command(bin, "-F", "-c", cfgPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot exited at start:\n%s%s", out.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot did not listen within 10s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, "alerts", "alerts-secret"
}

// TestDovecot reads a real Dovecot mailbox: the mails already there are
// accepted and moved (Dovecot has MOVE), and a mail appended while the
// intake waits is taken at once through IDLE, long before the poll
// interval (an hour) would have found it.
func TestDovecot(t *testing.T) {
	addr, user, pass := startDovecot(t)
	c, err := client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Logout()
	if err := c.Login(user, pass); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Append("INBOX", nil, time.Now(), bytes.NewReader(alertMail(i))); err != nil {
			t.Fatal(err)
		}
	}

	f := &fixture{reply: func(int) gateway.Reply { return gateway.Reply{Code: 250, Text: "Queued"} }}
	f.db, err = store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.db.Close()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	cfg, err := config.Parse("t.toml", []byte("[smtp]\naccept_domains = [\"a.example\"]\n[[imap]]\nname = \"x\"\nhost = \"127.0.0.1\"\ntls = \"none\"\nuser = \"u\"\npassword = \""+pass+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	f.src = config.IMAP{Name: "dovecot", Host: host, Port: p, TLS: "none", User: user, Password: cfg.IMAP[0].Password,
		Folder: "INBOX", MoveTo: "Processed", PollInterval: config.Duration(time.Hour), Timeout: config.Duration(5 * time.Second)}

	appended := false
	f.run(t, func() bool {
		n := f.count()
		if n == 3 && !appended {
			appended = true
			if err := c.Append("INBOX", nil, time.Now(), bytes.NewReader(alertMail(3))); err != nil {
				t.Error(err)
			}
		}
		if n < 4 {
			return false
		}
		// Accepted is not yet moved: the move follows the gateway's answer,
		// so wait for the server to show it (the assertion below would
		// otherwise race the fourth move).
		st, err := c.Status("Processed", []imap.StatusItem{imap.StatusMessages})
		return err == nil && st.Messages == 4
	})
	st, err := c.Status("Processed", []imap.StatusItem{imap.StatusMessages})
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := c.Status("INBOX", []imap.StatusItem{imap.StatusMessages})
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 4 || inbox.Messages != 0 {
		t.Errorf("Processed has %d, INBOX %d; want 4 and 0", st.Messages, inbox.Messages)
	}
}
