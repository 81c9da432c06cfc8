package mixer

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/rawproto"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sidemix/sidemix/adapters/kafka"
	"github.com/sidemix/sidemix/internal/testenv"
)

// forwardConfig sends the spans of namespace shop, as received, to a
// kafka topic; with bags, a tracespan rule wants every span's bag too.
func forwardConfig(brokers, topic, sink string, bags bool) string {
	cfg := fmt.Sprintf(`
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: spans}
spec:
  adapter: kafka
  params:
    brokers: [%s]
    topic: %s
    key: serviceName
    encoding: otlp_proto
    otlpBatch: true
    linger: 5ms
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: asreceived}
spec: {template: otlp}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: forward-shop}
spec:
  match: context.protocol == "otlp" && source.workload.namespace == "shop"
  actions:
  - {handler: spans, instances: [asreceived]}
`, brokers, topic)
	if !bags {
		return cfg
	}
	return cfg + fmt.Sprintf(`---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: rec}
spec:
  adapter: testreport
  params: {sink: %s}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: span}
spec:
  template: tracespan
  params:
    traceId: request.trace.id
    spanId: request.trace.span_id
    spanName: default(span.name, "")
    startTime: default(request.time, timestamp("2026-01-01T00:00:00Z"))
    endTime: default(response.time, timestamp("2026-01-01T00:00:00Z"))
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: tracing}
spec:
  match: default(request.trace.sampled, false)
  actions:
  - {handler: rec, instances: [span]}
`, sink)
}

// forwardBody is an export of two resources, the app's (namespace shop,
// with a field no OTLP version defines, which must reach Kafka as sent) and
// one of namespace other, which the rule leaves out. It returns the body
// and the shop resource's entry.
func forwardBody(t *testing.T) (body, shop []byte) {
	t.Helper()
	app := marshalTraces(t, appTraces())
	// app is one field 1 entry; append an unknown field to its message.
	_, _, n := protowire.ConsumeTag(app)
	msg, _ := protowire.ConsumeBytes(app[n:])
	msg = protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), msg...), 4242, protowire.VarintType), 7)
	shop = wrap(msg, 1)
	other := threeResources()
	for _, rs := range other.ResourceSpans().All() {
		rs.Resource().Attributes().PutStr("service.namespace", "other")
	}
	return append(append([]byte(nil), shop...), marshalTraces(t, other)...), shop
}

func TestOTLPForwardToKafka(t *testing.T) {
	k := testenv.StartKafka(t, "fwd.grpc", "fwd.http", "fwd.grpc-with-span-bags")
	for _, c := range []struct {
		name, via string
		bags      bool
	}{
		{"grpc", "grpc", false},
		{"http", "http", false},
		{"grpc with span bags", "grpc", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			topic := "fwd." + strings.ReplaceAll(c.name, " ", "-")
			name, sk := newSink(t)
			dir := writeConfig(t, map[string]string{"fwd.yaml": forwardConfig(k.Addr(), topic, name, c.bags)})
			e := start(t, dir, Config{OTLPGRPCAddr: "127.0.0.1:0", OTLPHTTPAddr: "127.0.0.1:0",
				Adapters: testRegistry(t, kafka.Factory())})
			if got := e.srv.active.Load().otlp; got.bags != c.bags || !got.forward {
				t.Fatalf("plan = %+v, want bags %v and forwarding", got, c.bags)
			}
			body, shop := forwardBody(t)
			var resp []byte
			switch c.via {
			case "grpc":
				conn := otlpConn(t, e.srv.OTLPGRPCAddr())
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var out rawproto.Message
				err := conn.Invoke(ctx, "/"+otlpTraceService+"/Export", rawproto.Message(body), &out,
					grpc.ForceCodecV2(rawproto.NewCodec()))
				if err != nil {
					t.Fatal(err)
				}
				resp = out
			case "http":
				code, _, out := postOTLP(t, "http://"+e.srv.OTLPHTTPAddr()+"/v1/traces", contentProto, "", body)
				if code != http.StatusOK {
					t.Fatalf("status %d: %s", code, out)
				}
				resp = out
			}
			r := ptraceotlp.NewExportResponse()
			if err := r.UnmarshalProto(resp); err != nil || r.PartialSuccess().RejectedSpans() != 0 {
				t.Fatalf("response %x: %v", resp, err)
			}
			recs := testenv.ConsumeKcat(t, k.Addr(), topic, 1, 15*time.Second)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			if string(recs[0].Key) != "invoice" {
				t.Errorf("key %q, want the resource's service.name", recs[0].Key)
			}
			if !bytes.Equal(recs[0].Value, shop) {
				t.Fatalf("record %x,\nwant the shop resource as sent %x", recs[0].Value, shop)
			}
			td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(recs[0].Value)
			if err != nil || !ptraceEqual(t, td, appTraces()) {
				t.Fatalf("the record does not decode to the app's spans: %v", err)
			}
			if got := metric(t, e.srv.Registry(), "sidemix_mixer_otlp_received_total", "signal", "traces", "result", "accepted"); got != 5 {
				t.Errorf("otlp_received_total{traces,accepted} = %v, want 5", got)
			}
			eventually(t, 5*time.Second, "spans counted as sent", func() bool {
				return metric(t, e.srv.Registry(), "sidemix_kafka_instances_sent_total", "handler", "spans") == 2
			})
			if c.bags {
				eventually(t, 5*time.Second, "5 span bags at the sink", func() bool { return sk.count() == 5 })
			} else if n := sk.count(); n != 0 {
				t.Errorf("%d instances at the sink, no rule sends it any", n)
			}
		})
	}
}

