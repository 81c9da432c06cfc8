package main

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestGCSettings(t *testing.T) {
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	tests := []struct {
		name        string
		g           gcSettings
		env         map[string]string
		start       int
		wantPercent string
		wantLimit   string
	}{
		{name: "default", start: 100, wantPercent: "400", wantLimit: "none"},
		{name: "GOGC from the environment is kept", env: map[string]string{"GOGC": "150"}, start: 150, wantPercent: "150", wantLimit: "none"},
		{name: "flag wins over GOGC", g: gcSettings{percent: 200, percentSet: true}, env: map[string]string{"GOGC": "150"}, start: 150, wantPercent: "200", wantLimit: "none"},
		{name: "off with a limit", g: gcSettings{percent: -1, percentSet: true, limit: "64MiB"}, start: 100, wantPercent: "off", wantLimit: "67108864"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(tt.start)
			debug.SetMemoryLimit(math.MaxInt64)
			p, l, err := tt.g.apply(env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if p != tt.wantPercent || l != tt.wantLimit {
				t.Errorf("apply = %s, %s; want %s, %s", p, l, tt.wantPercent, tt.wantLimit)
			}
		})
	}
	if _, _, err := (gcSettings{limit: "lots"}).apply(env(nil)); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
		t.Errorf("bad --memory-limit: err = %v, want one naming the flag", err)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "10B": 10, "2KiB": 2048, "512MiB": 512 << 20, "1GiB": 1 << 30, "1TiB": 1 << 40} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "0", "1.5GiB", "12 apples", "99999999999TiB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q): no error", in)
		}
	}
}
