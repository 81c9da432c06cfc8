package handlerkit_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
)

func TestFailureLog(t *testing.T) {
	f := handlerkit.FailureLog{Interval: time.Minute}
	t0 := time.Unix(1_700_000_000, 0)
	down := errors.New("connection refused")
	steps := []struct {
		at     time.Duration
		failed int
		err    error
		level  handlerkit.Level
		since  int
	}{
		{0, 0, nil, handlerkit.LogNothing, 0},
		{time.Second, 5, down, handlerkit.LogWarning, 5}, // the outage starts
		{2 * time.Second, 3, down, handlerkit.LogDebug, 8},
		{61 * time.Second, 2, down, handlerkit.LogWarning, 10}, // an interval after the last warning
		{62 * time.Second, 0, nil, handlerkit.LogRecovered, 10},
		{63 * time.Second, 4, down, handlerkit.LogWarning, 4}, // a new outage counts afresh
	}
	for i, s := range steps {
		level, since := f.Record(t0.Add(s.at), s.failed, s.err)
		if level != s.level || since != s.since {
			t.Errorf("step %d: Record = %v, %d; want %v, %d", i, level, since, s.level, s.since)
		}
	}
}
