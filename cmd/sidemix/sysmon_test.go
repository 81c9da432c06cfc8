package main

import (
	"slices"
	"testing"
)

func TestSysmonGODEBUG(t *testing.T) {
	for _, c := range []struct {
		in, want string
		restart  bool
	}{
		{"", sysmonSetting, true},
		{"madvdontneed=1", "madvdontneed=1," + sysmonSetting, true},
		{"schedtrace=1000", "schedtrace=1000", false},
		{"gctrace=1, schedtrace=5", "gctrace=1, schedtrace=5", false},
		{sysmonSetting, sysmonSetting, false},
	} {
		got, restart := sysmonGODEBUG(c.in)
		if got != c.want || restart != c.restart {
			t.Errorf("sysmonGODEBUG(%q) = %q, %v; want %q, %v", c.in, got, restart, c.want, c.restart)
		}
		// What the restarted process sees asks for no second restart.
		if _, again := sysmonGODEBUG(got); again {
			t.Errorf("sysmonGODEBUG(%q) would restart again", got)
		}
	}
}

func TestWithGODEBUG(t *testing.T) {
	got := withGODEBUG([]string{"A=1", "GODEBUG=x=1", "B=2", "GODEBUG=y=2"}, "x=1,"+sysmonSetting)
	want := []string{"A=1", "B=2", "GODEBUG=x=1," + sysmonSetting}
	if !slices.Equal(got, want) {
		t.Errorf("withGODEBUG = %q, want %q", got, want)
	}
}
