package mixer

import (
	"bytes"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/protobuf/encoding/protowire"
)

func marshalTraces(t testing.TB, td ptrace.Traces) []byte {
	t.Helper()
	b, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// threeResources is an export of three services, one span each.
func threeResources() ptrace.Traces {
	td := ptrace.NewTraces()
	for i, svc := range []string{"web", "invoice", "billing"} {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", svc)
		rs.Resource().Attributes().PutStr("service.namespace", "shop")
		sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		sp.SetTraceID(otlpTraceID)
		sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, byte(i + 1)})
		sp.SetName("op " + svc)
	}
	return td
}

// forwarded is what the walk forwards of body: the data of every resource
// with usable items, concatenated.
func forwarded(w *wireWalk, body []byte) []byte {
	var out []byte
	for i := range w.resources {
		if w.resources[i].items > 0 {
			out = append(out, w.resources[i].data(body)...)
		}
	}
	return out
}

func TestWalkValid(t *testing.T) {
	body := marshalTraces(t, appTraces())
	var w wireWalk
	if err := walk(wireTraces, body, &w); err != nil {
		t.Fatal(err)
	}
	if w.accepted != 2 || w.rejected != 0 || len(w.resources) != 1 {
		t.Fatalf("walk = %+v, want 2 spans in 1 resource", w)
	}
	r := &w.resources[0]
	if !bytes.Equal(r.data(body), body) {
		t.Errorf("the one resource's data is not the request as received")
	}
	if rt := r.resourceText(body); rt.service != "invoice" || rt.namespace != "shop" {
		t.Errorf("resource = %+v", rt)
	}
}

func TestWalkMultipleResources(t *testing.T) {
	body := marshalTraces(t, threeResources())
	var w wireWalk
	if err := walk(wireTraces, body, &w); err != nil {
		t.Fatal(err)
	}
	if w.accepted != 3 || len(w.resources) != 3 {
		t.Fatalf("walk = %+v", w)
	}
	var all []byte
	for i, want := range []string{"web", "invoice", "billing"} {
		r := &w.resources[i]
		if rt := r.resourceText(body); rt.service != want || rt.namespace != "shop" || r.items != 1 {
			t.Errorf("resource %d = %+v, %d items; want %s", i, rt, r.items, want)
		}
		one, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(r.data(body))
		if err != nil || one.SpanCount() != 1 || one.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Name() != "op "+want {
			t.Errorf("resource %d data does not decode to its span: %v", i, err)
		}
		all = append(all, r.data(body)...)
	}
	if !bytes.Equal(all, body) {
		t.Error("the resources' data, concatenated, are not the request")
	}
}

// TestWalkTruncated cuts a request at every length: the walk accepts a
// prefix exactly when pdata does, with the same spans.
func TestWalkTruncated(t *testing.T) {
	body := marshalTraces(t, threeResources())
	for n := range len(body) {
		checkAgainstPdata(t, body[:n])
	}
}

func TestWalkBadIDs(t *testing.T) {
	td := appTraces()
	spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	noTrace := spans.AppendEmpty()
	noTrace.SetName("no trace")
	noTrace.SetSpanID(pcommon.SpanID{9, 9, 9, 9, 9, 9, 9, 9})
	noSpan := spans.AppendEmpty()
	noSpan.SetName("no span")
	noSpan.SetTraceID(otlpTraceID)
	body := marshalTraces(t, td)
	var w wireWalk
	if err := walk(wireTraces, body, &w); err != nil {
		t.Fatal(err)
	}
	if w.accepted != 2 || w.rejected != 2 || w.msg != `span "no span" has no span id` {
		t.Fatalf("walk = %d accepted, %d rejected, %q", w.accepted, w.rejected, w.msg)
	}
	got, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(w.resources[0].data(body))
	if err != nil {
		t.Fatal(err)
	}
	want := appTraces()
	if !ptraceEqual(t, got, want) {
		t.Error("forwarded spans are not the usable ones")
	}

	// Ids of the wrong size make the request malformed, as for pdata.
	for _, field := range []protowire.Number{1, 2, 4} {
		span := protowire.AppendTag(nil, field, protowire.BytesType)
		span = protowire.AppendBytes(span, []byte{1, 2, 3})
		bad := wrap(wrap(wrap(span, 2), 2), 1)
		var w wireWalk
		if err := walk(wireTraces, bad, &w); err == nil {
			t.Errorf("an id of 3 bytes in field %d was accepted", field)
		}
		checkAgainstPdata(t, bad)
	}
}

