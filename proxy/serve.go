package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy/mixerclient"
	"github.com/sidemix/sidemix/proxy/routing"
	ups "github.com/sidemix/sidemix/proxy/upstream"
)

const (
	kindInbound  = "inbound"
	kindOutbound = "outbound"
)

// side is one direction of the proxy: a listener, the handler below, and
// the ReverseProxy that forwards.
type side struct {
	p         *Proxy
	kind      string
	app       *url.URL               // inbound: where the app listens
	upstreams map[string]*upstream   // outbound: by lower-case Host
	policy    mixerclient.FailPolicy // inbound: the check fail policy
	rp        *httputil.ReverseProxy
	rrp       *httputil.ReverseProxy // outbound with Config.Routes: forwards routed requests
	srv       *http.Server
	ln        net.Listener
	m         sideMetrics
}

// exchange is what one request carries from the handler through the
// ReverseProxy hooks to the report.
type exchange struct {
	start         time.Time
	up            *upstream // outbound route; nil inbound
	grpc          bool
	requestID     string
	span          span      // the server (inbound) or client (outbound) span
	src           [5]string // inbound: workload, namespace, principal, uid, labels of the caller
	peer          [5]string // outbound: the same of the callee, from its answer
	bag           *attribute.Bag
	decision      mixerclient.Decision
	flag          string
	contentLength int64
	headBytes     int64
	body          *countingBody // nil when there is no body

	// Outbound requests Config.Routes knows the Host of (see routes.go).
	routed     bool
	route      *routing.Route       // nil when no route of the host matched
	prefix     string               // the uri prefix the match matched
	dst        *routing.Destination // the weighted choice
	rc         *routeCluster
	state      *routeState
	replayable bool      // the body can be sent again (retries, mirror)
	bodyBuf    []byte    // the buffered body, when it had to be read
	picked     *ups.Pick // the endpoint of the last try
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

func newSide(p *Proxy, kind string, transport http.RoundTripper) *side {
	s := &side{p: p, kind: kind, m: p.m.side(kind)}
	s.rp = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      transport,
		ModifyResponse: s.modifyResponse,
		ErrorHandler:   s.errorHandler,
		ErrorLog:       p.errLog,
		BufferPool:     copyBuffers,
	}
	if kind == kindOutbound && p.routes != nil {
		s.rrp = &httputil.ReverseProxy{
			Rewrite:        s.rewrite,
			Transport:      routedTransport{s},
			ModifyResponse: s.modifyResponse,
			ErrorHandler:   s.errorHandler,
			ErrorLog:       p.errLog,
			BufferPool:     copyBuffers,
		}
	}
	return s
}

// copyBuffers lends ReverseProxy its body copy buffers: without a pool it
// allocates 32 KiB per request, half of all the proxy allocated per request
// (BenchmarkInboundCachedCheck), which the garbage collector then paid for.
var copyBuffers = &bufferPool{}

const copyBufferSize = 32 << 10

// maxBufferedBody is the largest request body of known length read whole
// before forwarding (see ServeHTTP); larger ones stream.
const maxBufferedBody = 16 << 10

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.p.Put(&buf)
}

func (s *side) rewrite(pr *httputil.ProxyRequest) {
	ex := exchangeOf(pr.In.Context())
	target := s.app
	if ex != nil && ex.up != nil {
		target = &url.URL{Scheme: "http", Host: ex.up.addr} // routed: each try sets the endpoint
	}
	pr.SetURL(target)
	pr.Out.Host = pr.In.Host // the app and the callee see the Host the caller sent
	if ex != nil && ex.route != nil && ex.route.Rewrite != nil {
		ex.route.Rewrite.RewritePath(pr.Out.URL, ex.prefix)
		if a := ex.route.Rewrite.Authority; a != "" {
			pr.Out.Host = a
		}
	}
	if s.kind == kindInbound {
		if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
			pr.Out.Header["X-Forwarded-For"] = xff
		}
		pr.SetXForwarded()
		return
	}
	// Outbound: the app is the client; keep what it sent.
	for _, h := range [...]string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := pr.In.Header[h]; len(v) > 0 {
			pr.Out.Header[h] = v
		}
	}
}

func (s *side) modifyResponse(resp *http.Response) error {
	ex := exchangeOf(resp.Request.Context())
	for i, h := range peerHeaders {
		// Inbound: the app's own would duplicate or forge the proxy's,
		// set in ServeHTTP. Outbound: the callee's, for the report only.
		if s.kind == kindOutbound && ex != nil {
			ex.peer[i] = resp.Header.Get(h)
		}
		resp.Header.Del(h)
	}
	if ex != nil && ex.route != nil {
		ex.route.Headers.Response.Apply(resp.Header)
		ex.dst.Headers.Response.Apply(resp.Header)
	}
	if ex != nil {
		applyHeaderOps(resp.Header, ex.decision.ResponseHeaderOps)
		setRateLimit(resp.Header, ex.decision, false)
	}
	return nil
}

