package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/sidemix/sidemix/attribute"
)

// Headers by which the outbound side of a calling proxy tells the callee's
// inbound side who is calling. The inbound side removes them before the app
// sees the request, and the outbound side overwrites whatever the app set.
// They are as trustworthy as the network between the proxies: there is no
// mTLS to back them.
const (
	HeaderSourceWorkload  = "X-Sidemix-Source-Workload"
	HeaderSourceNamespace = "X-Sidemix-Source-Namespace"
	HeaderSourcePrincipal = "X-Sidemix-Source-Principal"
	HeaderSourceUID       = "X-Sidemix-Source-Uid"
	HeaderSourceLabels    = "X-Sidemix-Source-Labels" // the workload's labels, URL-query encoded

	// HeaderRequestID carries request.id; the proxy generates it when
	// missing and forwards it.
	HeaderRequestID = "X-Request-Id"
)

var identityHeaders = [...]string{HeaderSourceWorkload, HeaderSourceNamespace, HeaderSourcePrincipal, HeaderSourceUID, HeaderSourceLabels}

// Headers by which the callee's inbound side tells the calling proxy's
// outbound side whom it reached (Istio's metadata exchange, in plain
// headers): the outbound report then names the destination workload
// instead of only the service. The inbound side sets them on every answer,
// replacing whatever the app set; the outbound side removes them before
// the app sees the response.
const (
	HeaderPeerWorkload  = "X-Sidemix-Peer-Workload"
	HeaderPeerNamespace = "X-Sidemix-Peer-Namespace"
	HeaderPeerPrincipal = "X-Sidemix-Peer-Principal"
	HeaderPeerUID       = "X-Sidemix-Peer-Uid"
	HeaderPeerLabels    = "X-Sidemix-Peer-Labels"
)

var peerHeaders = [...]string{HeaderPeerWorkload, HeaderPeerNamespace, HeaderPeerPrincipal, HeaderPeerUID, HeaderPeerLabels}

// Values of context.proxy_error_code (Envoy's response flags).
const (
	flagNone       = "-"
	flagNoRoute    = "NR"   // no upstream for the Host
	flagConnect    = "UF"   // upstream connection failure
	flagReset      = "UC"   // upstream reset or broke off the response
	flagDownstream = "DC"   // the caller went away
	flagDenied     = "UAEX" // denied by policy (or the mixer could not be asked, fail closed)
)

// newRequestID returns a random UUID (version 4).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
}

