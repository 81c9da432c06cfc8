package reportbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sidemix/sidemix/benchmarks/internal/harness"
	"github.com/sidemix/sidemix/benchmarks/internal/load"
	"github.com/sidemix/sidemix/benchmarks/internal/procstat"
)

// Defaults of Options.
const (
	DefaultWarmup    = 3 * time.Second
	DefaultDuration  = 10 * time.Second
	DefaultMeshRate  = 1000
	DefaultBatch     = 1000 // proxy/mixerclient.DefaultReportBatchSize
	DefaultSpanBatch = 512  // the OpenTelemetry SDKs' batch span processor's maximum export batch
	DefaultSpanRate  = 40000
	// DefaultSpanCallers is the apps exporting to each span server: a
	// connection each, one export in flight each.
	DefaultSpanCallers = 2
	// DefaultDrain bounds the wait, after the window, for the server to
	// deliver what it accepted in it.
	DefaultDrain = 30 * time.Second
)

// Options configure a Suite.
type Options struct {
	// BrokerAddr, when set, is a running Kafka broker to use instead of
	// starting Kfake (tests use internal/testenv.StartKafka).
	BrokerAddr string
	// Sidemix and Kfake are the binaries under test (required); Jaeger and
	// Otelcol are optional: empty leaves the jaeger handler out of the
	// report-path config and skips the collector's run.
	Sidemix, Kfake, Jaeger, Otelcol string
	// Examples is examples/default, whose telemetry the report runs load.
	Examples string
	// WorkDir holds the generated configs.
	WorkDir string
	// Warmup and Duration shape every run.
	Warmup, Duration time.Duration
	// Drain bounds the wait after the window until the server has
	// delivered (or dropped) what it accepted in the window; its CPU over
	// that time counts. What is still missing then is reported as the
	// run's shortfall.
	Drain time.Duration
	// MeshRate is the mesh's requests per second in the fixed-rate run:
	// two reporting proxies send MeshRate records each per second, in
	// batches of Batch (proxy/mixerclient's defaults: 1000 bags or 1 s).
	MeshRate int
	// Batch is the bags per Report; SpanBatch the spans per OTLP export.
	Batch, SpanBatch int
	// SpanRate is the spans per second offered to both span servers in
	// the equal-load runs (below what the mixer's core sustains).
	SpanRate int
	// SpanCallers is the apps exporting spans to each span server, each
	// over a connection of its own with one export in flight.
	SpanCallers int
	// ServerCPUs pins the mixer, Jaeger's and the broker's processes are
	// left to the rest; empty pins nothing.
	ServerCPUs string
	// Log receives progress lines.
	Log io.Writer
}

