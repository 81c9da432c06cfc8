package upstream

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// restartLoops stops the background loops and starts those the policy
// needs: the ejection sweep and the active health checks. c.mu held.
func (c *Cluster) restartLoops() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
	p := c.policy
	if !p.Outlier.enabled() && p.Health == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	if p.Outlier.enabled() {
		c.loops.Add(1)
		go c.every(ctx, p.Outlier.Interval, func(context.Context) {
			c.mu.Lock()
			c.returnEjected(c.now())
			c.mu.Unlock()
		})
	}
	if hc := p.Health; hc != nil {
		client := &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 1,
				IdleConnTimeout: 2 * hc.Interval},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		c.loops.Add(1)
		go func() {
			defer client.CloseIdleConnections()
			c.checkAll(ctx, client, *hc) // at once, not an interval late
			c.every(ctx, hc.Interval, func(ctx context.Context) { c.checkAll(ctx, client, *hc) })
		}()
	}
}

// every runs f every d until ctx ends, then marks the loop done.
func (c *Cluster) every(ctx context.Context, d time.Duration, f func(context.Context)) {
	defer c.loops.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// checkAll checks every endpoint at once and applies the verdicts.
func (c *Cluster) checkAll(ctx context.Context, client *http.Client, hc HealthCheck) {
	c.mu.Lock()
	eps := append([]*endpoint(nil), c.eps...)
	c.mu.Unlock()
	ok := make([]bool, len(eps))
	var wg sync.WaitGroup
	for i, e := range eps {
		wg.Go(func() { ok[i] = probe(ctx, client, e.addr, hc) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // stopped: the answers say nothing about the endpoints
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range eps {
		c.m.healthCheck(ok[i])
		if ok[i] {
			e.hcFail, e.hcPass = 0, e.hcPass+1
			if !e.hcHealthy && e.hcPass >= hc.HealthyThreshold {
				e.hcHealthy = true
				c.log.Info("endpoint passes health checks", "endpoint", e.addr, "passes", e.hcPass)
			}
		} else {
			e.hcPass, e.hcFail = 0, e.hcFail+1
			if e.hcHealthy && e.hcFail >= hc.UnhealthyThreshold {
				e.hcHealthy = false
				c.log.Warn("endpoint fails health checks", "endpoint", e.addr, "failures", e.hcFail)
			}
		}
		if c.byAddr[e.addr] == e {
			c.m.setHealthy(e.addr, e.healthy())
		}
	}
}

// probe is one check: GET path, 2xx within the timeout.
func probe(ctx context.Context, client *http.Client, addr string, hc HealthCheck) bool {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+hc.Path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "sidemix-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode <= 299
}
