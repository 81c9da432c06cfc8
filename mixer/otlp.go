package mixer

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidemix/sidemix/internal/rawproto"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP exporters may gzip their requests
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/policy"
)

// Labels of sidemix_mixer_otlp_received_total.
const (
	signalTraces = "traces"
	signalLogs   = "logs"

	otlpAccepted  = "accepted"  // a span or log record went through the report rules
	otlpRejected  = "rejected"  // a span or log record was unusable (no trace or span id)
	otlpMalformed = "malformed" // a request that could not be decoded (counted once per request)
)

// protocolOTLP is the context.protocol of every bag made from a span or log
// record, so that rules meant for the proxies' requests can leave them out.
const protocolOTLP = "otlp"

// Content types of OTLP/HTTP.
const (
	contentProto = "application/x-protobuf"
	contentJSON  = "application/json"
)

// otlpReceiver serves the OTLP/gRPC and OTLP/HTTP trace and log services:
// every span and log record becomes an attribute bag that goes through the
// report rules like a bag a proxy reported.
type otlpReceiver struct {
	s *Server
}

// listenOTLP opens the OTLP listeners that are configured; the caller closes
// what it returns on a later failure.
func (s *Server) listenOTLP() (grpcLn, httpLn net.Listener, err error) {
	if s.cfg.OTLPGRPCAddr != "" {
		if grpcLn, err = net.Listen("tcp", s.cfg.OTLPGRPCAddr); err != nil {
			return nil, nil, fmt.Errorf("mixer: otlp grpc listener: %w", err)
		}
	}
	if s.cfg.OTLPHTTPAddr != "" {
		if httpLn, err = net.Listen("tcp", s.cfg.OTLPHTTPAddr); err != nil {
			if grpcLn != nil {
				grpcLn.Close()
			}
			return nil, nil, fmt.Errorf("mixer: otlp http listener: %w", err)
		}
	}
	return grpcLn, httpLn, nil
}

// serveOTLP serves on the listeners listenOTLP opened. Called with s.mu held.
func (s *Server) serveOTLP() {
	r := &otlpReceiver{s: s}
	if s.otlpGRPCLn != nil {
		s.otlpGRPCSrv = grpc.NewServer(
			grpc.ChainUnaryInterceptor(s.recoverUnary),
			grpc.MaxRecvMsgSize(maxGRPCMessageSize),
			// An export is typically 100 kB to a few MB: windows that
			// take one whole spare the sender stalls and both sides the
			// wake-ups of window updates mid-message, and a larger read
			// buffer fewer reads.
			grpc.InitialWindowSize(otlpWindow),
			grpc.InitialConnWindowSize(2*otlpWindow),
			grpc.ReadBufferSize(otlpReadBuffer),
			grpc.ForceServerCodecV2(bodyCodec{rawproto.NewCodec()}),
		)
		s.otlpGRPCSrv.RegisterService(exportDesc(otlpTraceService, r.exportTracesGRPC), r)
		s.otlpGRPCSrv.RegisterService(exportDesc(otlpLogsService, r.exportLogsGRPC), r)
		go func(srv *grpc.Server, ln net.Listener) {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.log.Error("otlp grpc server stopped", "error", err)
			}
		}(s.otlpGRPCSrv, s.otlpGRPCLn)
	}
	if s.otlpHTTPLn != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/v1/traces", r.serveHTTPTraces)
		mux.HandleFunc("/v1/logs", r.serveHTTPLogs)
		s.otlpHTTPSrv = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		go func(srv *http.Server, ln net.Listener) {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("otlp http server stopped", "error", err)
			}
		}(s.otlpHTTPSrv, s.otlpHTTPLn)
	}
}

// stopOTLP stops both receivers, letting requests in flight finish until
// ctx ends.
func (s *Server) stopOTLP(ctx context.Context) []error {
	var errs []error
	if s.otlpGRPCSrv != nil {
		stopped := make(chan struct{})
		go func() {
			s.otlpGRPCSrv.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			s.otlpGRPCSrv.Stop()
			<-stopped
			errs = append(errs, fmt.Errorf("otlp grpc: requests cut off: %w", ctx.Err()))
		}
	}
	if s.otlpHTTPSrv != nil {
		if err := s.otlpHTTPSrv.Shutdown(ctx); err != nil {
			s.otlpHTTPSrv.Close()
			errs = append(errs, fmt.Errorf("otlp http: requests cut off: %w", err))
		}
	}
	return errs
}