// Measurement is one run's figures.
type Measurement struct {
	Scenario string `json:"scenario"`
	// Items is records (or spans) accepted by the server in the window;
	// Rate is Items per second.
	Items int64   `json:"items"`
	Rate  float64 `json:"rate"`
	// CPU is the server's CPU seconds in the window and the drain after
	// it (until what was accepted in the window was delivered);
	// PerCPUSecond is Items per CPU second; VCPU is CPU over the window's
	// length: the cores the window's load took, its delivery included.
	CPU          float64 `json:"cpu_seconds"`
	PerCPUSecond float64 `json:"per_cpu_second"`
	VCPU         float64 `json:"vcpu"`
	// CPUMeter is how CPU was read (procstat.Source: "clock", in ns, or a
	// fallback) and, for a fallback, why.
	CPUMeter string `json:"cpu_meter,omitempty"`
	// Drain is the seconds the server took after the window to deliver
	// what it accepted in it; Shortfall is what it still had not
	// delivered (nor dropped) when the drain's bound ran out: >0 flags a
	// server that falls behind. -1: not measured (no delivery counter).
	Drain     float64 `json:"drain_seconds"`
	Shortfall int64   `json:"shortfall"`
	// Delivered is what the server's own metrics say reached the backends
	// from the window's start to the drain's end (records written to
	// Kafka; for the collector, spans its exporter sent); Dropped what
	// they say was dropped. -1: unknown.
	Delivered int64 `json:"delivered"`
	Dropped   int64 `json:"dropped"`
	// JaegerSent is spans the jaeger handler delivered in window + drain.
	JaegerSent int64  `json:"jaeger_sent"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	Skipped    string `json:"skipped,omitempty"`
}

// Suite holds the long-lived peers (broker, Jaeger) of a run.
type Suite struct {
	opts       Options
	broker     *harness.Proc
	brokerAddr string
	jaeger     *harness.Proc
	jaegerAddr string
}

// New starts the broker (and Jaeger when given).
func New(o Options) (*Suite, error) {
	if o.Sidemix == "" || (o.Kfake == "" && o.BrokerAddr == "") || o.Examples == "" || o.WorkDir == "" {
		return nil, errors.New("reportbench: Sidemix, Kfake (or BrokerAddr), Examples and WorkDir are required")
	}
	if o.Warmup <= 0 {
		o.Warmup = DefaultWarmup
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.MeshRate <= 0 {
		o.MeshRate = DefaultMeshRate
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.SpanBatch <= 0 {
		o.SpanBatch = DefaultSpanBatch
	}
	if o.SpanRate <= 0 {
		o.SpanRate = DefaultSpanRate
	}
	if o.SpanCallers <= 0 {
		o.SpanCallers = DefaultSpanCallers
	}
	if o.Drain <= 0 {
		o.Drain = DefaultDrain
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	s := &Suite{opts: o, brokerAddr: o.BrokerAddr}
	if o.BrokerAddr == "" {
		if err := s.startBroker(); err != nil {
			return nil, err
		}
	}
	if o.Jaeger != "" {
		if err := s.startJaeger(); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Suite) startBroker() error {
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	s.brokerAddr = addr
	// The broker and Jaeger stay off the server's core: they stand for
	// remote backends. kfake keeps its log in memory; one that only grew
	// (GBs in a closed-loop run) cost the broker mostly the kernel's
	// zeroing of fresh pages, so that it, on the load generator's core,
	// stored fewer spans than the mixer sent and the mixer dropped the
	// rest at its buffer's bound. Retention keeps each topic's log to
	// brokerRetention bytes (nothing reads the topics back), the same for
	// every server.
	args := []string{"--port", harness.Port(addr), "--topic", "sidemix.accesslog", "--topic", "sidemix.spans", "--topic", "otel.spans", "--log-level", "error",
		"--topic-config", fmt.Sprintf("retention.bytes=%d", brokerRetention),
		"--topic-config", fmt.Sprintf("segment.bytes=%d", brokerSegment),
		"--broker-config", fmt.Sprintf("log.cleaner.backoff.ms=%d", brokerRetentionEvery.Milliseconds())}
	s.broker, err = harness.Start(harness.Spec{Name: "kfakebroker", Path: s.opts.Kfake, Args: args})
	if err != nil {
		return err
	}
	return s.broker.WaitReady(30*time.Second, harness.TCPReady(addr))
}

// The broker's log per topic: retention.bytes, segment.bytes (retention
// drops whole segments) and how often retention runs.
const (
	brokerRetention      = 64 << 20
	brokerSegment        = 8 << 20
	brokerRetentionEvery = 100 * time.Millisecond
)

// Close stops the peers.
func (s *Suite) Close() {
	if s.jaeger != nil {
		_ = s.jaeger.Stop(10 * time.Second)
	}
	if s.broker != nil {
		_ = s.broker.Stop(10 * time.Second)
	}
}

// Scenarios are the runs of a round, in order.
var Scenarios = []string{"report-max", "report-fixed", "report-default", "report-default-1pct",
	"spans-sidemix", "spans-otelcol", "spans-sidemix-fixed", "spans-otelcol-fixed", "spans-sidemix-tracespan"}

// reportSetup is what a report scenario runs: the kafka access-log rule on
// or off, and one trace in sampleEvery sampled.
type reportSetup struct {
	kafka       bool
	sampleEvery int
}

// Run runs one scenario, against a fresh broker when the suite started
// its own: kfake keeps every record in memory, so a broker that took the
// earlier runs' records grows and slows down (its GC) from run to run.
func (s *Suite) Run(ctx context.Context, name string) (Measurement, error) {
	if s.broker != nil {
		if err := s.broker.Stop(10 * time.Second); err != nil {
			s.logf("stopping the broker: %v", err)
		}
		s.broker = nil
		if err := s.startBroker(); err != nil {
			return Measurement{}, err
		}
	}
	switch name {
	case "report-max":
		return s.runReport(ctx, name, 0, reportSetup{kafka: true, sampleEvery: 1})
	case "report-fixed":
		// Two proxies, MeshRate records each per second, in batches of Batch.
		return s.runReport(ctx, name, s.meshBatchRate(), reportSetup{kafka: true, sampleEvery: 1})
	case "report-default":
		// examples/default as shipped: the kafka rule commented out, and
		// the proxy's default --trace-sampling of 1 (every trace).
		return s.runReport(ctx, name, s.meshBatchRate(), reportSetup{sampleEvery: 1})
	case "report-default-1pct":
		// As shipped, with 1% of traces sampled: Istio's default sampling,
		// the setting of its Mixer's 0.6 vCPU per 1,000 rps.
		return s.runReport(ctx, name, s.meshBatchRate(), reportSetup{sampleEvery: 100})
	case "spans-sidemix", "spans-sidemix-fixed":
		return s.runSpansSidemix(ctx, name, s.spanRate(name), false)
	case "spans-sidemix-tracespan":
		return s.runSpansSidemix(ctx, name, 0, true)
	case "spans-otelcol", "spans-otelcol-fixed":
		if s.opts.Otelcol == "" {
			return Measurement{Scenario: name, Skipped: "no collector binary (-otelcol)"}, nil
		}
		return s.runSpansOtelcol(ctx, name, s.spanRate(name))
	}
	return Measurement{}, fmt.Errorf("reportbench: no scenario %q", name)
}

// meshBatchRate is the Report batches per second at MeshRate: two proxies,
// MeshRate records each per second, in batches of Batch.
func (s *Suite) meshBatchRate() float64 {
	return 2 * float64(s.opts.MeshRate) / float64(s.opts.Batch)
}

// spanRate is the exports per second of a span scenario: 0 (closed loop)
// unless it is an equal-load one.
func (s *Suite) spanRate(name string) float64 {
	if !strings.HasSuffix(name, "-fixed") {
		return 0
	}
	return float64(s.opts.SpanRate) / float64(s.opts.SpanBatch)
}

// server is a process under test with its metrics endpoint.
type server struct {
	*harness.Proc
	metricsURL string
}

func (s *Suite) logf(format string, args ...any) { fmt.Fprintf(s.opts.Log, format+"\n", args...) }

func (s *Suite) startMixer(dir string, otlp bool) (*server, string, error) {
	addrs, err := harness.FreeAddrs(3)
	if err != nil {
		return nil, "", err
	}
	args := []string{"mixer", "--config", dir, "--grpc", addrs[0], "--admin", addrs[1], "--log-level", "warn"}
	target := addrs[0]
	if otlp {
		args = append(args, "--otlp-grpc", addrs[2])
		target = addrs[2]
	}
	p, err := harness.Start(harness.Spec{Name: "sidemix mixer", Path: s.opts.Sidemix, Args: args,
		Env: s.serverEnv(), CPUs: s.opts.ServerCPUs})
	if err != nil {
		return nil, "", err
	}
	if err := p.WaitReady(30*time.Second, harness.HTTPReady("http://"+addrs[1]+"/readyz")); err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, "", err
	}
	return &server{Proc: p, metricsURL: "http://" + addrs[1] + "/metrics"}, target, nil
}

func (s *Suite) serverEnv() []string {
	if s.opts.ServerCPUs == "" {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(len(strings.Split(s.opts.ServerCPUs, ",")))}
}

// reportConfig writes examples/default with the access log to /dev/null,
// the Prometheus handler on a free port, the jaeger handler on this
// suite's Jaeger (left out without one), and, with kafka, the kafka
// access-log rule on (JSON, keyed by destination service) to the suite's
// broker.
func (s *Suite) reportConfig(kafka bool) (string, error) {
	dir := filepath.Join(s.opts.WorkDir, "report-config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	promAddr, err := harness.FreeAddr()
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(s.opts.Examples)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.opts.Examples, name))
		if err != nil {
			return "", err
		}
		text := string(b)
		switch name {
		case "handlers.yaml":
			text = strings.Replace(text, "addr: 127.0.0.1:42422", "addr: "+promAddr, 1)
			text = strings.Replace(text, "path: stdout", "path: /dev/null", 1)
		case "jaeger.yaml":
			if s.jaeger == nil {
				continue
			}
			text = strings.Replace(text, "endpoint: 127.0.0.1:14250", "endpoint: "+s.jaegerAddr, 1)
		case "kafka.yaml":
			if kafka {
				text = uncommentKafka(text, s.brokerAddr)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// uncommentKafka turns on the commented-out part of examples/default's
// kafka.yaml, as `make demo` does, with brokers set to addr.
func uncommentKafka(text, addr string) string {
	var out []string
	on := false
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, "---- uncomment below") {
			on = true
			continue
		}
		if on {
			line = strings.TrimPrefix(line, "#")
			line = strings.Replace(line, "brokers: [127.0.0.1:9092]", "brokers: ["+addr+"]", 1)
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// spansConfig writes the sidemix side of the span comparison: one rule
// sending the spans apps export over OTLP to a kafka handler (otlp_proto
// with otlpBatch and no key, as the collector's kafka exporter is
// configured). By default the rule sends an otlp instance, the spans as
// received, which is what the collector does: a record holds the resources
// of a queue batch, cut at batchBytes. The buffer may hold 256 MiB, about
// what the collector's kafka exporter's default sending queue holds (1000
// batches of 1000 spans), so that neither drops in a hiccup of the broker
// the other rides out. With tracespan it sends the span
// instance of examples/default/tracing.yaml instead (every span decoded
// into a bag, evaluated and rebuilt: one TracesData record per queue
// batch).
func (s *Suite) spansConfig(tracespan bool) (string, error) {
	dir := filepath.Join(s.opts.WorkDir, "spans-config")
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	instance := "asreceived"
	if tracespan {
		b, err := os.ReadFile(filepath.Join(s.opts.Examples, "tracing.yaml"))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, "tracing.yaml"), b, 0o644); err != nil {
			return "", err
		}
		instance = "span"
	}
	rules := fmt.Sprintf(`apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: kafkaspans}
