package meshbench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/log"

	"github.com/sidemix/sidemix/benchmarks/internal/load"
)

func init() {
	// fortio logs every run's start at Info, and at Warning each thread
	// that fell behind its schedule (the scaling runs look for saturation
	// on purpose and report the rate reached).
	log.SetLogLevelQuiet(log.Error)
}

// target is where a run's requests go: a URL and, for a sidecar's
// outbound listener, the Host naming the upstream.
type target struct {
	url  string
	host string
}

// loadResult is one fortio run's outcome.
type loadResult struct {
	elapsed  time.Duration
	ok       int64
	errors   int64
	codes    map[int]int64
	latency  *load.Histogram
	achieved float64
}

// runner is one fortio thread: the fast HTTP client fortio uses, timed
// by the harness's own histogram (fortio's rounds sub-millisecond values
// to its coarse buckets).
type runner struct {
	client fhttp.Fetcher
	hist   *load.Histogram
	codes  map[int]int64
}

func (r *runner) Run(ctx context.Context, _ periodic.ThreadID) (bool, string) {
	start := time.Now()
	code, _, _ := r.client.StreamFetch(ctx)
	d := time.Since(start)
	r.hist.Record(d)
	r.codes[code]++
	return code == 200, ""
}

// fortioRun drives t with fortio's periodic runner: qps requests per
// second (0: as fast as possible, closed loop) over conns connections, each
// a POST of payload bytes, for d.
func fortioRun(ctx context.Context, t target, qps float64, conns int, payload []byte, d time.Duration) (loadResult, error) {
	runners := make([]periodic.Runnable, conns)
	rs := make([]*runner, conns)
	for i := range conns {
		o := fhttp.HTTPOptions{URL: t.url, Payload: payload, HTTPReqTimeOut: 5 * time.Second}
		o.Init(t.url)
		if t.host != "" {
			if err := o.AddAndValidateExtraHeader("Host: " + t.host); err != nil {
				return loadResult{}, err
			}
		}
		o.ID = i
		c, err := fhttp.NewClient(&o)
		if err != nil || c == nil {
			return loadResult{}, fmt.Errorf("fortio client for %s: %v", t.url, err)
		}
		rs[i] = &runner{client: c, hist: load.NewHistogram(), codes: map[int]int64{}}
		runners[i] = rs[i]
	}
	defer func() {
		for _, r := range rs {
			r.client.Close()
		}
	}()
	stop := periodic.NewAborter()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			stop.Abort(false)
		case <-done:
		}
	}()
	defer close(done)
	if qps <= 0 {
		qps = -1 // fortio's closed loop: no wait between calls
	}
	pr := periodic.NewPeriodicRunner(&periodic.RunnerOptions{
		RunType:    "meshbench",
		QPS:        qps,
		Duration:   d,
		NumThreads: conns,
		Out:        io.Discard,
		Stop:       stop,
	})
	// The runner releases the slice it was given (it shares the backing
	// array with its copy), so the threads' runnables go in afterwards, as
	// fortio's own HTTP runner does.
	copy(pr.Options().Runners, runners)
	res := pr.Run()
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	out := loadResult{elapsed: res.ActualDuration, achieved: res.ActualQPS, latency: load.NewHistogram(), codes: map[int]int64{}}
	for _, r := range rs {
		out.latency.Merge(r.hist)
		for c, n := range r.codes {
			out.codes[c] += n
			if c == 200 {
				out.ok += n
			} else {
				out.errors += n
			}
		}
	}
	return out, nil
}

// codeSummary is "200: 9990, -1: 10" for the report.
func codeSummary(codes map[int]int64) string {
	s := ""
	for _, c := range sortedKeys(codes) {
		if s != "" {
			s += ", "
		}
		s += strconv.Itoa(c) + ": " + strconv.FormatInt(codes[c], 10)
	}
	return s
}
