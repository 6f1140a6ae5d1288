//go:build !linux

package main

import "syscall"

// childProcAttr: only Linux has a parent-death signal; elsewhere the child
// is left as exec starts it.
func childProcAttr() *syscall.SysProcAttr { return nil }