// OTLPGRPCAddr is the address of the OTLP/gRPC receiver once started, ""
// when it is disabled.
func (s *Server) OTLPGRPCAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return lnAddr(s.otlpGRPCLn, s.cfg.OTLPGRPCAddr)
}

// OTLPHTTPAddr is the address of the OTLP/HTTP receiver once started, ""
// when it is disabled.
func (s *Server) OTLPHTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return lnAddr(s.otlpHTTPLn, s.cfg.OTLPHTTPAddr)
}

// The OTLP gRPC services. The request body reaches the handler undecoded
// (rawproto.Message, rawproto.Codec) so that the receiver decodes it itself, as over
// HTTP: a body gRPC's codec could not decode would be answered Internal
// before any mixer code ran, and go uncounted.
const (
	otlpTraceService = "opentelemetry.proto.collector.trace.v1.TraceService"
	otlpLogsService  = "opentelemetry.proto.collector.logs.v1.LogsService"
)

// Flow-control window per stream and read buffer of the OTLP/gRPC server.
const (
	otlpWindow     = 4 << 20
	otlpReadBuffer = 256 << 10
)

// otlpBody is an OTLP/gRPC request body, copied out of gRPC's buffers
// into a buffer of the receiver's own that goes back to bodyPool once the
// receiver and every handler it gave a part of the body to are done with
// it (template.OTLP.Release). A buffer that comes back spares the next
// request an allocation of fresh pages: at a million spans per second,
// the kernel zeroing the pages under a new ~100 kB body per export was a
// quarter of the mixer's CPU.
type otlpBody struct {
	buf  []byte
	refs atomic.Int32
	pool bodyPool // where the buffer goes back
	// release is unref, made once per otlpBody: the forwarded instances'
	// Release.
	release func()
}

// Bounds of the receiver's buffer pool: buffers kept, and the largest
// kept (a rare huge request is left to the garbage collector).
const (
	bodyPoolSize     = 64
	bodyPoolMaxBytes = 4 << 20
)

// bodyPool holds the buffers of bodies nobody references any more.
type bodyPool chan *otlpBody

// bodies is the OTLP/gRPC receivers' pool.
var bodies = make(bodyPool, bodyPoolSize)

// get returns a body of n bytes, from the pool when it has one, with one
// reference (the receiver's).
func (p bodyPool) get(n int) *otlpBody {
	var b *otlpBody
	select {
	case b = <-p:
	default:
		b = &otlpBody{pool: p}
		b.release = b.unref
	}
	if cap(b.buf) < n {
		b.buf = make([]byte, n)
	}
	b.buf = b.buf[:n]
	b.refs.Store(1)
	return b
}

// ref adds a reference: a forwarded instance given to one handler.
func (b *otlpBody) ref() { b.refs.Add(1) }

// unref drops a reference; the last one returns the buffer to the pool.
// A count below zero (a Release too many) keeps the buffer out of it.
func (b *otlpBody) unref() {
	if b.refs.Add(-1) == 0 && cap(b.buf) <= bodyPoolMaxBytes {
		select {
		case b.pool <- b:
		default:
		}
	}
}

// bodyCodec is rawproto's codec that receives into an *otlpBody.
type bodyCodec struct{ rawproto.Codec }

// Unmarshal copies the body into a pooled buffer.
func (c bodyCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if p, ok := v.(**otlpBody); ok {
		b := bodies.get(data.Len())
		data.CopyTo(b.buf)
		*p = b
		return nil
	}
	return c.Codec.Unmarshal(data, v)
}

