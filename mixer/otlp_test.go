package mixer

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/rawproto"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sidemix/sidemix/adapters/template"
)

var (
	otlpTraceID  = pcommon.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	proxySpanID  = pcommon.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	appSpanID    = pcommon.SpanID{0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8}
	clientSpanID = pcommon.SpanID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	otlpStart    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// startOTLP starts a mixer with both OTLP receivers over testdata/otlp.yaml.
func startOTLP(t *testing.T) (*env, *sink) {
	t.Helper()
	name, sk := newSink(t)
	b, err := readTestdata("otlp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := writeConfig(t, map[string]string{"otlp.yaml": strings.ReplaceAll(string(b), "SINK", name)})
	e := start(t, dir, Config{OTLPGRPCAddr: "127.0.0.1:0", OTLPHTTPAddr: "127.0.0.1:0"})
	return e, sk
}

// appTraces is what an app's SDK exports: a server span that is the child
// of the span its sidecar made, and a client span, child of the server span.
func appTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "invoice")
	rs.Resource().Attributes().PutStr("service.namespace", "shop")
	spans := rs.ScopeSpans().AppendEmpty().Spans()

	srv := spans.AppendEmpty()
	srv.SetTraceID(otlpTraceID)
	srv.SetSpanID(appSpanID)
	srv.SetParentSpanID(proxySpanID)
	srv.TraceState().FromRaw("vendor=1")
	srv.SetName("GET /invoices/{id}")
	srv.SetKind(ptrace.SpanKindServer)
	srv.SetStartTimestamp(pcommon.NewTimestampFromTime(otlpStart))
	srv.SetEndTimestamp(pcommon.NewTimestampFromTime(otlpStart.Add(25 * time.Millisecond)))
	srv.Status().SetCode(ptrace.StatusCodeError)
	srv.Attributes().PutStr("http.request.method", "GET")
	srv.Attributes().PutStr("url.path", "/invoices/7")
	srv.Attributes().PutInt("http.response.status_code", 503)
	srv.Attributes().PutStr("app.tier", "gold")

	cli := spans.AppendEmpty()
	cli.SetTraceID(otlpTraceID)
	cli.SetSpanID(clientSpanID)
	cli.SetParentSpanID(appSpanID)
	cli.SetName("SELECT invoices")
	cli.SetKind(ptrace.SpanKindClient)
	cli.SetStartTimestamp(pcommon.NewTimestampFromTime(otlpStart.Add(time.Millisecond)))
	cli.SetEndTimestamp(pcommon.NewTimestampFromTime(otlpStart.Add(3 * time.Millisecond)))
	cli.Attributes().PutStr("peer.service", "postgres")
	return td
}

func spansOf(t *testing.T, insts []template.Instance) map[string]*template.TraceSpan {
	t.Helper()
	out := map[string]*template.TraceSpan{}
	for _, inst := range insts {
		switch s := inst.(type) {
		case *template.TraceSpan:
			out[s.SpanID] = s
		default:
			t.Errorf("instance %T %s: only spans expected", inst, inst.InstanceName())
		}
	}
	return out
}

func checkAppSpans(t *testing.T, got map[string]*template.TraceSpan) {
	t.Helper()
	srv, cli := got[appSpanID.String()], got[clientSpanID.String()]
	if srv == nil || cli == nil {
		t.Fatalf("spans %v: want %s and %s", got, appSpanID, clientSpanID)
	}
	if srv.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || srv.ParentSpanID != "00f067aa0ba902b7" ||
		srv.TraceState != "vendor=1" || srv.SpanName != "GET /invoices/{id}" || srv.SpanKind != template.SpanKindServer ||
		srv.Status != template.SpanStatusError || srv.HTTPStatusCode != 503 ||
		!srv.StartTime.Equal(otlpStart) || !srv.EndTime.Equal(otlpStart.Add(25*time.Millisecond)) ||
		srv.ServiceName() != "invoice" {
		t.Errorf("server span %+v", srv)
	}
	if tags := srv.TagMap(); tags["http.request.method"] != "GET" || tags["url.path"] != "/invoices/7" || tags["app.tier"] != "gold" {
		t.Errorf("server span tags %v", srv.SpanTags)
	}
	if cli.ParentSpanID != appSpanID.String() || cli.SpanKind != template.SpanKindClient || cli.SpanName != "SELECT invoices" ||
		cli.Status != template.SpanStatusUnset || cli.ServiceName() != "invoice" || cli.DestinationName != "postgres" {
		t.Errorf("client span %+v", cli)
	}
}

