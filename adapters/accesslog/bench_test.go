package accesslog_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/accesslog"
	"github.com/sidemix/sidemix/adapters/template"
)

// benchBatch is a mixerclient-size batch (1000 records) of examples/default's
// accesslog instance: 21 variables, mostly strings, a few ints and the
// latency.
func benchBatch() []template.Instance {
	insts := make([]template.Instance, 1000)
	ts := time.Date(2026, 11, 23, 19, 0, 0, 0, time.UTC)
	for i := range insts {
		insts[i] = &template.LogEntry{
			Name:      "accesslog.instance.istio-system",
			Severity:  "info",
			Timestamp: ts.Add(time.Duration(i) * 997 * time.Microsecond),
			Variables: template.FieldsOf(map[string]any{
				"reporter":                 "destination",
				"sourceWorkload":           "productpage-v1",
				"sourceNamespace":          "default",
				"sourcePrincipal":          "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
				"destinationWorkload":      fmt.Sprintf("reviews-v%d", i%3+1),
				"destinationNamespace":     "default",
				"destinationServiceHost":   "reviews.default.svc.cluster.local",
				"requestId":                fmt.Sprintf("cf1e6ba2-7093-439c-9c03-%012x", i),
				"protocol":                 "http",
				"method":                   "GET",
				"url":                      fmt.Sprintf("/reviews/%d?lang=en&sort=date", i),
				"httpAuthority":            "reviews:9080",
				"userAgent":                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
				"xForwardedFor":            "10.0.0.7",
				"responseCode":             int64(200),
				"responseFlags":            "-",
				"grpcStatus":               "",
				"requestSize":              int64(0),
				"responseSize":             int64(295 + i%100),
				"latency":                  time.Duration(800+i) * time.Microsecond,
				"connectionSecurityPolicy": "mutual_tls",
			}),
		}
	}
	return insts
}

func BenchmarkReport(b *testing.B) {
	cfg := accesslog.NewConfig()
	cfg.Path = os.DevNull
	h, err := accesslog.Factory().Create(context.Background(), adapters.Settings{Name: "access", Registerer: prometheus.NewRegistry()}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	r := h.(adapters.Reporter)
	insts := benchBatch()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Report(context.Background(), insts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(insts)), "ns/record")
}
