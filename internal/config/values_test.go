package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// limitCases has one bad value for every count, size and duration key.
// TestLimitCasesCoverEveryKey keeps it complete.
var limitCases = []struct {
	section, key, value, msg string
}{
	{"smtp", "max_message_bytes", "-5", "must be at least 1024, not -5 (leave it out for the default, 26214400)"},
	{"smtp", "max_message_bytes", "100", "must be at least 1024, not 100 (leave it out for the default, 26214400)"},
	{"smtp", "max_recipients", "-1", "must be at least 1, not -1 (leave it out for the default, 50)"},
	{"smtp", "max_sessions", "-5", "must be at least 1, not -5 (leave it out for the default, 200)"},
	{"smtp", "max_sessions_per_ip", "-1", "must be at least 1, not -1 (leave it out for the default, 40)"},
	{"smtp", "max_connections_per_minute_per_ip", "-1", "must be at least 0, not -1 (leave it out for the default, 0)"},
	{"smtp", "max_commands", "-1", "must be at least 1, not -1 (leave it out for the default, 100)"},
	{"smtp", "max_auth_failures", "-1", "must be at least 1, not -1 (leave it out for the default, 5)"},
	{"smtp", "max_line_length", "-1", "must be at least 1, not -1 (leave it out for the default, 65536)"},
	{"smtp", "max_headers", "-1", "must be at least 1, not -1 (leave it out for the default, 500)"},
	{"smtp", "max_mime_parts", "-1", "must be at least 1, not -1 (leave it out for the default, 100)"},
	{"smtp", "max_mime_depth", "-1", "must be at least 1, not -1 (leave it out for the default, 10)"},
	{"smtp", "max_idle_commands", "-1", "must be at least 1, not -1 (leave it out for the default, 10)"},
	{"smtp", "max_hops", "-1", "must be at least 1, not -1 (leave it out for the default, 50)"},
	{"smtp", "max_inflight_bytes", "1000", "must be at least 1048576, not 1000 (leave it out for the default, 268435456)"},
	{"smtp", "max_inflight_bytes", "2097152", "2097152 is less than max_message_bytes (26214400): a message of the allowed size could never be taken"},
	{"smtp", "reserved_sessions", "200", "must be between 0 and max_sessions - 1 (199), not 200"},
	{"smtp", "reserved_sessions", "-1", "must be between 0 and max_sessions - 1 (199), not -1"},
	{"smtp", "mail_timeout", `"-20s"`, `duration "-20s" is negative`},
	{"smtp", "read_timeout", `"-5s"`, `duration "-5s" is negative`},
	{"smtp", "write_timeout", `"-5s"`, `duration "-5s" is negative`},
	{"smtp", "data_timeout", `"-1m"`, `duration "-1m" is negative`},
	{"smtp", "auth_failure_pause", `"-1m"`, `duration "-1m" is negative`},
	{"smtp", "shutdown_timeout", `"-1s"`, `duration "-1s" is negative`},
	{"smtp", "session_timeout", `"-1h"`, `duration "-1h" is negative`},
	{"state", "audit_max", "-1", "must be at least 1, not -1 (leave it out for the default, 10000)"},
	{"state", "seen_ttl", `"-24h"`, `duration "-24h" is negative`},
	{"auth", "timeout", `"-1s"`, `duration "-1s" is negative`},
	{"imap", "port", "70000", "70000 is not a port"},
	{"imap", "poll_interval", `"-1m"`, `duration "-1m" is negative`},
	{"imap", "timeout", `"-1s"`, `duration "-1s" is negative`},
	{"auth", "cache_ttl", `"-5m"`, `duration "-5m" is negative`},
	{"rules", "watch_interval", `"-2s"`, `duration "-2s" is negative`},
	{"deliver", "max_age", `"-1h"`, `duration "-1h" is negative`},
	{"deliver", "backoff_min", `"-2s"`, `duration "-2s" is negative`},
	{"deliver", "backoff_max", `"-1s"`, `duration "-1s" is negative`},
	{"deliver", "probe_interval", `"-1m"`, `duration "-1m" is negative`},
	{"quarantine", "max_messages", "-1", "must be at least 1, not -1 (leave it out for the default, 10000)"},
	{"quarantine", "max_age", `"-1h"`, `duration "-1h" is negative`},
	{"incidents", "reconcile_every", `"-1m"`, `duration "-1m" is negative`},
	{"incidents", "reconcile_per_minute", "-1", "must be at least 1, not -1 (leave it out for the default, 30)"},
	{"incidents", "max_notes_per_hour", "-1", "must be at least 1, not -1 (leave it out for the default, 4)"},
	{"deliver", "attach_max_bytes", "-1", "must be at least 1, not -1 (leave it out for the default, 10485760)"},
	{"deliver.connectwise", "concurrency", "-1", "must be at least 1, not -1 (leave it out for the default, 4)"},
	{"deliver.connectwise", "rate_per_minute", "-1", "must be a positive number of calls a minute, not -1 (leave it out for the default, 300 a minute)"},
	{"deliver.autotask", "concurrency", "-2", "must be at least 1, not -2 (leave it out for the default, 3)"},
	{"deliver.autotask", "rate_per_minute", "nan", "must be a positive number of calls a minute, not NaN (leave it out for the default, 60 a minute)"},
	{"deliver.log", "concurrency", "-1", "must be at least 1, not -1 (leave it out for the default, 16)"},
	{"deliver.connectwise", "attach_max_bytes", "-1", "must be at least 1, not -1 (leave it out for the default, 10485760)"},
	{"deliver.autotask", "attach_max_bytes", "-7", "must be at least 1, not -7 (leave it out for the default, 10485760)"},
	{"deliver.log", "attach_max_bytes", "-1", "must be at least 1, not -1 (leave it out for the default, 10485760)"},
	{"deliver.log", "rate_per_minute", "-0.5", "must be a positive number of calls a minute, not -0.5 (leave it out for the default, unlimited)"},
}

