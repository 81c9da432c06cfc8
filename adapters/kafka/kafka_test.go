package kafka_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/configtest"
	"github.com/sidemix/sidemix/adapters/internal/metrictest"
	"github.com/sidemix/sidemix/adapters/kafka"
	"github.com/sidemix/sidemix/adapters/template"
)

// newCluster starts an in-process kfake broker with topic (3 partitions).
func newCluster(t *testing.T, topic string, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

type record struct {
	key, value string
	partition  int32
}

// consume reads topic from the start with franz-go until it has n records
// or timeout passes, then a little longer to see extra records.
func consume(t *testing.T, addr, topic string, n int, timeout time.Duration) []record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []record
	deadline := time.Now().Add(timeout)
	extra := time.Time{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, record{string(r.Key), string(r.Value), r.Partition})
		})
		if len(out) >= n && extra.IsZero() {
			extra = time.Now().Add(300 * time.Millisecond)
		}
		if (!extra.IsZero() && time.Now().After(extra)) || time.Now().After(deadline) {
			break
		}
	}
	if len(out) < n {
		t.Fatalf("consumed %d records of %s after %v, want %d", len(out), topic, timeout, n)
	}
	return out
}

func newHandler(t *testing.T, reg prometheus.Registerer, params string) adapters.Reporter {
	t.Helper()
	set := adapters.Settings{Name: "kafka", Registerer: reg,
		Now: func() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) }}
	return configtest.Create(t, kafka.Factory(), set, []byte(params)).(adapters.Reporter)
}

func access(dest string, i int) *template.LogEntry {
	return &template.LogEntry{
		Name:      "accesslog",
		Timestamp: time.Date(2025, 3, 1, 11, 0, 0, i, time.UTC),
		Variables: template.FieldsOf(map[string]any{"destination": dest, "seq": int64(i), "latency": 3 * time.Millisecond}),
	}
}

// withVars is f with the variables of extra added (or replaced), in
// layout (nil: a layout of their own).
func withVars(f template.Fields, extra map[string]any, layout *template.Layout) template.Fields {
	m := f.Map()
	for k, v := range extra {
		m[k] = v
	}
	if layout == nil {
		return template.FieldsOf(m)
	}
	return template.FieldsIn(layout, m)
}

func value(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return metrictest.Value(t, reg, name, labels)
}

func sent(t *testing.T, reg prometheus.Gatherer) float64 {
	return value(t, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "sent"})
}

