package mixer

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/accesslog"
	"github.com/sidemix/sidemix/adapters/jaeger"
	"github.com/sidemix/sidemix/adapters/kafka"
	promadapter "github.com/sidemix/sidemix/adapters/prometheus"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/attribute/attrtest"
	"github.com/sidemix/sidemix/internal/testenv"
	"github.com/sidemix/sidemix/internal/vtcodec"
)

// examplesDefaultConfig writes ../examples/default as benchmarks/reportbench
// runs its report-fixed scenario: the access log to /dev/null, Prometheus
// on a free port, the jaeger handler to jaegerAddr and the kafka rule on,
// to broker.
func examplesDefaultConfig(tb testing.TB, jaegerAddr, broker string) string {
	tb.Helper()
	src := filepath.Join("..", "examples", "default")
	entries, err := os.ReadDir(src)
	if err != nil {
		tb.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		text := string(b)
		switch e.Name() {
		case "handlers.yaml":
			text = strings.Replace(text, "addr: 127.0.0.1:42422", "addr: "+testenv.FreeAddr(tb), 1)
			text = strings.Replace(text, "path: stdout", "path: "+os.DevNull, 1)
		case "jaeger.yaml":
			text = strings.Replace(text, "endpoint: 127.0.0.1:14250", "endpoint: "+jaegerAddr, 1)
		case "kafka.yaml":
			_, rest, ok := strings.Cut(text, "---- uncomment below")
			if !ok {
				tb.Fatal("kafka.yaml: no uncomment marker")
			}
			_, rest, _ = strings.Cut(rest, "\n")
			text = strings.ReplaceAll("\n"+rest, "\n#", "\n")
			text = strings.Replace(text, "brokers: [127.0.0.1:9092]", "brokers: ["+broker+"]", 1)
		}
		files[e.Name()] = text
	}
	dir := tb.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// BenchmarkReportExamplesDefault replays report-fixed's batches
// (benchmarks/reportbench: 1000 bags of attrtest.Requests per Report,
// delta-encoded, every trace sampled, outbound and inbound proxies in
// turn) through the Report handler, from the request's bytes, with
// examples/default's rules and real handlers: the access log to
// /dev/null, Prometheus, kafka to a kfake broker and jaeger to a real
// Jaeger. Each Report waits until its handlers' queues are empty, so the
// handlers' work (their allocations too) counts in the op; per record.
func BenchmarkReportExamplesDefault(b *testing.B) {
	j := testenv.StartJaeger(b)
	k := testenv.StartKafka(b, "sidemix.accesslog")
	dir := examplesDefaultConfig(b, j.CollectorAddr, k.Addr())
	srv, err := New(Config{ConfigPaths: []string{dir},
		Adapters: testRegistry(b, promadapter.Factory(), accesslog.Factory(), jaeger.Factory(), kafka.Factory()),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	g := &service{s: srv}

	const batch, preBuilt = 1000, 4
	var bodies [][]byte
	for w := range 2 {
		enc := attribute.NewEncoder(attribute.DefaultDictionary())
		for j := range preBuilt {
			body, err := enc.EncodeBatch(attrtest.Requests(batch, w*preBuilt+j, w%2 == 0, 1)).MarshalVT()
			if err != nil {
				b.Fatal(err)
			}
			bodies = append(bodies, body)
		}
	}
	ctx := context.Background()
	report := func(body []byte) {
		if _, err := g.reportHandler(nil, ctx, func(m any) error { return m.(vtcodec.Message).UnmarshalVT(body) }, nil); err != nil {
			b.Fatal(err)
		}
		for !srv.queuesEmpty() {
			time.Sleep(100 * time.Microsecond)
		}
	}
	for _, body := range bodies { // warm up: series, connections, pools
		report(body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	i := 0
	for b.Loop() {
		report(bodies[i%len(bodies)])
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
	// The mixer's CPU (all its goroutines: handlers, exporters, GC) is
	// what counts, not the time the loop took on a shared machine.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N*batch), "cpu-ns/record")
}

// processCPU is the CPU time the process used so far, in nanoseconds.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// queuesEmpty reports whether every report queue has handed what it held
// to its handler.
func (s *Server) queuesEmpty() bool {
	st := s.acquire()
	defer st.release()
	for _, h := range st.order {
		if h.queue != nil && h.queue.len() > 0 {
			return false
		}
	}
	return true
}