// exportDesc is a service with one unary Export method served by export,
// which holds the body's reference until it returns.
func exportDesc(service string, export func(body *otlpBody) (rawproto.Message, error)) *grpc.ServiceDesc {
	full := "/" + service + "/Export"
	return &grpc.ServiceDesc{
		ServiceName: service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				var in *otlpBody
				if err := dec(&in); err != nil {
					return nil, err
				}
				defer in.unref()
				call := func(_ context.Context, req any) (any, error) { return export(*req.(**otlpBody)) }
				if interceptor == nil {
					return call(ctx, &in)
				}
				return interceptor(ctx, &in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, call)
			},
		}},
	}
}

// tracesResponse is the answer to a traces export: a partial success
// counts the spans that had no usable ids.
func tracesResponse(rejected int, msg string) ptraceotlp.ExportResponse {
	resp := ptraceotlp.NewExportResponse()
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedSpans(int64(rejected))
		resp.PartialSuccess().SetErrorMessage(msg)
	}
	return resp
}

// logsResponse is the answer to a logs export.
func logsResponse(rejected int, msg string) plogotlp.ExportResponse {
	resp := plogotlp.NewExportResponse()
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedLogRecords(int64(rejected))
		resp.PartialSuccess().SetErrorMessage(msg)
	}
	return resp
}

// fullSuccess is the protobuf answer to an export that took everything:
// an empty message.
var fullSuccess = rawproto.Message{}

// exportTracesGRPC is the gRPC Export of traces.
func (r *otlpReceiver) exportTracesGRPC(body *otlpBody) (rawproto.Message, error) {
	rejected, msg, err := r.export(wireTraces, body.buf, body)
	if err != nil {
		return nil, r.malformedGRPC(signalTraces, err)
	}
	if rejected == 0 {
		return fullSuccess, nil
	}
	return tracesResponse(rejected, msg).MarshalProto()
}

// exportLogsGRPC is the gRPC Export of logs.
func (r *otlpReceiver) exportLogsGRPC(body *otlpBody) (rawproto.Message, error) {
	rejected, msg, err := r.export(wireLogs, body.buf, body)
	if err != nil {
		return nil, r.malformedGRPC(signalLogs, err)
	}
	if rejected == 0 {
		return fullSuccess, nil
	}
	return logsResponse(rejected, msg).MarshalProto()
}

func (r *otlpReceiver) malformedGRPC(signal string, err error) error {
	r.s.m.otlpReceived.WithLabelValues(signal, otlpMalformed).Inc()
	r.s.log.Debug("malformed otlp request", "signal", signal, "error", err)
	return status.Errorf(codes.InvalidArgument, "malformed %s request: %v", signal, err)
}

// otlpPlan is what a config asks of the OTLP receiver, worked out once
// per config snapshot.
type otlpPlan struct {
	// bags: some report rule may match the bag of a span or log record,
	// so every one is decoded into a bag and evaluated. Without, spans and
	// log records are never decoded.
	bags bool
	// forward: some rule sends otlp instances, so each resource of an
	// export is evaluated for VarietyOTLP and forwarded as received.
	forward bool
}

func otlpPlanOf(snap *policy.Snapshot) otlpPlan {
	b := attribute.NewBuilder(1)
	b.SetString(attribute.ContextProtocol, protocolOTLP)
	return otlpPlan{
		bags:    snap.MayMatch(policy.VarietyReport, b.Build()),
		forward: snap.Uses(policy.VarietyOTLP),
	}
}

var walkPool = sync.Pool{New: func() any { return new(wireWalk) }}

// export handles one export request of sig in protobuf: it walks the wire
// form (validating it, counting and cutting it into resources) unless
// only bags are needed, decodes it into bags when some report rule may
// want them, and forwards its resources to the rules that send otlp
// instances. err is a malformed request. owner, when not nil, is the
// pooled buffer body is: the forwarded instances hold a reference to it
// each.
func (r *otlpReceiver) export(sig *wireSignal, body []byte, owner *otlpBody) (rejected int, msg string, err error) {
	st := r.s.acquire()
	defer st.release()
	plan := st.otlp
	var w *wireWalk
	if plan.forward || !plan.bags {
		w = walkPool.Get().(*wireWalk)
		defer func() {
			if cap(w.resources) <= 1024 {
				w.resources = w.resources[:0]
				walkPool.Put(w)
			}
		}()
		if err := walk(sig, body, w); err != nil {
			return 0, "", err
		}
	}
	if plan.bags {
		if rejected, msg, err = r.reportItems(st, sig, body); err != nil {
			return 0, "", err
		}
	} else {
		rejected, msg = w.rejected, w.msg
		c := r.s.m.otlpCounters(sig.name)
		c.accepted.Add(float64(w.accepted))
		if w.rejected > 0 {
			c.rejected.Add(float64(w.rejected))
		}
	}
	if plan.forward {
		r.forward(st, sig, body, w, owner)
	}
	return rejected, msg, nil
}

