package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

func loadTraceSpan(t *testing.T, extra ...string) *Snapshot {
	t.Helper()
	files := readDir(t, "testdata/tracing")
	for i, src := range extra {
		files["extra"+string(rune('a'+i))+".yaml"] = []byte(src)
	}
	s, err := LoadSources(files, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func spanBag(t0 time.Time) *attribute.Builder {
	return attribute.NewBuilder(16).
		SetString(attribute.RequestTraceID, "4bf92f3577b34da6a3ce929d0e0e4736").
		SetString(attribute.RequestSpanID, "00f067aa0ba902b7").
		SetString(attribute.RequestParentSpanID, "b7ad6b7169203331").
		SetBool(attribute.RequestTraceSampled, true).
		SetString(attribute.RequestTraceState, "congo=t61rcWkgMzE").
		SetString(attribute.RequestMethod, "POST").
		SetString(attribute.RequestURLPath, "/invoices").
		SetString(attribute.RequestHost, "invoice:8080").
		SetTime(attribute.RequestTime, t0).
		SetTime(attribute.ResponseTime, t0.Add(25*time.Millisecond)).
		SetInt64(attribute.ResponseCode, 503).
		SetString(attribute.ContextReporterKind, "inbound").
		SetString(attribute.SourceWorkloadName, "product").
		SetString(attribute.DestinationWorkloadName, "invoice").
		SetBytes(attribute.SourceIP, []byte{10, 0, 0, 7})
}

func reportSpan(t *testing.T, s *Snapshot, bag *attribute.Bag) *template.TraceSpan {
	t.Helper()
	res := s.Evaluate(bag, VarietyReport, nil)
	if len(res.Errors) != 0 {
		t.Fatalf("errors: %v", res.Errors)
	}
	if len(res.Actions) != 1 || len(res.Actions[0].Instances) != 1 {
		t.Fatalf("actions = %+v", res.Actions)
	}
	sp, ok := res.Actions[0].Instances[0].(*template.TraceSpan)
	if !ok {
		t.Fatalf("instance = %#v", res.Actions[0].Instances[0])
	}
	return sp
}

func TestTraceSpanInstance(t *testing.T) {
	s := loadTraceSpan(t)
	t0 := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	got := reportSpan(t, s, spanBag(t0).Build())
	want := &template.TraceSpan{
		Name:            "span",
		TraceID:         "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID:          "00f067aa0ba902b7",
		ParentSpanID:    "b7ad6b7169203331",
		TraceState:      "congo=t61rcWkgMzE",
		SpanName:        "POST /invoices",
		StartTime:       t0,
		EndTime:         t0.Add(25 * time.Millisecond),
		SpanKind:        "server",
		Status:          "error",
		HTTPStatusCode:  503,
		SourceName:      "product",
		DestinationName: "invoice",
		SpanTags: []template.SpanTag{ // in key order
			{Key: "client.address", Value: "10.0.0.7"},
			{Key: "http.request.method", Value: "POST"},
			{Key: "http.response.status_code", Value: int64(503)},
			{Key: "server.address", Value: "invoice:8080"},
			{Key: "url.path", Value: "/invoices"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("span = %+v\nwant %+v", got, want)
	}
	if got.ServiceName() != "invoice" {
		t.Errorf("service = %q", got.ServiceName())
	}

	// An outbound root span without response: defaults apply.
	bag := attribute.NewBuilder(8).
		SetString(attribute.RequestTraceID, "4bf92f3577b34da6a3ce929d0e0e4736").
		SetString(attribute.RequestSpanID, "00f067aa0ba902b7").
		SetBool(attribute.RequestTraceSampled, true).
		SetTime(attribute.RequestTime, t0).
		SetTime(attribute.ResponseTime, t0).
		SetString(attribute.ContextReporterKind, "outbound").
		SetString(attribute.SourceWorkloadName, "product").Build()
	got = reportSpan(t, s, bag)
	if got.ParentSpanID != "" || got.SpanKind != "client" || got.Status != "unset" || got.HTTPStatusCode != 0 ||
		got.SpanName != "GET /" || got.DestinationName != "unknown" || got.ServiceName() != "product" {
		t.Fatalf("span = %+v", got)
	}

	// Unsampled: the rule does not match.
	bag = spanBag(t0).SetBool(attribute.RequestTraceSampled, false).Build()
	if res := s.Evaluate(bag, VarietyReport, nil); len(res.Actions) != 0 || len(res.Errors) != 0 {
		t.Fatalf("unsampled: %+v", res)
	}
	// Not a check or quota instance.
	if res := s.Evaluate(spanBag(t0).Build(), VarietyCheck, nil); len(res.Actions) != 0 {
		t.Fatalf("check: %+v", res)
	}
}

// TestTraceSpanEvalErrors: an absent attribute outside default() and a
// kind or status outside the allowed sets skip the action with an error.
func TestTraceSpanEvalErrors(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	s := loadTraceSpan(t)
	bag := attribute.NewBuilder(4).
		SetString(attribute.RequestTraceID, "4bf92f3577b34da6a3ce929d0e0e4736").
		SetBool(attribute.RequestTraceSampled, true).
		SetTime(attribute.RequestTime, t0).
		SetTime(attribute.ResponseTime, t0).Build()
	res := s.Evaluate(bag, VarietyReport, nil)
	if len(res.Actions) != 0 || len(res.Errors) != 1 {
		t.Fatalf("result = %+v", res)
	}
	if e := res.Errors[0]; e.Rule != "tracing" || e.Instance != "span" || e.Field != "spec.params.spanId" {
		t.Fatalf("error = %v", e)
	}

	for _, c := range []struct{ field, expr, msg string }{
		{"spanKind", `request.headers["kind"]`, `spec.params.spanKind: "sideways" is not one of server, client, producer, consumer, internal`},
		{"status", `request.headers["kind"]`, `spec.params.status: "sideways" is not one of unset, ok, error`},
		{"sourceName", `request.headers["nope"]`, `spec.params.sourceName: no such key: nope`},
	} {
		src := `apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: odd}
spec:
  template: tracespan
  params:
    traceId: request.trace.id
    spanId: request.trace.span_id
    spanName: '"x"'
    startTime: request.time
    endTime: response.time
    ` + c.field + `: '` + c.expr + `'
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: odd}
spec:
  actions: [{handler: sink, instances: [odd]}]
`
		s := loadTraceSpan(t, src)
		bag := spanBag(t0).SetStringMap(attribute.RequestHeaders, map[string]string{"kind": "sideways"}).Build()
		res := s.Evaluate(bag, VarietyReport, nil)
		if len(res.Actions) != 1 || res.Actions[0].Rule != "tracing" || len(res.Errors) != 1 {
			t.Fatalf("%s: result = %+v", c.field, res)
		}
		if e := res.Errors[0]; e.Rule != "odd" || !strings.HasSuffix(e.Error(), c.msg) {
			t.Errorf("%s: error = %v, want …%s", c.field, e, c.msg)
		}
	}
}

// TestTraceSpanKindCase: kinds and statuses are accepted in any case and
// carried in lower case; left out they are internal and unset.
func TestTraceSpanKindCase(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	src := `apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: span}
spec:
  template: tracespan
  params:
    traceId: request.trace.id
    spanId: request.trace.span_id
    spanName: '"x"'
    startTime: request.time
    endTime: response.time
    spanKind: '"PRODUCER"'
    status: '"Ok"'
`
	files := map[string][]byte{"s.yaml": []byte(src), "r.yaml": []byte(`apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: r}
spec:
  actions: [{handler: sink, instances: [span]}]
`)}
	s, err := LoadSources(files, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	got := reportSpan(t, s, spanBag(t0).Build())
	if got.SpanKind != "producer" || got.Status != "ok" || got.ServiceName() != "unknown" || got.SpanTags != nil {
		t.Fatalf("span = %+v", got)
	}
	files["s.yaml"] = []byte(strings.Replace(strings.Replace(src, "    spanKind: '\"PRODUCER\"'\n", "", 1), "    status: '\"Ok\"'\n", "", 1))
	if s, err = LoadSources(files, Options{Adapters: testRegistry()}); err != nil {
		t.Fatal(err)
	}
	if got = reportSpan(t, s, spanBag(t0).Build()); got.SpanKind != "internal" || got.Status != "unset" {
		t.Fatalf("span = %+v", got)
	}
}
