package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// KafkaOptions configure StartKafkaWith.
type KafkaOptions struct {
	// Topics are created at start, each with Partitions partitions.
	Topics []string
	// Partitions of each topic, also of auto-created ones; 0 means 1.
	Partitions int
	// NoAutoCreate refuses topics that are not in Topics, as a broker
	// with auto.create.topics.enable=false does.
	NoAutoCreate bool
	// BrokerConfigs are broker settings, e.g. "message.max.bytes": "2000".
	BrokerConfigs map[string]string
}

// Kafka is a one-broker Kafka cluster (kfake, speaking the Kafka wire
// protocol) in a child process on a loopback port. Its data lives in a
// temporary folder, so records written before Stop are still there after
// Restart.
type Kafka struct {
	t    testing.TB
	bin  string
	port int
	args []string

	mu   sync.Mutex
	proc *Process
}

// StartKafka starts a broker on a free 127.0.0.1 port with the given topics
// (one partition each) and topic auto-creation allowed, and waits until it
// accepts connections. It is stopped when the test ends.
func StartKafka(t testing.TB, topics ...string) *Kafka {
	t.Helper()
	return StartKafkaWith(t, KafkaOptions{Topics: topics})
}

// StartKafkaWith is StartKafka with options.
func StartKafkaWith(t testing.TB, o KafkaOptions) *Kafka {
	t.Helper()
	k := &Kafka{t: t, bin: buildKfakeBroker(t), port: FreePort(t)}
	k.args = []string{
		"--port", strconv.Itoa(k.port),
		"--partitions", strconv.Itoa(max(o.Partitions, 1)),
		"--data-dir", t.TempDir(),
		"--auto-create-topics=" + strconv.FormatBool(!o.NoAutoCreate),
	}
	for _, topic := range o.Topics {
		k.args = append(k.args, "--topic", topic)
	}
	keys := make([]string, 0, len(o.BrokerConfigs))
	for key := range o.BrokerConfigs {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		k.args = append(k.args, "--broker-config", key+"="+o.BrokerConfigs[key])
	}
	k.start()
	return k
}