// reportItems decodes body and reports a bag per span (log record).
func (r *otlpReceiver) reportItems(st *state, sig *wireSignal, body []byte) (rejected int, msg string, err error) {
	if sig == wireTraces {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			return 0, "", err
		}
		rejected, msg = r.traces(st, req.Traces())
		return rejected, msg, nil
	}
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		return 0, "", err
	}
	rejected, msg = r.logs(st, req.Logs())
	return rejected, msg, nil
}

// forward evaluates the rules that send otlp instances once per resource
// of a walked request, over a bag of the resource's attributes, and
// enqueues to their handlers an instance holding the resource as
// received (with a reference to owner, when not nil, for each handler
// given one).
func (r *otlpReceiver) forward(st *state, sig *wireSignal, body []byte, w *wireWalk, owner *otlpBody) {
	s := r.s
	for i := range w.resources {
		res := &w.resources[i]
		if res.items == 0 {
			continue // nothing usable to forward
		}
		rt := res.resourceText(body)
		b := attribute.NewBuilder(3)
		b.SetString(attribute.ContextProtocol, protocolOTLP)
		setWorkload(b, attribute.SourceWorkloadName, attribute.SourceWorkloadNamespace, rt)
		out := st.snap.Evaluate(b.Build(), policy.VarietyOTLP, nil)
		s.countEvalErrors(out.Errors)
		if len(out.Actions) == 0 {
			continue
		}
		data := res.data(body)
		// One instance per instance name, shared by the actions that send it.
		var built []*template.OTLP
		instance := func(name string) *template.OTLP {
			for _, in := range built {
				if in.Name == name {
					return in
				}
			}
			in := &template.OTLP{Name: name, Signal: sig.name, Data: data, Items: res.items,
				ServiceName: rt.service, ServiceNamespace: rt.namespace}
			if owner != nil {
				in.Release = owner.release
			}
			built = append(built, in)
			return in
		}
		for _, a := range out.Actions {
			q := s.queueOf(st, a)
			if q == nil {
				continue
			}
			for _, inst := range a.Instances {
				if o, isOTLP := inst.(*template.OTLP); isOTLP && o.Signal != "" && o.Signal != sig.name {
					continue // an instance of the other signal
				}
				in := instance(inst.InstanceName())
				if owner != nil {
					owner.ref()
				}
				q.enqueue(in)
			}
		}
	}
}

// otlpRequest is what the pdata Export request types of every signal
// offer.
type otlpRequest interface {
	UnmarshalJSON([]byte) error
	MarshalProto() ([]byte, error)
}

// otlpResponse is what the pdata Export response types offer.
type otlpResponse interface {
	MarshalJSON() ([]byte, error)
	MarshalProto() ([]byte, error)
}

// serveHTTPTraces is POST /v1/traces: an ExportTraceServiceRequest in
// protobuf or JSON, answered in the same encoding.
func (r *otlpReceiver) serveHTTPTraces(w http.ResponseWriter, req *http.Request) {
	r.serveHTTP(w, req, wireTraces, ptraceotlp.NewExportRequest(),
		func(rejected int, msg string) otlpResponse { return tracesResponse(rejected, msg) })
}

// serveHTTPLogs is POST /v1/logs.
func (r *otlpReceiver) serveHTTPLogs(w http.ResponseWriter, req *http.Request) {
	r.serveHTTP(w, req, wireLogs, plogotlp.NewExportRequest(),
		func(rejected int, msg string) otlpResponse { return logsResponse(rejected, msg) })
}

