package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// What psaload knows about a process comes from Linux's /proc: resident
// memory, CPU time, and the sockets it listens on. Elsewhere these return
// errors and the report leaves the figures out.

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports (sysconf is not in the
// standard library).
const clockTicks = 100

// readRSS returns VmRSS of pid in bytes, RssAnon, its part that is not
// file-backed (bbolt maps its database file, so VmRSS grows with the pages
// of the file that were touched, while RssAnon is the heap and stacks), and
// VmHWM, the kernel's record of the highest VmRSS (a peak between samples
// is not missed).
func readRSS(pid int) (rss, anon, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		var dst *int64
		var rest []byte
		if r, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			dst, rest = &rss, r
		} else if r, ok := bytes.CutPrefix(line, []byte("RssAnon:")); ok {
			dst, rest = &anon, r
		} else if r, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			dst, rest = &hwm, r
		} else {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 1 {
			continue
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/%d/status: %q: %w", pid, line, err)
		}
		*dst = kb * 1024
	}
	if rss == 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/status has no VmRSS line", pid)
	}
	return rss, anon, hwm, nil
}

// readCPUTicks returns utime+stime of pid (user and system CPU time, in
// clock ticks). pid 0 means this process.
func readCPUTicks(pid int) (int64, error) {
	p := "/proc/self/stat"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may hold spaces; fields count from
	// after the last ')'. There, index 0 is field 3 (state), so utime
	// (field 14) is index 11 and stime (field 15) index 12.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: no ')' in %q", p, b)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: only %d fields", p, len(f))
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: utime %q stime %q are not numbers", p, f[11], f[12])
	}
	return u + s, nil
}

// listeningPorts returns the TCP ports pid listens on: the socket inodes
// among its open files, matched against the kernel's socket tables.
func listeningPorts(pid int) ([]int, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue // no IPv6 in this kernel
		}
		ports = append(ports, parseListeners(f, inodes)...)
		f.Close()
	}
	return ports, nil
}

// parseListeners reads a /proc/net/tcp table and returns the local ports of
// sockets in state LISTEN (0A) whose inode is in inodes.
func parseListeners(r io.Reader, inodes map[string]bool) []int {
	var ports []int
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			continue
		}
		ports = append(ports, int(p))
	}
	return ports
}

// readLoadAvg returns the 1-minute load average, or -1: a busy machine
// explains figures that a quiet one would not give.
func readLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
