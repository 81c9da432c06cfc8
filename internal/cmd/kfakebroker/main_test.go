package main

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// build builds the command into a temporary folder.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kfakebroker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// start runs bin with args and returns the address it listens on.
func start(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--port", "0"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatalf("no output from kfakebroker: %s", stderr.String())
	}
	addr, ok := strings.CutPrefix(sc.Text(), "kfakebroker listening on ")
	if !ok {
		t.Fatalf("unexpected first line %q", sc.Text())
	}
	return addr
}

// TestTopicConfigRetention checks that --topic-config reaches the seeded
// topics: with retention.bytes, small segments and a short retention
// interval, the log's first offset moves past the records written first.
func TestTopicConfigRetention(t *testing.T) {
	bin := build(t)
	addr := start(t, bin, "--topic", "kept", "--log-level", "none",
		"--topic-config", "retention.bytes=65536", "--topic-config", "segment.bytes=16384",
		"--broker-config", "log.cleaner.backoff.ms=50")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "kept", BatchSize: 1, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	value := bytes.Repeat([]byte("x"), 4096)
	for range 100 {
		if err := w.WriteMessages(ctx, kafka.Message{Value: value}); err != nil {
			t.Fatalf("writing: %v", err)
		}
	}
	client := &kafka.Client{Addr: kafka.TCP(addr)}
	var first, last int64
	for ctx.Err() == nil {
		resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			"kept": {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)}}})
		if err != nil {
			t.Fatalf("listing offsets: %v", err)
		}
		po := resp.Topics["kept"]
		if len(po) != 1 || po[0].Error != nil {
			t.Fatalf("offsets of kept: %+v", po)
		}
		// The cleaner may drop the old segments over more than one pass:
		// wait for the retention to be met, up to the deadline.
		first, last = po[0].FirstOffset, po[0].LastOffset
		if last == 100 && first >= 100-2*16 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last != 100 {
		t.Fatalf("log end offset %d, want 100", last)
	}
	// 100 records of 4 KiB kept to 64 KiB: at most ~16 records and a
	// segment remain.
	if first < 100-2*16 {
		t.Fatalf("first offset %d after retention of 64 KiB over 100 records of 4 KiB", first)
	}
}

// TestTopicConfigErrors checks the flags' errors.
func TestTopicConfigErrors(t *testing.T) {
	bin := build(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--topic-config", "retention.bytes=1"}, "--topic-config without --topic"},
		{[]string{"--topic", "a", "--topic-config", "retention.bytes"}, `--topic-config: "retention.bytes" is not key=value`},
		{[]string{"--broker-config", "=1"}, `--broker-config: "=1" is not key=value`},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: err %v, output %q; want an error with %q", tc.args, err, out, tc.want)
		}
	}
}