func (s *side) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeOf(r.Context())
	var op *net.OpError
	var re *routeError
	switch {
	case r.Context().Err() != nil:
		setFlag(ex, flagDownstream)
		w.WriteHeader(499) // nginx's "client closed request"; nobody reads it
		return
	case errors.As(err, &op) && op.Op == "dial":
		setFlag(ex, flagConnect)
		writeText(w, http.StatusServiceUnavailable, "upstream connect error")
	case errors.As(err, &re):
		setFlag(ex, re.flag)
		writeText(w, re.code, re.msg)
	default:
		setFlag(ex, flagReset)
		writeText(w, http.StatusServiceUnavailable, "upstream disconnected before responding")
	}
	s.p.log.Debug("forwarding failed", "direction", s.kind, "host", r.Host, "err", err)
}

func setFlag(ex *exchange, f string) {
	if ex != nil {
		ex.flag = f
	}
}

// route finds the upstream the app named in Host.
func (s *side) route(host string) *upstream {
	h := strings.ToLower(hostOnly(host))
	return s.upstreams[h]
}

// ServeHTTP checks, forwards and reports one request.
func (s *side) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := &exchange{start: time.Now(), flag: flagNone, grpc: isGRPC(r), contentLength: r.ContentLength}
	rec := &recorder{ResponseWriter: w}
	if s.refuseLarge(rec, r, ex) {
		return
	}

	// Identity: trust the caller's proxy inbound, assert our own outbound;
	// inbound, every answer names this workload to the caller's proxy.
	if s.kind == kindInbound {
		s.p.setPeerHeaders(w.Header())
		for i, h := range identityHeaders {
			ex.src[i] = r.Header.Get(h)
			r.Header.Del(h)
		}
	} else {
		s.lookupRoute(r, ex)
		for _, h := range identityHeaders {
			r.Header.Del(h)
		}
	}
	ex.requestID = r.Header.Get(HeaderRequestID)
	if ex.requestID == "" {
		ex.requestID = newRequestID()
		r.Header.Set(HeaderRequestID, ex.requestID)
	}
	ex.headBytes = requestHeadBytes(r)
	ex.bag = s.requestBag(r, ex)
	// The bag keeps the trace headers as the caller sent them; the app or
	// the callee gets this proxy's span as their parent.
	ex.span = s.startSpan(r.Header)
	ex.span.inject(r.Header)

	defer func() {
		if v := recover(); v != nil {
			// ReverseProxy aborts with http.ErrAbortHandler when the
			// response breaks off mid-body: still report it.
			if ex.flag == flagNone {
				if r.Context().Err() != nil {
					ex.flag = flagDownstream
				} else {
					ex.flag = flagReset
				}
			}
			s.finish(ex, rec)
			panic(v)
		}
	}()

	if s.kind == kindOutbound && ex.up == nil && ex.route == nil {
		ex.flag = flagNoRoute
		if ex.routed {
			// A VirtualService host none of whose routes match: Envoy's 404.
			writeText(rec, http.StatusNotFound, "no route matched for "+strconv.Quote(hostOnly(r.Host)))
		} else {
			writeText(rec, http.StatusServiceUnavailable, "no route to upstream "+strconv.Quote(hostOnly(r.Host)))
		}
		s.finish(ex, rec)
		return
	}

	policy := s.policy
	if ex.up != nil {
		policy = ex.up.policy
	}
	d, err := s.p.mixer.CheckWithPolicy(r.Context(), ex.bag, policy)
	if err != nil {
		if r.Context().Err() != nil {
			ex.flag = flagDownstream
			rec.WriteHeader(499)
			s.finish(ex, rec)
			return
		}
		s.p.log.Debug("check failed", "direction", s.kind, "err", err)
	}
	ex.decision = d
	if !d.Allowed() {
		ex.flag = flagDenied
		s.deny(rec, ex, d)
		s.finish(ex, rec)
		return
	}
	if d.DirectResponseCode != 0 {
		h := rec.Header()
		applyHeaderOps(h, d.ResponseHeaderOps)
		setRateLimit(h, d, false)
		if d.DirectResponseBody != "" && h.Get("Content-Type") == "" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
		h.Set("Content-Length", strconv.Itoa(len(d.DirectResponseBody)))
		rec.WriteHeader(d.DirectResponseCode)
		_, _ = rec.Write([]byte(d.DirectResponseBody))
		s.finish(ex, rec)
		return
	}

	applyHeaderOps(r.Header, d.RequestHeaderOps)
	if s.kind == kindOutbound {
		r.Header.Set(HeaderSourceWorkload, s.p.cfg.Service)
		r.Header.Set(HeaderSourceNamespace, s.p.cfg.Namespace)
		r.Header.Set(HeaderSourcePrincipal, s.p.cfg.Principal)
		r.Header.Set(HeaderSourceUID, s.p.cfg.UID)
		if s.p.labelsHeader != "" {
			r.Header.Set(HeaderSourceLabels, s.p.labelsHeader)
		}
	}
	if !ex.routed && !ex.grpc && r.ContentLength > 0 && r.ContentLength <= maxBufferedBody &&
		r.Body != nil && r.Body != http.NoBody && r.Header.Get("Expect") == "" {
		// A small body of known length is read here and handed on in
		// memory: net/http then writes the head and body to the app in one
		// write, where for a streamed body it flushes the head first and
		// copies the body through a fresh 32 KiB buffer (net.TCPConn's
		// ReadFrom): two syscalls and a large allocation per request.
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			ex.flag = flagDownstream
			writeText(rec, http.StatusBadRequest, "request body cut short")
			s.finish(ex, rec)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(buf))
	} else if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		ex.body = &countingBody{rc: r.Body}
		r.Body = ex.body
	}
	if ex.routed {
		s.forwardRouted(rec, r, ex)
	} else {
		s.rp.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex)))
	}
	s.finish(ex, rec)
}