func TestLimitsRejectNegative(t *testing.T) {
	for _, c := range limitCases {
		name := c.section + "." + c.key
		t.Run(name+"="+c.value, func(t *testing.T) {
			doc := "[smtp]\naccept_domains = [\"a.example\"]\n"
			switch c.section {
			case "smtp":
			case "imap": // an array of tables, with the keys it needs
				doc += "[[imap]]\nname = \"m\"\nhost = \"mail.example\"\nuser = \"u\"\npassword = \"p\"\n"
			default:
				doc += "[" + c.section + "]\n"
			}
			line := strings.Count(doc, "\n") + 1
			doc += c.key + " = " + c.value + "\n"
			_, err := Parse("psagate.toml", []byte(doc))
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("err = %v, want one error", err)
			}
			if c.section == "imap" {
				name = "imap[0]." + c.key
			}
			if want := fmt.Sprintf("psagate.toml:%d: %s: %s", line, name, c.msg); es[0].Error() != want {
				t.Fatalf("error\n  %s\nwant\n  %s", es[0].Error(), want)
			}
		})
	}
}

// TestLimitsZeroMeansDefault: 0 has always meant "the default" for these
// keys, and configs in the field rely on it.
func TestLimitsZeroMeansDefault(t *testing.T) {
	cfg, err := Parse("c.toml", []byte(`[smtp]
accept_domains = ["a.example"]
max_sessions = 0
read_timeout = "0s"
[deliver.autotask]
concurrency = 0
rate_per_minute = 0
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP.MaxSessions != 200 || cfg.SMTP.ReadTimeout.D().Seconds() != 60 {
		t.Errorf("max_sessions %d read_timeout %v", cfg.SMTP.MaxSessions, cfg.SMTP.ReadTimeout.D())
	}
	if p := cfg.Deliver.Providers["autotask"]; p.Concurrency != 3 || p.RatePerMinute != 60 {
		t.Errorf("autotask limits %+v", p)
	}
}

// TestLimitCasesCoverEveryKey fails when a numeric or duration key is added
// to the config without a case above, i.e. without deciding its minimum.
func TestLimitCasesCoverEveryKey(t *testing.T) {
	covered := map[string]bool{}
	for _, c := range limitCases {
		covered[c.section+"."+c.key] = true
	}
	var walk func(reflect.Type, string)
	walk = func(rt reflect.Type, prefix string) {
		for f := range rt.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "-" || name == "" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			key := prefix + name
			switch {
			case ft == reflect.TypeFor[Duration](), ft.Kind() == reflect.Int, ft.Kind() == reflect.Int64, ft.Kind() == reflect.Float64:
				if !covered[key] {
					t.Errorf("%s has no case in limitCases", key)
				}
			case ft.Kind() == reflect.Struct:
				walk(ft, key+".")
			}
		}
	}
	walk(reflect.TypeFor[rawConfig](), "")
}

// TestEveryValueProblemAtOnce: values of the wrong type or form are each
// reported at their line, together with unknown keys and the checks that
// run after decoding, and none of them hides another.
func TestEveryValueProblemAtOnce(t *testing.T) {
	doc := `[smtp]
accept_domains = "a.example"
allowed_networks = ["10.0.0.0/8", 10]
max_sessions = "200"
read_timeout = "5q"
lisen = "x"
max_recipients = -1
require_tls = "yes"
[[smtp.user]]
name = "u"
password = ["hunter2secret"]
[deliver]
backoff_min = "10m"
backoff_max = "1m"
[rules]
dir = "myrules"
colour = "red"
[[client]]
name = "acme"
enabled = "no"
[[client]]
name = "ACME"
[log]
level = 3
`
	path := filepath.Join(t.TempDir(), "psagate.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadPartial(path)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v, want Errors", err)
	}
	want := []string{
		`:2: smtp.accept_domains: must be a list of strings, not "a.example"`,
		`:3: smtp.allowed_networks: must be a list of strings; 10 is not a string`,
		`:4: smtp.max_sessions: must be a whole number, not "200"`,
		`:5: smtp.read_timeout: "5q" is not a duration`,
		`:6: smtp.lisen: unknown key`,
		`:7: smtp.max_recipients: must be at least 1, not -1`,
		`:8: smtp.require_tls: must be true or false, not "yes"`,
		`:11: smtp.user[0].password: must be a string, not a list`,
		`:14: deliver.backoff_max: backoff_max (1m0s) is below backoff_min (10m0s)`,
		`:17: rules.colour: unknown key`,
		`:20: client[0].enabled: must be true or false, not "no"`,
		`:22: client[1].name: client "ACME" is defined twice (first at line 18)`,
		`:24: log.level: must be a string, not 3`,
	}
	got := err.Error()
	if len(es) != len(want) {
		t.Errorf("%d errors, want %d:\n%s", len(es), len(want), got)
	}
	for i, w := range want {
		if i >= len(es) || !strings.HasPrefix(es[i].Error(), path+w) {
			t.Errorf("error %d: want %s%s in:\n%s", i, path, w, got)
		}
	}
	if strings.Contains(got, "hunter2") {
		t.Errorf("a secret is in the errors:\n%s", got)
	}
	// The partial config keeps what was valid, for check to go on with.
	if cfg == nil || cfg.Rules.Dir != "myrules" || cfg.Deliver.BackoffMin.D().Minutes() != 10 {
		t.Fatalf("partial config = %+v", cfg)
	}
	// Load, for every other caller, returns no config at all.
	if cfg, err := Load(path); cfg != nil || err == nil {
		t.Fatalf("Load = %v, %v", cfg, err)
	}
}

// TestAcceptRecipientsClients: "clients" in smtp.accept_recipients stands
// for every client's recipients; listed addresses are lower-cased; a list
// that ends up empty is an error.
func TestAcceptRecipientsClients(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("[smtp]\naccept_domains = [\"a.example\"]\naccept_recipients = [\"clients\", \"Extra@A.example\"]\n"+
		"[[client]]\nname = \"x\"\nrecipients = [\"x@a.example\", \"x2@a.example\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.SMTP.AcceptRecipients, ","); got != "x@a.example,x2@a.example,extra@a.example" {
		t.Errorf("accept_recipients = %s", got)
	}
	if !cfg.SMTP.RecipientAllowed("<X2@a.example>") || cfg.SMTP.RecipientAllowed("y@a.example") {
		t.Error("RecipientAllowed disagrees with the list")
	}
	_, err = Parse("t.toml", []byte("[smtp]\naccept_domains = [\"a.example\"]\naccept_recipients = [\"clients\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "t.toml:3: smtp.accept_recipients: lists no address") {
		t.Errorf("empty list: %v", err)
	}
}