func (k *Kafka) start() {
	k.t.Helper()
	p := StartProcess(k.t, k.bin, k.args...)
	k.mu.Lock()
	k.proc = p
	k.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.Output(), "kfakebroker listening on") {
		if p.Exited() || time.Now().After(deadline) {
			k.t.Fatalf("kfakebroker did not start: %v\n%s", p.Err(), p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := PollTCP(k.Addr(), 10*time.Second); err != nil {
		k.t.Fatalf("kfakebroker: %v\n%s", err, p.Output())
	}
}

// Addr is the broker's host:port, the bootstrap address for clients.
func (k *Kafka) Addr() string { return "127.0.0.1:" + strconv.Itoa(k.port) }

// Port is the broker's port.
func (k *Kafka) Port() int { return k.port }

// Stop shuts the broker down (SIGTERM; it saves its data) and waits for it
// to exit. Clients then get connection refused until Restart.
func (k *Kafka) Stop() {
	k.t.Helper()
	k.mu.Lock()
	p := k.proc
	k.mu.Unlock()
	if err := p.Stop(15 * time.Second); err != nil && !stoppedBySignal(err) {
		k.t.Logf("kfakebroker: %v", err)
	}
}

// Restart stops the broker if it runs and starts it again on the same port
// with the data it had.
func (k *Kafka) Restart() {
	k.t.Helper()
	k.Stop()
	k.start()
}

// kfakeBroker is the build of internal/cmd/kfakebroker, made at most once
// per test process.
var kfakeBroker binary

func buildKfakeBroker(t testing.TB) string {
	t.Helper()
	b := &kfakeBroker
	b.once.Do(func() {
		root := ModuleRoot(t)
		b.dir, b.err = os.MkdirTemp("", "sidemix-kfakebroker-")
		if b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "kfakebroker")
		cmd := exec.Command("go", "build", "-o", b.bin, "./internal/cmd/kfakebroker")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./internal/cmd/kfakebroker: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("building kfakebroker: %v", b.err)
	}
	return b.bin
}

// KafkaRecord is one record as an independent consumer read it.
type KafkaRecord struct {
	Partition int
	Offset    int64
	// Key is nil for a record without a key.
	Key   []byte
	Value []byte
}

// kcatFormat prints each record as "<partition> <offset> <key length>
// <key><value length> <value>"; lengths are -1 for null, so binary keys
// and values survive.
const kcatFormat = "%p %o %K %k%S %s"

// ConsumeKcat reads topic from the beginning with kcat (librdkafka, an
// independent client) until it holds at least n records or timeout passes,
// and returns every record it read: more than n when there are more. It
// fails the test on timeout with fewer than n; when kcat is missing the test
// fails in CI and is skipped elsewhere.
func ConsumeKcat(t testing.TB, brokers, topic string, n int, timeout time.Duration) []KafkaRecord {
	t.Helper()
	recs, err := pollKcat(t, brokers, topic, n, timeout)
	if err != nil {
		t.Fatalf("kcat %s: %v", topic, err)
	}
	return recs
}

// pollKcat reads the whole topic repeatedly until it holds n records.
func pollKcat(t testing.TB, brokers, topic string, n int, timeout time.Duration) ([]KafkaRecord, error) {
	t.Helper()
	bin := RequireBinary(t, "kcat")
	deadline := time.Now().Add(timeout)
	var recs []KafkaRecord
	var last error
	for {
		recs, last = readKcat(bin, brokers, topic, time.Until(deadline))
		if last == nil && len(recs) >= n {
			return recs, nil
		}
		if time.Now().After(deadline) {
			if last != nil {
				return recs, last
			}
			return recs, fmt.Errorf("%d records after %v, want %d", len(recs), timeout, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readKcat runs kcat once over everything in the topic (-e: exit at the
// end of every partition).
func readKcat(bin, brokers, topic string, timeout time.Duration) ([]KafkaRecord, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, 2*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-C", "-b", brokers, "-t", topic,
		"-o", "beginning", "-e", "-q", "-f", kcatFormat,
		"-X", "broker.address.family=v4")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseKcat(stdout.Bytes())
}

// parseKcat parses the output of kcatFormat.
func parseKcat(out []byte) ([]KafkaRecord, error) {
	r := bufio.NewReader(bytes.NewReader(out))
	var recs []KafkaRecord
	for {
		if _, err := r.Peek(1); err == io.EOF {
			return recs, nil
		}
		var rec KafkaRecord
		part, err := kcatInt(r)
		if err != nil {
			return recs, fmt.Errorf("record %d: partition: %w", len(recs), err)
		}
		rec.Partition = int(part)
		if rec.Offset, err = kcatInt(r); err != nil {
			return recs, fmt.Errorf("record %d: offset: %w", len(recs), err)
		}
		if rec.Key, err = kcatBytes(r); err != nil {
			return recs, fmt.Errorf("record %d: key: %w", len(recs), err)
		}
		if rec.Value, err = kcatBytes(r); err != nil {
			return recs, fmt.Errorf("record %d: value: %w", len(recs), err)
		}
		recs = append(recs, rec)
	}
}

// kcatInt reads a decimal number and the space after it.
func kcatInt(r *bufio.Reader) (int64, error) {
	s, err := r.ReadString(' ')
	if err != nil {
		return 0, errors.New("truncated output")
	}
	return strconv.ParseInt(s[:len(s)-1], 10, 64)
}

// kcatBytes reads "<length> <bytes>"; -1 is null.
func kcatBytes(r *bufio.Reader) ([]byte, error) {
	n, err := kcatInt(r)
	if err != nil || n < 0 {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, errors.New("truncated output")
	}
	return b, nil
}
