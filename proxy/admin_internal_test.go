package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
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

// headerMap lower-cases every name, the common ones from a table.
func TestHeaderMapLowerCase(t *testing.T) {
	for k, v := range lowerHeaders {
		if k != http.CanonicalHeaderKey(k) || v != strings.ToLower(k) {
			t.Errorf("lowerHeaders[%q] = %q", k, v)
		}
	}
	h := http.Header{}
	h.Set("Content-Type", "text/plain")
	h.Set("X-Custom-Thing", "a")
	h.Add("X-Custom-Thing", "b")
	h["Empty"] = nil
	got := headerMap(h)
	want := map[string]string{"content-type": "text/plain", "x-custom-thing": "a"}
	if len(got) != len(want) {
		t.Fatalf("headerMap = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("headerMap[%q] = %q, want %q", k, got[k], v)
		}
	}
}