// serveHTTP reads one OTLP/HTTP request of sig, exports it and writes its
// answer in the request's encoding. A JSON body is decoded into er and
// handled in its protobuf form, as a protobuf body is.
func (r *otlpReceiver) serveHTTP(w http.ResponseWriter, req *http.Request, sig *wireSignal, er otlpRequest, respond func(int, string) otlpResponse) {
	body, enc, ok := r.readHTTP(w, req, sig.name)
	if !ok {
		return
	}
	var err error
	if enc == contentJSON {
		if err = er.UnmarshalJSON(body); err == nil {
			body, err = er.MarshalProto()
		}
	}
	var rejected int
	var msg string
	if err == nil {
		rejected, msg, err = r.export(sig, body, nil)
	}
	if err != nil {
		r.malformed(w, enc, sig.name, err)
		return
	}
	resp := respond(rejected, msg)
	var out []byte
	if enc == contentJSON {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	writeHTTP(w, enc, out, err)
}

func writeHTTP(w http.ResponseWriter, enc string, out []byte, err error) {
	if err != nil {
		writeHTTPStatus(w, enc, http.StatusInternalServerError, codes.Internal, "encoding the response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", enc)
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// readHTTP checks method and content type and reads the (possibly gzipped)
// body, answering the request itself when it cannot be served.
func (r *otlpReceiver) readHTTP(w http.ResponseWriter, req *http.Request, signal string) (body []byte, enc string, ok bool) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeHTTPStatus(w, contentJSON, http.StatusMethodNotAllowed, codes.Unimplemented, req.Method+" not allowed: OTLP/HTTP takes POST")
		return nil, "", false
	}
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	switch ct {
	case contentProto, contentJSON:
		enc = ct
	default:
		r.s.m.otlpReceived.WithLabelValues(signal, otlpMalformed).Inc()
		writeHTTPStatus(w, contentJSON, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("content type %q: want %s or %s", req.Header.Get("Content-Type"), contentProto, contentJSON))
		return nil, "", false
	}
	var src io.Reader = http.MaxBytesReader(w, req.Body, maxGRPCMessageSize)
	switch strings.ToLower(req.Header.Get("Content-Encoding")) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			r.malformed(w, enc, signal, fmt.Errorf("gzip: %w", err))
			return nil, "", false
		}
		defer zr.Close()
		// The limit applies to what the body inflates to, too.
		src = io.LimitReader(zr, maxGRPCMessageSize+1)
	default:
		r.s.m.otlpReceived.WithLabelValues(signal, otlpMalformed).Inc()
		writeHTTPStatus(w, enc, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("content encoding %q: want gzip or none", req.Header.Get("Content-Encoding")))
		return nil, "", false
	}
	body, err := io.ReadAll(src)
	if err == nil && len(body) > maxGRPCMessageSize {
		err = fmt.Errorf("request larger than %d bytes", maxGRPCMessageSize)
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) || len(body) > maxGRPCMessageSize {
			r.s.m.otlpReceived.WithLabelValues(signal, otlpMalformed).Inc()
			writeHTTPStatus(w, enc, http.StatusRequestEntityTooLarge, codes.InvalidArgument, err.Error())
			return nil, "", false
		}
		r.malformed(w, enc, signal, err)
		return nil, "", false
	}
	return body, enc, true
}

// malformed answers a request that could not be decoded with 400 and a
// google.rpc.Status, as OTLP/HTTP asks.
func (r *otlpReceiver) malformed(w http.ResponseWriter, enc, signal string, err error) {
	r.s.m.otlpReceived.WithLabelValues(signal, otlpMalformed).Inc()
	r.s.log.Debug("malformed otlp request", "signal", signal, "error", err)
	writeHTTPStatus(w, enc, http.StatusBadRequest, codes.InvalidArgument, fmt.Sprintf("malformed %s request: %v", signal, err))
}

