package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// JaegerModuleVersion is the github.com/jaegertracing/jaeger module version
// BuildJaeger builds: the newest the module proxy serves here (Jaeger v2.13.0).
const JaegerModuleVersion = "v1.76.0"

// JaegerBinEnv names an environment variable that, when set, is the path of
// a Jaeger v2 binary to use instead of the cached build.
const JaegerBinEnv = "SIDEMIX_JAEGER_BIN"

// JaegerBinaryPath is where BuildJaeger caches the binary:
// $XDG_CACHE_HOME/sidemix/jaeger-<version>/jaeger (os.UserCacheDir), outside
// the checkout so fresh clones reuse it. SIDEMIX_JAEGER_BIN overrides it.
func JaegerBinaryPath() (string, error) {
	if p := os.Getenv(JaegerBinEnv); p != "" {
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the jaeger binary: %w", err)
	}
	return filepath.Join(dir, "sidemix", "jaeger-"+JaegerModuleVersion, "jaeger"), nil
}

// BuildJaeger builds the Jaeger v2 all-in-one binary (./cmd/jaeger of the
// github.com/jaegertracing/jaeger module) unless the cache already holds it,
// and returns its path. Progress goes to log.
//
// `go install …@version` is refused (the module's go.mod has replace
// directives), and building it as a dependency of a temporary module fails
// the checksum look-ups of old collector-contrib modules. What works: `go
// get` the module into a temporary module, copy its source out of the module
// cache and build ./cmd/jaeger inside the copy, whose own go.sum supplies the
// hashes. It takes ~5.5 minutes and ~2.2 GB of memory on 2 cores, hence the
// cache; CI runs it once before the tests (go run ./internal/cmd/buildjaeger).
func BuildJaeger(ctx context.Context, log io.Writer) (string, error) {
	bin, err := JaegerBinaryPath()
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if os.Getenv(JaegerBinEnv) != "" {
		return "", fmt.Errorf("%s=%s: no such binary", JaegerBinEnv, bin)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "sidemix-jaeger-build-")
	if err != nil {
		return "", err
	}
	defer func() {
		// The module cache's files are read-only; make them removable.
		_ = filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
		_ = os.RemoveAll(work)
	}()
	run := func(dir string, env []string, name string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		var out strings.Builder
		cmd.Stdout = &out
		cmd.Stderr = log
		err := cmd.Run()
		if err != nil {
			err = fmt.Errorf("%s %s (in %s): %w", name, strings.Join(args, " "), dir, err)
		}
		return strings.TrimSpace(out.String()), err
	}
	fetch := filepath.Join(work, "fetch")
	if err := os.Mkdir(fetch, 0o755); err != nil {
		return "", err
	}
	const mod = "github.com/jaegertracing/jaeger"
	if _, err := run(fetch, nil, "go", "mod", "init", "sidemix.dev/jaegerfetch"); err != nil {
		return "", err
	}
	if _, err := run(fetch, nil, "go", "get", mod+"@"+JaegerModuleVersion); err != nil {
		return "", err
	}
	modDir, err := run(fetch, nil, "go", "list", "-m", "-f", "{{.Dir}}", mod)
	if err != nil {
		return "", err
	}
	src := filepath.Join(work, "src")
	if err := os.CopyFS(src, os.DirFS(modDir)); err != nil {
		return "", fmt.Errorf("copying %s: %w", modDir, err)
	}
	fmt.Fprintf(log, "building jaeger %s in %s (several minutes)\n", JaegerModuleVersion, src)
	tmp := filepath.Join(work, "jaeger")
	// GOFLAGS=-mod=mod: the copy's go.sum supplies the hashes; its go.mod
	// may still need a requirement bumped for the toolchain in use.
	if _, err := run(src, []string{"GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off"}, "go", "build", "-trimpath", "-o", tmp, "./cmd/jaeger"); err != nil {
		return "", err
	}
	// Rename into place: a concurrent or interrupted build never leaves a
	// half-written binary where the tests look.
	staged := fmt.Sprintf("%s.tmp.%d", bin, os.Getpid())
	if err := copyFile(tmp, staged); err != nil {
		return "", err
	}
	if err := os.Rename(staged, bin); err != nil {
		_ = os.Remove(staged)
		return "", err
	}
	return bin, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Jaeger is a Jaeger v2 all-in-one process with in-memory storage, every
// port on 127.0.0.1.
type Jaeger struct {
	// CollectorAddr is the host:port of the jaeger receiver's gRPC
	// endpoint: api_v2 CollectorService.PostSpans (what Jaeger v1's
	// collector served on 14250).
	CollectorAddr string
	// OTLPGRPCAddr and OTLPHTTPAddr are the OTLP receiver's endpoints.
	OTLPGRPCAddr string
	OTLPHTTPAddr string
	// QueryURL is the query service's HTTP base ("http://127.0.0.1:port"):
	// /api/traces/{id}, /api/services. Its UI is a placeholder page (the
	// module carries no UI assets).
	QueryURL string
	// QueryGRPCAddr is the query service's gRPC endpoint.
	QueryGRPCAddr string
	// MetricsURL is Jaeger's own Prometheus metrics.
	MetricsURL string

	Proc *Process
}

// jaegerConfig binds everything to loopback: the all-in-one defaults bind
// the query ports on all interfaces.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp, jaeger]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
    logs:
      level: info
    traces:
      level: none

extensions:
  jaeger_query:
    storage:
      traces: memstore
    # No self-tracing: its OTLP exporter would send Jaeger's own spans to
    # whatever listens on localhost:4317 and hold up shutdown for 10s.
    enable_tracing: false
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
  jaeger:
    protocols:
      grpc:
        endpoint: %s

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// StartJaeger starts the cached Jaeger v2 binary (see BuildJaeger) with
// memory storage, every port on a free 127.0.0.1 port, and waits until its
// query API answers. Without the binary the test fails in CI and is skipped
// elsewhere. Jaeger is stopped when the test ends.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin, err := JaegerBinaryPath()
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		Require(t, "jaeger "+JaegerModuleVersion+" binary (go run ./internal/cmd/buildjaeger)", err)
		return nil
	}
	metricsPort := FreePort(t)
	j := &Jaeger{
		CollectorAddr: FreeAddr(t),
		OTLPGRPCAddr:  FreeAddr(t),
		OTLPHTTPAddr:  FreeAddr(t),
		QueryGRPCAddr: FreeAddr(t),
		MetricsURL:    fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort),
	}
	queryHTTP := FreeAddr(t)
	j.QueryURL = "http://" + queryHTTP
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	text := fmt.Sprintf(jaegerConfig, metricsPort, queryHTTP, j.QueryGRPCAddr,
		j.OTLPGRPCAddr, j.OTLPHTTPAddr, j.CollectorAddr)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	j.Proc = StartProcess(t, bin, "--config", cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := j.Services()
		if err == nil {
			err = PollTCP(j.CollectorAddr, 100*time.Millisecond)
		}
		if err == nil {
			break
		}
		if j.Proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("jaeger did not come up: %v\n%s", err, j.Proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return j
}

// JaegerTrace is a trace as Jaeger's HTTP query API returns it (the
// api/traces JSON of the UI).
type JaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []JaegerSpan             `json:"spans"`
	Processes map[string]JaegerProcess `json:"processes"`
	Warnings  []string                 `json:"warnings"`
}

