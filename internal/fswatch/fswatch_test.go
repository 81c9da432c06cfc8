package fswatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRun: a change under a watched folder reloads once per burst, with
// file system events and with polling alone.
func TestRun(t *testing.T) {
	for _, pollOnly := range []bool{false, true} {
		dir := t.TempDir()
		f := filepath.Join(dir, "a.yaml")
		if err := os.WriteFile(f, []byte("a: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		reloads := make(chan struct{}, 10)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			Run(ctx, Options{Paths: []string{dir}, PollInterval: 30 * time.Millisecond, Debounce: 20 * time.Millisecond, PollOnly: pollOnly},
				Digest([]string{dir}), func() bool { reloads <- struct{}{}; return true })
			close(done)
		}()
		time.Sleep(50 * time.Millisecond)
		if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("b: 2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		select {
		case <-reloads:
		case <-time.After(5 * time.Second):
			t.Fatalf("pollOnly=%v: no reload after a new file", pollOnly)
		}
		cancel()
		<-done
	}
}
