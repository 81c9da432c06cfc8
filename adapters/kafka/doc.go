// Package kafka is an adapter that writes logentry, tracespan and otlp
// instances to a Kafka topic with github.com/segmentio/kafka-go: one
// record per instance (with otlp_proto and otlpBatch, one record per key
// and report).
//
// # Records
//
// With encoding json (the default) a log entry's record is the JSON object
// the accesslog adapter writes as a line ("time", "severity", "instance"
// and every variable), and a span's is an object of its fields (traceId,
// spanId, parentSpanId, name, kind, startTime, endTime, status,
// httpStatusCode, serviceName, sourceName, destinationName, tags). With
// otlp_proto a record is OTLP TracesData or LogsData in protobuf
// (adapters/internal/spans converts them), which the OpenTelemetry
// Collector's kafka receiver reads with its otlp_proto encoding. A record
// holds one span or log entry, unless otlpBatch is set: then, as the
// Collector's kafka exporter writes a batch, the spans of one report (the
// mixer's queue hands a handler up to its batch of instances at a time)
// that have the same key go into one TracesData record, and its log
// entries of one key into one LogsData record, split in halves until each
// record fits batchBytes. sidemix_kafka_instances_sent_total counts the
// spans and log entries in the records sent.
//
// An otlp instance (the spans or log records of one resource of an app's
// OTLP export, as received; see adapters/template.OTLP) is written as it
// came: with otlp_proto its record value is that resource as a TracesData
// (LogsData), byte for byte, unknown fields included; with otlpBatch the
// resources of one key and signal in a report are concatenated into one
// record (concatenated resources are a TracesData too), cut between
// resources so that each record fits batchBytes; a resource that alone
// does not fit is dropped as too_large. Nothing is decoded or re-encoded,
// which is what makes forwarding cheap. With json the record is the
// resource in OTLP JSON (decoded for it). The spans (log records) of the
// resources count in sidemix_kafka_instances_sent_total. With otlpBatch,
// once a record holds a copy of an instance's bytes the instance is
// released (template.OTLP.Release), so the mixer's OTLP receiver reuses
// the request's buffer; a lone resource is then copied too. A record
// value of 64 KiB or more is built in a pooled buffer that is reused once
// Kafka acknowledged the record (or it was dropped for good), so records
// of up to batchBytes do not cost fresh pages each.
// Likewise a log entry's JSON line is written into a slab of many lines
// that the handler reuses once all its records were acknowledged (or
// dropped for good); the handler does not share its lines with other
// handlers that write the same entries.
//
// The record key is the value of the CEL expression key, evaluated over the
// instance; records of one key go to one partition (the Java client's
// murmur2 partitioner), so keying by destination service keeps each
// service's records in order. The expression sees the instance's fields:
//
//	logentry:  name, variables (map), severity, timestamp
//	tracespan: name, traceId, spanId, parentSpanId, spanName, spanKind,
//	           status, httpStatusCode, sourceName, destinationName,
//	           serviceName, startTime, endTime, spanTags (map)
//	otlp:      name, signal (traces or logs), serviceName and
//	           serviceNamespace (the resource's service.name and
//	           service.namespace)
//
// for example variables.destinationServiceHost, or traceId for spans. A
// field of the other template is unbound: for a handler taking both, write
// a key that works for both, such as name. A key that cannot be evaluated
// (a missing map key, say) sends the record without a key and counts
// sidemix_kafka_key_errors_total.
//
// # Delivery
//
// Report encodes instances and appends the records to the handler's buffer;
// it never waits for Kafka. The buffer has maxInFlight lanes (default 4),
// each with a goroutine, which takes records from its lane, oldest first,
// and writes them: it picks each record's partition (the Java client's
// murmur2 partitioner over the key; records without a key at random) and
// produces each partition's records in batches of batchSize records or
// batchBytes bytes, one batch after the other, the partitions at once,
// with kafka-go's Client (a produce request per batch). A lane starts a
// write at most once per linger unless it holds 16 batches' worth: under
// load the records that come meanwhile go into the next write together,
// and none waits longer than linger for it; a record that comes to a lane
// idle for linger is written at once. Up to maxInFlight produce requests
// per partition are in flight at once. A record's lane is
// chosen by its key's hash, so the records of one key go through one lane
// and reach their partition in the order reported; records without a key
// take the lanes in turn and have no order. On a plaintext connection
// each Kafka request is written with one write (kafka-go writes its 64 kB
// pages one by one: 16 syscalls for a produce request of 1 MiB); with TLS
// kafka-go's own writes are kept.
// A write that fails is retried after a backoff (100ms doubling to 2s,
// jittered; sidemix_kafka_write_errors_total counts failed writes) until
// it succeeds: while Kafka is down, records wait in the buffer, and are
// delivered in order when it is back. A batch that fails holds back the
// batches of its partition behind it, so that they are written again after
// it, not before. Only bufferSize records and
// bufferBytes bytes (keys, values and 23 bytes of framing each; default
// 64 MiB) are held; records reported beyond either are dropped and counted
// as buffer_full, so the buffer's memory stays bounded however large the
// records (otlp_proto batches reach batchBytes). Delivery is at least once: a
// write that timed out after the broker stored it is written again.
//
// A record larger than batchBytes is dropped when reported. A batch the
// broker refuses as too large (its message.max.bytes) is written again one
// record per batch, and the records it still refuses are dropped. Dropped
// records are logged with their key (one warning per 10 s, the others at
// debug level) and counted; they never hold up the records behind them.
//
// Metrics, labelled by handler:
//
//	sidemix_kafka_buffered_records       records not yet acknowledged
//	sidemix_kafka_buffered_bytes         their bytes
//	sidemix_kafka_records_total{result}  sent, buffer_full, too_large,
//	                                     rejected, encode_error,
//	                                     wrong_template, shutdown
//	sidemix_kafka_write_errors_total     failed writes, each retried
//	sidemix_kafka_key_errors_total       records sent without their key
//	sidemix_kafka_instances_sent_total   spans and log entries in sent records
//
// Close stops taking records and delivers the buffer until its context
// ends; records left then count as shutdown. The mixer gives a handler
// replaced by a config reload its retire timeout (2 minutes) and one closed
// at shutdown the rest of the shutdown timeout, so an outage longer than
// that across a reload or a stop loses what was buffered. With requiredAcks none the
// broker does not answer, so a record counts as sent once written to the
// connection.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: kafka}
//	spec:
//	  adapter: kafka
//	  params:
//	    brokers: [kafka-0.kafka:9092, kafka-1.kafka:9092]
//	    topic: sidemix.accesslog
//	    key: variables.destinationServiceHost
//	    encoding: json          # or otlp_proto
//	    otlpBatch: false        # otlp_proto: one record per key and report
//	    batchSize: 1000         # records per partition batch
//	    batchBytes: 1048576     # keep at or below the broker's message.max.bytes
//	    linger: 10ms            # a lane writes at most once per linger (at once when idle)
//	    requiredAcks: all       # none, one or all
//	    compression: none       # gzip, snappy, lz4, zstd
//	    bufferSize: 100000      # records held while Kafka is slow or down
//	    bufferBytes: 67108864   # and their bytes; beyond either, dropped
//	    maxInFlight: 4          # produce requests in flight (one key: one at a time)
//	    writeTimeout: 10s
//	    tls: {enabled: true, caFile: /etc/kafka/ca.pem}
//	    sasl: {mechanism: SCRAM-SHA-512, username: sidemix, password: secret}
package kafka