// wrap makes msg field num of a new message.
func wrap(msg []byte, num protowire.Number) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), msg)
}

func ptraceEqual(t testing.TB, a, b ptrace.Traces) bool {
	t.Helper()
	ab, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ab, bb)
}

// TestWalkKeepsUnknownFields: fields pdata does not know, in the resource
// and in a span, reach the consumer byte for byte, also when a rejected
// span is cut out of the resource.
func TestWalkKeepsUnknownFields(t *testing.T) {
	good := protowire.AppendTag(nil, 1, protowire.BytesType)
	good = protowire.AppendBytes(good, otlpTraceID[:])
	good = protowire.AppendTag(good, 2, protowire.BytesType)
	good = protowire.AppendBytes(good, appSpanID[:])
	good = protowire.AppendTag(good, 77, protowire.VarintType) // unknown
	good = protowire.AppendVarint(good, 12345)
	good = protowire.AppendTag(good, 78, protowire.BytesType) // unknown
	good = protowire.AppendBytes(good, []byte("future"))
	noIDs := protowire.AppendTag(nil, 5, protowire.BytesType)
	noIDs = protowire.AppendBytes(noIDs, []byte("no ids"))

	scope := append(wrap(good, 2), protowire.AppendFixed32(protowire.AppendTag(nil, 99, protowire.Fixed32Type), 7)...)
	resource := wrap(wrap(wrap([]byte("svc"), 1), 1), 1) // not a real KeyValue: key only
	resource = append(resource, wrap(scope, 2)...)
	resource = append(resource, protowire.AppendTag(nil, 500, protowire.VarintType)...)
	resource = protowire.AppendVarint(resource, 1)
	body := wrap(resource, 1)

	var w wireWalk
	if err := walk(wireTraces, body, &w); err != nil {
		t.Fatal(err)
	}
	checkAgainstPdata(t, body)
	if got := w.resources[0].data(body); !bytes.Equal(got, body) {
		t.Fatalf("data %x, want %x", got, body)
	}

	// Now with a rejected span beside the good one.
	scope2 := append(wrap(noIDs, 2), scope...)
	resource2 := append(wrap(scope2, 2), protowire.AppendVarint(protowire.AppendTag(nil, 500, protowire.VarintType), 1)...)
	body2 := wrap(resource2, 1)
	if err := walk(wireTraces, body2, &w); err != nil {
		t.Fatal(err)
	}
	if w.accepted != 1 || w.rejected != 1 {
		t.Fatalf("walk = %+v", w)
	}
	wantRes := append(wrap(scope, 2), protowire.AppendVarint(protowire.AppendTag(nil, 500, protowire.VarintType), 1)...)
	if got := w.resources[0].data(body2); !bytes.Equal(got, wrap(wantRes, 1)) {
		t.Fatalf("data %x, want %x", got, wrap(wantRes, 1))
	}
	checkAgainstPdata(t, body2)
}

func TestWalkDeprecatedScopeSpans(t *testing.T) {
	span := wrap(append(wrap(otlpTraceID[:], 1), wrap(appSpanID[:], 2)...), 2)
	// Only the deprecated group: its spans count.
	body := wrap(wrap(span, 1000), 1)
	checkAgainstPdata(t, body)
	var w wireWalk
	if err := walk(wireTraces, body, &w); err != nil || w.accepted != 1 {
		t.Fatalf("walk = %+v, %v", w, err)
	}
	// Beside scope_spans it is ignored, as pdata's migration drops it.
	body = wrap(append(wrap(span, 1000), wrap(append(span, span...), 2)...), 1)
	checkAgainstPdata(t, body)
	if err := walk(wireTraces, body, &w); err != nil || w.accepted != 2 {
		t.Fatalf("walk = %+v, %v", w, err)
	}
}

