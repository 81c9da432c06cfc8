//go:build !linux

package main

import "errors"

// niceSysmon is Linux's: elsewhere sysmon keeps the process's priority.
func niceSysmon(int) error {
	return errors.New("setting one thread's priority is supported on Linux only")
}
