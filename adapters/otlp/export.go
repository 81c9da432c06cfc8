package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
)

// exporter sends one batch of traces or logs. Both return how many items
// the endpoint did not take; an error that retrying cannot fix is
// handlerkit.Permanent.
type exporter interface {
	traces(ctx context.Context, td ptrace.Traces) (failed int, err error)
	logs(ctx context.Context, ld plog.Logs) (failed int, err error)
	// raw sends an export request body of signal as it is and returns
	// how many items the endpoint rejected.
	raw(ctx context.Context, signal string, body []byte) (rejected int, err error)
	close() error
}

// ---- gRPC ----

type grpcExporter struct {
	conn   *grpc.ClientConn
	tc     ptraceotlp.GRPCClient
	lc     plogotlp.GRPCClient
	md     metadata.MD
	callOp []grpc.CallOption
}

// newGRPCExporter connects lazily: an endpoint that is down when the
// handler is created costs failed sends, counted, not a failed config load.
func newGRPCExporter(cfg *Config) (*grpcExporter, error) {
	creds := insecure.NewCredentials()
	if cfg.TLS.Enabled {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		creds = credentials.NewTLS(tc)
	}
	bo := backoff.DefaultConfig
	bo.MaxDelay = 5 * time.Second // reconnect soon after the endpoint is back
	conn, err := grpc.NewClient("passthrough:///"+cfg.Endpoint,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: cfg.Timeout}),
	)
	if err != nil {
		return nil, err
	}
	e := &grpcExporter{conn: conn, tc: ptraceotlp.NewGRPCClient(conn), lc: plogotlp.NewGRPCClient(conn)}
	if len(cfg.Headers) > 0 {
		e.md = metadata.New(cfg.Headers)
	}
	if cfg.Compression == CompressionGzip {
		e.callOp = append(e.callOp, grpc.UseCompressor(grpcgzip.Name))
	}
	return e, nil
}

func (e *grpcExporter) outgoing(ctx context.Context) context.Context {
	if e.md == nil {
		return ctx
	}
	return metadata.NewOutgoingContext(ctx, e.md)
}

func (e *grpcExporter) traces(ctx context.Context, td ptrace.Traces) (int, error) {
	resp, err := e.tc.Export(e.outgoing(ctx), ptraceotlp.NewExportRequestFromTraces(td), e.callOp...)
	if err != nil {
		return td.SpanCount(), grpcError(err)
	}
	if n := resp.PartialSuccess().RejectedSpans(); n > 0 {
		return int(n), handlerkit.Permanent(fmt.Errorf("endpoint rejected %d spans: %s", n, resp.PartialSuccess().ErrorMessage()))
	}
	return 0, nil
}

func (e *grpcExporter) logs(ctx context.Context, ld plog.Logs) (int, error) {
	resp, err := e.lc.Export(e.outgoing(ctx), plogotlp.NewExportRequestFromLogs(ld), e.callOp...)
	if err != nil {
		return ld.LogRecordCount(), grpcError(err)
	}
	if n := resp.PartialSuccess().RejectedLogRecords(); n > 0 {
		return int(n), handlerkit.Permanent(fmt.Errorf("endpoint rejected %d log records: %s", n, resp.PartialSuccess().ErrorMessage()))
	}
	return 0, nil
}

func (e *grpcExporter) close() error { return e.conn.Close() }

// grpcError marks the codes OTLP says not to retry as permanent.
func grpcError(err error) error {
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss, codes.ResourceExhausted:
		return err
	}
	return handlerkit.Permanent(err)
}

// ---- HTTP ----

type httpExporter struct {
	client            *http.Client
	tracesURL, logURL string
	headers           map[string]string
	gzip              bool
}

func newHTTPExporter(cfg *Config) (*httpExporter, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the endpoint is addressed directly
	if cfg.useTLS() {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		tr.TLSClientConfig = tc
	}
	base := strings.TrimRight(cfg.Endpoint, "/")
	return &httpExporter{
		client:    &http.Client{Transport: tr},
		tracesURL: base + "/v1/traces",
		logURL:    base + "/v1/logs",
		headers:   cfg.Headers,
		gzip:      cfg.Compression == CompressionGzip,
	}, nil
}

func (e *httpExporter) traces(ctx context.Context, td ptrace.Traces) (int, error) {
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return td.SpanCount(), handlerkit.Permanent(err)
	}
	out, err := e.post(ctx, e.tracesURL, body)
	if err != nil {
		return td.SpanCount(), err
	}
	resp := ptraceotlp.NewExportResponse()
	if len(out) > 0 {
		if err := resp.UnmarshalProto(out); err != nil {
			return 0, nil // accepted; only the partial success is unreadable
		}
	}
	if n := resp.PartialSuccess().RejectedSpans(); n > 0 {
		return int(n), handlerkit.Permanent(fmt.Errorf("endpoint rejected %d spans: %s", n, resp.PartialSuccess().ErrorMessage()))
	}
	return 0, nil
}

func (e *httpExporter) logs(ctx context.Context, ld plog.Logs) (int, error) {
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		return ld.LogRecordCount(), handlerkit.Permanent(err)
	}
	out, err := e.post(ctx, e.logURL, body)
	if err != nil {
		return ld.LogRecordCount(), err
	}
	resp := plogotlp.NewExportResponse()
	if len(out) > 0 {
		if err := resp.UnmarshalProto(out); err != nil {
			return 0, nil
		}
	}
	if n := resp.PartialSuccess().RejectedLogRecords(); n > 0 {
		return int(n), handlerkit.Permanent(fmt.Errorf("endpoint rejected %d log records: %s", n, resp.PartialSuccess().ErrorMessage()))
	}
	return 0, nil
}

// maxResponse bounds what is read of a response body.
const maxResponse = 1 << 20

// post sends one OTLP/HTTP request and returns the body of a 2xx answer.
// 429, 502, 503 and 504 (and transport errors) may pass; other statuses
// are permanent, as OTLP/HTTP says.
func (e *httpExporter) post(ctx context.Context, url string, body []byte) ([]byte, error) {
	encoding := ""
	if e.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		if err := zw.Close(); err != nil {
			return nil, handlerkit.Permanent(err)
		}
		body, encoding = buf.Bytes(), "gzip"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, handlerkit.Permanent(err)
	}
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode/100 == 2 {
		return out, nil
	}
	if err == nil {
		err = fmt.Errorf("POST %s: %s%s", url, resp.Status, statusMessage(resp.Header.Get("Content-Type"), out))
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return nil, err
	}
	return nil, handlerkit.Permanent(err)
}

// statusMessage is the message of a google.rpc.Status error body, or a
// short text body, as ": message".
func statusMessage(contentType string, body []byte) string {
	if strings.HasPrefix(contentType, "application/x-protobuf") {
		var st rpcstatus.Status
		if proto.Unmarshal(body, &st) == nil && st.GetMessage() != "" {
			return ": " + st.GetMessage()
		}
		return ""
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return ""
	}
	return ": " + s
}

func (e *httpExporter) close() error {
	e.client.CloseIdleConnections()
	return nil
}
