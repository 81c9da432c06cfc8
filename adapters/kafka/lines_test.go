package kafka_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters/internal/jsonline"
	"github.com/sidemix/sidemix/adapters/template"
)

// TestLineRecordValuesIntact: log entries' JSON lines are written into
// slabs that the handler reuses once their records are acknowledged;
// every record read back is the line of its entry byte for byte, with
// reports written while others are in flight and reports written after
// the ones before were acknowledged (whose slabs they reuse).
func TestLineRecordValuesIntact(t *testing.T) {
	c := newCluster(t, "lines")
	addr := c.ListenAddrs()[0]
	reg := prometheus.NewRegistry()
	h := newHandler(t, reg, fmt.Sprintf("brokers: [%s]\ntopic: lines\nkey: variables.destination\nbatchSize: 50\nlinger: 1ms\n", addr))
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) // the handler's clock
	const reports, perReport = 16, 400
	want := map[string]int{}
	for r := range reports {
		var insts []template.Instance
		for i := range perReport {
			e := access([]string{"invoice", "notification", "product"}[i%3], r*perReport+i)
			// Long lines, most of each copied from the line before.
			e.Variables = withVars(e.Variables, map[string]any{
				"path":  fmt.Sprintf("/%s/%d", strings.Repeat("p", 500), i%5),
				"agent": fmt.Sprintf("agent-%d", r),
			}, nil)
			want[string(new(jsonline.Encoder).AppendLogEntry(nil, e, now))]++
			insts = append(insts, e)
		}
		if err := h.Report(context.Background(), insts); err != nil {
			t.Fatal(err)
		}
		if r%4 != 3 { // mostly one report at a time, so slabs come back before the next
			waitSent(t, reg, float64((r+1)*perReport), 10*time.Second)
		}
	}
	waitSent(t, reg, reports*perReport, 10*time.Second)
	recs := consume(t, addr, "lines", reports*perReport, 10*time.Second)
	if len(recs) != reports*perReport {
		t.Fatalf("consumed %d records, want %d", len(recs), reports*perReport)
	}
	for _, r := range recs {
		if want[r.value] == 0 {
			t.Fatalf("record %q is no entry's line (or one too many)", r.value)
		}
		want[r.value]--
	}
}
