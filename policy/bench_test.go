package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sidemix/sidemix/attribute"
)

// hundredRules is 100 rules with distinct matches: half on the path, half
// on a header, all feeding one denier through one checknothing instance.
func hundredRules() []byte {
	var sb strings.Builder
	sb.WriteString(`apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny}
spec: {adapter: denier}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: nothing}
spec: {template: checknothing}
`)
	for i := 0; i < 100; i++ {
		match := fmt.Sprintf(`request.path.startsWith("/svc%d/")`, i)
		if i%2 == 1 {
			match = fmt.Sprintf(`default(request.headers["x-tenant"], "") == "tenant-%d"`, i)
		}
		fmt.Fprintf(&sb, `---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: rule-%03d}
spec:
  match: '%s'
  actions:
  - {handler: deny, instances: [nothing]}
`, i, match)
	}
	return []byte(sb.String())
}

func BenchmarkEvaluate100Rules(b *testing.B) {
	s, err := LoadSources(map[string][]byte{"bench.yaml": hundredRules()}, Options{Adapters: testRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	bag := attribute.NewBuilder(4).
		SetString(attribute.RequestPath, "/svc42/items").
		SetString(attribute.RequestMethod, "GET").
		SetStringMap(attribute.RequestHeaders, map[string]string{"x-tenant": "tenant-7", "accept": "*/*"}).
		Build()
	var refs attribute.Referenced
	res := s.Evaluate(bag, VarietyCheck, &refs)
	if len(res.Actions) != 2 || len(res.Errors) != 0 {
		b.Fatalf("result = %+v", res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		refs.Reset()
		s.Evaluate(bag, VarietyCheck, &refs)
	}
}

// reportConfig is a report-path rule in the shape of examples/default: a
// metric with Istio's standard dimensions (mostly default(attr, literal))
// and an access log of bare attributes and header lookups.
const reportConfig = `apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: requestcount}
spec:
  template: metric
  params:
    value: "1"
    dimensions:
      reporter: conditional(default(context.reporter.kind, "inbound") == "outbound", "source", "destination")
      source_workload: default(source.workload.name, "unknown")
      source_workload_namespace: default(source.workload.namespace, "unknown")
      source_principal: default(source.principal, "unknown")
      destination_workload: default(destination.workload.name, "unknown")
      destination_workload_namespace: default(destination.workload.namespace, "unknown")
      destination_service: default(destination.service.host, "unknown")
      destination_service_name: default(destination.service.name, "unknown")
      destination_service_namespace: default(destination.service.namespace, "unknown")
      request_protocol: default(context.protocol, "unknown")
      response_code: default(response.code, 200)
      grpc_response_status: default(response.grpc_status, "")
      response_flags: default(context.proxy_error_code, "-")
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: accesslog}
spec:
  template: logentry
  params:
    variables:
      method: request.method
      path: request.path
      code: response.code
      user: default(request.headers["x-user"], "-")
      agent: default(request.useragent, "")
      source_ip: default(source.ip, ip("0.0.0.0"))
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: telemetry}
spec:
  actions:
  - {handler: sink, instances: [requestcount, accesslog]}
`

func BenchmarkEvaluateReport(b *testing.B) {
	s, err := LoadSources(map[string][]byte{"bench.yaml": []byte(reportConfig)}, Options{Adapters: testRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	bag := testBag().Builder().
		SetString(attribute.DestinationServiceName, "web").
		SetString(attribute.DestinationWorkloadName, "web-v1").
		SetString(attribute.SourceWorkloadName, "client").
		Build()
	var refs attribute.Referenced
	res := s.Evaluate(bag, VarietyReport, &refs)
	if len(res.Actions) != 1 || len(res.Errors) != 0 {
		b.Fatalf("result = %+v", res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		refs.Reset()
		s.Evaluate(bag, VarietyReport, &refs)
	}
}
