package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time: -ldflags "-X main.version=$(git describe --always --dirty)".
var version = "dev"

const versionSynopsis = `  sidemix version

Prints the sidemix version and the Go version it was built with.`

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("version", versionSynopsis)
	if err := fs.parse(e, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "sidemix %s (%s, %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// versionString is the -ldflags version, or for a plain `go build` the VCS
// revision Go stamped into the binary.
func versionString() string {
	if version != "dev" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return version
	}
	return version + "-" + rev + dirty
}
