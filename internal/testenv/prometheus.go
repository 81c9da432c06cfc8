package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Prometheus is a Prometheus server child process on a loopback port that
// scrapes the given targets every second, with its storage in a temporary
// folder.
type Prometheus struct {
	// Addr is the server's host:port; URL is "http://" + Addr.
	Addr, URL string
	Proc      *Process
}

// ScrapeInterval is how often the server started by StartPrometheus scrapes
// its targets.
const ScrapeInterval = time.Second

// StartPrometheus starts /usr/bin/prometheus (or prometheus on PATH; Debian's
// package) scraping /metrics at each target (host:port) every
// ScrapeInterval, under job "sidemix", and waits until it is ready. When the
// binary is missing the test fails in CI and is skipped elsewhere. The
// server is stopped when the test ends.
//
// It listens on a free 127.0.0.1 port: a Prometheus the package may have
// started as a system service (on :9090) is never used.
func StartPrometheus(t testing.TB, scrapeTargets ...string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("/usr/bin/prometheus")
	if err != nil {
		bin = RequireBinary(t, "prometheus")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(prometheusConfig(scrapeTargets)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Prometheus{Addr: FreeAddr(t)}
	p.URL = "http://" + p.Addr
	p.Proc = StartProcess(t, bin,
		"--config.file="+cfg,
		"--web.listen-address="+p.Addr,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--log.level=warn",
	)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p.Proc.Exited() {
			t.Fatalf("prometheus exited before it was ready: %v\n%s", p.Proc.Err(), p.Proc.Output())
		}
		if resp, err := http.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s after 30s\n%s", p.URL, p.Proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func prometheusConfig(targets []string) string {
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	iv := ScrapeInterval.String()
	return fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
  evaluation_interval: %s
scrape_configs:
- job_name: sidemix
  static_configs:
  - targets: [%s]
`, iv, iv, iv, strings.Join(quoted, ", "))
}

// Sample is one element of an instant vector: its labels (the metric name
// under "__name__" unless the query dropped it) and its value.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates promql now with /api/v1/query and returns the instant
// vector; the test fails on an error or a result that is not a vector.
func (p *Prometheus) Query(t testing.TB, promql string) []Sample {
	t.Helper()
	v, err := p.TryQuery(promql)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TryQuery is Query without a test, for polling.
func (p *Prometheus) TryQuery(promql string) ([]Sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"` // [unix time, "value"]
		} `json:"result"`
	}
	if err := p.api("/api/v1/query?query="+url.QueryEscape(promql), &data); err != nil {
		return nil, fmt.Errorf("query %s: %w", promql, err)
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result is a %s, not a vector", promql, data.ResultType)
	}
	out := make([]Sample, len(data.Result))
	for i, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", promql, r.Value[1], err)
		}
		out[i] = Sample{Metric: r.Metric, Value: v}
	}
	return out, nil
}

// Target is a scrape target as /api/v1/targets reports it.
type Target struct {
	ScrapeURL string `json:"scrapeUrl"`
	Health    string `json:"health"` // up, down or unknown
	LastError string `json:"lastError"`
}

// Targets returns the active scrape targets.
func (p *Prometheus) Targets() ([]Target, error) {
	var data struct {
		ActiveTargets []Target `json:"activeTargets"`
	}
	if err := p.api("/api/v1/targets?state=active", &data); err != nil {
		return nil, err
	}
	return data.ActiveTargets, nil
}

// WaitTargetsUp waits until every scrape target has been scraped
// successfully.
func (p *Prometheus) WaitTargetsUp(t testing.TB, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() (bool, string) {
		ts, err := p.Targets()
		if err != nil {
			return false, err.Error()
		}
		if len(ts) == 0 {
			return false, "no active targets yet"
		}
		for _, tg := range ts {
			if tg.Health != "up" {
				return false, fmt.Sprintf("target %s is %s: %s", tg.ScrapeURL, tg.Health, tg.LastError)
			}
		}
		return true, ""
	})
}

// api GETs path and decodes the data of a successful answer into out.
func (p *Prometheus) api(path string, out any) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(p.URL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s: %s: %s", path, resp.Status, body.ErrorType, body.Error)
	}
	return json.Unmarshal(body.Data, out)
}
