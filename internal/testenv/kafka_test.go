package testenv_test

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sidemix/sidemix/internal/testenv"
)

// produceKcat writes "key|value" lines to topic with kcat.
func produceKcat(t *testing.T, brokers, topic string, lines ...string) {
	t.Helper()
	cmd := exec.Command(testenv.RequireBinary(t, "kcat"), "-P", "-b", brokers, "-t", topic, "-K", "|")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
}

func TestKafkaKeepsRecordsAcrossRestart(t *testing.T) {
	testenv.RequireBinary(t, "kcat")
	k := testenv.StartKafka(t, "orders")
	produceKcat(t, k.Addr(), "orders", "a|first record", "b|second|with a bar")

	k.Stop()
	if c, err := net.DialTimeout("tcp", k.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("the broker accepts connections after Stop")
	}
	k.Restart()
	produceKcat(t, k.Addr(), "orders", "c|third")

	recs := testenv.ConsumeKcat(t, k.Addr(), "orders", 3, 20*time.Second)
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Key)+"="+string(r.Value))
	}
	want := "a=first record,b=second|with a bar,c=third"
	if strings.Join(got, ",") != want {
		t.Errorf("records = %q, want %q", strings.Join(got, ","), want)
	}
	if recs[2].Offset != 2 || recs[0].Partition != 0 {
		t.Errorf("partition/offsets: %+v", recs)
	}
}

func TestKafkaAutoCreatesTopics(t *testing.T) {
	testenv.RequireBinary(t, "kcat")
	k := testenv.StartKafkaWith(t, testenv.KafkaOptions{Partitions: 3})
	produceKcat(t, k.Addr(), "fresh", "k|v")
	recs := testenv.ConsumeKcat(t, k.Addr(), "fresh", 1, 20*time.Second)
	if len(recs) != 1 || string(recs[0].Key) != "k" || string(recs[0].Value) != "v" {
		t.Errorf("records = %+v", recs)
	}
}
