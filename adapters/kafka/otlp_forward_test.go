package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/sidemix/sidemix/adapters/template"
)

// resource is one service's ResourceSpans as the mixer's OTLP ingest
// forwards it: field 1 of a TracesData, n spans.
func resource(t *testing.T, service string, n int) *template.OTLP {
	t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		sp := ss.AppendEmpty()
		sp.SetTraceID(pcommon.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
		sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, byte(len(service)), byte(i + 1)})
		sp.SetName(fmt.Sprintf("%s op %d", service, i))
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return &template.OTLP{Name: "asreceived", Signal: template.SignalTraces, Data: b, Items: n, ServiceName: service}
}

// TestOTLPInstancesConcatenatedPerKey: otlp instances of one key are
// concatenated as received into records that fit batchBytes, cut between
// resources; a resource that alone does not fit is dropped as too large.
func TestOTLPInstancesConcatenatedPerKey(t *testing.T) {
	c := newCluster(t, "raw")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: raw\nkey: serviceName\nencoding: otlp_proto\notlpBatch: true\nbatchBytes: 500\n", addr))
	var insts []template.Instance
	var web, api [][]byte
	for range 6 {
		for _, svc := range []string{"web", "api"} {
			r := resource(t, svc, 2)
			insts = append(insts, r)
			if svc == "web" {
				web = append(web, r.Data)
			} else {
				api = append(api, r.Data)
			}
		}
	}
	huge := resource(t, "web", 30) // alone over 500 bytes
	insts = append(insts, huge)
	if len(web[0])*2 > 500-23-3 || len(web[0])*6 <= 500-23-3 {
		t.Fatalf("a resource is %d bytes: the test wants 2 but not 6 in a record", len(web[0]))
	}
	if err := h.Report(context.Background(), insts); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(t, reg, "sidemix_kafka_instances_sent_total", map[string]string{"handler": "kafka"}) < 24 {
		if time.Now().After(deadline) {
			t.Fatal("24 spans not sent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := value(t, reg, "sidemix_kafka_records_total", map[string]string{"handler": "kafka", "result": "too_large"}); n != 1 {
		t.Errorf("too_large = %v, want the 30-span resource", n)
	}
	records := int(sent(t, reg))
	recs := consume(t, addr, "raw", records, 10*time.Second)
	got := map[string][]byte{}
	for _, r := range recs {
		if len(r.key)+len(r.value)+23 > 500 {
			t.Errorf("record of %d bytes, above batchBytes", len(r.key)+len(r.value))
		}
		if _, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces([]byte(r.value)); err != nil {
			t.Errorf("record of key %s is no TracesData: %v", r.key, err)
		}
		got[r.key] = append(got[r.key], r.value...)
	}
	// Each key's records, in order, are its resources as reported.
	if !bytes.Equal(got["web"], bytes.Join(web, nil)) || !bytes.Equal(got["api"], bytes.Join(api, nil)) {
		t.Errorf("records do not hold the resources byte for byte, in order")
	}
	if records < 4 || records >= 12 {
		t.Errorf("%d records: want the 12 resources in a few per key", records)
	}
}

// TestOTLPInstanceAsJSON: with encoding json an otlp instance's record is
// its spans in OTLP JSON.
func TestOTLPInstanceAsJSON(t *testing.T) {
	c := newCluster(t, "rawjson")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: rawjson\nkey: signal + \"/\" + serviceName\n", addr))
	if err := h.Report(context.Background(), []template.Instance{resource(t, "web", 3)}); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, addr, "rawjson", 1, 10*time.Second)
	if recs[0].key != "traces/web" {
		t.Errorf("key %q", recs[0].key)
	}
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces([]byte(recs[0].value))
	if err != nil || td.SpanCount() != 3 {
		t.Fatalf("record %s: %v", recs[0].value, err)
	}
	if n := value(t, reg, "sidemix_kafka_instances_sent_total", map[string]string{"handler": "kafka"}); n != 3 {
		t.Errorf("instances sent = %v, want the 3 spans", n)
	}
}

// TestPooledRecordValuesIntact: with otlpBatch, records above 64 KiB are
// built in pooled buffers that the next reports reuse once Kafka has
// acknowledged them; every record read back holds its resources byte for
// byte, although each instance's own bytes are overwritten as soon as it
// is released (as the receiver reuses its request buffer).
func TestPooledRecordValuesIntact(t *testing.T) {
	c := newCluster(t, "pooled")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: pooled\nkey: serviceName\nencoding: otlp_proto\notlpBatch: true\nbatchBytes: 262144\n", addr))
	const reports, perReport = 12, 5
	var want []byte
	released := 0
	spans := 0
	for r := range reports {
		var insts []template.Instance
		for k := range perReport {
			in := resource(t, "web", 1500)
			// Tell the reports' bytes apart: the span names' "op" becomes
			// a letter per report and resource.
			in.Data = bytes.ReplaceAll(in.Data, []byte(" op "), []byte{' ', byte('a' + r), byte('a' + k), ' '})
			want = append(want, in.Data...)
			spans += in.Items
			data := in.Data
			in.Release = func() {
				released++
				for i := range data {
					data[i] = 0xff
				}
			}
			insts = append(insts, in)
		}
		if len(insts[0].(*template.OTLP).Data) < 48<<10 {
			t.Fatalf("a resource is %d bytes: the test wants records above 64 KiB", len(insts[0].(*template.OTLP).Data))
		}
		if err := h.Report(context.Background(), insts); err != nil {
			t.Fatal(err)
		}
		if r%3 != 2 { // mostly one report at a time, so buffers come back before the next
			deadline := time.Now().Add(10 * time.Second)
			for value(t, reg, "sidemix_kafka_instances_sent_total", map[string]string{"handler": "kafka"}) < float64(spans) {
				if time.Now().After(deadline) {
					t.Fatalf("report %d not sent", r)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(t, reg, "sidemix_kafka_instances_sent_total", map[string]string{"handler": "kafka"}) < float64(spans) {
		if time.Now().After(deadline) {
			t.Fatal("spans not sent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if released != reports*perReport {
		t.Errorf("%d instances released, want %d", released, reports*perReport)
	}
	records := int(sent(t, reg))
	recs := consume(t, addr, "pooled", records, 10*time.Second)
	var got []byte
	for _, r := range recs {
		if len(r.value) < 64<<10 {
			t.Errorf("record of %d bytes: the test wants pooled ones", len(r.value))
		}
		got = append(got, r.value...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the %d records (%d bytes) are not the %d resources (%d bytes) in order", len(recs), len(got), reports*perReport, len(want))
	}
}
