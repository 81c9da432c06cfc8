package load

import (
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinPrecision(t *testing.T) {
	h := NewHistogram()
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 100000)
	for i := range vals {
		// Spread over 1µs..100ms, as request latencies are.
		vals[i] = int64(1000 * (1 + r.ExpFloat64()*3000))
		h.Record(time.Duration(vals[i]))
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(q*float64(len(vals)-1))]
		got := int64(h.Quantile(q))
		if got < exact || float64(got-exact) > float64(exact)/subCount+1 {
			t.Errorf("q%.3f = %d, exact %d: outside (0, 1/%d] above", q, got, exact, subCount)
		}
	}
	if h.Count() != uint64(len(vals)) || h.Max() != time.Duration(vals[len(vals)-1]) {
		t.Errorf("count %d max %v", h.Count(), h.Max())
	}
}

func TestHistogramBucketsRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 255, 256, 257, 1 << 20, 1<<40 + 12345, 1<<63 - 1} {
		i := bucketOf(v)
		if i < 0 || i >= buckets {
			t.Fatalf("bucketOf(%d) = %d out of range", v, i)
		}
		if up := upperEdge(i); up < v {
			t.Errorf("upperEdge(bucketOf(%d)) = %d < value", v, up)
		}
		if i > 0 && upperEdge(i-1) >= v {
			t.Errorf("value %d also fits bucket %d", v, i-1)
		}
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	a.Merge(b)
	if a.Count() != 2 || a.Mean() != 2*time.Millisecond || a.Max() != 3*time.Millisecond {
		t.Errorf("merged: n=%d mean=%v max=%v", a.Count(), a.Mean(), a.Max())
	}
}

func TestRunCountsOutcomesAndErrors(t *testing.T) {
	started, stopped := false, false
	res, err := Run(context.Background(), Options{
		Workers:  3,
		Warmup:   20 * time.Millisecond,
		Duration: 100 * time.Millisecond,
		OnStart:  func() { started = true },
		OnStop:   func() { stopped = true },
	}, func(ctx context.Context, w int) (string, error) {
		time.Sleep(time.Millisecond)
		switch w {
		case 0:
			return "OK", nil
		case 1:
			return "DENIED", nil
		}
		return "", errors.New("boom")
	})
	if err != nil {
		t.Fatal(err)
	}
	if !started || !stopped {
		t.Error("OnStart/OnStop not called")
	}
	if res.Outcomes["OK"] == 0 || res.Outcomes["DENIED"] == 0 || res.Errors == 0 || res.FirstError == nil {
		t.Errorf("result %+v", res)
	}
	if res.OK != res.Outcomes["OK"]+res.Outcomes["DENIED"] || uint64(res.OK) != res.Latency.Count() {
		t.Errorf("OK %d, outcomes %v, latencies %d", res.OK, res.Outcomes, res.Latency.Count())
	}
	if res.Rate() <= 0 || res.OutcomeSummary() == "" {
		t.Errorf("rate %v summary %q", res.Rate(), res.OutcomeSummary())
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Options{Workers: 1, Duration: time.Second}, func(ctx context.Context, _ int) (string, error) {
		return "OK", nil
	})
	if err == nil {
		t.Fatal("want an error from a cancelled run")
	}
}

func TestRunOpenLoopChargesQueueing(t *testing.T) {
	// One worker, a 5ms server, asked 1,000 times a second: it falls
	// behind at once, and the latencies must show the growing queue, not
	// the 5ms service time.
	res, err := Run(context.Background(), Options{
		Workers:  1,
		Duration: 200 * time.Millisecond,
		Rate:     1000,
	}, func(ctx context.Context, _ int) (string, error) {
		time.Sleep(5 * time.Millisecond)
		return "OK", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK == 0 || res.Latency.Max() < 20*time.Millisecond {
		t.Errorf("open loop: %d answered, max latency %v: queueing not charged", res.OK, res.Latency.Max())
	}
}