func TestWalkServiceNameNotAString(t *testing.T) {
	td := appTraces()
	td.ResourceSpans().At(0).Resource().Attributes().PutInt("service.name", 42)
	body := marshalTraces(t, td)
	var w wireWalk
	if err := walk(wireTraces, body, &w); err != nil {
		t.Fatal(err)
	}
	if rt := w.resources[0].resourceText(body); rt.service != "42" || rt.namespace != "shop" {
		t.Errorf("resource = %+v, want service 42 as pdata renders it", rt)
	}
}

func TestWalkLogs(t *testing.T) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "invoice")
	recs := rl.ScopeLogs().AppendEmpty().LogRecords()
	recs.AppendEmpty().Body().SetStr("no ids are fine for logs")
	lr := recs.AppendEmpty()
	lr.Body().SetEmptyMap().PutStr("k", "v")
	lr.SetTraceID(otlpTraceID)
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	var w wireWalk
	if err := walk(wireLogs, body, &w); err != nil {
		t.Fatal(err)
	}
	if w.accepted != 2 || w.rejected != 0 || !bytes.Equal(w.resources[0].data(body), body) {
		t.Fatalf("walk = %+v", w)
	}
	for n := range len(body) {
		req := plogotlp.NewExportRequest()
		perr := req.UnmarshalProto(body[:n])
		werr := walk(wireLogs, body[:n], &w)
		if (perr == nil) != (werr == nil) {
			t.Fatalf("prefix %d: pdata %v, walk %v", n, perr, werr)
		}
		if perr == nil && w.accepted != req.Logs().LogRecordCount() {
			t.Fatalf("prefix %d: walk counted %d records, pdata %d", n, w.accepted, req.Logs().LogRecordCount())
		}
	}
}

// checkAgainstPdata walks body and decodes it with pdata: both accept it
// or both refuse it, they see the same spans, the walk rejects the spans
// pdata has without ids, and what the walk forwards decodes to the usable
// spans.
func checkAgainstPdata(t testing.TB, body []byte) {
	t.Helper()
	req := ptraceotlp.NewExportRequest()
	perr := req.UnmarshalProto(body)
	var w wireWalk
	werr := walk(wireTraces, body, &w)
	if (perr == nil) != (werr == nil) {
		t.Fatalf("body %x: pdata says %v, the walk %v", body, perr, werr)
	}
	if perr != nil {
		return
	}
	td := req.Traces()
	rejected := 0
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		n := 0
		for _, ss := range rs.ScopeSpans().All() {
			ss.Spans().RemoveIf(func(sp ptrace.Span) bool {
				if sp.TraceID().IsEmpty() || sp.SpanID().IsEmpty() {
					rejected++
					return true
				}
				n++
				return false
			})
		}
		return n == 0
	})
	if w.accepted != td.SpanCount() || w.rejected != rejected {
		t.Fatalf("body %x: walk counted %d accepted, %d rejected; pdata %d usable, %d without ids",
			body, w.accepted, w.rejected, td.SpanCount(), rejected)
	}
	fwd := forwarded(&w, body)
	got, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(fwd)
	if err != nil {
		t.Fatalf("body %x: forwarded %x does not decode: %v", body, fwd, err)
	}
	if !ptraceEqual(t, got, td) {
		t.Fatalf("body %x: forwarded spans differ from pdata's usable ones", body)
	}
	for i := range w.resources {
		r := &w.resources[i]
		if r.items == 0 {
			continue
		}
		rt := r.resourceText(body)
		one, _ := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(r.data(body))
		if want := resourceOf(one.ResourceSpans().At(0).Resource()); rt != want {
			t.Fatalf("body %x: resource %d is %+v, pdata says %+v", body, i, rt, want)
		}
	}
}

func FuzzWalkTraces(f *testing.F) {
	f.Add(marshalTraces(f, appTraces()))
	f.Add(marshalTraces(f, threeResources()))
	td := appTraces()
	sp := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().AppendEmpty()
	sp.SetName("no ids")
	ev := sp.Events().AppendEmpty()
	ev.SetName("e")
	ev.Attributes().PutEmptySlice("list").AppendEmpty().SetEmptyMap().PutDouble("d", 1.5)
	sp.Links().AppendEmpty().SetTraceID(otlpTraceID)
	td.ResourceSpans().At(0).Resource().Attributes().PutBool("service.namespace", true)
	f.Add(marshalTraces(f, td))
	f.Add(wrap(wrap(wrap(append(wrap(otlpTraceID[:], 1), wrap(appSpanID[:], 2)...), 2), 1000), 1))
	f.Add([]byte(strings.Repeat("\x0a\x02\x12\x00", 3)))
	f.Add([]byte{0x0b, 0x08, 0x01, 0x0c})
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAgainstPdata(t, body)
	})
}