spec:
  adapter: kafka
  params:
    brokers: [%s]
    topic: sidemix.spans
    encoding: otlp_proto
    otlpBatch: true
    linger: 10ms
    requiredAcks: all
    bufferSize: 100000
    bufferBytes: 268435456
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: asreceived}
spec: {template: otlp}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: otlp-spans}
spec:
  match: default(context.protocol, "http") == "otlp"
  actions:
  - handler: kafkaspans
    instances: [%s]
`, s.brokerAddr, instance)
	return dir, os.WriteFile(filepath.Join(dir, "kafka.yaml"), []byte(rules), 0o644)
}

// drainSpec says when a server has delivered what it accepted in the
// window: the delta since the window's start of the counters sent reaches
// the items accepted in the window times perItem (0: no target); or, as
// when some were dropped, the gauges (backlogs) read 0 and no counter moved
// for drainQuiet.
type drainSpec struct {
	sent, dropped []string
	perItem       int64
	gauges        []string
}

// drainQuiet is how long a server's counters must stand still, backlogs
// empty, for its drain to count as over: longer than the collector's batch
// timeout (200ms), which no gauge shows.
const drainQuiet = 400 * time.Millisecond

// windowResult is what window measured.
type windowResult struct {
	res   load.Result
	cpu   procstat.Span // server CPU over window + drain
	drain time.Duration
	// short is what was accepted in the window but not delivered by the
	// drain's end (dropped, or still held when its bound ran out); -1
	// without a target.
	short int64
	delta map[string]float64 // counter deltas from the window's start to the drain's end
}

// window measures one load run against srv: the server's CPU time and the
// metric counters named in counters, read at the window's start and, after
// the window, once the server has delivered what it accepted in the
// window (per dr) or Options.Drain ran out: a server that falls behind
// pays for its backlog here, not after the measurement.
func (s *Suite) window(ctx context.Context, srv *server, opts load.Options, op load.Op, counters map[string]*regexp.Regexp, dr drainSpec) (windowResult, error) {
	var cpu0 procstat.Sample
	var m0 map[string]float64
	var cpuErr error
	var stopped time.Time
	opts.OnStart = func() {
		m0 = scrape(srv.metricsURL, counters)
		cpu0, cpuErr = procstat.Read(srv.Pid())
	}
	opts.OnStop = func() { stopped = time.Now() }
	res, err := load.Run(ctx, opts, op)
	if err != nil {
		return windowResult{res: res}, err
	}
	if cpuErr != nil {
		return windowResult{res: res}, cpuErr
	}
	delta := func(m1 map[string]float64) map[string]float64 {
		d := map[string]float64{}
		for k := range counters {
			a, okA := m0[k]
			b, okB := m1[k]
			if okA || okB {
				d[k] = b - a
			} else {
				d[k] = -1
			}
		}
		return d
	}
	sum := func(d map[string]float64, keys []string) (float64, bool) {
		var v float64
		found := false
		for _, k := range keys {
			if d[k] >= 0 {
				v += d[k]
				found = true
			}
		}
		return v, found
	}
	target := float64(res.OK * dr.perItem)
	var d, last map[string]float64
	var short int64 = -1
	deadline := time.Now().Add(s.opts.Drain)
	var still time.Time // since when the counters have not moved
	for {
		m1 := scrape(srv.metricsURL, counters)
		d = delta(m1)
		sent, ok := sum(d, dr.sent)
		settled := false
		if dr.perItem > 0 && ok {
			short = max(int64(target-sent), 0)
			settled = short == 0
		}
		if !maps.Equal(m1, last) {
			still = time.Now()
		}
		last = m1
		empty := true
		for _, g := range dr.gauges {
			if m1[g] > 0 {
				empty = false
			}
		}
		if empty && time.Since(still) >= drainQuiet {
			settled = true
		}
		if settled || time.Now().After(deadline) || ctx.Err() != nil || srv.Exited() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cpu1, err := procstat.Read(srv.Pid())
	if err != nil {
		return windowResult{res: res}, err
	}
	drain := time.Since(stopped)
	if srv.Exited() {
		return windowResult{res: res}, fmt.Errorf("%s exited during the run: %s", srv.Name, srv.Output())
	}
	return windowResult{res: res, cpu: cpu1.Since(cpu0), drain: drain, short: short, delta: d}, nil
}

func (s *Suite) runReport(ctx context.Context, name string, batchRate float64, setup reportSetup) (Measurement, error) {
	dir, err := s.reportConfig(setup.kafka)
	if err != nil {
		return Measurement{}, err
	}
	srv, addr, err := s.startMixer(dir, false)
	if err != nil {
		return Measurement{}, err
	}
	defer srv.Stop(20 * time.Second)
	// Two proxies: two connections, one caller each, as each proxy's
	// report sender sends one batch at a time.
	conns, err := dial(addr, 2)
	if err != nil {
		return Measurement{}, err
	}
	defer closeAll(conns)
	counters := map[string]*regexp.Regexp{
		"kafka_sent":     regexp.MustCompile(`^sidemix_kafka_records_total\{.*result="sent".*\} (\S+)`),
		"kafka_dropped":  regexp.MustCompile(`^sidemix_kafka_records_total\{.*result="(?:[^s]|s[^e])[^"]*".*\} (\S+)`),
		"queue_dropped":  regexp.MustCompile(`^sidemix_mixer_report_instances_dropped_total\S* (\S+)`),
		"jaeger_sent":    regexp.MustCompile(`^sidemix_jaeger_spans_sent_total\S* (\S+)`),
		"jaeger_dropped": regexp.MustCompile(`^sidemix_jaeger_spans_(?:dropped|failed)_total\S* (\S+)`),
		"kafka_buffered": regexp.MustCompile(`^sidemix_kafka_buffered_records\S* (\S+)`),
		"jaeger_queued":  regexp.MustCompile(`^sidemix_jaeger_queue_spans\S* (\S+)`),
	}
	// Every bag makes one kafka record when the kafka rule is on; the
	// handlers' backlogs must be empty.
	dr := drainSpec{sent: []string{"kafka_sent"}, dropped: []string{"kafka_dropped", "queue_dropped"},
		gauges: []string{"kafka_buffered", "jaeger_queued"}}
	if setup.kafka {
		dr.perItem = int64(s.opts.Batch)
	}
	w, err := s.window(ctx, srv, load.Options{Workers: 2, Warmup: s.opts.Warmup, Duration: s.opts.Duration, Rate: batchRate}, reportOp(conns, 2, s.opts.Batch, setup.sampleEvery), counters, dr)
	if err != nil {
		return Measurement{}, err
	}
	d := w.delta
	m := measure(name, w, int64(s.opts.Batch))
	m.Delivered = int64(d["kafka_sent"])
	m.Dropped = int64(max(d["kafka_dropped"], 0) + max(d["queue_dropped"], 0) + max(d["jaeger_dropped"], 0))
	m.JaegerSent = int64(d["jaeger_sent"])
	s.logf("%s: %s", name, m)
	return m, nil
}

