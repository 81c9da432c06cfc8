//go:build !unix

package main

import "errors"

// execSelf is not available here: the process keeps the runtime's default.
func execSelf(string) error {
	return errors.New("re-executing the process is not supported on this system")
}
