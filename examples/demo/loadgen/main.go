// Command loadgen sends the demo shop a steady mix of traffic through the
// product sidecar: catalogue reads (allowed), admin calls (denied, 403),
// checkouts in bursts (some rate-limited, 429) and a crawler whose user agent
// is blacklisted (403). Every few seconds it prints how the calls were
// answered. It stops after --duration, or on SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

type call struct {
	kind, method, path, userAgent string
}

var (
	browse   = call{"browse", http.MethodGet, "/products", "shopper/1.0"}
	item     = call{"browse", http.MethodGet, "/products/mug", "shopper/1.0"}
	admin    = call{"admin", http.MethodGet, "/admin/users", "shopper/1.0"}
	checkout = call{"checkout", http.MethodGet, "/checkout?item=tea", "shopper/1.0"}
	crawler  = call{"crawler", http.MethodGet, "/products", "BadBot/2.1 (+http://example.invalid)"}
)

// tick is one 100 ms step of the schedule: every step browses, and some
// steps add an admin call, a burst of checkouts or a crawler visit.
func tick(n int) []call {
	calls := []call{browse}
	if n%3 == 0 {
		calls = append(calls, item)
	}
	if n%20 == 5 {
		calls = append(calls, admin)
	}
	if n%30 == 10 { // a burst bigger than the checkout quota
		for range 15 {
			calls = append(calls, checkout)
		}
	} else if n%5 == 0 {
		calls = append(calls, checkout)
	}
	if n%25 == 15 {
		calls = append(calls, crawler)
	}
	return calls
}

type stats struct {
	mu     sync.Mutex
	counts map[string]int // "kind code" → count
}

func (s *stats) add(kind string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[fmt.Sprintf("%s %d", kind, code)]++
}

func (s *stats) addErr(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[kind+" error"]++
}

// take returns and resets the counts.
func (s *stats) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.counts))
	for k := range s.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, s.counts[k])
	}
	s.counts = map[string]int{}
	return strings.Join(parts, "  ")
}

func main() {
	target := flag.String("target", "http://127.0.0.1:18001", "base URL of the product service's sidecar")
	duration := flag.Duration("duration", 0, "stop after this long; 0 runs until SIGINT/SIGTERM")
	every := flag.Duration("print-every", 5*time.Second, "how often to print what the calls got")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	client := &http.Client{Timeout: 5 * time.Second}
	st := &stats{counts: map[string]int{}}
	var wg sync.WaitGroup
	do := func(c call) {
		defer wg.Done()
		req, err := http.NewRequestWithContext(ctx, c.method, *target+c.path, nil)
		if err != nil {
			st.addErr(c.kind)
			return
		}
		req.Header.Set("User-Agent", c.userAgent)
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				st.addErr(c.kind)
			}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		st.add(c.kind, resp.StatusCode)
	}

	steps := time.NewTicker(100 * time.Millisecond)
	defer steps.Stop()
	prints := time.NewTicker(*every)
	defer prints.Stop()
	fmt.Printf("loadgen: sending traffic to %s\n", *target)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			if s := st.take(); s != "" {
				fmt.Printf("loadgen: %s\n", s)
			}
			fmt.Println("loadgen: stopped")
			return
		case <-prints.C:
			fmt.Printf("loadgen: %s\n", st.take())
		case <-steps.C:
			for _, c := range tick(n) {
				wg.Add(1)
				go do(c)
			}
		}
	}
}
