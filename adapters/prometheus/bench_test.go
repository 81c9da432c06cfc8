package prometheus_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

// BenchmarkReport records batches of 100 instances of Istio's request
// count (14 labels) spread over 100 series, from parallel reporters.
func BenchmarkReport(b *testing.B) {
	h := mustCreate(b, adapters.Settings{Name: "prom"}, `
addr: %s
metrics:
- instanceName: requestcount
  name: requests_total
  kind: COUNTER
  labelNames: [reporter, source_workload, source_workload_namespace, source_principal, destination_workload,
    destination_workload_namespace, destination_service, destination_service_name, destination_service_namespace,
    request_protocol, response_code, grpc_response_status, response_flags, connection_security_policy]
`, "\"\"")
	batch := make([]template.Instance, 100)
	for i := range batch {
		batch[i] = &template.Metric{Name: "requestcount", Value: int64(1), Dimensions: template.FieldsOf(map[string]any{
			"reporter": "destination", "source_workload": fmt.Sprint("src", i%10), "source_workload_namespace": "shop",
			"source_principal": "cluster.local/ns/shop/sa/src", "destination_workload": fmt.Sprint("dst", i%100/10),
			"destination_workload_namespace": "shop", "destination_service": "dst.shop.svc.cluster.local",
			"destination_service_name": "dst", "destination_service_namespace": "shop", "request_protocol": "http",
			"response_code": int64(200 + i%10), "grpc_response_status": "", "response_flags": "-",
			"connection_security_policy": "none",
		})}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := h.Report(ctx, batch); err != nil {
				b.Error(err)
			}
		}
	})
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "instances/s")
}

// BenchmarkReportIstio records examples/default's four HTTP metrics (15
// labels each) of 100 requests, the four instances of a request sharing
// one dimensions map as the policy builds them: each request with labels
// of its own (distinct), or runs of 10 requests with the same labels, one
// dimensions map for all of them, as the policy hands a request's
// dimensions on to the next one while none of their values changes (runs).
func BenchmarkReportIstio(b *testing.B) {
	labels := `[reporter, source_workload, source_workload_namespace, source_principal, destination_workload,
    destination_workload_namespace, destination_version, destination_service, destination_service_name, destination_service_namespace,
    request_protocol, response_code, grpc_response_status, response_flags, connection_security_policy]`
	h := mustCreate(b, adapters.Settings{Name: "prom"}, `
addr: %s
metrics:
- {instanceName: requestcount, name: requests_total, kind: COUNTER, labelNames: `+labels+`}
- {instanceName: requestduration, name: request_duration_milliseconds, kind: DISTRIBUTION, labelNames: `+labels+`,
   buckets: {explicitBuckets: {bounds: [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]}}}
- {instanceName: requestsize, name: request_bytes, kind: DISTRIBUTION, labelNames: `+labels+`,
   buckets: {explicitBuckets: {bounds: [1, 10, 100, 1000, 10000, 100000, 1000000]}}}
- {instanceName: responsesize, name: response_bytes, kind: DISTRIBUTION, labelNames: `+labels+`,
   buckets: {explicitBuckets: {bounds: [1, 10, 100, 1000, 10000, 100000, 1000000]}}}
`, "\"\"")
	for _, run := range []int{1, 10} {
		b.Run(map[int]string{1: "distinct", 10: "runs"}[run], func(b *testing.B) {
			var batch []template.Instance
			var layout *template.Layout
			var fields template.Fields
			for i := range 100 {
				dims := map[string]any{
					"reporter": "destination", "source_workload": fmt.Sprint("src", i/run%10), "source_workload_namespace": "shop",
					"source_principal": "cluster.local/ns/shop/sa/src", "destination_workload": fmt.Sprint("dst", i/run%100/10),
					"destination_workload_namespace": "shop", "destination_version": "v1", "destination_service": "dst.shop.svc.cluster.local",
					"destination_service_name": "dst", "destination_service_namespace": "shop", "request_protocol": "http",
					"response_code": int64(200 + i/run%10), "grpc_response_status": "", "response_flags": "-",
					"connection_security_policy": "none",
				}
				if layout == nil {
					layout = template.FieldsOf(dims).Layout()
				}
				if i%run == 0 {
					fields = template.FieldsIn(layout, dims)
				}
				for _, name := range []string{"requestcount", "requestduration", "requestsize", "responsesize"} {
					batch = append(batch, &template.Metric{Name: name, Value: int64(100 + i), Dimensions: fields})
				}
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := h.Report(ctx, batch); err != nil {
					b.Error(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "instances/s")
		})
	}
}
