package mixer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// benchConfig is n rules that all match, each with one allowing check
// action and, with quota, one quota action on a shared testquota handler.
func benchConfig(n int, quota bool) string {
	var b strings.Builder
	b.WriteString(`apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: allow}
spec: {adapter: testcheck}
---
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: quota}
spec: {adapter: testquota, params: {limit: 100, remaining: 50}}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: nothing}
spec: {template: checknothing}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: requestcount}
spec: {template: quota, params: {dimensions: {path: request.path}}}
`)
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: rule-%03d}
spec:
  match: request.path.startsWith("/")
  actions:
  - {handler: allow, instances: [nothing]}
`, i)
		if quota {
			b.WriteString("  - {handler: quota, instances: [requestcount]}\n")
		}
	}
	return b.String()
}

// BenchmarkDispatch measures one Check's dispatch (rules, handler calls,
// folding, metrics) without the gRPC layer.
func BenchmarkDispatch(b *testing.B) {
	for _, quota := range []bool{false, true} {
		for _, n := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("rules=%d/quota=%v", n, quota), func(b *testing.B) {
				dir := b.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(benchConfig(n, quota)), 0o644); err != nil {
					b.Fatal(err)
				}
				srv, err := New(Config{ConfigPaths: []string{dir}, Adapters: testRegistry(b),
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Shutdown(context.Background())
				bag := pathBag("/x")
				req := &mixerv1.CheckRequest{}
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					st := srv.acquire()
					resp := srv.check(ctx, st, bag, req)
					st.release()
					if resp.GetPrecondition().GetStatus().GetCode() != 0 {
						b.Fatal(resp.GetPrecondition().GetStatus())
					}
				}
			})
		}
	}
}
