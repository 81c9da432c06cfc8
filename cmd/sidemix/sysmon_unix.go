//go:build unix

package main

import (
	"os"
	"syscall"
)

// execSelf replaces the process image with the same binary, arguments and
// environment but GODEBUG set to godebug. It returns only on failure.
func execSelf(godebug string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, withGODEBUG(os.Environ(), godebug))
}
