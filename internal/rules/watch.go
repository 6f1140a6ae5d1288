package rules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Watch polls dir every interval (default 2s) and calls onChange after the
// set of rule files changes: a file added, removed or renamed, or its size,
// modification time or content changed. A change is reported once it has
// been seen unchanged on two polls in a row, so a file an editor is still
// writing is not loaded half-written and then again. Watch returns when ctx
// ends. onChange runs on Watch's goroutine; a slow reload delays the next
// poll, it does not overlap with it.
//
// Polling rather than inotify: it works the same on every platform, on
// network file systems and with the symlink swaps of a Kubernetes ConfigMap,
// and a few small files every few seconds cost nothing.
func Watch(ctx context.Context, dir string, interval time.Duration, onChange func()) {
	watch(ctx, dir, interval, onChange, nil)
}

// watch is Watch with a hook called once the starting state is recorded,
// so tests can change files knowing the change will be seen.
func watch(ctx context.Context, dir string, interval time.Duration, onChange func(), ready func()) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	db := debouncer{last: fingerprint(dir)}
	if ready != nil {
		ready()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if db.observe(fingerprint(dir)) {
			onChange()
		}
	}
}

// debouncer decides when a changed fingerprint is stable enough to report.
type debouncer struct {
	last    string // what was last reported (or the start)
	pending string // a change seen once, waiting for a second look
}

// observe takes the fingerprint of one poll and reports whether to call
// onChange now.
func (d *debouncer) observe(fp string) bool {
	switch {
	case fp == d.last:
		d.pending = "" // changed and changed back: nothing to do
		return false
	case fp != d.pending:
		d.pending = fp
		return false
	}
	d.last, d.pending = fp, ""
	return true
}

// fingerprint summarises the rule files of dir: names, sizes, modification
// times and a hash of each content. An unreadable directory has a
// fingerprint too, so that its reappearance is a change.
func fingerprint(dir string) string {
	names, err := ruleFiles(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	h := sha256.New()
	for _, n := range names {
		p := filepath.Join(dir, n)
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(h, "%s\x00error %v\x00", n, err)
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(h, "%s\x00error %v\x00", n, err)
			continue
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%x\x00", n, fi.Size(), fi.ModTime().UnixNano(), sum)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// GuardCount refuses a rule set that looks like a half-finished deploy
// rather than an admin's intent: no rules at all, or (on a reload, prev >
// 0) fewer than half the rules of the active set. A non-atomic copy
// (rm rules/*; cp new/* rules/) is seen by Watch between its two steps,
// and an empty set would ticket or drop every mail by the default action.
// allowEmpty (the config's [rules] allow_empty) lets both through.
func GuardCount(dir string, n, prev int, allowEmpty bool) error {
	switch {
	case allowEmpty:
		return nil
	case n == 0:
		return fmt.Errorf("rules.dir %s: no rules loaded (an emptied directory or a half-finished deploy?); refusing an empty rule set: "+
			"set [rules] allow_empty = true to run without rules", dir)
	case prev > 0 && n*2 < prev:
		return fmt.Errorf("rules.dir %s: the new rule set has %d rules, less than half of the %d active ones (a half-finished deploy?); "+
			"refusing it and keeping the active rules: finish the deploy, or set [rules] allow_empty = true (or restart) if the cut is intended",
			dir, n, prev)
	}
	return nil
}
