package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sidemix/sidemix/internal/testenv"
)

const kafkaTopic = "sidemix.accesslog"

// kafkaExample is examples/default/kafka.yaml turned on: the lines below its
// marker uncommented, pointed at brokers; extra lines are added to the
// handler's params.
func kafkaExample(t *testing.T, brokers string, extra ...string) string {
	t.Helper()
	text := example(t, "default/kafka.yaml")
	_, body, ok := strings.Cut(text, "# ---- uncomment below")
	if !ok {
		t.Fatal("examples/default/kafka.yaml has no uncomment marker")
	}
	_, body, _ = strings.Cut(body, "\n")
	var out []string
	for _, l := range strings.Split(body, "\n") {
		l = strings.TrimPrefix(l, "#")
		switch {
		case strings.HasPrefix(l, "    brokers:"):
			l = "    brokers: [" + brokers + "]"
		case strings.HasPrefix(l, "  params:"):
			for _, e := range extra {
				l += "\n    " + e
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// accessRecord is one JSON access record read back from Kafka.
type accessRecord struct {
	key  string
	vars map[string]any
}

func readAccessRecords(t *testing.T, k *testenv.Kafka, n int, timeout time.Duration) []accessRecord {
	t.Helper()
	var out []accessRecord
	for _, r := range testenv.ConsumeKcat(t, k.Addr(), kafkaTopic, n, timeout) {
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatalf("record %q is not JSON: %v", r.Value, err)
		}
		out = append(out, accessRecord{key: string(r.Key), vars: m})
	}
	return out
}

// TestKafkaAccessRecords: requests through the demo chain appear in Kafka,
// read by kcat, as JSON access records, one per request per reporting proxy,
// keyed by destination service.
func TestKafkaAccessRecords(t *testing.T) {
	testenv.RequireBinary(t, "kcat")
	k := testenv.StartKafka(t, kafkaTopic)
	cfg := newConfig(t, map[string]string{"kafka.yaml": kafkaExample(t, k.Addr())})
	m := startMixer(t, cfg, "", "")
	chain := startShopChain(t, m.grpc, "--report-interval", "100ms")

	const checkouts = 10
	for range checkouts {
		chain.checkout(t)
	}
	// Five reporting proxies per checkout: product, invoice and
	// notification inbound, product and invoice outbound.
	recs := readAccessRecords(t, k, 5*checkouts, 30*time.Second)
	if len(recs) != 5*checkouts {
		t.Fatalf("consumed %d records, want %d", len(recs), 5*checkouts)
	}
	type edge struct{ reporter, source, destination string }
	counts := map[edge]int{}
	for _, r := range recs {
		host, _ := r.vars["destinationServiceHost"].(string)
		if r.key != host || host == "" || host == "unknown" {
			t.Errorf("record keyed %q has destinationServiceHost %q", r.key, host)
		}
		if r.vars["instance"] != "accesslog" || r.vars["url"] == nil || r.vars["responseCode"] == nil {
			t.Errorf("record %v", r.vars)
		}
		// An outbound proxy knows its callee by service, not by workload.
		e := edge{fmt.Sprint(r.vars["reporter"]), fmt.Sprint(r.vars["sourceWorkload"]), strings.TrimSuffix(r.key, ".shop.svc.cluster.local")}
		counts[e]++
	}
	want := map[edge]int{
		{"destination", "unknown", "product"}:      checkouts,
		{"source", "product", "invoice"}:           checkouts,
		{"destination", "product", "invoice"}:      checkouts,
		{"source", "invoice", "notification"}:      checkouts,
		{"destination", "invoice", "notification"}: checkouts,
	}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("records per (reporter, source, destination):\n got %v\nwant %v", counts, want)
	}
}

// TestKafkaOutage: Kafka unavailable for 30 s in the middle of steady
// traffic loses nothing: the handler buffers, shows it in its metrics,
// and delivers every record when the broker is back.
func TestKafkaOutage(t *testing.T) {
	testenv.RequireBinary(t, "kcat")
	k := testenv.StartKafka(t, kafkaTopic)
	cfg := newConfig(t, map[string]string{"kafka.yaml": kafkaExample(t, k.Addr())})
	m := startMixer(t, cfg, "", "")
	a := newApp(t)
	px := startProxy(t, m.grpc, a.addr(), "--report-interval", "100ms")

	var sent atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { // steady load, about 20 requests a second
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			r, err := tryGet(px.url(fmt.Sprintf("/orders/%d", i)))
			if err != nil || r.code != 200 {
				done <- fmt.Errorf("request %d: %v %d", i, err, r.code)
				return
			}
			sent.Add(1)
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	defer stopLoad()

	time.Sleep(3 * time.Second)
	k.Stop()
	outage, before := time.Now(), sent.Load()
	handler := map[string]string{"handler": "kafka"}
	// While Kafka is down the records pile up in the buffer, and failed
	// writes are counted.
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		text, err := scrape(m.admin)
		if err != nil {
			return false, err.Error()
		}
		buffered := sample(text, "sidemix_kafka_buffered_records", handler)
		errs := sample(text, "sidemix_kafka_write_errors_total", handler)
		return buffered >= 20 && errs >= 1, fmt.Sprintf("buffered %v, write errors %v", buffered, errs)
	})
	time.Sleep(time.Until(outage.Add(30 * time.Second)))
	k.Restart()
	during := sent.Load() - before
	time.Sleep(3 * time.Second)
	stopLoad()
	n := int(sent.Load())
	t.Logf("%d requests sent, %d of them while Kafka was down", n, during)

	recs := readAccessRecords(t, k, n, 60*time.Second)
	urls := map[string]int{}
	for _, r := range recs {
		urls[fmt.Sprint(r.vars["url"])]++
	}
	if len(recs) != n || len(urls) != n {
		t.Errorf("consumed %d records for %d distinct requests, want %d records == requests sent", len(recs), len(urls), n)
	}
	text := waitMetric(t, m.admin, "sidemix_kafka_buffered_records", handler, 0, 30*time.Second)
	if got := sample(text, "sidemix_kafka_records_total", with(handler, "result", "sent")); int(got) != n {
		t.Errorf("sidemix_kafka_records_total{result=sent} = %v, want %d", got, n)
	}
	for _, res := range []string{"buffer_full", "too_large", "shutdown"} {
		if got := sample(text, "sidemix_kafka_records_total", with(handler, "result", res)); got != 0 {
			t.Errorf("sidemix_kafka_records_total{result=%s} = %v, want 0", res, got)
		}
	}
}

// kafkaSpans sends sampled requests' spans to Kafka as OTLP protobuf, one
// span per record keyed by trace id: what an OpenTelemetry Collector's kafka
// receiver (encoding otlp_proto) reads.
const kafkaSpans = `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: kafka-spans}
spec:
  adapter: kafka
  params:
    brokers: [BROKERS]
    topic: otlp_spans
    key: traceId
    encoding: otlp_proto
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: kafka-spans}
spec:
  match: default(request.trace.sampled, false)
  actions:
  - handler: kafka-spans
    instances: [span]
`

// TestKafkaSpansOTLP: every hop's spans of a checkout arrive in Kafka as
// OTLP protobuf keyed by trace id, read by kcat, with their parent links.
func TestKafkaSpansOTLP(t *testing.T) {
	testenv.RequireBinary(t, "kcat")
	k := testenv.StartKafka(t, "otlp_spans")
	cfg := newConfig(t, map[string]string{"kafka-spans.yaml": strings.ReplaceAll(kafkaSpans, "BROKERS", k.Addr())})
	m := startMixer(t, cfg, "", "")
	chain := startShopChain(t, m.grpc, "--report-interval", "100ms")

	const caller = "00f067aa0ba902b7"
	traces := []string{"4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"}
	for _, id := range traces {
		r := get(t, chain.product.sidecar.url("/checkout?item=tea"), "traceparent", "00-"+id+"-"+caller+"-01")
		if r.code != 201 {
			t.Fatalf("checkout: %d %s", r.code, r.body)
		}
	}
	// A server and a client span per hop: product, invoice, notification
	// server; product and invoice client.
	recs := testenv.ConsumeKcat(t, k.Addr(), "otlp_spans", 5*len(traces), 30*time.Second)
	if len(recs) != 5*len(traces) {
		t.Fatalf("consumed %d records, want %d", len(recs), 5*len(traces))
	}
	type span struct{ id, parent, service, kind string }
	byTrace := map[string][]span{}
	for _, r := range recs {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(r.Value)
		if err != nil {
			t.Fatalf("record keyed %q is not OTLP TracesData: %v", r.Key, err)
		}
		if td.SpanCount() != 1 {
			t.Errorf("record holds %d spans, want 1", td.SpanCount())
		}
		rs := td.ResourceSpans().At(0)
		svc, _ := rs.Resource().Attributes().Get("service.name")
		s := rs.ScopeSpans().At(0).Spans().At(0)
		if got := s.TraceID().String(); got != string(r.Key) {
			t.Errorf("span of trace %s keyed %q", got, r.Key)
		}
		byTrace[string(r.Key)] = append(byTrace[string(r.Key)], span{s.SpanID().String(), s.ParentSpanID().String(), svc.Str(), s.Kind().String()})
	}
	for _, id := range traces {
		spans := byTrace[id]
		ids := map[string]bool{caller: true}
		var kinds []string
		for _, s := range spans {
			ids[s.id] = true
			kinds = append(kinds, s.service+"/"+s.kind)
		}
		for _, s := range spans {
			if !ids[s.parent] {
				t.Errorf("trace %s: span %s (%s) has parent %q, not a span of the trace", id, s.id, s.service, s.parent)
			}
		}
		sort.Strings(kinds)
		want := "invoice/Client invoice/Server notification/Server product/Client product/Server"
		if strings.Join(kinds, " ") != want {
			t.Errorf("trace %s spans %v, want %s", id, kinds, want)
		}
	}
}
