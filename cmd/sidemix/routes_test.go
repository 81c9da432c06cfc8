package main

import (
	"strings"
	"testing"
)

func TestProxyRoutesFlag(t *testing.T) {
	_, stderr, code := runCmd(t, "proxy", "--service", "web", "--inbound", "", "--outbound", "127.0.0.1:0",
		"--admin", "", "--routes", "../../proxy/routing/testdata/bad/weights.bad.yaml")
	want := "weights.bad.yaml:33: VirtualService/shop: spec.http[0].route: weights sum to 110, want 100"
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr %q; want %q", code, stderr, want)
	}
	_, stderr, code = runCmd(t, "proxy", "--service", "web", "--app", "127.0.0.1:1", "--admin", "",
		"--routes", "../../examples/routes")
	if code != 2 || !strings.Contains(stderr, "--routes needs --outbound") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