// waitSent waits until n records were acknowledged.
func waitSent(t *testing.T, reg prometheus.Gatherer, n float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for sent(t, reg) < n {
		if time.Now().After(deadline) {
			t.Fatalf("sent = %v after %v, want %v", sent(t, reg), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJSONRecordsKeyedByDestination(t *testing.T) {
	c := newCluster(t, "access")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: access\nkey: variables.destination\n", addr))

	var insts []template.Instance
	for i := range 30 {
		insts = append(insts, access([]string{"invoice", "notification", "product"}[i%3], i))
	}
	insts = append(insts, &template.Metric{Name: "not a log entry"})
	// Reported in several batches, as the mixer's queue does.
	for i := 0; i < len(insts); i += 7 {
		if err := h.Report(context.Background(), insts[i:min(i+7, len(insts))]); err != nil {
			t.Fatal(err)
		}
	}
	recs := consume(t, addr, "access", 30, 10*time.Second)
	if len(recs) != 30 {
		t.Fatalf("consumed %d records, want 30", len(recs))
	}
	partitionOf := map[string]int32{}
	lastSeq := map[string]int64{}
	for _, r := range recs {
		var m map[string]any
		if err := json.Unmarshal([]byte(r.value), &m); err != nil {
			t.Fatalf("record %q: %v", r.value, err)
		}
		if m["destination"] != r.key {
			t.Errorf("record %s has key %q", r.value, r.key)
		}
		if p, ok := partitionOf[r.key]; ok && p != r.partition {
			t.Errorf("key %s in partitions %d and %d", r.key, p, r.partition)
		}
		partitionOf[r.key] = r.partition
		seq := int64(m["seq"].(float64))
		if last, ok := lastSeq[r.key]; ok && seq <= last {
			t.Errorf("key %s: seq %d after %d: out of order", r.key, seq, last)
		}
		lastSeq[r.key] = seq
		if m["instance"] != "accesslog" || m["latency"] != "3ms" || m["severity"] != "INFO" ||
			!strings.HasPrefix(m["time"].(string), "2025-03-01T11:00:00") {
			t.Errorf("record %s", r.value)
		}
	}
	waitSent(t, reg, 30, 5*time.Second)
	if n := value(t, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "wrong_template"}); n != 1 {
		t.Errorf("wrong_template = %v, want 1", n)
	}
	if n := value(t, reg, "sidemix_kafka_buffered_records", map[string]string{"handler": "kafka"}); n != 0 {
		t.Errorf("buffered = %v, want 0", n)
	}
}

func TestKeyErrorSendsWithoutKey(t *testing.T) {
	c := newCluster(t, "access")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: access\nkey: variables.missing\n", addr))
	if err := h.Report(context.Background(), []template.Instance{access("a", 1)}); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, addr, "access", 1, 10*time.Second)
	if recs[0].key != "" {
		t.Errorf("key = %q, want none", recs[0].key)
	}
	if n := value(t, reg, "sidemix_kafka_key_errors_total", map[string]string{"handler": "kafka"}); n != 1 {
		t.Errorf("key errors = %v, want 1", n)
	}
}

func span(id string) *template.TraceSpan {
	start := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	return &template.TraceSpan{
		Name: "span", TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: id,
		ParentSpanID: "b7ad6b7169203331", SpanName: "GET /invoices",
		StartTime: start, EndTime: start.Add(5 * time.Millisecond),
		SpanKind: template.SpanKindServer, Status: template.SpanStatusUnset, HTTPStatusCode: 200,
		SourceName: "product", DestinationName: "invoice",
		SpanTags: []template.SpanTag{{Key: "http.request.method", Value: "GET"}, {Key: "http.response.status_code", Value: int64(200)}},
	}
}

func TestSpansAsJSON(t *testing.T) {
	c := newCluster(t, "spans")
	addr := c.ListenAddrs()[0]
	h := newHandler(t, prometheus.NewRegistry(), fmt.Sprintf("brokers: [%s]\ntopic: spans\nkey: traceId\n", addr))
	if err := h.Report(context.Background(), []template.Instance{span("00f067aa0ba902b7")}); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, addr, "spans", 1, 10*time.Second)
	want := `{"instance":"span","traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7",` +
		`"parentSpanId":"b7ad6b7169203331","name":"GET /invoices","kind":"server","startTime":"2025-03-01T11:00:00Z",` +
		`"endTime":"2025-03-01T11:00:00.005Z","status":"unset","httpStatusCode":200,"serviceName":"invoice",` +
		`"sourceName":"product","destinationName":"invoice","tags":{"http.request.method":"GET","http.response.status_code":200}}`
	if recs[0].value != want || recs[0].key != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("record %q = %s\nwant %s", recs[0].key, recs[0].value, want)
	}
}