func (s *Suite) runSpansSidemix(ctx context.Context, name string, rate float64, tracespan bool) (Measurement, error) {
	dir, err := s.spansConfig(tracespan)
	if err != nil {
		return Measurement{}, err
	}
	srv, addr, err := s.startMixer(dir, true)
	if err != nil {
		return Measurement{}, err
	}
	defer srv.Stop(20 * time.Second)
	counters := map[string]*regexp.Regexp{
		"kafka_sent": regexp.MustCompile(`^sidemix_kafka_instances_sent_total\S* (\S+)`),
		// A mixer older than that counter wrote one span per record.
		"kafka_sent_records": regexp.MustCompile(`^sidemix_kafka_records_total\{.*result="sent".*\} (\S+)`),
		"kafka_dropped":      regexp.MustCompile(`^sidemix_kafka_records_total\{.*result="(?:[^s]|s[^e])[^"]*".*\} (\S+)`),
		"queue_dropped":      regexp.MustCompile(`^sidemix_mixer_report_instances_dropped_total\S* (\S+)`),
		"kafka_buffered":     regexp.MustCompile(`^sidemix_kafka_buffered_records\S* (\S+)`),
	}
	return s.runSpans(ctx, name, rate, srv, addr, counters, drainSpec{sent: []string{"kafka_sent"},
		dropped: []string{"kafka_dropped", "queue_dropped"}, gauges: []string{"kafka_buffered"}})
}

