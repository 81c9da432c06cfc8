// Command sidemix is the one sidemix binary: the mixer, the sidecar proxy and
// the operator tools, as sub-commands.
//
//	sidemix mixer    --config DIR [--grpc ADDR] [--admin ADDR]
//	sidemix proxy    --service NAME --app ADDR [--inbound ADDR] [--outbound ADDR] [--mixer ADDR,...]
//	sidemix validate PATH...
//	sidemix check    [--mixer ADDR] -a name=value ... [--quota name=amount]
//	sidemix report   [--mixer ADDR] -a name=value ...
//	sidemix version
//
// `sidemix COMMAND --help` lists every flag of a command.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// env is what a sub-command talks to: its output streams, and how the
// process restarts itself. Tests give their own buffers and no restart.
type env struct {
	stdout, stderr io.Writer
	// reexec replaces the process with itself under another GODEBUG
	// (execSelf); nil when sub-commands run inside a test.
	reexec func(godebug string) error
}

// command is one sub-command.
type command struct {
	name     string
	synopsis string // one line, for `sidemix --help`
	run      func(ctx context.Context, e *env, args []string) error
}

var commands = []command{
	{"mixer", "run the mixer: policy checks, quotas and telemetry over gRPC", runMixer},
	{"proxy", "run a sidecar proxy in front of one service", runProxy},
	{"validate", "check policy files and folders; print every error with file:line", runValidate},
	{"check", "send a Check with the given attributes to a mixer and print the answer", runCheck},
	{"report", "send a Report with the given attributes to a mixer", runReport},
	{"version", "print the version", runVersion},
}

// exitCode is an error that carries the process's exit status; what went
// wrong has already been printed.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

func main() {
	os.Exit(runEnv(context.Background(), os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr, reexec: execSelf}))
}

// run executes the command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, &env{stdout: stdout, stderr: stderr})
}

func runEnv(ctx context.Context, args []string, e *env) int {
	stdout, stderr := e.stdout, e.stderr
	if len(args) == 0 {
		printTopUsage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			// `sidemix help proxy` is `sidemix proxy --help`.
			return runEnv(ctx, []string{args[1], "--help"}, e)
		}
		printTopUsage(stdout)
		return 0
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(ctx, e, args[1:])
		return exitStatus(e, c.name, err)
	}
	fmt.Fprintf(stderr, "sidemix: unknown command %q\n\n", name)
	printTopUsage(stderr)
	return 2
}

func exitStatus(e *env, name string, err error) int {
	if err == nil {
		return 0
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	var usage usageError
	if errors.As(err, &usage) {
		fmt.Fprintf(e.stderr, "sidemix %s: %s\nRun 'sidemix %s --help' for usage.\n", name, usage.msg, name)
		return 2
	}
	fmt.Fprintf(e.stderr, "sidemix %s: %v\n", name, err)
	return 1
}

func printTopUsage(w io.Writer) {
	fmt.Fprintf(w, "sidemix is a Mixer-style policy and telemetry pipeline for service meshes.\n\n")
	fmt.Fprintf(w, "Usage:\n  sidemix COMMAND [flags] [args]\n\nCommands:\n")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.synopsis)
	}
	fmt.Fprintf(w, "\nRun 'sidemix COMMAND --help' for the flags of a command.\n")
}
