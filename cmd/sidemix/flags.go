package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// flagSet is a sub-command's flags plus the synopsis its --help prints above
// them.
type flagSet struct {
	*flag.FlagSet
	synopsis string
}

// newFlagSet returns the flag set of a sub-command. synopsis holds the
// usage lines, such as "  sidemix validate PATH...".
func newFlagSet(name, synopsis string) *flagSet {
	fs := flag.NewFlagSet("sidemix "+name, flag.ContinueOnError)
	// parse reports errors itself: keep the flag package quiet.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, synopsis: synopsis}
}

// printUsage writes the synopsis and every flag with its default.
func (fs *flagSet) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage:\n%s\n", strings.TrimRight(fs.synopsis, "\n"))
	if hasFlags(fs.FlagSet) {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parse parses args. --help prints the usage to stdout and returns
// exitCode(0); a bad flag is a usageError.
func (fs *flagSet) parse(e *env, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.printUsage(e.stdout)
		return exitCode(0)
	}
	if err != nil {
		return usageError{err.Error()}
	}
	return nil
}

// listFlag is a repeatable flag whose values may also be comma lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// repeatFlag is a repeatable flag whose values are taken whole (they may
// contain commas).
type repeatFlag []string

func (r *repeatFlag) String() string { return strings.Join(*r, " ") }

func (r *repeatFlag) Set(s string) error {
	*r = append(*r, s)
	return nil
}

// logFlags are the logging flags every long-running command has.
type logFlags struct {
	level  string
	format string
}

func addLogFlags(fs *flagSet) *logFlags {
	lf := &logFlags{}
	fs.StringVar(&lf.level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&lf.format, "log-format", "text", "log format on stderr: text or json")
	return lf
}

// logger builds the slog logger the flags ask for, writing to w.
func (lf *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lf.level)); err != nil {
		return nil, usageErrorf("--log-level: %q is not one of debug, info, warn, error", lf.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(lf.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("--log-format: %q is not text or json", lf.format)
}

// parseKeyValues parses "name=value" pairs (as in --upstreams), every name
// once.
func parseKeyValues(flagName string, items []string) (map[string]string, error) {
	out := make(map[string]string, len(items))
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, usageErrorf("--%s: %q is not name=value", flagName, it)
		}
		if _, dup := out[k]; dup {
			return nil, usageErrorf("--%s: %q given twice", flagName, k)
		}
		out[k] = v
	}
	return out, nil
}