// requestBag builds the attributes known before forwarding. ex.up is the
// routed upstream (outbound) or nil.
func (s *side) requestBag(r *http.Request, ex *exchange) *attribute.Bag {
	p := s.p
	b := attribute.NewBuilder(48)
	b.SetString(attribute.ContextReporterKind, s.kind)
	b.SetString(attribute.ContextReporterUID, p.cfg.UID)
	b.SetTime(attribute.ContextTime, ex.start)
	b.SetBool(attribute.ConnectionMTLS, false)
	if ex.grpc {
		b.SetString(attribute.ContextProtocol, "grpc")
	} else {
		b.SetString(attribute.ContextProtocol, "http")
	}

	if s.kind == kindInbound {
		p.setWorkload(b, kindInbound)
		if v := ex.src[0]; v != "" {
			b.SetString(attribute.SourceWorkloadName, v)
			b.SetString(attribute.SourceName, v)
		}
		if v := ex.src[1]; v != "" {
			b.SetString(attribute.SourceWorkloadNamespace, v)
			b.SetString(attribute.SourceNamespace, v)
		}
		if v := ex.src[2]; v != "" {
			b.SetString(attribute.SourcePrincipal, v)
		}
		if v := ex.src[3]; v != "" {
			b.SetString(attribute.SourceUID, v)
			b.SetString(attribute.SourceWorkloadUID, v)
		}
		if l := p.peerLabels.get(ex.src[4]); len(l) > 0 {
			b.SetStringMap(attribute.SourceLabels, l)
		}
		if ip, port, ok := localAddr(r); ok {
			b.SetIP(attribute.DestinationIP, ip)
			b.SetInt64(attribute.DestinationPort, port)
		}
	} else {
		p.setWorkload(b, kindOutbound)
		if up := ex.up; up != nil {
			b.SetString(attribute.DestinationServiceName, up.service)
			b.SetString(attribute.DestinationServiceNamespace, up.namespace)
			b.SetString(attribute.DestinationServiceHost, up.host)
			if up.ip.IsValid() {
				b.SetIP(attribute.DestinationIP, up.ip)
			}
			if up.port > 0 {
				b.SetInt64(attribute.DestinationPort, up.port)
			}
		} else {
			b.SetString(attribute.DestinationServiceHost, hostOnly(r.Host))
		}
	}
	if ip, ok := remoteIP(r); ok {
		b.SetIP(attribute.SourceIP, ip)
	}

	b.SetString(attribute.RequestID, ex.requestID)
	b.SetString(attribute.RequestPath, r.URL.RequestURI())
	b.SetString(attribute.RequestURLPath, r.URL.Path)
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		qp := make(map[string]string, len(q))
		for k, vs := range q {
			if len(vs) > 0 {
				qp[k] = vs[0]
			}
		}
		b.SetStringMap(attribute.RequestQueryParams, qp)
	}
	b.SetString(attribute.RequestHost, r.Host)
	b.SetString(attribute.RequestMethod, r.Method)
	b.SetString(attribute.RequestScheme, "http")
	if ua := r.Header.Get("User-Agent"); ua != "" {
		b.SetString(attribute.RequestUserAgent, ua)
	}
	b.SetTime(attribute.RequestTime, ex.start)
	if r.ContentLength >= 0 {
		b.SetInt64(attribute.RequestSize, r.ContentLength)
	}
	b.SetStringMap(attribute.RequestHeaders, headerMap(r.Header))
	return b.Build()
}

// headerMap is h with lower-case keys and the first value of each.
func headerMap(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		lk, ok := lowerHeaders[k]
		if !ok {
			lk = strings.ToLower(k)
		}
		m[lk] = vs[0]
	}
	return m
}

// lowerHeaders maps common canonical header names to their lower case,
// so that headerMap does not allocate a new key string for each of them
// on every request and response.
var lowerHeaders = func() map[string]string {
	names := []string{"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Encoding", "Content-Length", "Content-Type", "Cookie", "Date", "Etag",
		"Expires", "Forwarded", "Grpc-Encoding", "Grpc-Accept-Encoding", "Grpc-Status", "Grpc-Message",
		"Grpc-Timeout", "Keep-Alive", "Last-Modified", "Location", "Origin", "Pragma", "Referer", "Server",
		"Set-Cookie", "Te", "Trailer", "Transfer-Encoding", "User-Agent", "Vary", "Via",
		"X-Content-Type-Options", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"Retry-After", "Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset", HeaderRequestID}
	names = append(names, identityHeaders[:]...)
	names = append(names, peerHeaders[:]...)
	names = append(names, traceHeaders[:]...)
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[http.CanonicalHeaderKey(n)] = strings.ToLower(n)
	}
	return m
}()

// headerBytes approximates the wire size of a header block.
func headerBytes(h http.Header) int64 {
	var n int64
	for k, vs := range h {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4) // "k: v\r\n"
		}
	}
	return n + 2
}

