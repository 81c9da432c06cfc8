package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Profiles are served to loopback callers only.
func TestPprofLoopbackOnly(t *testing.T) {
	mux := http.NewServeMux()
	mountPprof(mux)
	for _, tc := range []struct {
		remote string
		want   int
	}{
		{"127.0.0.1:40000", http.StatusOK},
		{"[::1]:40000", http.StatusOK},
		{"10.1.2.3:40000", http.StatusForbidden},
		{"192.168.0.7:40000", http.StatusForbidden},
	} {
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
			r := httptest.NewRequest("GET", path, nil)
			r.RemoteAddr = tc.remote
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("%s from %s: %d, want %d", path, tc.remote, w.Code, tc.want)
			}
		}
	}
}
