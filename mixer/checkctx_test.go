package mixer

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestCheckCtxDeadline(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")
	var c checkCtx
	deadline := time.Now().Add(30 * time.Millisecond)
	c.init(parent, deadline)
	defer c.stop()
	if d, ok := c.Deadline(); !ok || !d.Equal(deadline) {
		t.Fatalf("Deadline() = %v, %v; want %v, true", d, ok, deadline)
	}
	if c.Err() != nil || c.inner != nil {
		t.Fatalf("before the deadline: Err %v, made %v; want nil and no context made", c.Err(), c.inner != nil)
	}
	if c.Value(ctxKey{}) != "v" {
		t.Errorf("Value: %v, want the parent's", c.Value(ctxKey{}))
	}
	// A child derived from it (as a handler might) ends with it.
	child, cancel := context.WithCancel(&c)
	defer cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("child not done 5s after the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Errorf("after the deadline: Err %v, child's %v; want DeadlineExceeded", c.Err(), child.Err())
	}
	if !errors.Is(context.Cause(&c), context.DeadlineExceeded) {
		t.Errorf("Cause %v, want DeadlineExceeded", context.Cause(&c))
	}
	if c.Value(ctxKey{}) != "v" {
		t.Errorf("Value once made: %v, want the parent's", c.Value(ctxKey{}))
	}
}

// TestCheckCtxErrPastDeadline: nobody waited, yet Err past the deadline
// says so, and Done is closed from then on.
func TestCheckCtxErrPastDeadline(t *testing.T) {
	var c checkCtx
	c.init(context.Background(), time.Now().Add(-time.Millisecond))
	defer c.stop()
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v, want DeadlineExceeded", c.Err())
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed past the deadline")
	}
}

func TestCheckCtxParentCanceled(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	var c checkCtx
	c.init(parent, time.Now().Add(time.Hour))
	defer c.stop()
	cancel()
	if !errors.Is(c.Err(), context.Canceled) {
		t.Errorf("Err %v after the parent's cancel, want Canceled", c.Err())
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the parent's cancel")
	}
}

func TestCheckCtxStop(t *testing.T) {
	for _, waited := range []bool{false, true} {
		var c checkCtx
		c.init(context.Background(), time.Now().Add(time.Hour))
		var done <-chan struct{}
		if waited {
			done = c.Done()
		}
		c.stop()
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("waited %v: Err %v after stop, want Canceled", waited, c.Err())
		}
		if done == nil {
			done = c.Done()
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("waited %v: Done not closed after stop", waited)
		}
		if _, ok := c.Deadline(); !ok {
			t.Errorf("waited %v: no deadline after stop", waited)
		}
	}
}