// benchExport is an export as the OpenTelemetry SDKs' batch span processor
// sends one: 512 HTTP server spans of one service.
func benchExport(b *testing.B) []byte {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "web")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp")
	for i := range 512 {
		sp := ss.Spans().AppendEmpty()
		sp.SetTraceID(otlpTraceID)
		sp.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, byte(i >> 8), byte(i)})
		sp.SetParentSpanID(appSpanID)
		sp.SetName("GET /api/orders/{id}")
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetStartTimestamp(1)
		sp.SetEndTimestamp(2)
		a := sp.Attributes()
		a.PutStr("http.request.method", "GET")
		a.PutStr("url.path", "/api/orders/1234")
		a.PutInt("http.response.status_code", 200)
		a.PutStr("server.address", "web")
		a.PutStr("user_agent.original", "shop/2.3 (go-http-client)")
	}
	return marshalTraces(b, td)
}

func BenchmarkWalkTraces(b *testing.B) {
	body := benchExport(b)
	var w wireWalk
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := walk(wireTraces, body, &w); err != nil || w.accepted != 512 {
			b.Fatal(err, w.accepted)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*512), "ns/span")
}

func BenchmarkPdataDecodeTraces(b *testing.B) {
	body := benchExport(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*512), "ns/span")
}

// TestScalarAnyOnlyWhatValidateAnyAccepts: the walker's shortcut for
// scalar attribute values says yes only to values validateAny accepts,
// and to the usual ones.
func TestScalarAnyOnlyWhatValidateAnyAccepts(t *testing.T) {
	str := func(n int) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), bytes.Repeat([]byte{'s'}, n))
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	overlong := varint(3, 1<<63) // made 11 varint bytes: too long
	overlong[len(overlong)-1] |= 0x80
	overlong = append(overlong, 1)
	for _, c := range []struct {
		name   string
		v      []byte
		depth  int
		scalar bool
	}{
		{"string", str(5), 1, true},
		{"string of 127", str(127), 1, true},
		{"string of 128", str(128), 1, false},
		{"empty string", str(0), 1, true},
		{"bool", varint(2, 1), 1, true},
		{"int", varint(3, 200), 1, true},
		{"int of 10 bytes", varint(3, 1<<63), 1, true},
		{"int too long", overlong, 1, false},
		{"int cut short", varint(3, 200)[:2], 1, false},
		{"double", protowire.AppendFixed64(protowire.AppendTag(nil, 4, protowire.Fixed64Type), 1), 1, false},
		{"string and more", append(str(3), varint(3, 1)...), 1, false},
		{"string too short", str(5)[:4], 1, false},
		{"at the recursion limit", str(5), wireRecursionLimit, false},
		{"empty", nil, 1, false},
	} {
		got := scalarAny(c.v, c.depth)
		if got != c.scalar {
			t.Errorf("%s: scalarAny = %v, want %v", c.name, got, c.scalar)
		}
		if err := validateAny(c.v, c.depth); got && err != nil {
			t.Errorf("%s: scalarAny says yes, validateAny says %v", c.name, err)
		}
	}
}

// oneSpan is the Span message of a one-span TracesData in wire form.
func oneSpan(t testing.TB, td []byte) []byte {
	t.Helper()
	msg := td
	for _, field := range []int32{1, 2, 2} { // resource_spans, scope_spans, spans
		var found []byte
		for pos := 0; pos < len(msg); {
			num, wt, p, err := consumeTag(msg, pos)
			if err != nil {
				t.Fatal(err)
			}
			if wt != wtLen {
				if pos, err = consumeUnknown(msg, p, wt); err != nil {
					t.Fatal(err)
				}
				continue
			}
			s, e, err := consumeLen(msg, p)
			if err != nil {
				t.Fatal(err)
			}
			if num == field && found == nil {
				found = msg[s:e]
			}
			pos = e
		}
		if found == nil {
			t.Fatalf("no field %d", field)
		}
		msg = found
	}
	return msg
}