// runSpans drives srv's OTLP/gRPC endpoint with SpanCallers callers, a
// connection each (instrumented apps), closed loop or at rate exports per
// second.
// dr.sent[0] is the delivered spans' counter; the drain waits until it
// (plus drops) reaches the spans accepted in the window.
func (s *Suite) runSpans(ctx context.Context, name string, rate float64, srv *server, addr string, counters map[string]*regexp.Regexp, dr drainSpec) (Measurement, error) {
	conns, err := dial(addr, s.opts.SpanCallers)
	if err != nil {
		return Measurement{}, err
	}
	defer closeAll(conns)
	dr.perItem = int64(s.opts.SpanBatch)
	op, err := spanOp(conns, s.opts.SpanBatch)
	if err != nil {
		return Measurement{}, err
	}
	w, err := s.window(ctx, srv, load.Options{Workers: s.opts.SpanCallers, Warmup: s.opts.Warmup, Duration: s.opts.Duration, Rate: rate}, op, counters, dr)
	if err != nil {
		return Measurement{}, err
	}
	d := w.delta
	sent := dr.sent[0]
	m := measure(name, w, int64(s.opts.SpanBatch))
	m.Delivered = int64(d[sent])
	if old, ok := d[sent+"_records"]; ok && d[sent] < 0 {
		m.Delivered = int64(old)
	}
	m.Dropped = 0
	for _, k := range dr.dropped {
		m.Dropped += int64(max(d[k], 0))
	}
	if m.Items > 0 && m.Delivered == 0 {
		// A server that delivers nothing is cheap: its figures would lie.
		out := srv.Output()
		return m, fmt.Errorf("%s accepted %d spans but delivered none to Kafka (dropped %d):\n%s", srv.Name, m.Items, m.Dropped, out[max(0, len(out)-3000):])
	}
	s.logf("%s: %s", name, m)
	return m, nil
}