// JaegerSpan is one span of a JaegerTrace. StartTime and Duration are in
// microseconds.
type JaegerSpan struct {
	TraceID       string            `json:"traceID"`
	SpanID        string            `json:"spanID"`
	OperationName string            `json:"operationName"`
	References    []JaegerReference `json:"references"`
	StartTime     int64             `json:"startTime"`
	Duration      int64             `json:"duration"`
	Tags          []JaegerKeyValue  `json:"tags"`
	ProcessID     string            `json:"processID"`
	Warnings      []string          `json:"warnings"`
}

// JaegerReference links a span to another (CHILD_OF, FOLLOWS_FROM).
type JaegerReference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// JaegerKeyValue is a tag.
type JaegerKeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// JaegerProcess is the service a span's process belongs to.
type JaegerProcess struct {
	ServiceName string           `json:"serviceName"`
	Tags        []JaegerKeyValue `json:"tags"`
}

// Tag returns the value of the span's tag key, or nil.
func (s JaegerSpan) Tag(key string) any {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

// Parent is the span id of the span's CHILD_OF reference, or "".
func (s JaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Service is the service name of the span's process.
func (tr *JaegerTrace) Service(s JaegerSpan) string {
	return tr.Processes[s.ProcessID].ServiceName
}

// errNotFound is Trace's error for a trace Jaeger does not (yet) hold.
var errNotFound = errors.New("trace not found")

// Trace fetches /api/traces/{id}; a trace Jaeger does not hold is an error
// for which IsNotFound is true.
func (j *Jaeger) Trace(id string) (*JaegerTrace, error) {
	var body struct {
		Data   []JaegerTrace `json:"data"`
		Errors []struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"errors"`
	}
	code, err := j.getJSON("/api/traces/"+url.PathEscape(id), &body)
	if code == http.StatusNotFound {
		return nil, fmt.Errorf("%s: %w", id, errNotFound)
	}
	if err != nil {
		return nil, err
	}
	if len(body.Data) == 0 {
		return nil, fmt.Errorf("%s: %w", id, errNotFound)
	}
	return &body.Data[0], nil
}

// IsNotFound reports whether err says the trace is not in Jaeger.
func IsNotFound(err error) bool { return errors.Is(err, errNotFound) }

// WaitTrace polls /api/traces/{id} until the trace holds at least minSpans
// spans, or fails the test after timeout.
func (j *Jaeger) WaitTrace(t testing.TB, id string, minSpans int, timeout time.Duration) *JaegerTrace {
	t.Helper()
	var tr *JaegerTrace
	Eventually(t, timeout, func() (bool, string) {
		var err error
		tr, err = j.Trace(id)
		if err != nil {
			return false, err.Error()
		}
		return len(tr.Spans) >= minSpans, fmt.Sprintf("trace %s has %d spans, want >= %d", id, len(tr.Spans), minSpans)
	})
	return tr
}

// FindTraces fetches /api/traces?service=…: the traces of the last hour
// with a span of service, each whole, at most limit of them.
func (j *Jaeger) FindTraces(service string, limit int) ([]JaegerTrace, error) {
	var body struct {
		Data []JaegerTrace `json:"data"`
	}
	q := url.Values{"service": {service}, "lookback": {"1h"}, "limit": {fmt.Sprint(limit)}}
	if _, err := j.getJSON("/api/traces?"+q.Encode(), &body); err != nil {
		return nil, err
	}
	return body.Data, nil
}

// Services fetches /api/services: the service names Jaeger has spans of.
func (j *Jaeger) Services() ([]string, error) {
	var body struct {
		Data []string `json:"data"`
	}
	if _, err := j.getJSON("/api/services", &body); err != nil {
		return nil, err
	}
	return body.Data, nil
}

func (j *Jaeger) getJSON(path string, v any) (int, error) {
	// No keep-alive: an idle connection would hold up Jaeger's shutdown.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(j.QueryURL + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, v); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w: %s", path, err, data)
	}
	return resp.StatusCode, nil
}