func writeHTTPStatus(w http.ResponseWriter, enc string, httpCode int, code codes.Code, msg string) {
	st := &rpcstatus.Status{Code: int32(code), Message: msg}
	var out []byte
	if enc == contentProto {
		out, _ = proto.Marshal(st)
	} else {
		enc = contentJSON
		out, _ = protojson.Marshal(st)
	}
	w.Header().Set("Content-Type", enc)
	w.WriteHeader(httpCode)
	w.Write(out)
}

// traces turns every usable span into a bag and reports the bags.
func (r *otlpReceiver) traces(st *state, td ptrace.Traces) (rejected int, msg string) {
	var bags []*attribute.Bag
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		res := resourceOf(rs.Resource())
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				bag, err := spanBag(res, spans.At(k))
				if err != nil {
					rejected++
					msg = err.Error()
					continue
				}
				bags = append(bags, bag)
			}
		}
	}
	skipped := r.reportBags(st, bags)
	if skipped > 0 {
		rejected += skipped
		msg = "a span's attributes contradict the attribute manifest"
	}
	r.s.m.otlpReceived.WithLabelValues(signalTraces, otlpAccepted).Add(float64(len(bags) - skipped))
	r.s.m.otlpReceived.WithLabelValues(signalTraces, otlpRejected).Add(float64(rejected))
	return rejected, msg
}

// logs turns every log record into a bag and reports the bags.
func (r *otlpReceiver) logs(st *state, ld plog.Logs) (rejected int, msg string) {
	var bags []*attribute.Bag
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		res := resourceOf(rl.Resource())
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			recs := sls.At(j).LogRecords()
			for k := 0; k < recs.Len(); k++ {
				bags = append(bags, logBag(res, recs.At(k)))
			}
		}
	}
	rejected = r.reportBags(st, bags)
	if rejected > 0 {
		msg = "a log record's attributes contradict the attribute manifest"
	}
	r.s.m.otlpReceived.WithLabelValues(signalLogs, otlpAccepted).Add(float64(len(bags) - rejected))
	r.s.m.otlpReceived.WithLabelValues(signalLogs, otlpRejected).Add(float64(rejected))
	return rejected, msg
}

// reportBags runs bags through the report rules of the active config and
// returns how many it skipped because they contradict its manifest (a
// manifest may redeclare no standard attribute, so this is not expected).
func (r *otlpReceiver) reportBags(st *state, bags []*attribute.Bag) (rejected int) {
	if len(bags) == 0 {
		return 0
	}
	s := r.s
	manifest := st.snap.Manifest()
	kept := bags[:0]
	for _, b := range bags {
		if err := manifest.CheckBag(b); err != nil {
			rejected++
			s.log.Debug("otlp bag rejected", "error", err)
			continue
		}
		kept = append(kept, b)
	}
	s.report(st, kept)
	return rejected
}

// resource is what a span's or log record's bag takes from its resource.
type resource struct {
	service, namespace string
}

func resourceOf(r pcommon.Resource) resource {
	var res resource
	if v, ok := r.Attributes().Get("service.name"); ok {
		res.service = v.AsString()
	}
	if v, ok := r.Attributes().Get("service.namespace"); ok {
		res.namespace = v.AsString()
	}
	return res
}

