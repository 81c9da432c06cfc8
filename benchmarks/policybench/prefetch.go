package policybench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
	"github.com/sidemix/sidemix/benchmarks/internal/load"
)

// prefetchFlag is the proxy's flag that turns quota prefetch on.
const prefetchFlag = "quota-prefetch-max"

// runPrefetch sends HTTP requests through a real proxy whose service draws
// on a quota (bound by a QuotaSpec), with quota prefetch up to prefetchMax
// (0: off), and counts the mixer Checks per request and the requests the
// proxy answered from its local quota pool.
func (s *Suite) runPrefetch(ctx context.Context, prefetchMax int) (Measurement, error) {
	detail := "prefetch off"
	if prefetchMax > 0 {
		detail = fmt.Sprintf("--%s %d", prefetchFlag, prefetchMax)
		help, _ := exec.Command(s.opts.Sidemix, "proxy", "--help").CombinedOutput()
		if !strings.Contains(string(help), "-"+prefetchFlag) {
			return Measurement{Server: "sidemix", Detail: detail}, skipf("this sidemix proxy has no --%s", prefetchFlag)
		}
	}
	dir, err := os.MkdirTemp(s.opts.WorkDir, "prefetch-")
	if err != nil {
		return Measurement{}, err
	}
	if err := writePrefetchPolicy(dir, grantLimit); err != nil {
		return Measurement{}, err
	}
	if err := s.validate(dir); err != nil {
		return Measurement{Server: "sidemix", Detail: detail}, err
	}
	mx, err := s.startMixer(dir)
	if err != nil {
		return Measurement{}, err
	}
	defer mx.Stop(10 * time.Second)

	app, err := startApp()
	if err != nil {
		return Measurement{}, err
	}
	defer app.Close()

	addrs, err := harness.FreeAddrs(2)
	if err != nil {
		return Measurement{}, err
	}
	inbound, admin := addrs[0], addrs[1]
	args := []string{"proxy", "--service", service, "--namespace", namespace,
		"--inbound", inbound, "--app", app.Addr().String(), "--mixer", mx.grpcAddr,
		"--admin", admin, "--log-level", "warn"}
	// Always said: the proxy's default is prefetch on.
	args = append(args, "--"+prefetchFlag, strconv.Itoa(prefetchMax))
	px, err := harness.Start(harness.Spec{Name: "sidemix proxy", Path: s.opts.Sidemix, Args: args,
		Env: s.serverEnv(), CPUs: s.opts.ServerCPUs})
	if err != nil {
		return Measurement{}, err
	}
	defer px.Stop(10 * time.Second)
	if err := px.WaitReady(30*time.Second, harness.HTTPReady("http://"+admin+"/readyz")); err != nil {
		return Measurement{}, err
	}

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: s.opts.Workers,
		DisableCompression:  true,
	}}
	defer client.CloseIdleConnections()
	base := "http://" + inbound
	op := func(ctx context.Context, w int) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/orders/"+strconv.Itoa(w), nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return "", fmt.Errorf("proxy answered %s", resp.Status)
		}
		return strconv.Itoa(resp.StatusCode), nil
	}
	if _, err := op(ctx, 0); err != nil {
		return Measurement{}, fmt.Errorf("first request: %v\n%s", err, px.Output())
	}

	mixerMetrics := "http://" + mx.adminAddr + "/metrics"
	proxyMetrics := "http://" + admin + "/metrics"
	var checks0, checks1 float64
	var proxy0, proxy1 map[string]float64
	var scrapeErr error
	window := func(start bool) {
		c, err := scrapeSum(mixerMetrics, "sidemix_mixer_check_requests_total")
		p, perr := scrape(proxyMetrics)
		if err == nil {
			err = perr
		}
		if err != nil && scrapeErr == nil {
			scrapeErr = err
		}
		if start {
			checks0, proxy0 = c, p
		} else {
			checks1, proxy1 = c, p
		}
	}
	m, err := s.measure(ctx, load.Op(op), px.Pid(), 0, window)
	m.Server, m.Detail = "sidemix", detail
	if err != nil {
		return m, fmt.Errorf("%w\nproxy output:\n%s", err, px.Output())
	}
	if scrapeErr != nil {
		return m, scrapeErr
	}
	m.RedisCPUUsPerOp = 0
	// Counters of the same two instants on both sides of the fraction:
	// the proxy's own request count, not the load generator's (which
	// leaves out requests straddling the window's edges).
	requests := sumSeries(proxy1, "sidemix_proxy_requests_total") - sumSeries(proxy0, "sidemix_proxy_requests_total")
	if requests > 0 {
		m.ChecksPerRequest = (checks1 - checks0) / requests
	}
	m.LocalFraction = localFraction(proxy0, proxy1, requests)
	return m, nil
}

// prefetchHits is the proxy's counter of requests paid from its local
// quota pool.
const prefetchHits = `sidemix_proxy_quota_prefetch_total{result="hit"}`

// localFraction is the fraction of requests the proxy answered from its
// prefetched quota pool, or -1 when it exports no such counter.
func localFraction(before, after map[string]float64, requests float64) float64 {
	v, ok := after[prefetchHits]
	if !ok || requests <= 0 {
		return -1
	}
	return (v - before[prefetchHits]) / requests
}

// startApp serves the benchmark's app: 200 "ok" to everything.
func startApp() (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	return l, nil
}

// scrape reads a Prometheus text exposition and returns every sample,
// keyed by its full series name (name{labels}).
func scrape(url string) (map[string]float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// scrapeSum is the sum of every series of the metric name.
func scrapeSum(url, name string) (float64, error) {
	all, err := scrape(url)
	if err != nil {
		return 0, err
	}
	return sumSeries(all, name), nil
}

// sumSeries sums the series of the metric name in a scrape.
func sumSeries(all map[string]float64, name string) float64 {
	sum := 0.0
	for series, v := range all {
		if series == name || strings.HasPrefix(series, name+"{") {
			sum += v
		}
	}
	return sum
}