func TestOTLPGRPCTracesThroughReportRules(t *testing.T) {
	e, sk := startOTLP(t)
	conn := otlpConn(t, e.srv.OTLPGRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(appTraces()), grpc.UseCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.PartialSuccess().RejectedSpans(); n != 0 {
		t.Errorf("rejected %d spans: %s", n, resp.PartialSuccess().ErrorMessage())
	}
	eventually(t, 5*time.Second, "2 spans at the handler", func() bool { return sk.count() == 2 })
	insts, _, _ := sk.snapshot()
	checkAppSpans(t, spansOf(t, insts))
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_otlp_received_total", "signal", "traces", "result", "accepted"); got != 2 {
		t.Errorf("otlp_received_total{traces,accepted} = %v", got)
	}

	// A span without ids cannot be a tracespan: rejected, counted, said so.
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("no ids")
	resp, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	if err != nil {
		t.Fatal(err)
	}
	if n, msg := resp.PartialSuccess().RejectedSpans(), resp.PartialSuccess().ErrorMessage(); n != 1 || !strings.Contains(msg, "no trace id") {
		t.Errorf("partial success %d %q, want 1 rejected for its trace id", n, msg)
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_otlp_received_total", "signal", "traces", "result", "rejected"); got != 1 {
		t.Errorf("otlp_received_total{traces,rejected} = %v", got)
	}
}

func TestOTLPGRPCMalformed(t *testing.T) {
	e, sk := startOTLP(t)
	conn := otlpConn(t, e.srv.OTLPGRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	codec := grpc.ForceCodecV2(rawproto.NewCodec())
	for _, svc := range []string{otlpTraceService, otlpLogsService} {
		var out rawproto.Message
		err := conn.Invoke(ctx, "/"+svc+"/Export", rawproto.Message{0xff, 0xff, 0xff, 0x01, 0x02}, &out, codec)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", svc, err)
		}
	}
	for _, signal := range []string{"traces", "logs"} {
		if got := metric(t, e.srv.Registry(), "sidemix_mixer_otlp_received_total", "signal", signal, "result", "malformed"); got != 1 {
			t.Errorf("otlp_received_total{%s,malformed} = %v, want 1", signal, got)
		}
	}
	// The server is still there.
	if _, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(appTraces())); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "2 spans at the handler", func() bool { return sk.count() == 2 })
}

func TestOTLPGRPCLogs(t *testing.T) {
	e, sk := startOTLP(t)
	conn := otlpConn(t, e.srv.OTLPGRPCAddr())
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "invoice")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(otlpStart))
	lr.SetSeverityNumber(plog.SeverityNumberWarn)
	lr.Body().SetStr("invoice 7 is overdue")
	lr.Attributes().PutStr("user", "ann")
	lr.SetTraceID(otlpTraceID)
	lr.SetSpanID(appSpanID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(ld)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "1 log entry at the handler", func() bool { return sk.count() == 1 })
	insts, _, _ := sk.snapshot()
	if len(insts) != 1 {
		t.Fatalf("%d instances, want the log entry only", len(insts))
	}
	le, ok := insts[0].(*template.LogEntry)
	if !ok {
		t.Fatalf("instance %T", insts[0])
	}
	want := map[string]any{"body": "invoice 7 is overdue", "service": "invoice", "traceId": otlpTraceID.String(),
		"spanId": appSpanID.String(), "user": "ann"}
	for k, v := range want {
		if got, _ := le.Variables.Get(k); got != v {
			t.Errorf("variables[%s] = %v, want %v", k, got, v)
		}
	}
	if le.Severity != "WARN" || !le.Timestamp.Equal(otlpStart) {
		t.Errorf("severity %q timestamp %v", le.Severity, le.Timestamp)
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_otlp_received_total", "signal", "logs", "result", "accepted"); got != 1 {
		t.Errorf("otlp_received_total{logs,accepted} = %v", got)
	}
}

