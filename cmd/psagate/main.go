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
		fmt.Fprint(stderr, usageText())
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
	case "reload":
		err = cmdReload(args[1:], stdout, stderr)
	case "healthcheck":
		err = cmdHealthcheck(args[1:], stdout, stderr)
	case "state":
		err = cmdState(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		err = cmdVersion(args[1:], stdout, stderr)
	case "completion":
		err = cmdCompletion(args[1:], stdout, stderr)
	case "man":
		err = cmdMan(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText())
		return 0
	default:
		fmt.Fprintf(stderr, "psagate: unknown command %q\n\n%s", args[0], usageText())
		return 2
	}
	if err == nil || errors.Is(err, flag.ErrHelp) || errors.Is(err, errFlagsDumped) {
		return 0 // -h asked for the usage: that is no failure
	}
	if errors.Is(err, errUsage) {
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

// errFlagsDumped ends a command that was asked for its flags (dumpFlags).
var errFlagsDumped = errors.New("flags dumped")

// newFlagSet makes a FlagSet whose -h prints the command's synopsis,
// summary and flags.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("psagate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		d := docOf(name)
		fmt.Fprintf(fs.Output(), "Usage: psagate %s %s\n\n%s\n\nFlags:\n", name, d.args, d.summary)
		fs.PrintDefaults()
	}
	return fs
}

// newFlags makes a FlagSet with the -config flag every command has.
func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := newFlagSet(name, stderr)
	cfg := fs.String("config", "", "config file (required)")
	return fs, cfg
}

// parseFlags parses args; cfg, when not nil, must then be set.
func parseFlags(fs *flag.FlagSet, cfg *string, args []string) error {
	if len(args) > 0 && args[0] == dumpFlags {
		writeFlagDump(fs.Output(), fs)
		return errFlagsDumped
	}
	if err := fs.Parse(interleave(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	if cfg != nil && *cfg == "" {
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