// spanBag is the attribute bag of one span; see doc.go for the mapping.
// It sets the attributes in name order, so the builder need not sort them.
func spanBag(res resource, sp ptrace.Span) (*attribute.Bag, error) {
	if sp.TraceID().IsEmpty() {
		return nil, fmt.Errorf("span %q has no trace id", sp.Name())
	}
	if sp.SpanID().IsEmpty() {
		return nil, fmt.Errorf("span %q has no span id", sp.Name())
	}
	kind, outbound := spanKind(sp.Kind())
	attrs := sp.Attributes()
	h := httpAttributes(attrs, outbound)
	reporter := "inbound"
	if outbound {
		reporter = "outbound"
		if res.service != "" {
			h.sourceWorkload = res.service
		}
		h.sourceNamespace = res.namespace
	} else {
		// peer.service is only read for outbound spans.
		h.destWorkload = res.service
		h.destNamespace = res.namespace
	}
	status := "unset"
	switch sp.Status().Code() {
	case ptrace.StatusCodeOk:
		status = "ok"
	case ptrace.StatusCodeError:
		status = "error"
	}
	start, end := sp.StartTimestamp(), sp.EndTimestamp()

	b := attribute.NewBuilder(28)
	str := func(name, v string) {
		if v != "" {
			b.SetString(name, v)
		}
	}
	b.SetString(attribute.ContextProtocol, protocolOTLP)
	b.SetString(attribute.ContextReporterKind, reporter)
	if end != 0 {
		b.SetTime(attribute.ContextTime, end.AsTime())
	}
	str(attribute.DestinationServiceHost, h.destServiceHost)
	str(attribute.DestinationWorkloadName, h.destWorkload)
	str(attribute.DestinationWorkloadNamespace, h.destNamespace)
	str(attribute.RequestHost, h.host)
	str(attribute.RequestMethod, h.method)
	if h.hasPath {
		b.SetString(attribute.RequestPath, h.path)
	}
	str(attribute.RequestScheme, h.scheme)
	if start != 0 {
		b.SetTime(attribute.RequestTime, start.AsTime())
	}
	b.SetString(attribute.RequestTraceID, sp.TraceID().String())
	if !sp.ParentSpanID().IsEmpty() {
		b.SetString(attribute.RequestParentSpanID, sp.ParentSpanID().String())
	}
	// An exported span was recorded: whatever sampled it, it is kept.
	b.SetBool(attribute.RequestTraceSampled, true)
	b.SetString(attribute.RequestSpanID, sp.SpanID().String())
	str(attribute.RequestTraceState, sp.TraceState().AsRaw())
	if h.hasPath {
		b.SetString(attribute.RequestURLPath, h.urlPath)
	}
	str(attribute.RequestUserAgent, h.userAgent)
	if h.hasCode {
		b.SetInt64(attribute.ResponseCode, h.code)
	}
	if start != 0 && end >= start {
		b.SetDuration(attribute.ResponseDuration, time.Duration(end-start))
	}
	if end != 0 {
		b.SetTime(attribute.ResponseTime, end.AsTime())
	}
	str(attribute.SourceWorkloadName, h.sourceWorkload)
	str(attribute.SourceWorkloadNamespace, h.sourceNamespace)
	if attrs.Len() > 0 {
		b.SetStringMap(attribute.SpanAttributes, textMap(attrs))
	}
	b.SetString(attribute.SpanKind, kind)
	b.SetString(attribute.SpanName, sp.Name())
	b.SetString(attribute.SpanStatus, status)
	return b.Build(), nil
}

// spanKind names an OTLP span kind as the tracespan template does and says
// whether the span is the caller's side of a call (outbound, as a proxy's
// client span is) or not (inbound: server, consumer, internal, unspecified).
func spanKind(k ptrace.SpanKind) (name string, outbound bool) {
	switch k {
	case ptrace.SpanKindClient:
		return "client", true
	case ptrace.SpanKindProducer:
		return "producer", true
	case ptrace.SpanKindServer:
		return "server", false
	case ptrace.SpanKindConsumer:
		return "consumer", false
	}
	return "internal", false
}

// spanHTTP is what a span's attributes say of its request and workloads;
// empty strings are not set.
type spanHTTP struct {
	method, path, urlPath, host, scheme, userAgent string
	hasPath                                        bool // path and urlPath are set (possibly empty)
	destServiceHost, destWorkload, destNamespace   string
	sourceWorkload, sourceNamespace                string
	code                                           int64
	hasCode                                        bool
}

