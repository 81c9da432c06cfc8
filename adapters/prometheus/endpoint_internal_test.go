package prometheus

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestObserveInRemovedSeries: a series a handler kept (Report's
// lastSeries) records nothing once a sweep has removed it, so the caller
// looks its labels up again and the observation goes to the new series.
func TestObserveInRemovedSeries(t *testing.T) {
	f, err := newFamily(spec{name: "requests_total", help: "h", kind: Counter, labels: []string{"code"}})
	if err != nil {
		t.Fatal(err)
	}
	lvs := []string{"200"}
	key := appendSeriesKey(nil, lvs)
	s, _, err := f.observe(lvs, key, 1, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !f.observeIn(s, 2, 20) {
		t.Fatal("observeIn refused a live series")
	}
	if n := f.sweep(30); n != 1 {
		t.Fatalf("sweep removed %d series, want 1", n)
	}
	if f.observeIn(s, 4, 40) {
		t.Fatal("observeIn recorded into a removed series")
	}
	s2, _, err := f.observe(lvs, key, 8, 50, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s2 == s {
		t.Fatal("observe returned the removed series")
	}
	var m dto.Metric
	if err := s2.counter.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 8 {
		t.Errorf("the new series counts %v, want 8", got)
	}
}
