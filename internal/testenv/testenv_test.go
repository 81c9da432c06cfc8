package testenv

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestFreeAddrIsListenable(t *testing.T) {
	addr := FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr %s: %v", addr, err)
	}
	defer l.Close()
	WaitTCP(t, addr, time.Second)
}

func TestWaitHTTP(t *testing.T) {
	ready := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ready:
			fmt.Fprintln(w, "ok")
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := PollHTTP(srv.URL, 100*time.Millisecond); err == nil {
		t.Fatal("PollHTTP succeeded on a 503")
	}
	time.AfterFunc(100*time.Millisecond, func() { close(ready) })
	WaitHTTP(t, srv.URL, 5*time.Second)
}

func TestStartProcess(t *testing.T) {
	sh := RequireBinary(t, "sh")
	p := StartProcess(t, sh, "-c", "echo started; exec sleep 30")
	p.WaitOutput(t, "started", 5*time.Second)
	if p.Exited() {
		t.Fatal("process exited early")
	}
	start := time.Now()
	err := p.Stop(5 * time.Second)
	if !stoppedBySignal(err) {
		t.Errorf("Stop: %v, want an exit by SIGTERM", err)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("Stop took %v", time.Since(start))
	}
}

// recordingTB records how Require ended the test instead of ending it.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recordingTB) Skipf(format string, a ...any)  { r.skip = fmt.Sprintf(format, a...) }

// A missing binary fails the test in CI and skips it elsewhere.
func TestRequireBinaryMissing(t *testing.T) {
	for _, ci := range []string{"true", ""} {
		t.Setenv("CI", ci)
		rec := &recordingTB{TB: t}
		RequireBinary(rec, "sidemix-no-such-binary")
		if ci == "true" && (rec.fatal == "" || rec.skip != "") {
			t.Errorf("CI=true: fatal %q, skip %q; want a failure", rec.fatal, rec.skip)
		}
		if ci == "" && (rec.skip == "" || rec.fatal != "") {
			t.Errorf("CI unset: fatal %q, skip %q; want a skip", rec.fatal, rec.skip)
		}
	}
	if p := RequireBinary(t, "sh"); p == "" {
		t.Error("RequireBinary(sh) returned no path")
	}
}