// requestHeadBytes approximates the request line and headers.
func requestHeadBytes(r *http.Request) int64 {
	n := int64(len(r.Method) + len(r.URL.RequestURI()) + len(r.Proto) + 4)
	n += int64(len("Host: ") + len(r.Host) + 2)
	return n + headerBytes(r.Header)
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func remoteIP(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr(), true
}

func localAddr(r *http.Request) (netip.Addr, int64, bool) {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.Addr{}, 0, false
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return ap.Addr(), int64(ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, 0, false
	}
	return ap.Addr(), int64(ap.Port()), true
}

// responseAttrs is about the most attributes responseBag adds.
const responseAttrs = 32

// responseBag extends the request bag with what the response brought.
func (p *Proxy) responseBag(ex *exchange, rec *recorder, end time.Time) *attribute.Bag {
	// Room for what is added below from the start: Bag.Builder leaves room
	// for 8, so the ~20 response attributes grew (copied) the slice again.
	b := attribute.NewBuilder(ex.bag.Len() + responseAttrs)
	ex.bag.Range(func(name string, v attribute.Value) bool {
		b.Set(name, v)
		return true
	})
	b.SetInt64(attribute.ResponseCode, int64(rec.code))
	b.SetInt64(attribute.ResponseSize, rec.size)
	b.SetInt64(attribute.ResponseTotalSize, rec.headBytes+rec.size)
	if rec.headers != nil {
		b.SetStringMap(attribute.ResponseHeaders, rec.headers)
	}
	b.SetDuration(attribute.ResponseDuration, end.Sub(ex.start))
	b.SetTime(attribute.ResponseTime, end)
	if gs := rec.grpcStatus(); gs != "" {
		b.SetString(attribute.ResponseGRPCStatus, gs)
	}
	b.SetString(attribute.ContextProxyErrorCode, ex.flag)
	setRouteAttributes(b, ex)
	if v := ex.peer[0]; v != "" {
		b.SetString(attribute.DestinationWorkloadName, v)
		b.SetString(attribute.DestinationName, v)
	}
	if v := ex.peer[1]; v != "" {
		b.SetString(attribute.DestinationWorkloadNamespace, v)
		b.SetString(attribute.DestinationNamespace, v)
	}
	if v := ex.peer[2]; v != "" {
		b.SetString(attribute.DestinationPrincipal, v)
	}
	if v := ex.peer[3]; v != "" {
		b.SetString(attribute.DestinationUID, v)
		b.SetString(attribute.DestinationWorkloadUID, v)
	}
	// The routed endpoint's labels, when it has any, are what routing
	// chose by; otherwise the callee's own.
	if ex.picked == nil || len(ex.picked.Endpoint.Labels) == 0 {
		if l := p.peerLabels.get(ex.peer[4]); len(l) > 0 {
			b.SetStringMap(attribute.DestinationLabels, l)
		}
	}
	ex.span.setAttributes(b)
	reqSize := ex.contentLength
	if reqSize < 0 {
		reqSize = 0
		if ex.body != nil {
			reqSize = ex.body.n.Load()
		}
		b.SetInt64(attribute.RequestSize, reqSize)
	}
	b.SetInt64(attribute.RequestTotalSize, ex.headBytes+reqSize)
	return b.Build()
}

// setWorkload records this proxy's workload as the destination of what its
// inbound side reports and as the source of what its outbound side reports.
func (p *Proxy) setWorkload(b *attribute.Builder, kind string) {
	c := &p.cfg
	if kind == kindInbound {
		b.SetString(attribute.DestinationWorkloadName, c.Service)
		b.SetString(attribute.DestinationWorkloadNamespace, c.Namespace)
		b.SetString(attribute.DestinationWorkloadUID, c.UID)
		b.SetString(attribute.DestinationUID, c.UID)
		b.SetString(attribute.DestinationServiceName, c.Service)
		b.SetString(attribute.DestinationServiceNamespace, c.Namespace)
		b.SetString(attribute.DestinationServiceHost, serviceHost(c.Service, c.Namespace))
		b.SetString(attribute.DestinationName, c.Service)
		b.SetString(attribute.DestinationNamespace, c.Namespace)
		b.SetString(attribute.DestinationPrincipal, c.Principal)
		if len(c.Labels) > 0 {
			b.SetStringMap(attribute.DestinationLabels, c.Labels)
		}
		return
	}
	b.SetString(attribute.SourceWorkloadName, c.Service)
	b.SetString(attribute.SourceWorkloadNamespace, c.Namespace)
	b.SetString(attribute.SourceWorkloadUID, c.UID)
	b.SetString(attribute.SourceUID, c.UID)
	b.SetString(attribute.SourceName, c.Service)
	b.SetString(attribute.SourceNamespace, c.Namespace)
	b.SetString(attribute.SourcePrincipal, c.Principal)
	if len(c.Labels) > 0 {
		b.SetStringMap(attribute.SourceLabels, c.Labels)
	}
}
