package mixerclient_test

import (
	"context"
	"testing"
	"time"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
	"github.com/sidemix/sidemix/proxy/mixerclient"
)

// benchBag is a request as the proxy builds it: identity, path, headers.
func benchBag() *attribute.Bag {
	return attribute.NewBuilder(16).
		SetString(attribute.SourcePrincipal, "cluster.local/ns/shop/sa/frontend").
		SetString(attribute.DestinationServiceName, "reviews").
		SetString(attribute.RequestPath, "/reviews/1").
		SetString(attribute.RequestMethod, "GET").
		SetString(attribute.RequestID, "0f9b6f5c-8a52-4d0c-b3f1-2f1f7e9b2a11").
		SetTime(attribute.RequestTime, time.Now()).
		SetStringMap(attribute.RequestHeaders, map[string]string{
			"accept": "*/*", "user-agent": "bench", "x-user": "alice", "x-request-id": "0f9b6f5c",
		}).
		Build()
}

func BenchmarkCacheHit(b *testing.B) {
	m := fakemixer.Start(b, "127.0.0.1:0")
	m.SetCheck(func(*attribute.Bag) *mixerv1.CheckResponse {
		return fakemixer.Allow(time.Hour, 1<<30,
			fakemixer.Ref(attribute.SourcePrincipal), fakemixer.Ref(attribute.RequestPath),
			fakemixer.KeyRef(attribute.RequestHeaders, "x-user", true))
	})
	c, _ := newClient(b, mixerclient.Options{Addr: m.Addr()})
	bag := benchBag()
	ctx := context.Background()
	if _, err := c.Check(ctx, bag); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d, _ := c.Check(ctx, bag)
			if !d.Cached {
				b.Fatal("miss")
			}
		}
	})
}

func BenchmarkReportEnqueue(b *testing.B) {
	m := fakemixer.Start(b, "127.0.0.1:0")
	c, _ := newClient(b, mixerclient.Options{Addr: m.Addr()})
	bag := benchBag()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Report(bag)
	}
}

// A cached answer whose quota is paid from the local pool: the prefetch
// hit path (a background refill now and then).
func BenchmarkQuotaPrefetchHit(b *testing.B) {
	q := &fakemixer.Quota{Name: "requestcount", Charge: 1, Limit: 1 << 40, Window: time.Hour,
		Dims: []string{attribute.DestinationServiceName}}
	m := fakemixer.Start(b, "127.0.0.1:0")
	m.SetCheckRequest(q.Check)
	c, reg := newClient(b, mixerclient.Options{Addr: m.Addr(), PrefetchMax: 1000, PrefetchMaxAge: time.Hour})
	bag := benchBag()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, _ := c.Check(ctx, bag); !d.Allowed() {
				b.Fatalf("denied: %+v", d)
			}
		}
	})
	b.StopTimer()
	hits := metricValue(b, reg, "sidemix_proxy_quota_prefetch_total", map[string]string{"result": "hit"})
	all := metricValue(b, reg, "sidemix_proxy_quota_prefetch_total", nil)
	if all > 0 {
		b.ReportMetric(hits/all, "hit-ratio")
	}
}
