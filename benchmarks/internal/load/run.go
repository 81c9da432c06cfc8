package load

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Op is one request of a closed-loop load: it returns when the answer is in.
// outcome names a successful answer's kind ("OK", "RESOURCE_EXHAUSTED", a
// status code) for the result's tally; err is a failed request, which is
// counted apart and kept out of the latency histogram.
type Op func(ctx context.Context, worker int) (outcome string, err error)

// Options shape a closed-loop run.
type Options struct {
	// Workers is the number of concurrent callers, each sending its next
	// request as soon as the previous one is answered.
	Workers int
	// Warmup runs before measuring starts (connections, caches, JIT of the
	// server's own pools); nothing in it is counted.
	Warmup time.Duration
	// Duration is the measured window.
	Duration time.Duration
	// Rate, when positive, makes the load open-loop at this many requests
	// per second in all (the workers share the schedule; wrk2's model):
	// each request has an intended start time, and its latency counts from
	// then, so a server that falls behind is charged the queueing it causes
	// instead of being asked less often (no coordinated omission). Workers
	// bound the requests in flight; too few for the rate show up as the
	// rate not reached. Zero runs closed-loop.
	Rate float64
	// OnStart and OnStop are called when the measured window opens and
	// closes, e.g. to read a server's CPU time at those instants.
	OnStart, OnStop func()
}

// Result is what a run measured.
type Result struct {
	// Elapsed is the measured window's length.
	Elapsed time.Duration
	// OK is the number of requests answered in the window; Outcomes splits
	// it by outcome.
	OK       int64
	Outcomes map[string]int64
	// Errors counts failed requests in the window; FirstError is one of them.
	Errors     int64
	FirstError error
	// Latency holds the answered requests' latencies.
	Latency *Histogram
}

// Rate is answered requests per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// OutcomeSummary lists the outcomes as "OK 97.1%, RESOURCE_EXHAUSTED 2.9%".
func (r Result) OutcomeSummary() string {
	names := make([]string, 0, len(r.Outcomes))
	for k := range r.Outcomes {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return r.Outcomes[names[i]] > r.Outcomes[names[j]] })
	s := ""
	for i, k := range names {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %.1f%%", k, 100*float64(r.Outcomes[k])/float64(max(r.OK, 1)))
	}
	return s
}

// Run drives op closed-loop from opts.Workers goroutines: warm-up, then the
// measured window, then it waits for the requests in flight. A request is
// counted when it both starts and ends inside the window, so the window's
// edges bias neither the rate nor the latencies.
func Run(ctx context.Context, opts Options, op Op) (Result, error) {
	if opts.Workers <= 0 || opts.Duration <= 0 {
		return Result{}, errors.New("load: Workers and Duration must be positive")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// window holds the measured window's bounds as UnixNano; 0 = not yet.
	var winStart, winEnd atomic.Int64
	type tally struct {
		hist     *Histogram
		outcomes map[string]int64
		errs     int64
		firstErr error
	}
	tallies := make([]*tally, opts.Workers)
	var wg sync.WaitGroup
	// next is the open-loop schedule: the index of the next request to
	// start, due at t0 + next/Rate.
	var next atomic.Int64
	t0 := time.Now()
	for w := range opts.Workers {
		t := &tally{hist: NewHistogram(), outcomes: map[string]int64{}}
		tallies[w] = t
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				if opts.Rate > 0 {
					due := t0.Add(time.Duration(float64(next.Add(1)-1) / opts.Rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
					start = due
				}
				outcome, err := op(ctx, w)
				end := time.Now()
				ws, we := winStart.Load(), winEnd.Load()
				if ws == 0 || start.UnixNano() < ws || (we != 0 && end.UnixNano() > we) {
					continue
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					t.errs++
					if t.firstErr == nil {
						t.firstErr = err
					}
					continue
				}
				t.hist.Record(end.Sub(start))
				t.outcomes[outcome]++
			}
		})
	}

	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if opts.Warmup > 0 && !sleep(opts.Warmup) {
		cancel()
		wg.Wait()
		return Result{}, ctx.Err()
	}
	begin := time.Now()
	if opts.OnStart != nil {
		opts.OnStart()
	}
	winStart.Store(begin.UnixNano())
	ok := sleep(opts.Duration)
	end := time.Now()
	winEnd.Store(end.UnixNano())
	if opts.OnStop != nil {
		opts.OnStop()
	}
	cancel()
	wg.Wait()
	if !ok {
		return Result{}, errors.New("load: cancelled")
	}

	res := Result{Elapsed: end.Sub(begin), Outcomes: map[string]int64{}, Latency: NewHistogram()}
	for _, t := range tallies {
		res.Latency.Merge(t.hist)
		for k, v := range t.outcomes {
			res.Outcomes[k] += v
			res.OK += v
		}
		res.Errors += t.errs
		if res.FirstError == nil {
			res.FirstError = t.firstErr
		}
	}
	return res, nil
}
