package mixer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/adapters/list"
	"github.com/sidemix/sidemix/adapters/memquota"
	"github.com/sidemix/sidemix/adapters/template"
	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

// ---- test-only adapters ----

// testCheckConfig drives the "testcheck" adapter: a checker that answers
// what its params say, after a delay, optionally ignoring its context.
type testCheckConfig struct {
	Status        string        `yaml:"status"`
	Message       string        `yaml:"message"`
	ValidDuration time.Duration `yaml:"validDuration"`
	ValidUseCount int32         `yaml:"validUseCount"`
	Delay         time.Duration `yaml:"delay"`
	IgnoreContext bool          `yaml:"ignoreContext"`
	Fail          string        `yaml:"fail"`
}

func (c *testCheckConfig) Validate() error {
	if c.Status != "" {
		if _, err := denier.ParseCode(c.Status); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	}
	return nil
}

type testChecker struct {
	cfg  testCheckConfig
	code codes.Code
}

func (h *testChecker) Check(ctx context.Context, inst template.Instance) (adapters.CheckResult, error) {
	if h.cfg.Delay > 0 {
		if h.cfg.IgnoreContext {
			time.Sleep(h.cfg.Delay)
		} else {
			select {
			case <-time.After(h.cfg.Delay):
			case <-ctx.Done():
				return adapters.CheckResult{}, ctx.Err()
			}
		}
	}
	if h.cfg.Fail != "" {
		return adapters.CheckResult{}, errors.New(h.cfg.Fail)
	}
	return adapters.CheckResult{Code: h.code, Message: h.cfg.Message,
		ValidDuration: h.cfg.ValidDuration, ValidUseCount: h.cfg.ValidUseCount}, nil
}

func (h *testChecker) Close(context.Context) error { return nil }

func testCheckFactory() adapters.Factory {
	return adapters.Factory{
		Name:      "testcheck",
		Templates: []string{template.CheckNothingName, template.ListEntryName},
		NewConfig: func() adapters.Config { return &testCheckConfig{} },
		Create: func(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
			c := cfg.(*testCheckConfig)
			h := &testChecker{cfg: *c}
			if c.Status != "" {
				h.code, _ = denier.ParseCode(c.Status)
			}
			return h, nil
		},
	}
}

// testQuotaConfig drives the "testquota" adapter: an allocator that grants
// what it is asked (or nothing, with deny), reports the window its params
// describe, and can be slow or fail like testcheck.
type testQuotaConfig struct {
	Deny          bool          `yaml:"deny"`
	ValidDuration time.Duration `yaml:"validDuration"`
	Limit         int64         `yaml:"limit"`
	Remaining     int64         `yaml:"remaining"`
	Reset         time.Duration `yaml:"reset"`
	Delay         time.Duration `yaml:"delay"`
	IgnoreContext bool          `yaml:"ignoreContext"`
	Fail          string        `yaml:"fail"`
	Panic         string        `yaml:"panic"`
	// Inline makes the handler a ContextBound one, which the mixer calls
	// on the request's goroutine.
	Inline bool `yaml:"inline"`
	// For /debug/config redaction: a server URL, credentials, and an error
	// Create fails with.
	Server      string         `yaml:"server"`
	Password    string         `yaml:"password"`
	Extra       map[string]any `yaml:"extra"`
	CreateError string         `yaml:"createError"`
}

func (c *testQuotaConfig) Validate() error { return nil }

type testQuota struct {
	cfg   testQuotaConfig
	calls atomic.Int64
}

func (h *testQuota) Allocate(ctx context.Context, inst *template.Quota, args adapters.QuotaArgs) (adapters.QuotaResult, error) {
	h.calls.Add(1)
	if h.cfg.Delay > 0 {
		if h.cfg.IgnoreContext {
			time.Sleep(h.cfg.Delay)
		} else {
			select {
			case <-time.After(h.cfg.Delay):
			case <-ctx.Done():
				return adapters.QuotaResult{}, ctx.Err()
			}
		}
	}
	if h.cfg.Fail != "" {
		return adapters.QuotaResult{}, errors.New(h.cfg.Fail)
	}
	if h.cfg.Panic != "" {
		panic(h.cfg.Panic)
	}
	r := adapters.QuotaResult{Amount: args.Amount, ValidDuration: h.cfg.ValidDuration,
		Limit: h.cfg.Limit, Remaining: h.cfg.Remaining, Reset: h.cfg.Reset}
	if h.cfg.Deny {
		r.Amount = 0
	}
	return r, nil
}

func (h *testQuota) Close(context.Context) error { return nil }

// inlineTestQuota is a testquota the mixer calls inline.
type inlineTestQuota struct{ *testQuota }

func (inlineTestQuota) AllocateReturnsByDeadline() {}

func testQuotaFactory() adapters.Factory {
	return adapters.Factory{
		Name:      "testquota",
		Templates: []string{template.QuotaName},
		NewConfig: func() adapters.Config { return &testQuotaConfig{} },
		Create: func(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
			c := cfg.(*testQuotaConfig)
			if c.CreateError != "" {
				return nil, errors.New(c.CreateError)
			}
			if c.Inline {
				return inlineTestQuota{&testQuota{cfg: *c}}, nil
			}
			return &testQuota{cfg: *c}, nil
		},
	}
}

// failCreateFactory's handlers never get created.
func failCreateFactory() adapters.Factory {
	return adapters.Factory{
		Name:      "failcreate",
		Templates: []string{template.CheckNothingName, template.MetricName, template.QuotaName},
		Create: func(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
			return nil, errors.New("backend is down")
		},
	}
}

