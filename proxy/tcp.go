package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy/mixerclient"
)

// TCPListener is a plain TCP pass-through listener: every connection it
// accepts is checked with the mixer, joined to a new connection to
// Upstream, and reported as it opens, while it lasts and when it closes.
type TCPListener struct {
	// Listen is the address to accept connections on.
	Listen string
	// Upstream is where the connections go: host:port, or (outbound) a
	// name of Config.Upstreams.
	Upstream string
	// Inbound marks connections for this service (Upstream is the app's
	// port): they are reported as inbound, with this workload as the
	// destination. Otherwise they are the app's connections to another
	// service, reported as outbound.
	Inbound bool
}

// DefaultTCPReportInterval is Istio's: a connection open this long is
// reported again ("continue") with the bytes since the previous report.
const DefaultTCPReportInterval = 10 * time.Second

// Values of connection.event.
const (
	tcpOpen     = "open"
	tcpContinue = "continue"
	tcpClose    = "close"
)

// validateTCP checks Config.TCP; add is Validate's.
func (c *Config) validateTCP(add func(field, format string, args ...any)) {
	seen := map[string]bool{}
	for i, t := range c.TCP {
		field := "tcp[" + strconv.Itoa(i) + "]"
		if err := checkHostPort(t.Listen); err != nil {
			add(field+".listen", "%v", err)
		} else if seen[t.Listen] && !strings.HasSuffix(t.Listen, ":0") {
			add(field+".listen", "%q given twice", t.Listen)
		}
		seen[t.Listen] = true
		switch {
		case t.Upstream == "":
			add(field+".upstream", "required")
		case !t.Inbound && hasUpstream(c.Upstreams, t.Upstream):
		default:
			if err := checkHostPort(t.Upstream); err != nil {
				add(field+".upstream", "%v (want host:port or a name of upstreams)", err)
			}
		}
	}
	if c.TCPReportInterval < 0 {
		add("tcp_report_interval", "negative: %v", c.TCPReportInterval)
	}
}

// tcpListener serves one Config.TCP entry.
type tcpListener struct {
	p      *Proxy
	kind   string // kindInbound or kindOutbound
	listen string
	addr   string    // the upstream's host:port
	up     *upstream // outbound: the destination's identity
	policy mixerclient.FailPolicy
	dialer net.Dialer
	ln     net.Listener
	m      tcpSideMetrics

	mu     sync.Mutex
	conns  map[*tcpConn]struct{}
	closed bool
	wg     sync.WaitGroup // one per connection being handled
}

func newTCPListener(p *Proxy, t TCPListener) *tcpListener {
	l := &tcpListener{p: p, listen: t.Listen, addr: t.Upstream, conns: map[*tcpConn]struct{}{},
		dialer: net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}}
	if t.Inbound {
		l.kind = kindInbound
		l.policy = p.cfg.failPolicy(InboundFailKey)
	} else {
		l.kind = kindOutbound
		name := hostOnly(t.Upstream)
		for n, addr := range p.cfg.Upstreams {
			if strings.EqualFold(n, t.Upstream) {
				name, l.addr = n, addr
			}
		}
		l.policy = p.cfg.failPolicy(name)
		l.up = newUpstream(name, l.addr, p.cfg.Namespace)
		if net.ParseIP(name) != nil {
			l.up.service, l.up.namespace, l.up.host = "", "", "" // no service to name
		}
	}
	l.m = p.tcpm.side(l.kind)
	return l
}

// listenTCP opens every TCP listener, or none.
func (p *Proxy) listenTCP() error {
	for i, l := range p.tcp {
		ln, err := net.Listen("tcp", l.listen)
		if err != nil {
			for _, o := range p.tcp[:i] {
				o.ln.Close()
			}
			return fmt.Errorf("proxy: tcp listener %s: %w", l.listen, err)
		}
		l.ln = ln
	}
	return nil
}

// TCPAddrs are the TCP listeners' addresses once started, in Config.TCP
// order.
func (p *Proxy) TCPAddrs() []string {
	out := make([]string, len(p.tcp))
	for i, l := range p.tcp {
		out[i] = lnAddr(l.ln)
	}
	return out
}

func (l *tcpListener) serve() {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if !closed {
				l.p.log.Error("tcp listener failed", "listen", l.listen, "err", err)
			}
			return
		}
		c := &tcpConn{down: conn, start: time.Now(), flag: flagNone}
		c.ctx, c.cancel = context.WithCancel(context.Background())
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handle(c)
	}
}