func TestOTLPProto(t *testing.T) {
	c := newCluster(t, "otlp")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: otlp\nkey: name\nencoding: otlp_proto\n", addr))
	bad := span("not hex")
	err := h.Report(context.Background(), []template.Instance{span("00f067aa0ba902b7"), access("invoice", 1), bad})
	if err != nil {
		t.Fatal(err)
	}
	recs := consume(t, addr, "otlp", 2, 10*time.Second)
	var spans, logs int
	for _, r := range recs {
		switch r.key {
		case "span":
			td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces([]byte(r.value))
			if err != nil {
				t.Fatal(err)
			}
			rs := td.ResourceSpans().At(0)
			sp := rs.ScopeSpans().At(0).Spans().At(0)
			if svc, _ := rs.Resource().Attributes().Get("service.name"); svc.Str() != "invoice" ||
				sp.Name() != "GET /invoices" || sp.SpanID().String() != "00f067aa0ba902b7" || sp.Kind() != ptrace.SpanKindServer {
				t.Errorf("span: service %s, %s %s %v", svc.Str(), sp.Name(), sp.SpanID(), sp.Kind())
			}
			spans += td.SpanCount()
		case "accesslog":
			ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs([]byte(r.value))
			if err != nil {
				t.Fatal(err)
			}
			lr := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
			if d, _ := lr.Attributes().Get("destination"); d.Str() != "invoice" {
				t.Errorf("log record attributes %v", lr.Attributes().AsRaw())
			}
			logs += ld.LogRecordCount()
		default:
			t.Errorf("unexpected key %q", r.key)
		}
	}
	if spans != 1 || logs != 1 {
		t.Errorf("spans %d, logs %d, want 1 and 1", spans, logs)
	}
	if n := value(t, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "encode_error"}); n != 1 {
		t.Errorf("encode_error = %v, want 1 (the span with a bad id)", n)
	}
}

// A record the broker refuses as too large is dropped and counted; the
// records batched with it are delivered.
func TestRecordTooLargeForTheBroker(t *testing.T) {
	c := newCluster(t, "access", kfake.BrokerConfigs(map[string]string{"message.max.bytes": "4000"}))
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	h := configtest.Create(t, kafka.Factory(), adapters.Settings{Name: "kafka", Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
		[]byte(fmt.Sprintf("brokers: [%s]\ntopic: access\nkey: variables.destination\nbatchBytes: 20000\n", addr))).(adapters.Reporter)
	huge := access("invoice", 99)
	huge.Variables = withVars(huge.Variables, map[string]any{"body": strings.Repeat("x", 10000)}, nil) // above the broker's limit, below batchBytes
	larger := access("invoice", 98)
	larger.Variables = withVars(larger.Variables, map[string]any{"body": strings.Repeat("y", 30000)}, nil) // above batchBytes: refused before sending
	insts := []template.Instance{access("invoice", 1), huge, access("invoice", 2), larger, access("invoice", 3)}
	if err := h.Report(context.Background(), insts); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, addr, "access", 3, 10*time.Second)
	if len(recs) != 3 {
		t.Errorf("consumed %d records, want 3", len(recs))
	}
	for i, r := range recs {
		if !strings.Contains(r.value, fmt.Sprintf(`"seq":%d`, i+1)) {
			t.Errorf("record %d = %.80s", i, r.value)
		}
	}
	waitSent(t, reg, 3, 5*time.Second)
	if n := value(t, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "too_large"}); n != 2 {
		t.Errorf("too_large = %v, want 2", n)
	}
	// Both are logged with their key, the first as a warning; the next
	// within the interval at debug level, not to flood the log.
	out := logs.String()
	if strings.Count(out, `level=WARN msg="record too large for kafka; dropped" topic=access key=invoice`) != 1 ||
		strings.Count(out, `level=DEBUG msg="record too large for kafka; dropped" topic=access key=invoice`) != 1 {
		t.Errorf("log:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Records reported while the broker is down stay buffered, are retried
// and are delivered when it is back; records beyond the buffer are dropped
// and counted.
func TestBrokerOutage(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, "access", kfake.DataDir(dir))
	addr := c.ListenAddrs()[0]
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: access\nkey: variables.destination\nbatchSize: 10\nbufferSize: 50\n", addr))

	report := func(from, to int) {
		t.Helper()
		var insts []template.Instance
		for i := from; i < to; i++ {
			insts = append(insts, access("invoice", i))
		}
		if err := h.Report(context.Background(), insts); err != nil {
			t.Fatal(err)
		}
	}
	report(0, 20)
	waitSent(t, reg, 20, 10*time.Second)

	c.Close()
	report(20, 60)
	buffered := map[string]string{"handler": "kafka"}
	deadline := time.Now().Add(10 * time.Second)
	for value(t, reg, "sidemix_kafka_write_errors_total", buffered) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no write errors while the broker is down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := value(t, reg, "sidemix_kafka_buffered_records", buffered); n != 40 {
		t.Errorf("buffered = %v while the broker is down, want 40", n)
	}
	report(60, 80) // 10 fit, 10 do not
	if n := value(t, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "buffer_full"}); n != 10 {
		t.Errorf("buffer_full = %v, want 10", n)
	}

	c2, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(atoi(t, port)), kfake.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c2.Close)
	waitSent(t, reg, 70, 20*time.Second)
	recs := consume(t, addr, "access", 70, 10*time.Second)
	if len(recs) != 70 {
		t.Errorf("consumed %d records, want 70", len(recs))
	}
	for i, r := range recs { // one key: one partition, in order
		if !strings.Contains(r.value, fmt.Sprintf(`"seq":%d,`, i)) {
			t.Fatalf("record %d = %s", i, r.value)
		}
	}
	if n := value(t, reg, "sidemix_kafka_buffered_records", buffered); n != 0 {
		t.Errorf("buffered = %v after delivery, want 0", n)
	}
}

func atoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Close delivers what is buffered; when its context ends first, what is
// left is dropped and counted.
func TestCloseGivesUpWhenItsContextEnds(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg, err := configtest.Decode(kafka.Factory(), []byte("brokers: [127.0.0.1:1]\ntopic: access\n"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := kafka.Factory().Create(context.Background(), adapters.Settings{Name: "kafka", Registerer: reg}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.(adapters.Reporter).Report(context.Background(), []template.Instance{access("a", 1), access("a", 2)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.Close(ctx); err == nil {
		t.Error("Close reported no error with records left")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if n := value(t, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "shutdown"}); n != 2 {
		t.Errorf("shutdown = %v, want 2", n)
	}
	if err := h.(adapters.Reporter).Report(context.Background(), []template.Instance{access("a", 3)}); err == nil {
		t.Error("Report after Close succeeded")
	}
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := newCluster(t, "access", kfake.EnableSASL(), kfake.Superuser(mech, "sidemix", "s3cret"))
			addr := c.ListenAddrs()[0]
			reg := prometheus.NewRegistry()
			h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: access\nsasl: {mechanism: %s, username: sidemix, password: s3cret}\n", addr, mech))
			if err := h.Report(context.Background(), []template.Instance{access("a", 1)}); err != nil {
				t.Fatal(err)
			}
			waitSent(t, reg, 1, 10*time.Second)
		})
	}
}

func TestRedacted(t *testing.T) {
	cfg := kafka.NewConfig()
	cfg.SASL = kafka.SASL{Mechanism: kafka.SASLPlain, Username: "u", Password: "s3cret"}
	r := cfg.Redacted().(*kafka.Config)
	if r.SASL.Password != "xxxxx" || cfg.SASL.Password != "s3cret" {
		t.Errorf("redacted password %q, original %q", r.SASL.Password, cfg.SASL.Password)
	}
	if s := fmt.Sprint(cfg.LogValue()); strings.Contains(s, "s3cret") {
		t.Errorf("LogValue shows the password: %s", s)
	}
}

// On a config reload the old handler drains while its successor, of the
// same name, fills: the buffered gauge is the sum of both.
func TestBufferedGaugeAcrossReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	params := []byte("brokers: [127.0.0.1:1]\ntopic: access\n")
	create := func() adapters.Handler {
		cfg, err := configtest.Decode(kafka.Factory(), params)
		if err != nil {
			t.Fatal(err)
		}
		h, err := kafka.Factory().Create(context.Background(), adapters.Settings{Name: "kafka", Registerer: reg}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	old, next := create(), create()
	defer func() { // the broker never comes: Close gives up when its context ends
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		next.Close(ctx)
	}()
	old.(adapters.Reporter).Report(context.Background(), []template.Instance{access("a", 1), access("a", 2), access("a", 3)})
	next.(adapters.Reporter).Report(context.Background(), []template.Instance{access("a", 4), access("a", 5)})
	handler := map[string]string{"handler": "kafka"}
	if n := value(t, reg, "sidemix_kafka_buffered_records", handler); n != 5 {
		t.Errorf("buffered = %v, want 5", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	old.Close(ctx)
	if n := value(t, reg, "sidemix_kafka_buffered_records", handler); n != 2 {
		t.Errorf("buffered = %v after the old handler closed, want 2", n)
	}
}

// BenchmarkReport measures records per second through Report to an
// in-process broker, including encoding, keys and acknowledgement.
func BenchmarkReport(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "access"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	reg := prometheus.NewRegistry()
	h := configtest.Create(b, kafka.Factory(), adapters.Settings{Name: "kafka", Registerer: reg},
		[]byte(fmt.Sprintf("brokers: [%s]\ntopic: access\nkey: variables.destination\nrequiredAcks: one\n", c.ListenAddrs()[0]))).(adapters.Reporter)
	batch := make([]template.Instance, 100)
	extra := map[string]any{"url": "/checkout?item=tea", "method": "GET", "responseCode": int64(201)}
	var layout *template.Layout // one for all, as an instance's entries have
	for i := range batch {
		e := access([]string{"invoice", "notification", "product"}[i%3], i)
		e.Variables = withVars(e.Variables, extra, layout)
		layout = e.Variables.Layout()
		batch[i] = e
	}
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		if err := h.Report(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
		// Stay within the buffer: wait when it is half full.
		for value(b, reg, "sidemix_kafka_buffered_records", map[string]string{"handler": "kafka"}) > kafka.DefaultBufferSize/2 {
			time.Sleep(time.Millisecond)
		}
	}
	for sent := 0.0; sent < float64(n); sent = value(b, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "sent"}) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func TestCompressionAndAcks(t *testing.T) {
	c := newCluster(t, "access")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	cases := []struct{ compression, acks string }{
		{"gzip", "all"}, {"snappy", "one"}, {"lz4", "all"}, {"zstd", "one"}, {"none", "none"},
	}
	for i, tc := range cases {
		h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: access\ncompression: %s\nrequiredAcks: %s\n", addr, tc.compression, tc.acks))
		if err := h.Report(context.Background(), []template.Instance{access(tc.compression, i)}); err != nil {
			t.Fatal(err)
		}
	}
	recs := consume(t, addr, "access", len(cases), 10*time.Second)
	got := map[string]bool{}
	for _, r := range recs {
		var m map[string]any
		if err := json.Unmarshal([]byte(r.value), &m); err != nil {
			t.Fatalf("record %q: %v", r.value, err)
		}
		got[m["destination"].(string)] = true
	}
	for _, tc := range cases {
		if !got[tc.compression] {
			t.Errorf("no record written with compression %s, acks %s", tc.compression, tc.acks)
		}
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	serverCfg, caFile := selfSigned(t, dir)
	c := newCluster(t, "access", kfake.TLS(serverCfg))
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: access\ntls: {enabled: true, caFile: %s, serverName: kafka.test}\n", addr, caFile))
	if err := h.Report(context.Background(), []template.Instance{access("a", 1)}); err != nil {
		t.Fatal(err)
	}
	waitSent(t, reg, 1, 10*time.Second)

	// Without the CA the broker's certificate is refused: nothing is sent.
	reg2 := prometheus.NewRegistry()
	untrusting := newHandler(t, reg2, fmt.Sprintf("brokers: [%s]\ntopic: access\ntls: {enabled: true, serverName: kafka.test}\n", addr))
	if err := untrusting.Report(context.Background(), []template.Instance{access("a", 2)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(t, reg2, "sidemix_kafka_write_errors_total", map[string]string{"handler": "kafka"}) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no write error with an untrusted certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := sent(t, reg2); n != 0 {
		t.Errorf("sent = %v with an untrusted certificate", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	untrusting.Close(ctx)
}

// selfSigned makes a CA-less self-signed certificate for kafka.test and
// returns the server's TLS config and the certificate's PEM file.
func selfSigned(t *testing.T, dir string) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kafka.test"},
		DNSNames:     []string{"kafka.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, caFile
}

// With otlp_proto the spans of one report and key share a record, split
// so that no record is above batchBytes; records of different keys stay
// apart; every span arrives once.
func TestOTLPSpansBatchedPerKey(t *testing.T) {
	c := newCluster(t, "batched")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	// One span's TracesData is about 300 bytes: 2,000 bytes hold a few.
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: batched\nkey: destinationName\nencoding: otlp_proto\notlpBatch: true\nbatchBytes: 2000\n", addr))
	var insts []template.Instance
	want := map[string]string{} // span id -> destination
	for i := range 40 {
		sp := span(fmt.Sprintf("%016x", i+1))
		sp.DestinationName = []string{"invoice", "product"}[i%2]
		want[sp.SpanID] = sp.DestinationName
		insts = append(insts, sp)
	}
	if err := h.Report(context.Background(), insts); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(t, reg, "sidemix_kafka_instances_sent_total", map[string]string{"handler": "kafka"}) < 40 {
		if time.Now().After(deadline) {
			t.Fatal("40 spans not sent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	records := int(sent(t, reg))
	recs := consume(t, addr, "batched", records, 10*time.Second)
	if len(recs) != records || records < 4 || records >= 40 {
		t.Fatalf("%d records consumed, %d sent: want the 40 spans in a few records of both keys", len(recs), records)
	}
	got := map[string]string{}
	for _, r := range recs {
		if len(r.key)+len(r.value)+23 > 2000 {
			t.Errorf("record of %d bytes, above batchBytes", len(r.key)+len(r.value))
		}
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces([]byte(r.value))
		if err != nil {
			t.Fatal(err)
		}
		if td.SpanCount() < 2 {
			t.Errorf("record of key %s holds %d spans, want several", r.key, td.SpanCount())
		}
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			rs := td.ResourceSpans().At(i)
			for j := 0; j < rs.ScopeSpans().Len(); j++ {
				ss := rs.ScopeSpans().At(j).Spans()
				for k := 0; k < ss.Len(); k++ {
					id := ss.At(k).SpanID().String()
					if _, dup := got[id]; dup {
						t.Errorf("span %s twice", id)
					}
					got[id] = r.key
				}
			}
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("span -> record key = %v, want %v", got, want)
	}
}

// With several produce requests in flight (one per writer), the records of
// one key still arrive in order, even when all keys share one partition.
func TestInFlightWritersKeepKeyOrder(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "access"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: access\nkey: variables.destination\nbatchSize: 5\nlinger: 1ms\nmaxInFlight: 4\n", addr))
	const n, keys = 600, 12
	var insts []template.Instance
	for i := range n {
		insts = append(insts, access(fmt.Sprintf("svc-%d", i%keys), i))
	}
	for i := 0; i < n; i += 25 {
		if err := h.Report(context.Background(), insts[i:i+25]); err != nil {
			t.Fatal(err)
		}
	}
	recs := consume(t, addr, "access", n, 20*time.Second)
	if len(recs) != n {
		t.Fatalf("consumed %d records, want %d", len(recs), n)
	}
	lastSeq := map[string]int64{}
	inReportOrder := true
	for i, r := range recs {
		var m map[string]any
		if err := json.Unmarshal([]byte(r.value), &m); err != nil {
			t.Fatal(err)
		}
		seq := int64(m["seq"].(float64))
		if seq != int64(i) {
			inReportOrder = false
		}
		if last, ok := lastSeq[r.key]; ok && seq <= last {
			t.Errorf("key %s: seq %d after %d: out of order", r.key, seq, last)
		}
		lastSeq[r.key] = seq
	}
	if len(lastSeq) != keys {
		t.Errorf("%d keys, want %d", len(lastSeq), keys)
	}
	t.Logf("records of different keys interleaved across writers: %v", !inReportOrder)
}

// bufferBytes bounds the buffer by bytes as well: while the broker is
// unreachable, records beyond it are dropped and counted, and the bytes
// held are visible.
func TestBufferBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg, err := configtest.Decode(kafka.Factory(), []byte("brokers: [127.0.0.1:1]\ntopic: access\nbatchBytes: 1024\nbufferBytes: 2048\nbufferSize: 1000\n"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := kafka.Factory().Create(context.Background(), adapters.Settings{Name: "kafka", Registerer: reg}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = h.Close(ctx)
	}()
	const n = 100
	var insts []template.Instance
	for i := range n {
		insts = append(insts, access("a", i))
	}
	if err := h.(adapters.Reporter).Report(context.Background(), insts); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"handler": "kafka"}
	held := value(t, reg, "sidemix_kafka_buffered_records", labels)
	bytes := value(t, reg, "sidemix_kafka_buffered_bytes", labels)
	full := value(t, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "buffer_full"})
	if held+full != n || full == 0 || held == 0 {
		t.Errorf("held %v + buffer_full %v, want %d with both > 0", held, full, n)
	}
	// Each record is ~100 bytes: the buffer is full to within one record.
	if bytes > 2048 || bytes < 2048-bytes/held-1 {
		t.Errorf("buffered bytes = %v for %v records, want at most 2048 and within one record of it", bytes, held)
	}
}

// TestLanesLinger: a record that comes to an idle lane is written at
// once; records that come within linger of the lane's last write wait
// for the next one, which starts linger after it.
func TestLanesLinger(t *testing.T) {
	c := newCluster(t, "linger")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: linger\nlinger: 2s\nmaxInFlight: 1\n", addr))
	// The first write also fetches the topic's metadata: let it happen.
	if err := h.Report(context.Background(), []template.Instance{access("warmup", 0)}); err != nil {
		t.Fatal(err)
	}
	waitSent(t, reg, 1, 10*time.Second)
	time.Sleep(2100 * time.Millisecond) // the lane is idle for linger

	start := time.Now()
	if err := h.Report(context.Background(), []template.Instance{access("a", 1)}); err != nil {
		t.Fatal(err)
	}
	waitSent(t, reg, 2, 10*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("a record to an idle lane took %v to be sent, want it at once", d)
	}
	for i := range 3 {
		if err := h.Report(context.Background(), []template.Instance{access("b", 2+i)}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	if n := sent(t, reg); n != 2 {
		t.Errorf("%v records sent within linger of the last write, want 2: the others wait", n)
	}
	waitSent(t, reg, 5, 10*time.Second)
	if d := time.Since(start); d < 1900*time.Millisecond {
		t.Errorf("the records that came within linger were sent %v after the last write started, want about linger", d)
	}
}

// A batch that fails holds back the batches of its partition behind it:
// when the broker refuses the second of three batches of one write with
// an error that can pass, the third is not written before the second is
// written again, so the records still arrive once each, in order.
func TestFailedBatchHoldsBackItsPartition(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "access"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var produces atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if produces.Add(1) != 2 {
			return nil, nil, false // the broker handles it
		}
		req := r.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: access\nkey: variables.destination\nbatchSize: 2\nmaxInFlight: 1\n", addr))
	const n = 6
	var insts []template.Instance
	for i := range n {
		insts = append(insts, access("invoice", i))
	}
	if err := h.Report(context.Background(), insts); err != nil { // one write: three batches
		t.Fatal(err)
	}
	recs := consume(t, addr, "access", n, 10*time.Second)
	if len(recs) != n {
		t.Fatalf("consumed %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		var m map[string]any
		if err := json.Unmarshal([]byte(r.value), &m); err != nil {
			t.Fatal(err)
		}
		if seq := m["seq"]; seq != float64(i) {
			t.Errorf("record %d has seq %v, want %d", i, seq, i)
		}
	}
	if got := produces.Load(); got != 4 {
		t.Errorf("%d produce requests, want 4 (3 batches, the second twice)", got)
	}
	if e := value(t, reg, "sidemix_kafka_write_errors_total", map[string]string{"handler": "kafka"}); e != 1 {
		t.Errorf("write errors = %v, want 1", e)
	}
}
