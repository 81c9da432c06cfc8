// Command kfakebroker runs a one-broker Kafka cluster that speaks the Kafka
// wire protocol (github.com/twmb/franz-go/pkg/kfake) on a loopback port, for
// end-to-end tests. It is a separate process so a test can stop it and start
// it again on the same port, as a Kafka outage would look to clients; with
// --data-dir the records written before a stop are there after the restart.
//
//	kfakebroker --port 9092 --topic sidemix.accesslog --partitions 3 --data-dir /tmp/kafka
//
// It prints "kfakebroker listening on 127.0.0.1:<port>" once it accepts
// connections and runs until SIGTERM or SIGINT, when it saves its data and
// exits.
//
// --topic-config key=value sets a config of every --topic, e.g.
// retention.bytes, so that a benchmark's broker holds a bounded log: kfake
// keeps records in memory, and a log that only grows costs the broker the
// kernel's zeroing of every fresh page it writes them into (with
// --broker-config log.cleaner.backoff.ms=N retention runs every N ms).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "kfakebroker: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var topics, configs, topicConfigs list
	port := flag.Int("port", 0, "port to listen on, on 127.0.0.1 (0: any free port)")
	partitions := flag.Int("partitions", 1, "partitions of each --topic and of auto-created topics")
	dataDir := flag.String("data-dir", "", "folder to keep the cluster's data in across restarts (default: memory only)")
	autoCreate := flag.Bool("auto-create-topics", true, "create topics that clients ask for")
	logLevel := flag.String("log-level", "warn", "none, error, warn, info or debug")
	flag.Var(&topics, "topic", "topic to create at start (repeatable)")
	flag.Var(&topicConfigs, "topic-config", "config key=value of every --topic, e.g. retention.bytes=268435456 (repeatable)")
	flag.Var(&configs, "broker-config", "broker config key=value, e.g. message.max.bytes=2000 (repeatable)")
	flag.Parse()

	level, ok := map[string]kfake.LogLevel{
		"none": kfake.LogLevelNone, "error": kfake.LogLevelError, "warn": kfake.LogLevelWarn,
		"info": kfake.LogLevelInfo, "debug": kfake.LogLevelDebug,
	}[*logLevel]
	if !ok {
		return fmt.Errorf("--log-level: unknown level %q", *logLevel)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(*port),
		kfake.DefaultNumPartitions(*partitions),
		kfake.WithLogger(kfake.BasicLogger(os.Stderr, level)),
	}
	tconf, err := keyValues("--topic-config", topicConfigs)
	if err != nil {
		return err
	}
	if len(topics) > 0 && len(tconf) == 0 {
		opts = append(opts, kfake.SeedTopics(int32(*partitions), topics...))
	} else if len(tconf) > 0 && len(topics) == 0 {
		return fmt.Errorf("--topic-config without --topic")
	}
	if *autoCreate {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	bconf, err := keyValues("--broker-config", configs)
	if err != nil {
		return err
	}
	if len(bconf) > 0 {
		opts = append(opts, kfake.BrokerConfigs(bconf))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	if len(tconf) > 0 {
		// SeedTopics takes no configs: create the topics with them.
		for _, t := range topics {
			if err := c.CreateTopic(t, int32(*partitions), tconf); err != nil {
				c.Close()
				return fmt.Errorf("creating topic %s with %v: %w", t, tconf, err)
			}
		}
	}
	fmt.Printf("kfakebroker listening on %s\n", c.ListenAddrs()[0])

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	<-sigs
	c.Close()
	fmt.Println("kfakebroker stopped")
	return nil
}

// keyValues parses the key=value items of the flag named name.
func keyValues(name string, items []string) (map[string]string, error) {
	if len(items) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(items))
	for _, kv := range items {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", name, kv)
		}
		m[k] = v
	}
	return m, nil
}