// sink collects what a "testreport" handler is given. Tests register one
// under a unique name and point the handler's params at it.
type sink struct {
	mu      sync.Mutex
	insts   []template.Instance
	batches []int
	closed  int
	// atClose is how many instances had arrived when Close was called.
	atClose int
	// gate, when set, holds every Report until closed (or the context ends).
	gate chan struct{}
	// entered receives a value (when there is room) as Report starts.
	entered chan struct{}
	delay   time.Duration
}

var sinks sync.Map // name → *sink

func newSink(t *testing.T) (string, *sink) {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	s := &sink{entered: make(chan struct{}, 1)}
	sinks.Store(name, s)
	t.Cleanup(func() { sinks.Delete(name) })
	return name, s
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.insts)
}

func (s *sink) snapshot() (insts []template.Instance, closed, atClose int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]template.Instance(nil), s.insts...), s.closed, s.atClose
}

type testReportConfig struct {
	Sink string `yaml:"sink"`
}

func (c *testReportConfig) Validate() error {
	if c.Sink == "" {
		return errors.New("sink: required")
	}
	return nil
}

type testReporter struct{ s *sink }

func (h *testReporter) Report(ctx context.Context, insts []template.Instance) error {
	select {
	case h.s.entered <- struct{}{}:
	default:
	}
	if h.s.gate != nil {
		select {
		case <-h.s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if h.s.delay > 0 {
		time.Sleep(h.s.delay)
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.insts = append(h.s.insts, insts...)
	h.s.batches = append(h.s.batches, len(insts))
	return nil
}

func (h *testReporter) Close(context.Context) error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.closed++
	h.s.atClose = len(h.s.insts)
	return nil
}

func testReportFactory() adapters.Factory {
	return adapters.Factory{
		Name:      "testreport",
		Templates: []string{template.MetricName, template.LogEntryName, template.TraceSpanName},
		NewConfig: func() adapters.Config { return &testReportConfig{} },
		Create: func(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
			c := cfg.(*testReportConfig)
			v, ok := sinks.Load(c.Sink)
			if !ok {
				return nil, fmt.Errorf("no sink %q", c.Sink)
			}
			return &testReporter{s: v.(*sink)}, nil
		},
	}
}

func testRegistry(t testing.TB, extra ...adapters.Factory) adapters.Registry {
	t.Helper()
	fs := append([]adapters.Factory{
		denier.Factory(), list.Factory(), memquota.Factory(),
		testCheckFactory(), testQuotaFactory(), failCreateFactory(), testReportFactory(),
	}, extra...)
	reg, err := adapters.NewRegistry(fs...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// ---- server environment ----

// logBuffer is a concurrency-safe log sink tests can search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type env struct {
	t      *testing.T
	srv    *Server
	client mixerv1.MixerClient
	logs   *logBuffer
	dir    string // the config folder
	enc    *attribute.Encoder
	encMu  sync.Mutex
}

// writeConfig writes files (name → YAML) into a new temporary folder,
// replacing {{sink}} with sinkName.
func writeConfig(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// start builds and starts a Server on free loopback ports over the config
// folder dir, with a gRPC client to it. cfg may set anything else.
func start(t *testing.T, dir string, cfg Config) *env {
	t.Helper()
	logs := &logBuffer{}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "127.0.0.1:0"
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = "127.0.0.1:0"
	}
	if cfg.ConfigPaths == nil {
		cfg.ConfigPaths = []string{dir}
	}
	if cfg.Adapters == nil {
		cfg.Adapters = testRegistry(t)
	}
	var w io.Writer = logs
	if testing.Verbose() {
		w = io.MultiWriter(logs, os.Stderr)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, client: mixerv1.NewMixerClient(conn), logs: logs, dir: dir,
		enc: attribute.NewEncoder(attribute.DefaultDictionary())}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return e
}

func (e *env) encode(bag *attribute.Bag) (*mixerv1.CompressedAttributes, uint32) {
	e.encMu.Lock()
	defer e.encMu.Unlock()
	e.enc.Reset()
	return e.enc.Encode(bag), e.enc.GlobalWordCount()
}

func (e *env) checkReq(bag *attribute.Bag) *mixerv1.CheckRequest {
	msg, n := e.encode(bag)
	return &mixerv1.CheckRequest{Attributes: msg, GlobalWordCount: n}
}

// check sends a Check for bag and fails the test on an RPC error.
func (e *env) check(bag *attribute.Bag) *mixerv1.CheckResponse {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.client.Check(ctx, e.checkReq(bag))
	if err != nil {
		e.t.Fatalf("Check: %v", err)
	}
	return resp
}

func (e *env) report(bags ...*attribute.Bag) {
	e.t.Helper()
	e.encMu.Lock()
	req := e.enc.EncodeBatch(bags)
	e.encMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.client.Report(ctx, req); err != nil {
		e.t.Fatalf("Report: %v", err)
	}
}

func (e *env) get(path string, header ...string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.srv.AdminAddr()+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric sums the series of the named metric in g whose labels include the
// given name, value pairs.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Untyped != nil:
				sum += m.GetUntyped().GetValue()
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pathBag(path string) *attribute.Bag {
	return attribute.NewBuilder(1).SetString(attribute.RequestPath, path).Build()
}

func refNames(p *mixerv1.ReferencedAttributes) []string {
	var out []string
	for _, m := range p.GetAttributeMatches() {
		out = append(out, m.GetName())
	}
	return out
}

func readTestdata(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", name))
}
