package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// IMAP is an [[imap]] source: a mailbox psagate reads alerts from, each
// mail going through the same pipeline as one received over SMTP.
type IMAP struct {
	Name string `toml:"name"` // unique; names its UID mark in the state
	// Host is the IMAP server (outlook.office365.com, imap.gmail.com, ...).
	Host string `toml:"host"`
	Port int    `toml:"port"` // default 993 with tls, 143 otherwise
	TLS  string `toml:"tls"`  // tls (default) | starttls | none (loopback only)
	// User logs in (IMAP LOGIN), e.g. the mailbox address.
	User string `toml:"user"`
	// Password is the login's secret: "env:NAME", "file:/path" or a literal.
	Password Secret `toml:"password"`
	Folder   string `toml:"folder"`  // default INBOX
	MoveTo   string `toml:"move_to"` // folder for handled mail; "" = flag \Seen and leave it
	// Rcpt is the envelope recipient given to the rules and the client
	// routing (default: the mail's To and Cc addresses).
	Rcpt string `toml:"rcpt"`
	// PollInterval is how often the folder is checked when the server
	// offers no IDLE, and how often IDLE is renewed (default 1m).
	PollInterval Duration `toml:"poll_interval"`
	// Timeout bounds each connection attempt and command (default 30s).
	Timeout Duration `toml:"timeout"`
}

// Addr is host:port.
func (m *IMAP) Addr() string { return net.JoinHostPort(m.Host, fmt.Sprint(m.Port)) }

func (l *loader) imap(list []IMAP) {
	names := map[string]bool{}
	for i := range list {
		m := &list[i]
		base := fmt.Sprintf("imap[%d]", i)
		m.Name = strings.TrimSpace(m.Name)
		switch {
		case m.Name == "":
			l.errf(base, "[[imap]] without a name (it names the source's place in the state database)")
		case names[strings.ToLower(m.Name)]:
			l.errf(base+".name", "imap source %q is defined twice", m.Name)
		}
		names[strings.ToLower(m.Name)] = true
		if m.Host == "" {
			l.errf(base, "imap source %q has no host", m.Name)
		}
		switch m.TLS {
		case "":
			m.TLS = "tls"
		case "tls", "starttls":
		case "none":
			if ip := net.ParseIP(m.Host); m.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				l.errf(base+".tls", "tls = \"none\" sends the password in clear text: only for a server on loopback, not %q", m.Host)
			}
		default:
			l.errf(base+".tls", "must be \"tls\", \"starttls\" or \"none\", not %q", m.TLS)
		}
		if m.Port == 0 {
			m.Port = 143
			if m.TLS == "tls" {
				m.Port = 993
			}
		} else if m.Port < 0 || m.Port > 65535 {
			l.errf(base+".port", "%d is not a port", m.Port)
		}
		if m.User == "" {
			l.errf(base, "imap source %q has no user", m.Name)
		}
		if m.Folder == "" {
			m.Folder = "INBOX"
		}
		if strings.EqualFold(m.MoveTo, m.Folder) {
			l.errf(base+".move_to", "move_to is the folder read: handled mail would be read again")
		}
		if m.Rcpt != "" && !strings.Contains(m.Rcpt, "@") {
			l.errf(base+".rcpt", "%q is not an address", m.Rcpt)
		}
		m.Rcpt = strings.ToLower(strings.TrimSpace(m.Rcpt))
		defDur(&m.PollInterval, time.Minute)
		defDur(&m.Timeout, 30*time.Second)
		l.password(base+".password", fmt.Sprintf("imap source %q", m.Name), &m.Password)
	}
}
