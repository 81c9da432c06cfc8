package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sidemix/sidemix/policy"
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

// TestKeepSysmonAwake: which modes and configs restart the process.
func TestKeepSysmonAwake(t *testing.T) {
	registry, err := newRegistry()
	if err != nil {
		t.Fatal(err)
	}
	dir := func(files map[string]string) string {
		d := t.TempDir()
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	const head = "apiVersion: sidemix.dev/v1\n"
	checks := dir(map[string]string{"deny.yaml": head + "kind: Handler\nmetadata: {name: deny}\nspec: {adapter: denier}\n---\n" +
		head + "kind: Instance\nmetadata: {name: nothing}\nspec: {template: checknothing}\n---\n" +
		head + "kind: Rule\nmetadata: {name: deny}\nspec:\n  actions: [{handler: deny, instances: [nothing]}]\n"})
	reports := dir(map[string]string{"log.yaml": head + "kind: Handler\nmetadata: {name: log}\nspec: {adapter: accesslog, params: {path: /dev/null}}\n---\n" +
		head + "kind: Instance\nmetadata: {name: entry}\nspec:\n  template: logentry\n  params:\n    variables:\n      path: default(request.path, \"\")\n---\n" +
		head + "kind: Rule\nmetadata: {name: log}\nspec:\n  actions: [{handler: log, instances: [entry]}]\n"})
	invalid := dir(map[string]string{"bad.yaml": head + "kind: Rule\nmetadata: {name: bad}\nspec: {match: \"request.path ==\"}\n"})
	for _, d := range []string{checks, reports} {
		if _, err := policy.Load([]string{d}, policy.Options{Adapters: registry}); err != nil {
			t.Fatalf("the test's config %s: %v", d, err)
		}
	}
	t.Setenv("GODEBUG", "")
	for _, c := range []struct {
		mode, config string
		restart      bool
	}{
		{sysmonAuto, checks, true},
		{sysmonAuto, reports, false},
		{sysmonAuto, invalid, false}, // the mixer's own load reports it
		{sysmonAwake, reports, true},
		{sysmonDeep, checks, false},
	} {
		var got []string
		e := &env{stdout: io.Discard, stderr: io.Discard, reexec: func(godebug string) error {
			got = append(got, godebug)
			return errors.New("not restarting in a test")
		}}
		if err := keepSysmonAwake(e, c.mode, []string{c.config}, registry); err != nil {
			t.Errorf("%s over %s: %v", c.mode, c.config, err)
		}
		want := 0
		if c.restart {
			want = 1
		}
		if len(got) != want || (want == 1 && got[0] != sysmonSetting) {
			t.Errorf("%s over %s: restarts %q, want %d with %q", c.mode, c.config, got, want, sysmonSetting)
		}
	}
	e := &env{stdout: io.Discard, stderr: io.Discard}
	if err := keepSysmonAwake(e, "sometimes", []string{checks}, registry); err == nil {
		t.Error("--sysmon sometimes: no error")
	}
}

func TestSysmonNiceFor(t *testing.T) {
	for _, c := range []struct {
		flag string
		deep bool
		want int
		ok   bool
	}{
		{"auto", true, 19, true},
		{"auto", false, 0, true},
		{"0", true, 0, true},
		{"10", false, 10, true},
		{"19", false, 19, true},
		{"20", true, 0, false},
		{"-5", true, 0, false},
		{"low", true, 0, false},
	} {
		got, err := sysmonNiceFor(c.flag, c.deep)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("sysmonNiceFor(%q, %v) = %d, %v; want %d, ok %v", c.flag, c.deep, got, err, c.want, c.ok)
		}
	}
}