// usualSpans are a usual HTTP server span as pdata writes it (fields in
// descending order, status first) and as protobuf-go does (ascending),
// with a status code.
func usualSpans(t testing.TB) map[string][]byte {
	td := ptrace.NewTraces()
	sp := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(otlpTraceID)
	sp.SetSpanID(appSpanID)
	sp.SetParentSpanID(pcommon.SpanID{8, 7, 6, 5, 4, 3, 2, 1})
	sp.SetName("GET /api/orders/{id}")
	sp.SetKind(ptrace.SpanKindServer)
	sp.SetStartTimestamp(1)
	sp.SetEndTimestamp(2)
	sp.Attributes().PutStr("http.request.method", "GET")
	sp.Attributes().PutInt("http.response.status_code", 200)
	sp.Attributes().PutBool("error", false)
	pdataSpan := oneSpan(t, marshalTraces(t, td))

	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	kv := func(k string, v []byte) []byte { return field(field(nil, 1, []byte(k)), 2, v) }
	var asc []byte
	asc = field(asc, 1, otlpTraceID[:])
	asc = field(asc, 2, appSpanID[:])
	asc = field(asc, 3, []byte("vendor=1"))
	asc = field(asc, 4, []byte{8, 7, 6, 5, 4, 3, 2, 1})
	asc = field(asc, 5, []byte("GET /api/orders/{id}"))
	asc = protowire.AppendVarint(protowire.AppendTag(asc, 6, protowire.VarintType), 2)
	asc = protowire.AppendFixed64(protowire.AppendTag(asc, 7, protowire.Fixed64Type), 1)
	asc = protowire.AppendFixed64(protowire.AppendTag(asc, 8, protowire.Fixed64Type), 2)
	asc = field(asc, 9, kv("http.request.method", field(nil, 1, []byte("GET"))))
	asc = field(asc, 9, kv("http.response.status_code", protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 200)))
	asc = field(asc, 15, protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1))
	return map[string][]byte{"pdata": pdataSpan, "protobuf-go": asc}
}

// TestSpanPrefixTakesUsualSpans: the usual spans, in either field order,
// are validated by spanPrefix alone, to the same ids as the loop finds.
func TestSpanPrefixTakesUsualSpans(t *testing.T) {
	for name, b := range usualSpans(t) {
		var fast, slow wireIDs
		if n := spanPrefix(b, &fast); n != len(b) {
			t.Errorf("%s: spanPrefix took %d of %d bytes: % x", name, n, len(b), b)
		}
		if err := validateSpanFields(b, 0, &slow); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(fast.traceID, otlpTraceID[:]) || !bytes.Equal(fast.spanID, appSpanID[:]) || string(fast.name) != "GET /api/orders/{id}" {
			t.Errorf("%s: spanPrefix found %+v", name, fast)
		}
		if !bytes.Equal(fast.traceID, slow.traceID) || !bytes.Equal(fast.spanID, slow.spanID) || !bytes.Equal(fast.name, slow.name) {
			t.Errorf("%s: spanPrefix found %+v, the loop %+v", name, fast, slow)
		}
	}
}

// FuzzSpanPrefix: validating a span through spanPrefix and then the loop
// says what the loop alone says, error and ids.
func FuzzSpanPrefix(f *testing.F) {
	for _, b := range usualSpans(f) {
		f.Add(b)
		f.Add(b[:len(b)-3])
		f.Add(append(append([]byte{}, b...), b...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, slow wireIDs
		ferr := validateSpan(b, &fast)
		serr := validateSpanFields(b, 0, &slow)
		if (ferr == nil) != (serr == nil) || ferr != nil && ferr.Error() != serr.Error() {
			t.Fatalf("span % x: with spanPrefix %v, without %v", b, ferr, serr)
		}
		if ferr == nil && (!bytes.Equal(fast.traceID, slow.traceID) || !bytes.Equal(fast.spanID, slow.spanID) || !bytes.Equal(fast.name, slow.name)) {
			t.Fatalf("span % x: with spanPrefix %+v, without %+v", b, fast, slow)
		}
	})
}
