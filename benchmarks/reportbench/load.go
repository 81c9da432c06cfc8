package reportbench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/benchmarks/internal/load"
)

const (
	namespace = "default"
	// preBuilt is how many distinct requests each worker cycles through:
	// built before the run, so the generator spends its CPU on sending.
	preBuilt = 4
)

// reportBags returns the bags one proxy reports for n requests: the caller's
// outbound sidecar (outbound true, reporter="source") or the callee's
// inbound one, each request with its own id, path, trace and span. One
// request in sampleEvery has its trace sampled (1: every trace, the worst
// case for the tracing rule, where every record also becomes a span).
func reportBags(n, seed int, outbound bool, sampleEvery int) []*attribute.Bag {
	bags := make([]*attribute.Bag, n)
	ip := netip.MustParseAddr("10.0.3.17")
	kind := "inbound"
	if outbound {
		kind = "outbound"
	}
	t0 := time.Unix(1_700_000_000, 0)
	for i := range bags {
		k := seed*n + i
		path := "/api/orders/" + strconv.Itoa(1000+k%500)
		start := t0.Add(time.Duration(k) * time.Millisecond)
		code := int64(200)
		if k%50 == 0 {
			code = 503
		}
		b := attribute.NewBuilder(48).
			SetString(attribute.ContextReporterKind, kind).
			SetString(attribute.ContextReporterUID, "kubernetes://web-7d9f8-abcde.default").
			SetTime(attribute.ContextTime, start).
			SetBool(attribute.ConnectionMTLS, true).
			SetString(attribute.ContextProtocol, "http").
			SetString(attribute.DestinationWorkloadName, "web").
			SetString(attribute.DestinationWorkloadNamespace, namespace).
			SetString(attribute.DestinationWorkloadUID, "kubernetes://web-7d9f8-abcde.default").
			SetString(attribute.DestinationUID, "kubernetes://web-7d9f8-abcde.default").
			SetString(attribute.DestinationServiceName, "web").
			SetString(attribute.DestinationServiceNamespace, namespace).
			SetString(attribute.DestinationServiceHost, "web.default.svc.cluster.local").
			SetString(attribute.DestinationName, "web").
			SetString(attribute.DestinationNamespace, namespace).
			SetString(attribute.DestinationPrincipal, "cluster.local/ns/default/sa/web").
			SetString(attribute.SourceWorkloadName, "shop").
			SetString(attribute.SourceName, "shop").
			SetString(attribute.SourceWorkloadNamespace, namespace).
			SetString(attribute.SourceNamespace, namespace).
			SetString(attribute.SourcePrincipal, "cluster.local/ns/default/sa/shop").
			SetIP(attribute.SourceIP, ip).
			SetString(attribute.RequestID, fmt.Sprintf("7b1d3c52-0e4f-4a8b-9c6d-%012d", k)).
			SetString(attribute.RequestPath, path+"?expand=items").
			SetString(attribute.RequestURLPath, path).
			SetString(attribute.RequestHost, "web:8080").
			SetString(attribute.RequestMethod, "GET").
			SetString(attribute.RequestScheme, "http").
			SetString(attribute.RequestUserAgent, "shop/2.3 (go-http-client)").
			SetInt64(attribute.RequestSize, 0).
			SetTime(attribute.RequestTime, start).
			SetInt64(attribute.ResponseCode, code).
			SetInt64(attribute.ResponseSize, 1200+int64(k%300)).
			SetInt64(attribute.ResponseTotalSize, 1400+int64(k%300)).
			SetDuration(attribute.ResponseDuration, time.Duration(2+k%20)*time.Millisecond).
			SetTime(attribute.ResponseTime, start.Add(time.Duration(2+k%20)*time.Millisecond)).
			SetString(attribute.ContextProxyErrorCode, "-").
			SetString(attribute.RequestTraceID, fmt.Sprintf("%032x", uint64(k)+1)).
			SetString(attribute.RequestSpanID, fmt.Sprintf("%016x", uint64(k)*2+1)).
			SetBool(attribute.RequestTraceSampled, k%sampleEvery == 0)
		if outbound {
			b.SetString(attribute.RequestParentSpanID, fmt.Sprintf("%016x", uint64(k)*2+2))
		}
		bags[i] = b.Build()
	}
	return bags
}

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
			reqs[w] = append(reqs[w], enc.EncodeBatch(reportBags(batch, w*preBuilt+j, w%2 == 0, sampleEvery)))
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

// spanOp exports pre-built OTLP requests of spans spans each over
// OTLP/gRPC, spreading workers over the connections.
func spanOp(conns []*grpc.ClientConn, spans int) load.Op {
	clients := make([]ptraceotlp.GRPCClient, len(conns))
	for i, c := range conns {
		clients[i] = ptraceotlp.NewGRPCClient(c)
	}
	reqs := spanRequests(preBuilt, spans)
	seq := make([]int, 64)
	return func(ctx context.Context, w int) (string, error) {
		seq[w%len(seq)]++
		if _, err := clients[w%len(clients)].Export(ctx, reqs[seq[w%len(seq)]%preBuilt]); err != nil {
			return "", err
		}
		return "spans", nil
	}
}