// shutdown stops accepting, lets connections end on their own until ctx is
// done, then cuts them; each is reported as closed either way.
func (l *tcpListener) shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	n := len(l.conns)
	for c := range l.conns {
		c.cut()
	}
	l.mu.Unlock()
	<-done
	return fmt.Errorf("%d connections cut: %w", n, ctx.Err())
}

// tcpConn is one connection passing through.
type tcpConn struct {
	down  net.Conn
	start time.Time
	flag  string // set by the handling goroutine before the close report

	mu     sync.Mutex
	up     net.Conn
	gone   bool            // cut by shutdown
	ctx    context.Context // ends when cut
	cancel context.CancelFunc

	// received counts the source's bytes to the destination, sent the
	// destination's back (Istio's sense, from the destination's side).
	received, sent atomic.Int64
	// As of the last report; only the reporting goroutine touches them.
	reportedRecv, reportedSent int64
}

// cut closes both sides at once (shutdown).
func (c *tcpConn) cut() {
	c.mu.Lock()
	c.gone = true
	up := c.up
	c.mu.Unlock()
	c.cancel() // a check or dial under way
	c.down.Close()
	if up != nil {
		up.Close()
	}
}

func (l *tcpListener) handle(c *tcpConn) {
	defer func() {
		c.down.Close()
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		l.wg.Done()
	}()
	l.m.active.Inc()
	defer l.m.active.Dec()
	base := l.baseBag(c)
	ctx := c.ctx
	defer c.cancel()

	d, err := l.p.mixer.CheckWithPolicy(ctx, base, l.policy)
	if err != nil {
		l.p.log.Debug("check failed", "direction", l.kind, "protocol", "tcp", "err", err)
	}
	if !d.Allowed() {
		c.flag = flagDenied
		l.report(c, base, tcpOpen)
		l.report(c, base, tcpClose)
		return
	}
	up, err := l.dialer.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		c.flag = flagConnect
		l.p.log.Debug("tcp upstream connect failed", "direction", l.kind, "upstream", l.addr, "err", err)
		l.report(c, base, tcpOpen)
		l.report(c, base, tcpClose)
		return
	}
	c.mu.Lock()
	c.up = up
	gone := c.gone
	c.mu.Unlock()
	if gone {
		up.Close() // cut while dialling
	}
	defer up.Close()
	l.report(c, base, tcpOpen)

	stop := make(chan struct{})
	reporterDone := make(chan struct{})
	go func() {
		defer close(reporterDone)
		t := time.NewTicker(l.p.cfg.TCPReportInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				l.report(c, base, tcpContinue)
			}
		}
	}()
	c.flag = pipe(c, up)
	close(stop)
	<-reporterDone
	l.report(c, base, tcpClose)
}

// pipe copies both ways until both sides have finished, passing a
// half-close on (a side's EOF becomes a CloseWrite on the other), and
// returns the flag: UC when the upstream broke off, DC when the caller did.
func pipe(c *tcpConn, up net.Conn) string {
	type result struct {
		fromUp bool
		err    error
	}
	res := make(chan result, 2)
	go func() { res <- result{false, copyHalf(up, c.down, &c.received)} }()
	go func() { res <- result{true, copyHalf(c.down, up, &c.sent)} }()
	flag := flagNone
	for range 2 {
		r := <-res
		if r.err == nil {
			continue
		}
		// A failure on one side ends the other too.
		c.down.Close()
		up.Close()
		c.mu.Lock()
		gone := c.gone
		c.mu.Unlock()
		if flag == flagNone && !gone && !errors.Is(r.err, net.ErrClosed) {
			if r.fromUp {
				flag = flagReset
			} else {
				flag = flagDownstream
			}
		}
	}
	return flag
}

