package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"strings"
)

// commandDoc describes one command for the usage text, -h, the shell
// completions and the man page. The flags themselves are not repeated here:
// they are read from the command's own FlagSet (see flagsOf), so what the
// completions and the man page offer is what the command accepts.
type commandDoc struct {
	name    string   // "serve", "psa test"
	args    string   // the synopsis after the name
	summary string   // one line
	words   []string // positional words a shell may complete
	noFlags bool     // takes no flags (version output, completion scripts)
}

var commandDocs = []commandDoc{
	{name: "serve", args: "-config FILE [-fresh-state]", summary: "run the gateway (SIGHUP or `psagate reload` reloads config and rules); -fresh-state sets a damaged state file aside and starts empty"},
	{name: "check", args: "-config FILE", summary: "validate the config and every rule file"},
	{name: "try", args: "-config FILE [-json] [-explain] [-summary] [-rules DIR] [-state DB] [-from ADDR] [-rcpt ADDR] MAIL...", summary: "dry run: what the gateway would do with these messages (.eml files, mbox files, Maildir directories)"},
	{name: "psa test", args: "-config FILE [-client NAME] [-live]", summary: `test the PSA connection ("Test It") for the org, every client and device override; -live also writes a test ticket`},
	{name: "psa lookup", args: "-config FILE [-client NAME] WHAT", summary: "list PSA values (boards, statuses, types, subtypes, priorities, companies, contacts / queues, issue_types, ...)"},
	{name: "psa fake", args: "NAME [-listen ADDR]", summary: "run a fake PSA and print the config for it (rehearsal)"}, // NAME and words: from the registry, in init
	{name: "clients", args: "-config FILE [NAME]", summary: "effective PSA settings per client and where each came from, and the recent mail that went to the default client"},
	{name: "clients import", args: "-config FILE [-match-domain]", summary: "write a [[client]] for each PSA company not yet mapped (into the [clients] dir; never changes an existing client)"},
	{name: "queue", args: "-config FILE list|retry ID|retry-dead|drop ID", summary: "the outbox and its dead letters", words: []string{"list", "retry", "retry-dead", "drop"}},
	{name: "incidents", args: "-config FILE [list] [-open] [-json] | close ID [-note TEXT] [-psa] | forget ID | show ID", summary: "incidents and their tickets; close, forget or trace one", words: []string{"list", "close", "forget", "show"}},
	{name: "silence", args: "-config FILE add -client C [-device D] [-rule R] -for 4h -comment TEXT | list | expire ID", summary: "maintenance windows: decided and audited, no PSA call", words: []string{"add", "list", "expire"}},
	{name: "quarantine", args: "-config FILE list | show ID | release ID [-as ticket] | delete ID", summary: "quarantined mail", words: []string{"list", "show", "release", "delete"}},
	{name: "audit", args: "-config FILE [-id ID] [-from S] [-subject S] [-device S] [-decision D] [-since DUR] [-n N] [-json]", summary: "why was this mail dropped? recent decisions, newest first"},
	{name: "state check", args: "-config FILE | -file DB", summary: "check the state file (or a backup) for damage, offline: what serve checks at start"},
	{name: "reload", args: "-config FILE [-pid PID]", summary: "reload a running gateway through its admin socket and wait for the answer; exit 1 if it refused the new config (systemd's ExecReload)"},
	{name: "healthcheck", args: "[-config FILE | -url URL] [-timeout DUR]", summary: "exit 0 if the gateway's /healthz answers 200 (a container HEALTHCHECK; no curl needed)"},
	{name: "version", args: "[-json]", summary: "the version, VCS revision and Go version of this binary"},
	{name: "completion", args: "bash|zsh|fish", summary: "print a shell completion script", words: []string{"bash", "zsh", "fish"}, noFlags: true},
	{name: "man", args: "", summary: "print the manual page (roff); `psagate man | man -l -`", noFlags: true},
}

// usageText is what `psagate help` prints.
func usageText() string {
	var b strings.Builder
	b.WriteString("psagate: email-to-PSA filtering gateway\n\nUsage:\n")
	const col = 46
	for _, c := range commandDocs {
		head := "  psagate " + c.name
		if c.args != "" {
			head += " " + c.args
		}
		if len(head) < col {
			fmt.Fprintf(&b, "%-*s%s\n", col, head, c.summary)
		} else {
			fmt.Fprintf(&b, "%s\n%*s%s\n", head, col, "", c.summary)
		}
	}
	b.WriteString("\nRun \"psagate COMMAND -h\" for the flags of a command.\n")
	return b.String()
}

func docOf(name string) commandDoc {
	for _, c := range commandDocs {
		if c.name == name {
			return c
		}
	}
	return commandDoc{name: name}
}

// dumpFlags is an argument no shell can pass (argv strings end at a NUL):
// a command given it as its first argument writes its flags in a
// machine-readable form instead of running (see parseFlags).
const dumpFlags = "\x00flags"

// flagInfo is one flag of a command.
type flagInfo struct {
	name, usage string
	isBool      bool
	def         string
}

// flagsOf asks the command for its flags.
func flagsOf(name string) []flagInfo {
	if docOf(name).noFlags {
		return nil
	}
	var buf bytes.Buffer
	run(append(strings.Fields(name), dumpFlags), io.Discard, &buf)
	var out []flagInfo
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 4)
		if len(f) == 4 {
			out = append(out, flagInfo{name: f[0], isBool: f[1] == "bool", def: f[2], usage: f[3]})
		}
	}
	return out
}

func writeFlagDump(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		kind := "value"
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			kind = "bool"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Name, kind, f.DefValue, strings.ReplaceAll(f.Usage, "\n", " "))
	})
}

// fileFlags take a path, so shells complete file names after them.
var fileFlags = map[string]bool{"config": true, "state": true}

// errHelp is what a command returns after printing its own -h text.
func errHelp() error { return flag.ErrHelp }

// The PSAs that ship a fake are the registry's to say.
func init() {
	for i := range commandDocs {
		if commandDocs[i].name == "psa fake" {
			commandDocs[i].args = strings.Join(fakeNames(), "|") + " [-listen ADDR]"
			commandDocs[i].words = fakeNames()
		}
	}
}
