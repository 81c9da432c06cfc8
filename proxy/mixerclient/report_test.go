package mixerclient_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/proxy/internal/fakemixer"
	"github.com/sidemix/sidemix/proxy/mixerclient"
)

func reportBag(i int) *attribute.Bag {
	return attribute.NewBuilder(4).
		SetString(attribute.RequestPath, fmt.Sprintf("/r/%d", i)).
		SetInt64(attribute.ResponseCode, 200).
		SetStringMap(attribute.RequestHeaders, map[string]string{"x-n": fmt.Sprint(i), "accept": "*/*"}).
		Build()
}

func TestReportBatches(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	c, reg := newClient(t, mixerclient.Options{Addr: m.Addr(), ReportBatchSize: 10, ReportInterval: 50 * time.Millisecond})
	for i := 0; i < 25; i++ {
		c.Report(reportBag(i))
	}
	got := m.WaitReported(t, 25, 5*time.Second)
	for i, b := range got {
		if p, _ := b.String(attribute.RequestPath); p != fmt.Sprintf("/r/%d", i) {
			t.Fatalf("bag %d has path %q", i, p)
		}
		if v, _ := b.MapValue(attribute.RequestHeaders, "x-n"); v != fmt.Sprint(i) {
			t.Fatalf("bag %d has x-n %q", i, v)
		}
	}
	if b := m.Batches(); b < 3 {
		t.Errorf("%d batches for 25 bags of at most 10, want >= 3", b)
	}
	// The client counts after the RPC returns, the fake before it does.
	waitMetric(t, reg, "sidemix_proxy_reports_sent_total", nil, 25)
	if n := metricValue(t, reg, "sidemix_proxy_report_batches_total", map[string]string{"result": "ok"}); n < 3 {
		t.Errorf("ok batches = %v, want >= 3", n)
	}
}

// A partial batch goes out after ReportInterval.
func TestReportInterval(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	c, _ := newClient(t, mixerclient.Options{Addr: m.Addr(), ReportInterval: 50 * time.Millisecond})
	c.Report(reportBag(1))
	m.WaitReported(t, 1, 2*time.Second)
}

// Reports made while the mixer is down are buffered, retried and delivered
// once it is back on the same address.
func TestReportBufferedWhileMixerDown(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	addr := m.Addr()
	c, reg := newClient(t, mixerclient.Options{Addr: addr, ReportBatchSize: 7, ReportInterval: 20 * time.Millisecond})
	c.Report(reportBag(-1))
	m.WaitReported(t, 1, 2*time.Second)
	waitMetric(t, reg, "sidemix_proxy_reports_sent_total", nil, 1)

	m.Stop()
	const n = 50
	for i := 0; i < n; i++ {
		c.Report(reportBag(i))
	}
	// Let the sender fail at least once.
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, reg, "sidemix_proxy_report_batches_total", map[string]string{"result": "error"}) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed batch while the mixer is down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A bag on its way from the channel to the sender is in neither for a
	// moment.
	waitMetric(t, reg, "sidemix_proxy_report_buffer_length", nil, n)

	m.Restart(t, addr)
	got := m.WaitReported(t, n+1, 10*time.Second)
	for i, b := range got[1:] {
		if p, _ := b.String(attribute.RequestPath); p != fmt.Sprintf("/r/%d", i) {
			t.Fatalf("bag %d after restart has path %q", i, p)
		}
	}
	if d := metricValue(t, reg, "sidemix_proxy_reports_dropped_total", nil); d != 0 {
		t.Errorf("dropped = %v, want 0", d)
	}
	waitMetric(t, reg, "sidemix_proxy_reports_sent_total", nil, n+1)
}

// Over the buffer limit, reports are dropped and counted.
func TestReportOverflowCounted(t *testing.T) {
	c, reg := newClient(t, mixerclient.Options{Addr: freeAddr(t), ReportBufferSize: 10, ReportBatchSize: 5, ReportInterval: 10 * time.Millisecond})
	for i := 0; i < 100; i++ {
		c.Report(reportBag(i))
	}
	dropped := metricValue(t, reg, "sidemix_proxy_reports_dropped_total", map[string]string{"reason": "buffer_full"})
	// The channel holds 10, and the sender its oldest few for a moment.
	if dropped < 80 || dropped > 90 {
		t.Fatalf("dropped = %v, want 80..90", dropped)
	}
	waitMetric(t, reg, "sidemix_proxy_reports_dropped_total", map[string]string{"reason": "buffer_full"}, 90)
	if l := metricValue(t, reg, "sidemix_proxy_report_buffer_length", nil); l > 20 {
		t.Errorf("buffer length %v over the bound", l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = c.Close(ctx)
}

// Close flushes what is buffered.
func TestCloseFlushes(t *testing.T) {
	m := fakemixer.Start(t, "127.0.0.1:0")
	c, err := mixerclient.New(mixerclient.Options{Addr: m.Addr(), ReportInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 42; i++ {
		c.Report(reportBag(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(m.Reported()); got != 42 {
		t.Fatalf("%d bags reported at Close, want 42", got)
	}
	c.Report(reportBag(0)) // after Close: dropped, no panic
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// Close against a dead mixer gives up when its context ends and counts the
// loss.
func TestCloseBoundedByContext(t *testing.T) {
	c, reg := newClient(t, mixerclient.Options{Addr: freeAddr(t), ReportInterval: time.Hour})
	for i := 0; i < 5; i++ {
		c.Report(reportBag(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = c.Close(ctx)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Close took %v with a 300ms context", took)
	}
	if d := metricValue(t, reg, "sidemix_proxy_reports_dropped_total", map[string]string{"reason": "shutdown"}); d != 5 {
		t.Errorf("dropped at shutdown = %v, want 5", d)
	}
}
