// Command psagate is an email-to-PSA filtering gateway: an SMTP server for
// backup appliances' alert mail that drops the noise, and turns real
// problems into one ConnectWise Manage or Autotask ticket each, closed again
// by the recovery mail.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `psagate: email-to-PSA filtering gateway

Usage:
  psagate serve     -config FILE                run the gateway (SIGHUP reloads config and rules)
  psagate check     -config FILE                validate the config and every rule file
  psagate try       -config FILE [-json] [-explain] [-state DB] [-from ADDR] [-rcpt ADDR] MSG.eml...
                                                dry run: what the gateway would do with these messages
  psagate psa test  -config FILE [-client NAME] [-live]
                                                test the PSA connection ("Test It") for the org, every client
                                                and device override; -live also writes a test ticket
  psagate psa fake  connectwise|autotask [-listen ADDR]
                                                run a fake PSA and print the config for it (rehearsal)
  psagate psa lookup -config FILE [-client NAME] WHAT
                                                list PSA values (boards, statuses, types, subtypes, priorities,
                                                companies, contacts / queues, issue_types, ...)
  psagate clients   -config FILE [NAME]         effective PSA settings per client and where each came from,
                                                and the recent mail that went to the default client
  psagate clients import -config FILE [-match-domain]
                                                write a [[client]] for each PSA company not yet mapped
                                                (into the [clients] dir; never changes an existing client)
  psagate queue     -config FILE list|retry ID|retry-dead|drop ID
                                                the outbox and its dead letters
  psagate incidents -config FILE [list] [-open] [-json] | close ID [-note TEXT] [-psa] | forget ID | show ID
                                                incidents and their tickets; close, forget or trace one
  psagate silence   -config FILE add -client C [-device D] [-rule R] -for 4h -comment TEXT | list | expire ID
                                                maintenance windows: decided and audited, no PSA call
  psagate quarantine -config FILE list | show ID | release ID [-as ticket] | delete ID
                                                quarantined mail
  psagate audit     -config FILE [-id ID] [-from S] [-subject S] [-device S] [-decision D] [-since DUR] [-n N] [-json]
                                                why was this mail dropped? recent decisions, newest first
  psagate version

Run "psagate COMMAND -h" for the flags of a command.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage makes main exit 2 without printing more than the usage.
var errUsage = errors.New("usage")

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(args[1:], stdout, stderr)
	case "try":
		err = cmdTry(args[1:], stdout, stderr)
	case "psa":
		err = cmdPSA(args[1:], stdout, stderr)
	case "clients":
		if len(args) > 1 && args[1] == "import" {
			err = cmdClientsImport(args[2:], stdout, stderr)
		} else {
			err = cmdClients(args[1:], stdout, stderr)
		}
	case "queue":
		err = cmdQueue(args[1:], stdout, stderr)
	case "incidents":
		err = cmdIncidents(args[1:], stdout, stderr)
	case "audit":
		err = cmdAudit(args[1:], stdout, stderr)
	case "silence":
		err = cmdSilence(args[1:], stdout, stderr)
	case "quarantine":
		err = cmdQuarantine(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "psagate", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "psagate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "psagate:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "psagate:", err)
	return 1
}

// newFlags makes a FlagSet with the -config flag every command has.
func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("psagate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "config file (required)")
	return fs, cfg
}

func parseFlags(fs *flag.FlagSet, cfg *string, args []string) error {
	if err := fs.Parse(interleave(fs, args)); err != nil {
		return errUsage
	}
	if *cfg == "" {
		fmt.Fprintf(fs.Output(), "%s: -config FILE is required\n", fs.Name())
		fs.Usage()
		return errUsage
	}
	return nil
}

// interleave moves flags after positional arguments to the front, so
// "psagate try msg.eml -json" works as an admin would type it.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			name := a[1:]
			if len(name) > 0 && name[0] == '-' {
				name = name[1:]
			}
			hasValue := false
			for j := 0; j < len(name); j++ {
				if name[j] == '=' {
					hasValue = true
					name = name[:j]
					break
				}
			}
			if f := fs.Lookup(name); f != nil && !hasValue {
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
					if i+1 < len(args) {
						flags = append(flags, args[i+1])
						i++
					}
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}
