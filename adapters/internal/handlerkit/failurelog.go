package handlerkit

import (
	"sync"
	"time"
)

// FailureLog is what a handler sending to a backend should log of each
// final outcome, so that a backend that is down costs one warning when it
// starts failing and then at most one per Interval, not one per batch.
// Safe for concurrent use.
type FailureLog struct {
	// Interval is the least time between two warnings of one outage.
	Interval time.Duration

	mu          sync.Mutex
	failing     bool
	lastWarning time.Time
	failedSince int
}

// Level is what a recorded outcome asks the handler to log.
type Level int

const (
	// LogNothing: the send succeeded while the backend was healthy.
	LogNothing Level = iota
	// LogRecovered: the first success after failures (an info line).
	LogRecovered
	// LogWarning: a failure starting an outage, or the first one an
	// Interval after the last warning.
	LogWarning
	// LogDebug: any other failure.
	LogDebug
)

// Record notes an outcome at now: err nil for a success, else failed
// items lost to err. It returns what to log and how many items failed
// since the outage began (for a recovery, during the whole outage).
func (f *FailureLog) Record(now time.Time, failed int, err error) (Level, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil && f.failing:
		f.failing = false
		return LogRecovered, f.failedSince
	case err == nil:
		return LogNothing, 0
	case !f.failing || now.Sub(f.lastWarning) >= f.Interval:
		if !f.failing {
			f.failedSince = 0
		}
		f.failing = true
		f.failedSince += failed
		f.lastWarning = now
		return LogWarning, f.failedSince
	default:
		f.failedSince += failed
		return LogDebug, f.failedSince
	}
}
