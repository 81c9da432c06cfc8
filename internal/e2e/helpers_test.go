package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// defaultMetricsAddr is where examples/default's prometheus handler listens.
const defaultMetricsAddr = "127.0.0.1:42422"

// config is a policy folder for one test.
type config struct {
	dir         string
	metricsAddr string // the prometheus handler's address in this copy
}

// newConfig copies examples/default into a temporary folder with its metrics
// address rewritten to a free port, and adds the extra files (name → YAML).
func newConfig(t *testing.T, extra map[string]string) *config {
	t.Helper()
	root := testenv.ModuleRoot(t)
	c := &config{dir: t.TempDir(), metricsAddr: testenv.FreeAddr(t)}
	src := filepath.Join(root, "examples", "default")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	copied := 0
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), defaultMetricsAddr, c.metricsAddr)
		c.write(t, e.Name(), text)
		copied++
	}
	if copied == 0 {
		t.Fatalf("no YAML files in %s", src)
	}
	for name, text := range extra {
		c.write(t, name, text)
	}
	return c
}

// newBareConfig is a policy folder holding only the given files (name →
// YAML), without examples/default's telemetry.
func newBareConfig(t *testing.T, files map[string]string) *config {
	t.Helper()
	c := &config{dir: t.TempDir()}
	for name, text := range files {
		c.write(t, name, text)
	}
	return c
}

// write creates or replaces a file of the config folder atomically (write
// and rename), as an editor or a config-map update would.
func (c *config) write(t *testing.T, name, text string) {
	t.Helper()
	tmp := filepath.Join(c.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, name)); err != nil {
		t.Fatal(err)
	}
}

// example reads a file of the repository's examples folder.
func example(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "examples", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mixer is a running `sidemix mixer`.
type mixer struct {
	*testenv.Process
	grpc, admin string
}

// startMixer starts a mixer on the given config folder and waits until it is
// ready. grpc and admin may be "" for free ports.
func startMixer(t *testing.T, c *config, grpc, admin string, extraArgs ...string) *mixer {
	t.Helper()
	return startMixerBin(t, testenv.BuildSidemix(t), c, grpc, admin, extraArgs...)
}

// startMixerBin is startMixer with a given sidemix binary.
func startMixerBin(t *testing.T, bin string, c *config, grpc, admin string, extraArgs ...string) *mixer {
	t.Helper()
	if grpc == "" {
		grpc = testenv.FreeAddr(t)
	}
	if admin == "" {
		admin = testenv.FreeAddr(t)
	}
	args := append([]string{"mixer", "--config", c.dir, "--grpc", grpc, "--admin", admin}, extraArgs...)
	p := testenv.StartProcess(t, bin, args...)
	m := &mixer{Process: p, grpc: grpc, admin: admin}
	waitReady(t, p, "http://"+admin+"/readyz")
	testenv.WaitTCP(t, grpc, 5*time.Second)
	return m
}

// waitReady waits for a URL while failing fast if the process exits.
func waitReady(t *testing.T, p *testenv.Process, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p.Exited() {
			t.Fatalf("%s exited before %s was ready: %v\n%s", p.Name, url, p.Err(), p.Output())
		}
		if testenv.PollHTTP(url, 200*time.Millisecond) == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 30s", url)
		}
	}
}

// proxy is a running `sidemix proxy`.
type proxy struct {
	*testenv.Process
	inbound, admin string
}

// startProxy starts a sidecar for service web in namespace shop in front of
// app; args add or override flags.
func startProxy(t *testing.T, mixerAddr, app string, args ...string) *proxy {
	t.Helper()
	return startProxyBin(t, testenv.BuildSidemix(t), mixerAddr, app, args...)
}

// startProxyBin is startProxy with a given sidemix binary.
func startProxyBin(t *testing.T, bin, mixerAddr, app string, args ...string) *proxy {
	t.Helper()
	px := &proxy{inbound: testenv.FreeAddr(t), admin: testenv.FreeAddr(t)}
	all := append([]string{"proxy", "--service", "web", "--namespace", "shop",
		"--mixer", mixerAddr, "--inbound", px.inbound, "--app", app, "--admin", px.admin}, args...)
	px.Process = testenv.StartProcess(t, bin, all...)
	waitReady(t, px.Process, "http://"+px.admin+"/healthz")
	testenv.WaitTCP(t, px.inbound, 5*time.Second)
	return px
}

func (p *proxy) url(path string) string { return "http://" + p.inbound + path }

// app is a test service that counts the requests it gets.
type app struct {
	*httptest.Server
	hits atomic.Int64
}

func newApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello from the app: %s %s\n", r.Method, r.URL.Path)
	}))
	t.Cleanup(a.Close)
	return a
}

// addr is the app's host:port.
func (a *app) addr() string { return strings.TrimPrefix(a.URL, "http://") }

type response struct {
	code   int
	body   string
	header http.Header
}

var client = &http.Client{Timeout: 10 * time.Second}

// get sends a GET with optional headers (name, value, name, value...).
func get(t *testing.T, url string, headers ...string) response {
	t.Helper()
	r, err := tryGet(url, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tryGet(url string, headers ...string) (response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "host") {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{code: resp.StatusCode, body: string(b), header: resp.Header}, nil
}

// scrape returns the metrics text served at addr's /metrics.
func scrape(addr string) (string, error) {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	return string(b), err
}

// sample sums the samples of metric name (in Prometheus text format) whose
// labels include all of want.
func sample(text, name string, want map[string]string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for k, v := range want {
			if !strings.Contains(line, k+"="+strconv.Quote(v)) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += f
		}
	}
	return sum
}

// waitMetric polls addr's /metrics until metric name with the labels has
// exactly the value want, and fails the test after timeout.
func waitMetric(t *testing.T, addr, name string, labels map[string]string, want float64, timeout time.Duration) string {
	t.Helper()
	var text string
	testenv.Eventually(t, timeout, func() (bool, string) {
		var err error
		text, err = scrape(addr)
		if err != nil {
			return false, err.Error()
		}
		got := sample(text, name, labels)
		return got == want, fmt.Sprintf("%s%v = %v, want %v; series:\n%s", name, labels, got, want, grepLines(text, name+"{"))
	})
	return text
}

// grepLines returns the lines of text that start with prefix.
func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