// refuseLarge answers 431 to a request whose trace headers or headers in
// total are over their limits, before anything else looks at it. The
// refusal is reported without the offending headers (without any headers
// when the total is too large) and without a span.
func (s *side) refuseLarge(rec *recorder, r *http.Request, ex *exchange) bool {
	what := oversizedTraceHeader(r.Header)
	if what == "" && requestHeadBytes(r) > int64(s.p.cfg.MaxRequestHeaderBytes) {
		what = headersTotal
	}
	if what == "" {
		return false
	}
	s.m.tooLarge(what)
	if what == headersTotal {
		r.Header = http.Header{}
	} else {
		for _, k := range traceHeaders {
			r.Header.Del(k)
		}
	}
	for i, h := range identityHeaders {
		if s.kind == kindInbound {
			ex.src[i] = r.Header.Get(h)
		}
		r.Header.Del(h)
	}
	if s.kind == kindOutbound {
		s.lookupRoute(r, ex)
	}
	ex.requestID = r.Header.Get(HeaderRequestID)
	if ex.requestID == "" {
		ex.requestID = newRequestID()
	}
	ex.headBytes = requestHeadBytes(r)
	ex.bag = s.requestBag(r, ex)
	msg := "request headers too large"
	if what != headersTotal {
		msg = "trace header " + what + " too large"
	}
	writeText(rec, http.StatusRequestHeaderFieldsTooLarge, msg)
	s.finish(ex, rec)
	return true
}

// deny answers a request the mixer refused: for HTTP a status and the
// mixer's message as text, for gRPC a trailers-only response carrying the
// code, as gRPC clients expect.
func (s *side) deny(w *recorder, ex *exchange, d mixerclient.Decision) {
	msg := d.Message
	if ex.grpc {
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(int(d.Code)))
		if msg != "" {
			h.Set("Grpc-Message", grpcMessageEncode(msg))
		}
		setRateLimit(h, d, true)
		w.WriteHeader(http.StatusOK)
		return
	}
	code := denyStatus(d.Code)
	if msg == "" {
		msg = strings.ToLower(http.StatusText(code))
	}
	setRateLimit(w.Header(), d, true)
	writeText(w, code, msg)
}

// setRateLimit sets Retry-After and the RateLimit-Limit, -Remaining and
// -Reset headers (IETF httpapi draft; seconds, rounded up) from what the
// mixer said of the quota. A denial sets them over whatever is there; an
// allowed response keeps the app's own.
func setRateLimit(h http.Header, d mixerclient.Decision, deny bool) {
	if deny && d.RetryAfter > 0 {
		h.Set("Retry-After", seconds(d.RetryAfter))
	}
	rl := d.RateLimit
	if rl.Limit <= 0 || (!deny && h.Get("RateLimit-Limit") != "") {
		return
	}
	reset := rl.Reset
	if deny && d.RetryAfter > reset {
		reset = d.RetryAfter
	}
	h.Set("RateLimit-Limit", strconv.FormatInt(rl.Limit, 10))
	h.Set("RateLimit-Remaining", strconv.FormatInt(max(0, rl.Remaining), 10))
	h.Set("RateLimit-Reset", seconds(reset))
}

// seconds renders a wait as whole seconds, rounded up.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// denyStatus maps a denial to its HTTP status.
func denyStatus(c codes.Code) int {
	switch c {
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusServiceUnavailable
}

// writeText answers with a plain-text body and a newline.
func writeText(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(msg)+1))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}

// grpcMessageEncode percent-encodes as the gRPC HTTP/2 protocol wants.
func grpcMessageEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	return sb.String()
}

func applyHeaderOps(h http.Header, ops []mixerclient.HeaderOp) {
	for _, op := range ops {
		switch op.Op {
		case mixerclient.HeaderReplace:
			h.Set(op.Name, op.Value)
		case mixerclient.HeaderRemove:
			h.Del(op.Name)
		case mixerclient.HeaderAppend:
			h.Add(op.Name, op.Value)
		}
	}
}

// finish counts the request and hands its report to the mixer client,
// which never blocks.
func (s *side) finish(ex *exchange, rec *recorder) {
	end := time.Now()
	if !rec.wrote && ex.flag == flagNone {
		rec.code = http.StatusOK // the handler returned without writing: net/http sends 200
	}
	s.m.observe(rec.code, ex.flag, end.Sub(ex.start))
	s.p.mixer.Report(s.p.responseBag(ex, rec, end))
}
