package main

import "syscall"

// childProcAttr puts psagate in its own process group, so that Ctrl-C in
// the terminal reaches psaload alone (which then reports and stops the
// child with SIGTERM), and has the kernel stop it should psaload die.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