// TestOTLPForwardRejectsSpansWithoutIDs: a span without ids is cut out of
// what is forwarded and reported back, as on the decoding path.
func TestOTLPForwardRejectsSpansWithoutIDs(t *testing.T) {
	k := testenv.StartKafka(t, "fwd.ids")
	name, _ := newSink(t)
	dir := writeConfig(t, map[string]string{"fwd.yaml": forwardConfig(k.Addr(), "fwd.ids", name, false)})
	e := start(t, dir, Config{OTLPGRPCAddr: "127.0.0.1:0", Adapters: testRegistry(t, kafka.Factory())})
	td := appTraces()
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().AppendEmpty().SetName("no ids")
	conn := otlpConn(t, e.srv.OTLPGRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	if err != nil {
		t.Fatal(err)
	}
	if n, msg := resp.PartialSuccess().RejectedSpans(), resp.PartialSuccess().ErrorMessage(); n != 1 || msg != `span "no ids" has no trace id` {
		t.Errorf("partial success %d %q", n, msg)
	}
	recs := testenv.ConsumeKcat(t, k.Addr(), "fwd.ids", 1, 15*time.Second)
	got, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(recs[0].Value)
	if err != nil || !ptraceEqual(t, got, appTraces()) {
		t.Fatalf("forwarded %d spans (%v), want the app's 2", got.SpanCount(), err)
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_otlp_received_total", "signal", "traces", "result", "rejected"); got != 1 {
		t.Errorf("otlp_received_total{traces,rejected} = %v", got)
	}
}

// TestOTLPForwardLogsJSONAndMalformed: log records are forwarded like
// spans; a JSON body is forwarded in its protobuf form; a body the walk
// refuses is InvalidArgument and counted malformed, with nothing sent.
func TestOTLPForwardLogsJSONAndMalformed(t *testing.T) {
	k := testenv.StartKafka(t, "fwd.logs", "fwd.json")
	name, _ := newSink(t)
	cfg := forwardConfig(k.Addr(), "fwd.json", name, false) + `---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: logs}
spec:
  adapter: kafka
  params:
    brokers: [` + k.Addr() + `]
    topic: fwd.logs
    encoding: otlp_proto
    linger: 5ms
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: applogs}
spec:
  template: otlp
  params: {signal: logs}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: forward-logs}
spec:
  actions:
  - {handler: logs, instances: [applogs]}
`
	// forward-shop's instance takes both signals: keep it to spans.
	cfg = strings.Replace(cfg, "spec: {template: otlp}", "spec: {template: otlp, params: {signal: traces}}", 1)
	dir := writeConfig(t, map[string]string{"fwd.yaml": cfg})
	e := start(t, dir, Config{OTLPGRPCAddr: "127.0.0.1:0", OTLPHTTPAddr: "127.0.0.1:0", Adapters: testRegistry(t, kafka.Factory())})

	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "logger")
	rl.Resource().Attributes().PutStr("service.namespace", "shop")
	rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("hello")
	conn := otlpConn(t, e.srv.OTLPGRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(ld)); err != nil {
		t.Fatal(err)
	}
	recs := testenv.ConsumeKcat(t, k.Addr(), "fwd.logs", 1, 15*time.Second)
	got, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(recs[0].Value)
	if err != nil || got.LogRecordCount() != 1 || got.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Body().Str() != "hello" {
		t.Fatalf("logs record %x: %v", recs[0].Value, err)
	}

	js, err := ptraceotlp.NewExportRequestFromTraces(appTraces()).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if code, _, out := postOTLP(t, "http://"+e.srv.OTLPHTTPAddr()+"/v1/traces", contentJSON, "", js); code != http.StatusOK {
		t.Fatalf("json: status %d: %s", code, out)
	}
	recs = testenv.ConsumeKcat(t, k.Addr(), "fwd.json", 1, 15*time.Second)
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(recs[0].Value)
	if err != nil || !ptraceEqual(t, td, appTraces()) {
		t.Fatalf("json body forwarded as %x: %v", recs[0].Value, err)
	}
	if recs := testenv.ConsumeKcat(t, k.Addr(), "fwd.logs", 1, 5*time.Second); len(recs) != 1 {
		t.Errorf("%d records in fwd.logs: its instance takes logs only", len(recs))
	}
	if recs := testenv.ConsumeKcat(t, k.Addr(), "fwd.json", 1, 5*time.Second); len(recs) != 1 {
		t.Errorf("%d records in fwd.json: its instance takes traces only", len(recs))
	}

	// A span whose trace id has 3 bytes: pdata refuses it, so does the walk.
	bad := wrap(wrap(wrap(wrap([]byte{1, 2, 3}, 1), 2), 2), 1)
	var out rawproto.Message
	err = conn.Invoke(ctx, "/"+otlpTraceService+"/Export", rawproto.Message(bad), &out,
		grpc.ForceCodecV2(rawproto.NewCodec()))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed export: %v, want InvalidArgument", err)
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_otlp_received_total", "signal", "traces", "result", "malformed"); got != 1 {
		t.Errorf("otlp_received_total{traces,malformed} = %v", got)
	}
}

