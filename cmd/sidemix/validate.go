package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/sidemix/sidemix/policy"
)

const validateSynopsis = `  sidemix validate PATH...

Loads the policy files and folders (folders recursively, *.yaml and *.yml)
exactly as the mixer would, with the adapters this binary ships, and prints
every problem as file:line: Kind/name: field: message. Exit status 1 when
there is any.`

func runValidate(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("validate", validateSynopsis)
	if err := fs.parse(e, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("no PATH given")
	}
	registry, err := newRegistry()
	if err != nil {
		return err
	}
	snap, err := policy.Load(fs.Args(), policy.Options{Adapters: registry})
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			printIssues(e, le)
			fmt.Fprintf(e.stderr, "invalid: %d %s\n", len(le.Issues), plural(len(le.Issues), "issue", "issues"))
			return exitCode(1)
		}
		return err
	}
	h, i, r := snap.Counts()
	fmt.Fprintf(e.stdout, "ok: %d %s, %d %s, %d %s\n",
		h, plural(h, "handler", "handlers"), i, plural(i, "instance", "instances"), r, plural(r, "rule", "rules"))
	return nil
}

// printIssues writes one line per issue to stderr.
func printIssues(e *env, le *policy.LoadError) {
	for _, is := range le.Issues {
		fmt.Fprintln(e.stderr, is.String())
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
