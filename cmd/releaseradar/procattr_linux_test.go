package main

import "syscall"

// childAttr makes a server the tests start die with the test binary, so that a
// test killed by its timeout leaves no server behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
