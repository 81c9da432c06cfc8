package main

import "syscall"

// sysProcAttr makes the kernel kill a child when the launcher dies, so a
// killed demo leaves nothing running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
