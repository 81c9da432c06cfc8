package testenv

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestStartJaeger(t *testing.T) {
	j := StartJaeger(t)
	if _, err := j.Services(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Trace("0af7651916cd43dd8448eb211c80319c"); !IsNotFound(err) {
		t.Errorf("unknown trace: %v, want not found", err)
	}
	// Every port is on loopback.
	for _, addr := range []string{j.CollectorAddr, j.OTLPGRPCAddr, j.OTLPHTTPAddr, j.QueryGRPCAddr, strings.TrimPrefix(j.QueryURL, "http://")} {
		if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
			t.Errorf("%s is not on loopback", addr)
		}
		WaitTCP(t, addr, 5*time.Second)
	}
	start := time.Now()
	if err := j.Proc.Stop(15 * time.Second); err != nil && !stoppedBySignal(err) {
		t.Errorf("stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(start))
}
