package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
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