// copyHalf copies src to dst, counting, and half-closes dst at src's EOF.
func copyHalf(dst, src net.Conn, n *atomic.Int64) error {
	buf := make([]byte, 32<<10)
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			w, werr := dst.Write(buf[:k])
			n.Add(int64(w))
			if werr != nil {
				return werr
			}
		}
		if rerr == io.EOF {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// baseBag holds what every report of the connection shares.
func (l *tcpListener) baseBag(c *tcpConn) *attribute.Bag {
	p := l.p
	b := attribute.NewBuilder(32)
	b.SetString(attribute.ContextProtocol, "tcp")
	b.SetString(attribute.ContextReporterKind, l.kind)
	b.SetString(attribute.ContextReporterUID, p.cfg.UID)
	b.SetBool(attribute.ConnectionMTLS, false)
	b.SetString(attribute.ConnectionID, newRequestID())
	b.SetTime(attribute.ContextTime, c.start)
	if ap, err := netip.ParseAddrPort(c.down.RemoteAddr().String()); err == nil {
		b.SetIP(attribute.SourceIP, ap.Addr().Unmap())
	}
	if l.kind == kindInbound {
		p.setWorkload(b, kindInbound)
		if ap, err := netip.ParseAddrPort(c.down.LocalAddr().String()); err == nil {
			b.SetIP(attribute.DestinationIP, ap.Addr().Unmap())
			b.SetInt64(attribute.DestinationPort, int64(ap.Port()))
		}
		return b.Build()
	}
	p.setWorkload(b, kindOutbound)
	if up := l.up; up.service != "" {
		b.SetString(attribute.DestinationServiceName, up.service)
		b.SetString(attribute.DestinationServiceNamespace, up.namespace)
		b.SetString(attribute.DestinationServiceHost, up.host)
	}
	if l.up.ip.IsValid() {
		b.SetIP(attribute.DestinationIP, l.up.ip)
	}
	if l.up.port > 0 {
		b.SetInt64(attribute.DestinationPort, l.up.port)
	}
	return b.Build()
}

// report sends one event of the connection with the bytes since the
// previous report; only one goroutine reports a connection at a time.
func (l *tcpListener) report(c *tcpConn, base *attribute.Bag, event string) {
	now := time.Now()
	recv, sent := c.received.Load(), c.sent.Load()
	dRecv, dSent := recv-c.reportedRecv, sent-c.reportedSent
	c.reportedRecv, c.reportedSent = recv, sent
	b := base.Builder()
	b.SetString(attribute.ConnectionEvent, event)
	b.SetInt64(attribute.ConnectionReceivedBytes, dRecv)
	b.SetInt64(attribute.ConnectionReceivedBytesTotal, recv)
	b.SetInt64(attribute.ConnectionSentBytes, dSent)
	b.SetInt64(attribute.ConnectionSentBytesTotal, sent)
	b.SetDuration(attribute.ConnectionDuration, now.Sub(c.start))
	b.SetTime(attribute.ContextTime, now)
	flag := flagNone
	if event == tcpClose {
		flag = c.flag
	}
	b.SetString(attribute.ContextProxyErrorCode, flag)
	l.m.received.Add(float64(dRecv))
	l.m.sent.Add(float64(dSent))
	switch event {
	case tcpOpen:
		l.m.opened.Inc()
	case tcpClose:
		l.m.closed.WithLabelValues(l.kind, flag).Inc()
	}
	l.p.mixer.Report(b.Build())
}

// tcpMetrics are the proxy's own counts of TCP connections.
type tcpMetrics struct {
	opened *prometheus.CounterVec
	closed *prometheus.CounterVec
	active *prometheus.GaugeVec
	bytes  *prometheus.CounterVec
}

func newTCPMetrics(reg prometheus.Registerer) *tcpMetrics {
	m := &tcpMetrics{
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_proxy_tcp_connections_opened_total",
			Help: "TCP connections accepted by the TCP listeners, by direction (inbound, outbound).",
		}, []string{"direction"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_proxy_tcp_connections_closed_total",
			Help: "TCP connections ended, by direction and flag: - normal, UAEX denied by policy, UF upstream connect failure, UC upstream broke off, DC caller broke off.",
		}, []string{"direction", "flag"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidemix_proxy_tcp_connections_active",
			Help: "TCP connections being passed through, by direction.",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidemix_proxy_tcp_bytes_total",
			Help: "Bytes passed through TCP connections, by direction and flow: received (from the source to the destination) or sent (back).",
		}, []string{"direction", "flow"}),
	}
	reg.MustRegister(m.opened, m.closed, m.active, m.bytes)
	return m
}

type tcpSideMetrics struct {
	opened         prometheus.Counter
	closed         *prometheus.CounterVec
	active         prometheus.Gauge
	received, sent prometheus.Counter
}

func (m *tcpMetrics) side(direction string) tcpSideMetrics {
	return tcpSideMetrics{
		opened:   m.opened.WithLabelValues(direction),
		closed:   m.closed,
		active:   m.active.WithLabelValues(direction),
		received: m.bytes.WithLabelValues(direction, "received"),
		sent:     m.bytes.WithLabelValues(direction, "sent"),
	}
}
