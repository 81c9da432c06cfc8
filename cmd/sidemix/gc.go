package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent is the mixer's GOGC when neither --gc-percent nor the
// GOGC environment variable says otherwise. The mixer's live heap is small
// (the config snapshot, counters, queues, memquota's deduplication
// records), so at Go's default of 100 it collects every few MB of garbage,
// which under Check load is many times a second and ~25% of its CPU; at
// 400 the heap may grow to five times the live heap between collections
// instead of twice, for a fourth of the collections: +10 MiB of RSS under
// redisquota load, about twice the RSS under memquota load
// (benchmarks/README.md, "Policy path").
const defaultGCPercent = 400

// gcSettings are the mixer's garbage collector knobs: a dedicated server
// trades a few MB of heap for CPU.
type gcSettings struct {
	percent    int    // --gc-percent
	percentSet bool   // given on the command line
	limit      string // --memory-limit, "" for none
}

// apply sets the collector's target and soft memory limit. An explicit
// flag wins; otherwise GOGC or GOMEMLIMIT from the environment are left as
// the runtime read them; otherwise the mixer's defaults apply. It returns
// what is in effect, for the start-up log.
func (g gcSettings) apply(getenv func(string) string) (percent string, limit string, err error) {
	var limitBytes int64
	if g.limit != "" {
		n, err := parseBytes(g.limit)
		if err != nil {
			return "", "", usageErrorf("--memory-limit %q: %v", g.limit, err)
		}
		limitBytes = n
	}
	switch {
	case g.percentSet:
		debug.SetGCPercent(g.percent)
	case getenv("GOGC") != "":
		// The runtime already applied it.
	default:
		debug.SetGCPercent(defaultGCPercent)
	}
	if limitBytes > 0 {
		debug.SetMemoryLimit(limitBytes)
	}
	cur := debug.SetGCPercent(-1)
	debug.SetGCPercent(cur)
	percent = strconv.Itoa(cur)
	if cur < 0 {
		percent = "off"
	}
	limit = "none"
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		limit = strconv.FormatInt(l, 10)
	}
	return percent, limit, nil
}

// parseBytes reads a size as GOMEMLIMIT writes it: a number with an
// optional B, KiB, MiB, GiB or TiB suffix.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive size such as 512MiB or 2GiB")
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("too large")
	}
	return n * mult, nil
}
