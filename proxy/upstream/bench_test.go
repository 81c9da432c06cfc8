package upstream

import (
	"context"
	"testing"
)

// BenchmarkPick is the balancer's cost per request (Pick and Done) over ten
// endpoints, from parallel callers.
func BenchmarkPick(b *testing.B) {
	var eps []Endpoint
	for i := range 10 {
		eps = append(eps, Endpoint{Address: "127.0.0.1", Port: 10000 + i, Weight: uint32(1 + i%3)})
	}
	for _, lb := range []LBPolicy{RoundRobin, LeastRequest, Random} {
		b.Run(lb.String(), func(b *testing.B) {
			c := NewCluster("bench", eps, Policy{LB: lb, Outlier: OutlierDetection{Consecutive5xxErrors: 5}}, Options{})
			defer c.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					pk, err := c.Pick(ctx)
					if err != nil {
						b.Fatal(err)
					}
					pk.Done(200, nil)
				}
			})
		})
	}
}
