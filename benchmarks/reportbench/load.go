package reportbench

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/sidemix/sidemix/attribute/attrtest"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/benchmarks/internal/load"
	"github.com/sidemix/sidemix/internal/rawproto"
)

const (
	namespace = "default"
	// preBuilt is how many distinct requests each worker cycles through:
	// built before the run, so the generator spends its CPU on sending.
	preBuilt = 4
)

// reportOp sends Report batches as proxy/mixerclient does: batch bags
// delta-encoded by an attribute.Encoder (EncodeBatch). Worker w is a proxy
// of its own on connection w%len(conns); even workers report as outbound
// sidecars, odd ones as inbound. The outcome is the number of records, so
// the run's Outcomes tally records.
func reportOp(conns []*grpc.ClientConn, workers, batch, sampleEvery int) load.Op {
	clients := make([]mixerv1.MixerClient, len(conns))
	for i, c := range conns {
		clients[i] = mixerv1.NewMixerClient(c)
	}
	reqs := make([][]*mixerv1.ReportRequest, workers)
	for w := range workers {
		enc := attribute.NewEncoder(attribute.DefaultDictionary())
		for j := range preBuilt {
			enc.Reset()
			reqs[w] = append(reqs[w], enc.EncodeBatch(attrtest.Requests(batch, w*preBuilt+j, w%2 == 0, sampleEvery)))
		}
	}
	seq := make([]int, workers)
	return func(ctx context.Context, w int) (string, error) {
		seq[w]++
		if _, err := clients[w%len(clients)].Report(ctx, reqs[w][seq[w]%preBuilt]); err != nil {
			return "", err
		}
		return "records", nil
	}
}

// spanRequests builds n OTLP export requests of spans spans each, as an
// OpenTelemetry SDK's batch span processor sends them: one resource (the
// service), one scope, HTTP server spans with the semantic-convention
// attributes.
func spanRequests(n, spans int) []ptraceotlp.ExportRequest {
	out := make([]ptraceotlp.ExportRequest, n)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range out {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "web")
		rs.Resource().Attributes().PutStr("service.namespace", namespace)
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp")
		for j := range spans {
			k := uint64(i*spans + j + 1)
			sp := ss.Spans().AppendEmpty()
			var tid pcommon.TraceID
			binary.BigEndian.PutUint64(tid[8:], k)
			binary.BigEndian.PutUint64(tid[:8], 0x5eed)
			var sid, pid pcommon.SpanID
			binary.BigEndian.PutUint64(sid[:], k*2+1)
			binary.BigEndian.PutUint64(pid[:], k*2+2)
			sp.SetTraceID(tid)
			sp.SetSpanID(sid)
			sp.SetParentSpanID(pid)
			sp.SetName("GET /api/orders/{id}")
			sp.SetKind(ptrace.SpanKindServer)
			start := t0.Add(time.Duration(k) * time.Millisecond)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(2+k%20) * time.Millisecond)))
			a := sp.Attributes()
			a.PutStr("http.request.method", "GET")
			a.PutStr("url.path", "/api/orders/"+strconv.Itoa(int(1000+k%500)))
			a.PutInt("http.response.status_code", 200)
			a.PutStr("server.address", "web")
			a.PutStr("user_agent.original", "shop/2.3 (go-http-client)")
		}
		out[i] = ptraceotlp.NewExportRequestFromTraces(td)
	}
	return out
}

// exportMethod is OTLP/gRPC's trace export method.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// spanOp exports pre-built OTLP requests of spans spans each over
// OTLP/gRPC, spreading workers over the connections. The requests are
// marshalled once, before the run, and sent as bytes through
// internal/rawproto's pass-through codec (the response is kept undecoded
// too): on the wire they are exactly what ptraceotlp's client sends, but
// the generator no longer marshals 512 spans per export, so its core
// (shared with the broker) stops being the limit of the closed-loop runs.
// Both span servers get the same op.
func spanOp(conns []*grpc.ClientConn, spans int) (load.Op, error) {
	built := spanRequests(preBuilt, spans)
	bodies := make([]rawproto.Message, len(built))
	for i, r := range built {
		b, err := r.MarshalProto()
		if err != nil {
			return nil, fmt.Errorf("marshal span export %d: %w", i, err)
		}
		bodies[i] = b
	}
	codec := grpc.ForceCodecV2(rawproto.NewCodec())
	seq := make([]int, 64)
	return func(ctx context.Context, w int) (string, error) {
		seq[w%len(seq)]++
		var resp rawproto.Message
		if err := conns[w%len(conns)].Invoke(ctx, exportMethod, bodies[seq[w%len(seq)]%preBuilt], &resp, codec); err != nil {
			return "", err
		}
		return "spans", nil
	}, nil
}
