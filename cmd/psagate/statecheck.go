package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"psagate/internal/config"
	"psagate/internal/store"
)

// cmdState runs `psagate state check`: the check the server runs on its
// state file at start, offline, on the configured file or on any other
// (a backup before it is restored).
func cmdState(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: psagate state check -config FILE | -file STATE.db")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	fs := newFlagSet("state check", stderr)
	cfgPath := fs.String("config", "", "config file: check its [state] path")
	file := fs.String("file", "", "check this database file instead (e.g. a backup before restoring it)")
	if err := parseFlags(fs, nil, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 || (*cfgPath == "") == (*file == "") {
		fmt.Fprintln(stderr, "usage: psagate state check -config FILE | -file STATE.db")
		return errUsage
	}
	path := *file
	if path == "" {
		cfg, err := config.LoadWithoutSecrets(*cfgPath)
		if err != nil {
			return err
		}
		path = cfg.State.Path
	}
	err := store.Check(path, 300*time.Millisecond)
	switch {
	case errors.Is(err, store.ErrLocked):
		return fmt.Errorf("%w.\n  The server checked it when it started. To check what it holds now, check a backup:\n"+
			"  curl -fsS --unix-socket /var/lib/psagate/psagate-admin.sock http://psagate/admin/backup > /tmp/psagate-check.db\n"+
			"  psagate state check -file /tmp/psagate-check.db", err)
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "OK: %s is a sound psagate state file\n", path)
	return nil
}