func measure(name string, w windowResult, per int64) Measurement {
	res, cpu := w.res, w.cpu.CPU.Seconds()
	m := Measurement{Scenario: name, Items: res.OK * per, Rate: res.Rate() * float64(per), CPU: cpu,
		CPUMeter: string(w.cpu.Source),
		Drain:    w.drain.Seconds(), Shortfall: w.short,
		Errors: res.Errors, Delivered: -1, Dropped: -1, JaegerSent: -1}
	if res.FirstError != nil {
		m.FirstError = res.FirstError.Error()
	}
	if w.short > 0 && m.FirstError == "" {
		m.FirstError = fmt.Sprintf("%d items accepted in the window undelivered (dropped or still held) after the %.1f s drain", w.short, w.drain.Seconds())
	}
	if w.cpu.Source != procstat.Clock {
		m.CPUMeter += ": " + w.cpu.Why
	}
	if cpu > 0 {
		// Items that were accepted but never delivered cost less than
		// delivered ones: only those delivered count then.
		m.PerCPUSecond = float64(m.Items-max(w.short, 0)) / cpu
	}
	if s := res.Elapsed.Seconds(); s > 0 {
		m.VCPU = cpu / s
	}
	return m
}

func (m Measurement) String() string {
	if m.Skipped != "" {
		return "skipped: " + m.Skipped
	}
	meter := ""
	if m.CPUMeter != "" && m.CPUMeter != string(procstat.Clock) {
		meter = " [CPU read by " + m.CPUMeter + "]"
	}
	return fmt.Sprintf("%d items, %.0f/s, %.3f CPU-s (%.4f vCPU)%s incl. %.2f s drain (short %d), %.0f per CPU-second, delivered %d, dropped %d, jaeger %d, errors %d %s",
		m.Items, m.Rate, m.CPU, m.VCPU, meter, m.Drain, m.Shortfall, m.PerCPUSecond, m.Delivered, m.Dropped, m.JaegerSent, m.Errors, m.FirstError)
}

// scrape sums, per name, the values of the Prometheus text lines at url
// each pattern matches (its first group is the value). A name with no
// matching line is absent.
func scrape(url string, patterns map[string]*regexp.Regexp) map[string]float64 {
	out := map[string]float64{}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for name, re := range patterns {
			if g := re.FindStringSubmatch(line); g != nil {
				if v, err := strconv.ParseFloat(g[len(g)-1], 64); err == nil {
					out[name] += v
				}
			}
		}
	}
	return out
}

// dial opens n client connections to addr, as n proxies (or apps) would.
func dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		c.Connect()
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		c.Close()
	}
}