// TestOTLPBodyPool: a body's buffer goes back to its pool when the last of
// its references (the receiver's and one per handler given an instance)
// is dropped, not before, and never twice.
func TestOTLPBodyPool(t *testing.T) {
	pool := make(bodyPool, 2)
	b := pool.get(100)
	if len(b.buf) != 100 {
		t.Fatalf("body of %d bytes, want 100", len(b.buf))
	}
	b.ref()
	b.ref() // two handlers
	b.unref()
	b.release()
	if len(pool) != 0 {
		t.Fatal("buffer pooled while a handler still holds it")
	}
	b.release()
	if len(pool) != 1 {
		t.Fatalf("%d buffers pooled after the last release, want 1", len(pool))
	}
	b.release() // one too many: must not pool it again
	if len(pool) != 1 {
		t.Fatalf("%d buffers pooled after a release too many, want 1", len(pool))
	}
	again := pool.get(50)
	if again != b || len(again.buf) != 50 || again.refs.Load() != 1 {
		t.Fatalf("got %p (%d bytes, %d refs), want the pooled %p again with 50 bytes and one reference", again, len(again.buf), again.refs.Load(), b)
	}
	bigger := pool.get(200)
	if bigger == b || len(bigger.buf) != 200 {
		t.Fatal("an empty pool must make a new body")
	}
	huge := pool.get(bodyPoolMaxBytes + 1)
	huge.unref()
	if len(pool) != 0 {
		t.Fatal("a buffer over bodyPoolMaxBytes was pooled")
	}
}

// TestOTLPForwardReusesBodies: with request bodies' buffers reused once the
// kafka handler has copied them, exports sent concurrently still reach
// Kafka each exactly as sent, none overwritten by a later one.
func TestOTLPForwardReusesBodies(t *testing.T) {
	k := testenv.StartKafka(t, "fwd.reuse")
	name, _ := newSink(t)
	dir := writeConfig(t, map[string]string{"fwd.yaml": forwardConfig(k.Addr(), "fwd.reuse", name, false)})
	e := start(t, dir, Config{OTLPGRPCAddr: "127.0.0.1:0", Adapters: testRegistry(t, kafka.Factory())})
	const senders, each = 4, 10
	sent := map[string]int{} // resource entries as sent
	bodies := make([][][]byte, senders)
	for s := range senders {
		for i := range each {
			td := appTraces()
			for _, sp := range td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().All() {
				sp.SetName(fmt.Sprintf("%s from %d/%d", sp.Name(), s, i))
			}
			b := marshalTraces(t, td)
			bodies[s] = append(bodies[s], b)
			sent[string(b)]++
		}
	}
	conn := otlpConn(t, e.srv.OTLPGRPCAddr())
	errs := make(chan error, senders)
	for s := range senders {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, b := range bodies[s] {
				var out rawproto.Message
				if err := conn.Invoke(ctx, "/"+otlpTraceService+"/Export", rawproto.Message(b), &out,
					grpc.ForceCodecV2(rawproto.NewCodec())); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	spans := float64(senders * each * 2)
	eventually(t, 10*time.Second, "every span sent to kafka", func() bool {
		return metric(t, e.srv.Registry(), "sidemix_kafka_instances_sent_total", "handler", "spans") == spans
	})
	n := int(metric(t, e.srv.Registry(), "sidemix_kafka_records_total", "handler", "spans", "result", "sent"))
	for _, r := range testenv.ConsumeKcat(t, k.Addr(), "fwd.reuse", n, 15*time.Second) {
		for v := r.Value; len(v) > 0; {
			_, _, tn := protowire.ConsumeTag(v)
			_, ln := protowire.ConsumeBytes(v[tn:])
			if tn < 0 || ln < 0 {
				t.Fatalf("record %x is not a TracesData", r.Value)
			}
			entry := string(v[:tn+ln])
			if sent[entry] == 0 {
				t.Fatalf("a record holds a resource never sent (or sent once and seen twice): %x", entry)
			}
			sent[entry]--
			v = v[tn+ln:]
		}
	}
	for entry, left := range sent {
		if left != 0 {
			t.Errorf("resource %x sent but not in kafka", entry)
		}
	}
}
