// Package attrtest makes attribute bags for tests and benchmarks: the
// requests a mesh's sidecars report.
package attrtest

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/sidemix/sidemix/attribute"
)

// Namespace is the namespace of every workload in Requests.
const Namespace = "default"

// Requests returns the bags one proxy reports for n requests: the caller's
// outbound sidecar (outbound true, reporter="source") or the callee's
// inbound one, each request with its own id, path, trace and span. One
// request in sampleEvery has its trace sampled (1: every trace, the worst
// case for the tracing rule, where every record also becomes a span).
func Requests(n, seed int, outbound bool, sampleEvery int) []*attribute.Bag {
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
			SetString(attribute.DestinationWorkloadNamespace, Namespace).
			SetString(attribute.DestinationWorkloadUID, "kubernetes://web-7d9f8-abcde.default").
			SetString(attribute.DestinationUID, "kubernetes://web-7d9f8-abcde.default").
			SetString(attribute.DestinationServiceName, "web").
			SetString(attribute.DestinationServiceNamespace, Namespace).
			SetString(attribute.DestinationServiceHost, "web.default.svc.cluster.local").
			SetString(attribute.DestinationName, "web").
			SetString(attribute.DestinationNamespace, Namespace).
			SetString(attribute.DestinationPrincipal, "cluster.local/ns/default/sa/web").
			SetString(attribute.SourceWorkloadName, "shop").
			SetString(attribute.SourceName, "shop").
			SetString(attribute.SourceWorkloadNamespace, Namespace).
			SetString(attribute.SourceNamespace, Namespace).
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