func postOTLP(t *testing.T, url, contentType, encoding string, body []byte) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), out
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOTLPHTTPTraces(t *testing.T) {
	req := ptraceotlp.NewExportRequestFromTraces(appTraces())
	pb, err := req.MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	js, err := req.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, ct, enc string
		body          []byte
	}{
		{"protobuf", contentProto, "", pb},
		{"json", contentJSON + "; charset=utf-8", "", js},
		{"protobuf gzip", contentProto, "gzip", gzipped(t, pb)},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, sk := startOTLP(t)
			code, ct, body := postOTLP(t, "http://"+e.srv.OTLPHTTPAddr()+"/v1/traces", c.ct, c.enc, c.body)
			if code != http.StatusOK || !strings.HasPrefix(c.ct, ct) {
				t.Fatalf("status %d %s: %s", code, ct, body)
			}
			resp := ptraceotlp.NewExportResponse()
			if ct == contentJSON {
				err = resp.UnmarshalJSON(body)
			} else {
				err = resp.UnmarshalProto(body)
			}
			if err != nil || resp.PartialSuccess().RejectedSpans() != 0 {
				t.Fatalf("response %q: %v", body, err)
			}
			eventually(t, 5*time.Second, "2 spans at the handler", func() bool { return sk.count() == 2 })
			insts, _, _ := sk.snapshot()
			checkAppSpans(t, spansOf(t, insts))
		})
	}
}

func TestOTLPHTTPLogsJSON(t *testing.T) {
	e, sk := startOTLP(t)
	body := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
	  "scopeLogs":[{"logRecords":[{"timeUnixNano":"1772366400000000000","severityText":"ERROR","body":{"stringValue":"boom"}}]}]}]}`
	code, _, out := postOTLP(t, "http://"+e.srv.OTLPHTTPAddr()+"/v1/logs", contentJSON, "", []byte(body))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, out)
	}
	eventually(t, 5*time.Second, "1 log entry at the handler", func() bool { return sk.count() == 1 })
	insts, _, _ := sk.snapshot()
	le := insts[0].(*template.LogEntry)
	if le.Severity != "ERROR" || le.Variables.Map()["body"] != "boom" || le.Variables.Map()["service"] != "web" || !le.Timestamp.Equal(otlpStart) {
		t.Errorf("log entry %+v", le)
	}
}

func TestOTLPHTTPMalformed(t *testing.T) {
	e, sk := startOTLP(t)
	base := "http://" + e.srv.OTLPHTTPAddr()
	for _, c := range []struct {
		name, path, ct, enc string
		body                []byte
		code                int
	}{
		{"garbage protobuf", "/v1/traces", contentProto, "", []byte{0xff, 0xff, 0xff, 0x01, 0x02}, http.StatusBadRequest},
		{"garbage json", "/v1/logs", contentJSON, "", []byte(`{"resourceLogs": [`), http.StatusBadRequest},
		{"not gzip", "/v1/traces", contentProto, "gzip", []byte("plain"), http.StatusBadRequest},
		{"unknown encoding", "/v1/traces", contentProto, "br", []byte("x"), http.StatusUnsupportedMediaType},
		{"text", "/v1/traces", "text/plain", "", []byte("x"), http.StatusUnsupportedMediaType},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, ct, out := postOTLP(t, base+c.path, c.ct, c.enc, c.body)
			if code != c.code {
				t.Fatalf("status %d, want %d: %s", code, c.code, out)
			}
			if ct == contentJSON {
				var st struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(out, &st); err != nil || st.Code != 3 || st.Message == "" {
					t.Errorf("status body %s: %v", out, err)
				}
			}
		})
	}
	resp, err := http.Get(base + "/v1/traces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
	if got := metric(t, e.srv.Registry(), "sidemix_mixer_otlp_received_total", "result", "malformed"); got != 5 {
		t.Errorf("otlp_received_total{malformed} = %v, want 5", got)
	}
	if n := sk.count(); n != 0 {
		t.Errorf("%d instances from malformed requests", n)
	}
}

// A proxy's bag still passes the rule that leaves OTLP bags out.
func TestOTLPRulesTellProxyBagsApart(t *testing.T) {
	e, sk := startOTLP(t)
	e.report(requestBag("/a", 200))
	eventually(t, 5*time.Second, "the proxy's request counted", func() bool { return sk.count() == 1 })
	insts, _, _ := sk.snapshot()
	if m, ok := insts[0].(*template.Metric); !ok || m.Name != "requestcount" {
		t.Errorf("instance %+v, want requestcount", insts[0])
	}
}

func TestOTLPDisabledByDefault(t *testing.T) {
	e := start(t, reportConfig(t, "none"), Config{})
	if a, b := e.srv.OTLPGRPCAddr(), e.srv.OTLPHTTPAddr(); a != "" || b != "" {
		t.Errorf("OTLP receivers %q %q, want none", a, b)
	}
}

// otlpConn is a gRPC client connection to addr, closed when the test ends.
func otlpConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
