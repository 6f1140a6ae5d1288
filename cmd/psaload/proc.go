package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// What psaload knows about a process comes from Linux's /proc, read with
// github.com/prometheus/procfs (the parser the Prometheus client's process
// collector uses): resident memory, CPU time, and the sockets it listens on.
// Elsewhere these return errors and the report leaves the figures out.

// procRoot is where the proc file system is mounted; tests point it at a
// tree of fixture files.
var procRoot = procfs.DefaultMountPoint

// procOf returns pid's entry in /proc; pid 0 means this process.
func procOf(pid int) (procfs.Proc, error) {
	fs, err := procfs.NewFS(procRoot)
	if err != nil {
		return procfs.Proc{}, err
	}
	if pid == 0 {
		return fs.Self()
	}
	return fs.Proc(pid)
}

// readRSS returns VmRSS of pid in bytes, RssAnon, its part that is not
// file-backed (bbolt maps its database file, so VmRSS grows with the pages
// of the file that were touched, while RssAnon is the heap and stacks), and
// VmHWM, the kernel's record of the highest VmRSS (a peak between samples
// is not missed).
func readRSS(pid int) (rss, anon, hwm int64, err error) {
	p, err := procOf(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	if st.VmRSS == 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/status has no VmRSS line", pid)
	}
	return int64(st.VmRSS), int64(st.RssAnon), int64(st.VmHWM), nil
}

// readCPUTicks returns utime+stime of pid (user and system CPU time, in
// clock ticks of USER_HZ, 100 on every Linux architecture Go supports).
// pid 0 means this process.
func readCPUTicks(pid int) (int64, error) {
	p, err := procOf(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", p.PID, err)
	}
	return int64(st.UTime + st.STime), nil
}

// clockTicks is USER_HZ, the unit of readCPUTicks.
const clockTicks = 100

// tcpListen is the state LISTEN in /proc/net/tcp.
const tcpListen = 0x0A

// listeningPorts returns the TCP ports pid listens on: the socket inodes
// among its open files, matched against the socket tables of its network
// namespace.
func listeningPorts(pid int) ([]int, error) {
	p, err := procOf(pid)
	if err != nil {
		return nil, err
	}
	targets, err := p.FileDescriptorTargets()
	if err != nil {
		return nil, err
	}
	inodes := map[uint64]bool{}
	for _, t := range targets {
		if ino, ok := strings.CutPrefix(t, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64); err == nil {
				inodes[n] = true
			}
		}
	}
	// /proc/PID/net is the process's namespace, laid out like /proc/net.
	netFS, err := procfs.NewFS(filepath.Join(procRoot, strconv.Itoa(pid)))
	if err != nil {
		return nil, err
	}
	var ports []int
	var errs []error
	for _, read := range []func() (procfs.NetTCP, error){netFS.NetTCP, netFS.NetTCP6} {
		table, err := read()
		if err != nil {
			errs = append(errs, err) // no IPv6 in this kernel, say
			continue
		}
		for _, s := range table {
			if s.St == tcpListen && inodes[s.Inode] {
				ports = append(ports, int(s.LocalPort))
			}
		}
	}
	if len(errs) == 2 {
		return nil, errors.Join(errs...)
	}
	return ports, nil
}

// readLoadAvg returns the 1-minute load average, or -1: a busy machine
// explains figures that a quiet one would not give.
func readLoadAvg() float64 {
	fs, err := procfs.NewFS(procRoot)
	if err != nil {
		return -1
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return -1
	}
	return l.Load1
}
