package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// defaultKafkaTopic is where the access records go unless KAFKA_TOPIC says.
const defaultKafkaTopic = "sidemix.accesslog"

// kafkaConfig returns the policy file that sends the demo's access records
// to Kafka, or "" when KAFKA_BROKERS is unset. The file is
// examples/default/kafka.yaml turned on (the lines below its marker
// uncommented) with brokers from KAFKA_BROKERS (comma-separated host:port)
// and topic from KAFKA_TOPIC (default sidemix.accesslog), written to the log
// folder.
func (d *demo) kafkaConfig() (string, error) {
	env := os.Getenv("KAFKA_BROKERS")
	if strings.TrimSpace(env) == "" {
		return "", nil
	}
	var brokers []string
	for _, b := range strings.Split(env, ",") {
		b = strings.TrimSpace(b)
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return "", fmt.Errorf("KAFKA_BROKERS=%q: %q is not host:port", env, b)
		}
		brokers = append(brokers, b)
	}
	topic := os.Getenv("KAFKA_TOPIC")
	if topic == "" {
		topic = defaultKafkaTopic
	}
	text, err := os.ReadFile(d.path("examples", "default", "kafka.yaml"))
	if err != nil {
		return "", err
	}
	_, body, ok := strings.Cut(string(text), "# ---- uncomment below")
	if !ok {
		return "", fmt.Errorf("examples/default/kafka.yaml has no uncomment marker")
	}
	_, body, _ = strings.Cut(body, "\n")
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		l = strings.TrimPrefix(l, "#")
		switch {
		case strings.HasPrefix(l, "    brokers:"):
			l = "    brokers: [" + strings.Join(brokers, ", ") + "]"
		case strings.HasPrefix(l, "    topic:"):
			l = fmt.Sprintf("    topic: %q", topic)
		}
		lines[i] = l
	}
	dir := filepath.Join(d.logs, "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kafka.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return "", err
	}
	fmt.Printf("demo: access records go to Kafka topic %s at %s (KAFKA_BROKERS, KAFKA_TOPIC)\n", topic, strings.Join(brokers, ","))
	return path, nil
}

// verifyKafka checks, when KAFKA_BROKERS is set, that the mixer's kafka
// handler delivered access records, and prints how many.
func (d *demo) verifyKafka() error {
	if strings.TrimSpace(os.Getenv("KAFKA_BROKERS")) == "" {
		return nil
	}
	resp, err := http.Get("http://" + mixerAdmin + "/metrics")
	if err != nil {
		return fmt.Errorf("scraping the mixer's metrics: %w", err)
	}
	defer resp.Body.Close()
	var sent, buffered float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `handler="kafka"`) {
			continue
		}
		v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		switch {
		case strings.HasPrefix(line, "sidemix_kafka_records_total{") && strings.Contains(line, `result="sent"`):
			sent += v
		case strings.HasPrefix(line, "sidemix_kafka_buffered_records{"):
			buffered += v
		}
	}
	fmt.Printf("demo: kafka: %.0f access records sent, %.0f still buffered\n", sent, buffered)
	if sent == 0 {
		return fmt.Errorf("no access records reached Kafka (KAFKA_BROKERS=%s); see the mixer's log", os.Getenv("KAFKA_BROKERS"))
	}
	return nil
}
