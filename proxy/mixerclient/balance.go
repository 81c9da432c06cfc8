package mixerclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// Several mixers are balanced here rather than by grpc-go's round_robin:
// its outlier detection (an xDS balancer, internal to grpc-go) ejects on
// success rates over intervals, not on N failures in a row, and a Check
// retried after UNAVAILABLE or a per-attempt deadline must go to another
// mixer than the first, which only a picker that knows the first can
// promise. Each mixer has its own ClientConn (pick_first, reconnecting in
// the background); the picker goes round the mixers that are neither
// ejected nor known unreachable.

// endpoint is one mixer.
type endpoint struct {
	addr string
	conn *grpc.ClientConn
	rpc  mixerv1.MixerClient

	mu        sync.Mutex
	fails     int       // failures in a row
	ejections int       // ejections in a row: the ejection time doubles with each
	until     time.Time // ejected until
	probation bool      // back from an ejection: the next failure ejects again

	ejected prometheus.Counter
}

// balancer picks a mixer per call.
type balancer struct {
	eps        []*endpoint
	next       atomic.Uint32
	ejectAfter int
	ejectTime  time.Duration
	maxEject   time.Duration
	log        *slog.Logger
}

// splitAddrs splits a comma-separated list of addresses.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func newBalancer(opts *Options, reg prometheus.Registerer) (*balancer, error) {
	addrs := splitAddrs(opts.Addr)
	if len(addrs) == 0 {
		return nil, errors.New("mixerclient: Options.Addr is required")
	}
	b := &balancer{ejectAfter: opts.EjectAfter, ejectTime: opts.EjectTime, maxEject: maxEjectTime, log: opts.Logger}
	ejections := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_proxy_mixer_ejections_total",
		Help: "Times a mixer was taken out of the rotation (failed in a row, or unreachable) for a backoff period.",
	}, []string{"mixer"})
	if err := reg.Register(ejections); err != nil {
		return nil, fmt.Errorf("mixerclient: registering metrics: %w", err)
	}
	seen := map[string]bool{}
	for _, addr := range addrs {
		if seen[addr] {
			b.close()
			return nil, fmt.Errorf("mixerclient: mixer %q listed twice", addr)
		}
		seen[addr] = true
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Reconnect quickly once the mixer is back: the default backoff
			// grows to two minutes, which would hold reports back that long.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  100 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   5 * time.Second,
				},
				MinConnectTimeout: opts.CheckTimeout,
			}),
		)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("mixerclient: mixer %q: %w", addr, err)
		}
		ep := &endpoint{addr: addr, conn: conn, rpc: mixerv1.NewMixerClient(conn), ejected: ejections.WithLabelValues(addr)}
		b.eps = append(b.eps, ep)
		up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "sidemix_proxy_mixer_up",
			Help:        "1 while a mixer is in the rotation (not ejected, not known unreachable), else 0.",
			ConstLabels: prometheus.Labels{"mixer": addr},
		}, func() float64 {
			if ok, _ := ep.available(time.Now()); ok {
				return 1
			}
			return 0
		})
		if err := reg.Register(up); err != nil {
			b.close()
			return nil, fmt.Errorf("mixerclient: registering metrics: %w", err)
		}
	}
	return b, nil
}

func (b *balancer) close() error {
	var errs []error
	for _, ep := range b.eps {
		errs = append(errs, ep.conn.Close())
	}
	return errors.Join(errs...)
}

// available says whether ep may be picked, and if not, until when it is
// ejected.
func (ep *endpoint) available(now time.Time) (bool, time.Time) {
	ep.mu.Lock()
	until := ep.until
	ep.mu.Unlock()
	if now.Before(until) {
		return false, until
	}
	// A connection that failed is reconnecting in the background: calls
	// on it would fail at once.
	return ep.conn.GetState() != connectivity.TransientFailure, now
}

// pick returns the next mixer in the rotation other than not. When every
// other mixer is out, it returns the one whose ejection ends first (calls
// must go somewhere), and nil only when there is no other mixer at all.
func (b *balancer) pick(not *endpoint) *endpoint {
	n := len(b.eps)
	if n == 1 {
		if b.eps[0] == not {
			return nil
		}
		return b.eps[0]
	}
	start := int(b.next.Add(1))
	now := time.Now()
	var fallback *endpoint
	var fallbackUntil time.Time
	for i := 0; i < n; i++ {
		ep := b.eps[(start+i)%n]
		if ep == not {
			continue
		}
		ok, until := ep.available(now)
		if ok {
			return ep
		}
		if fallback == nil || until.Before(fallbackUntil) {
			fallback, fallbackUntil = ep, until
		}
	}
	return fallback
}

// failure codes are the mixer's own trouble (or the way to it), not an
// answer: they count against its health, and a Check failing so is retried
// elsewhere when the code is retryable.
func failure(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Internal, codes.Aborted, codes.DataLoss:
		return true
	}
	return false
}

func retryable(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.DeadlineExceeded
}

// done records the outcome of a call on ep. Calls the caller gave up on say
// nothing of the mixer.
func (b *balancer) done(ctx context.Context, ep *endpoint, err error) {
	if err == nil {
		ep.mu.Lock()
		back := ep.ejections > 0
		ep.fails, ep.ejections, ep.probation = 0, 0, false
		ep.mu.Unlock()
		if back && len(b.eps) > 1 {
			b.log.Info("mixer healthy again", "mixer", ep.addr)
		}
		return
	}
	if ctx.Err() != nil || !failure(err) {
		return
	}
	// UNAVAILABLE on a connection that is not up: the mixer could not be
	// reached (the state may already have moved on from
	// TRANSIENT_FAILURE to the next attempt).
	unreachable := status.Code(err) == codes.Unavailable && ep.conn.GetState() != connectivity.Ready
	now := time.Now()
	ep.mu.Lock()
	if now.Before(ep.until) {
		ep.mu.Unlock() // already out: a call that was under way, or the fallback
		return
	}
	ep.fails++
	if !unreachable && !ep.probation && ep.fails < b.ejectAfter {
		ep.mu.Unlock()
		return
	}
	ep.ejections++
	d := b.ejectTime << min(ep.ejections-1, 16)
	d = min(d, b.maxEject)
	ep.until = now.Add(d)
	ep.fails = 0
	ep.probation = true
	ep.mu.Unlock()
	ep.ejected.Inc()
	b.log.Warn("mixer ejected", "mixer", ep.addr, "for", d, "err", err)
}
