package meshbench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// TestSmoke runs every harness of the suite for about a second each,
// unpinned, against real nginx and haproxy, so the harness cannot rot: it
// asserts that every path answered, that CPU and memory were read and that
// the report and summary render, never how fast.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sidemix, nginx and haproxy")
	}
	testenv.RequireBinary(t, "taskset")
	testenv.RequireBinary(t, "redis-server")
	nginx, haproxy := LookPeer("nginx"), LookPeer("haproxy")
	for name, path := range map[string]string{"nginx": nginx, "haproxy": haproxy} {
		if path == "" {
			testenv.Require(t, name, errors.New("neither on PATH nor in /usr/sbin (Debian package "+name+")"))
		}
	}
	// Tracing to Jaeger when its cached build is there (CI builds it
	// before the tests); without, the sidecars still make and report spans.
	jaeger := ""
	if p, err := testenv.JaegerBinaryPath(); err == nil {
		if _, err := os.Stat(p); err == nil {
			jaeger = p
		}
	}
	root := testenv.ModuleRoot(t)
	bin := testenv.BuildSidemix(t)
	echo, err := BuildEcho(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{
		Sidemix: bin, Echo: echo, Nginx: nginx, HAProxy: haproxy, Jaeger: jaeger,
		Examples: filepath.Join(root, "examples", "default"),
		WorkDir:  t.TempDir(),
		QPS:      200, Conns: 4,
		Warmup: 200 * time.Millisecond, Duration: time.Second,
		ProxyCPU: "0", OtherCPUs: "0",
		Variant: []string{"--quota-prefetch-max=10"},
		Log:     testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	runs, err := s.Latency(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range runs {
		seen[r.Path] = true
		if r.Requests == 0 || r.Errors != 0 || r.P50Ms <= 0 || r.P99Ms < r.P50Ms {
			t.Errorf("%s: %+v", r.Path, r)
		}
		// nginx and haproxy may pass 200 requests within one clock tick
		// of CPU (10 ms); their CPU reading is asserted by the ceiling
		// runs below, closed loop.
		if slices.Contains(sidemixPaths, r.Path) && r.ProxyCPU <= 0 {
			t.Errorf("%s: no proxy CPU read: %+v", r.Path, r)
		}
		if r.Path == Sidemix2 && len(r.ProxyCPUPer1kEach) != 2 {
			t.Errorf("sidemix_2: CPU not split by sidecar: %+v", r)
		}
	}
	for _, p := range allPaths {
		if !seen[p] {
			t.Errorf("path %s not measured", p)
		}
	}
	// The routed path used both subsets: each cluster holds connections.
	metrics := scrape(t, "http://"+s.paths[SidemixRouted].admin+"/metrics")
	for _, v := range []string{"v1", "v2"} {
		series := `sidemix_upstream_connections{cluster="outbound|80|` + v + `|echo.default.svc.cluster.local"} `
		i := strings.Index(metrics, series)
		if i < 0 || strings.HasPrefix(metrics[i+len(series):], "0\n") {
			t.Errorf("routed path: subset %s got no connection:\n%s", v, grep(metrics, "sidemix_upstream_connections"))
		}
	}
	rss, err := s.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	scale, err := s.Scaling(ctx, []int{100, 300})
	if err != nil {
		t.Fatal(err)
	}
	var ceil []Run
	for _, name := range CeilingPaths {
		r, err := s.Ceiling(ctx, name)
		if err != nil {
			t.Fatalf("ceiling %s: %v", name, err)
		}
		if r.Achieved <= 0 || r.ProxyCPU <= 0 {
			t.Errorf("ceiling %s: %+v", name, r)
		}
		ceil = append(ceil, r)
	}
	s.Close()
	kafka := testenv.StartKafka(t, "sidemix.accesslog", "sidemix.spans")
	mixer, err := RunMixer(ctx, MixerOptions{Sidemix: bin, BrokerAddr: kafka.Addr(), Examples: filepath.Join(root, "examples", "default"),
		WorkDir: t.TempDir(), Rules: []int{1, 10}, Warmup: 200 * time.Millisecond, Duration: time.Second, MeshRate: 200, Batch: 100, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if len(mixer.Check) != 2 || mixer.Check[0].Rate <= 0 || mixer.ReportPerCore <= 0 || mixer.ReportFixedVCPU <= 0 {
		t.Errorf("mixer rows %+v", mixer)
	}
	rep := NewReport(Meta{Rounds: 1}, [][]Run{runs}, rss, scale, ceil, mixer)
	sum := rep.Summary()
	for _, p := range Paths {
		if _, ok := sum.Paths[p]; !ok {
			t.Errorf("summary lacks %s", p)
		}
	}
	if _, ok := sum.Paths[Variant]; ok || len(sum.Paths) != len(Paths) {
		t.Errorf("summary paths %v: want exactly %v", sortedKeys(sum.Paths), Paths)
	}
	if sum.Paths[Sidemix1].RSSMB <= 0 || sum.MixerCPUPer1k <= 0 {
		t.Errorf("summary %+v", sum)
	}
	if r := sum.Routing; r == nil || r.Plain.CPUSPer1k <= 0 || r.Routed.CPUSPer1k <= 0 || r.Routed.P90Ms <= 0 {
		t.Errorf("summary routing %+v", sum.Routing)
	}
	md := rep.Markdown("")
	for _, want := range []string{"| sidemix_2 |", "| sidemix_out |", "| sidemix_out_routed |", "**Routing** (issue 6)", "| nginx |", "Throughput ceiling", "Check, 10 rule(s)", "**Goals**"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	dir := t.TempDir()
	if err := rep.WritePlots(dir); err != nil {
		t.Fatal(err)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func grep(text, prefix string) string {
	var out []string
	for l := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