// httpAttributes maps the OpenTelemetry HTTP semantic conventions (current
// names first, then the older ones SDKs still send) onto the request.* and
// response.* attributes a proxy reports.
func httpAttributes(attrs pcommon.Map, outbound bool) spanHTTP {
	var h spanHTTP
	str := func(keys ...string) (string, bool) {
		for _, k := range keys {
			if v, ok := attrs.Get(k); ok && v.AsString() != "" {
				return v.AsString(), true
			}
		}
		return "", false
	}
	if method, ok := str("http.request.method", "http.method"); ok {
		h.method = method
	}
	if p, ok := str("url.path"); ok {
		h.urlPath, h.path, h.hasPath = p, p, true
		if q, ok := str("url.query"); ok {
			h.path = p + "?" + q
		}
	} else if t, ok := str("http.target"); ok {
		h.path, h.urlPath, h.hasPath = t, strings.SplitN(t, "?", 2)[0], true
	} else if full, ok := str("url.full", "http.url"); ok {
		if u, err := url.Parse(full); err == nil {
			h.urlPath, h.path, h.hasPath = u.Path, u.RequestURI(), true
			if u.Host != "" {
				h.host = u.Host
			}
			if u.Scheme != "" {
				h.scheme = u.Scheme
			}
		}
	}
	if s, ok := str("url.scheme", "http.scheme"); ok {
		h.scheme = s
	}
	if host, ok := str("server.address", "http.host", "net.host.name", "net.peer.name"); ok {
		h.host = host
		if outbound {
			h.destServiceHost = host
		}
	}
	if peer, ok := str("peer.service"); ok && outbound {
		h.destWorkload = peer
	}
	if ua, ok := str("user_agent.original", "http.user_agent"); ok {
		h.userAgent = ua
	}
	for _, k := range []string{"http.response.status_code", "http.status_code"} {
		v, ok := attrs.Get(k)
		if !ok {
			continue
		}
		switch v.Type() {
		case pcommon.ValueTypeInt:
			h.code, h.hasCode = v.Int(), true
		case pcommon.ValueTypeDouble:
			h.code, h.hasCode = int64(v.Double()), true
		default:
			n, err := strconv.ParseInt(v.AsString(), 10, 64)
			if err != nil {
				continue
			}
			h.code, h.hasCode = n, true
		}
		break
	}
	return h
}

// textMap renders attributes as text (JSON for maps and slices).
func textMap(attrs pcommon.Map) map[string]string {
	m := make(map[string]string, attrs.Len())
	attrs.Range(func(k string, v pcommon.Value) bool {
		m[k] = v.AsString()
		return true
	})
	return m
}

// logBag is the attribute bag of one log record.
func logBag(res resource, lr plog.LogRecord) *attribute.Bag {
	b := attribute.NewBuilder(12)
	b.SetString(attribute.ContextProtocol, protocolOTLP)
	if !lr.TraceID().IsEmpty() {
		b.SetString(attribute.RequestTraceID, lr.TraceID().String())
	}
	if !lr.SpanID().IsEmpty() {
		b.SetString(attribute.RequestSpanID, lr.SpanID().String())
	}
	setWorkload(b, attribute.SourceWorkloadName, attribute.SourceWorkloadNamespace, res)
	ts := lr.Timestamp()
	if ts == 0 {
		ts = lr.ObservedTimestamp()
	}
	if ts != 0 {
		b.SetTime(attribute.RequestTime, ts.AsTime())
		b.SetTime(attribute.ContextTime, ts.AsTime())
	}
	b.SetString(attribute.LogBody, lr.Body().AsString())
	sev := lr.SeverityText()
	if sev == "" && lr.SeverityNumber() != plog.SeverityNumberUnspecified {
		sev = severityName(lr.SeverityNumber())
	}
	if sev != "" {
		b.SetString(attribute.LogSeverity, sev)
	}
	if lr.Attributes().Len() > 0 {
		b.SetStringMap(attribute.LogAttributes, textMap(lr.Attributes()))
	}
	return b.Build()
}

// severityName is the short name of a severity number's range (TRACE,
// DEBUG, INFO, WARN, ERROR, FATAL), as the OpenTelemetry log data model
// displays it.
func severityName(n plog.SeverityNumber) string {
	names := []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
	i := (int(n) - 1) / 4
	if i < 0 || i >= len(names) {
		return ""
	}
	return names[i]
}

func setWorkload(b *attribute.Builder, name, namespace string, res resource) {
	if res.service != "" {
		b.SetString(name, res.service)
	}
	if res.namespace != "" {
		b.SetString(namespace, res.namespace)
	}
}
