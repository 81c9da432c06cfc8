package kafka

import (
	"bytes"
	"context"
	"io"
	"sync"

	kafkago "github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// The lanes write with kafka-go's Client (produce requests through the
// handler's Transport), not its Writer. Writer.WriteMessages looks the
// topic's partitions up in the Transport's metadata cache once per record
// (a filtered copy of the cached response each time: 60% of what
// WriteMessages cost the mixer with examples/default's kafka rule, 5% of
// the mixer's CPU in all), hands each partition's batches to goroutines of
// its own, and writes a partition's next batch even when the one before it
// failed (which reorders a key's records when the failed one is written
// again). A write here looks the partitions up once, picks each record's
// partition with the Java client's murmur2 partitioner, and produces each
// partition's batches in order, stopping at a failed one; the partitions
// are written concurrently.

// partitions is how many partitions the topic has, from the Transport's
// metadata cache (or the broker, to create the topic when
// allowAutoTopicCreation is set and the cache does not know it).
func (h *handler) partitions(ctx context.Context) (int, error) {
	r, err := h.transport.RoundTrip(ctx, h.client.Addr, &metadataAPI.Request{
		TopicNames:             []string{h.topic},
		AllowAutoTopicCreation: h.autoCreate,
	})
	if err != nil {
		return 0, err
	}
	for _, t := range r.(*metadataAPI.Response).Topics {
		if t.Name == h.topic {
			if t.ErrorCode != 0 {
				return 0, kafkago.Error(t.ErrorCode)
			}
			if len(t.Partitions) == 0 {
				return 0, kafkago.UnknownTopicOrPartition
			}
			return len(t.Partitions), nil
		}
	}
	return 0, kafkago.UnknownTopicOrPartition
}

// write writes msgs once. It counts the records sent and those dropped for
// good, and returns with an error the records to write again after a
// backoff, in their order.
func (h *handler) write(msgs []kafkago.Message) (retry []kafkago.Message, _ error) {
	n, err := h.partitions(h.ctx)
	if err != nil {
		keepValues(msgs)
		return msgs, err // no broker, no metadata, ...
	}
	if n == 1 {
		return h.writePartition(0, msgs)
	}
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	byPartition := make([][]kafkago.Message, n)
	var balancer kafkago.Murmur2Balancer
	for _, m := range msgs {
		p := balancer.Balance(m, ids...)
		byPartition[p] = append(byPartition[p], m)
	}
	type result struct {
		retry []kafkago.Message
		err   error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for p, pm := range byPartition {
		if len(pm) > 0 {
			wg.Go(func() {
				r, err := h.writePartition(p, pm)
				results[p] = result{r, err}
			})
		}
	}
	wg.Wait()
	var firstErr error
	for _, r := range results {
		retry = append(retry, r.retry...)
		if firstErr == nil {
			firstErr = r.err
		}
	}
	return retry, firstErr
}

// writePartition writes msgs to partition p in batches of batchSize
// records and batchBytes bytes, one after the other. A batch that fails
// for a reason that can pass stops the write: it and the batches behind it
// are returned to be written again, so that the partition gets its records
// in order. A batch the broker refuses as too large is written again one
// record per batch at once, to find the record it refuses.
func (h *handler) writePartition(p int, msgs []kafkago.Message) (retry []kafkago.Message, _ error) {
	for len(msgs) > 0 {
		k, bytes := 0, int64(0)
		for k < len(msgs) && k < h.batchSize {
			size := recordSize(msgs[k])
			if k > 0 && bytes+size > h.batchBytes {
				break
			}
			bytes += size
			k++
		}
		batch := msgs[:k]
		err := h.produce(p, batch)
		switch {
		case err == nil:
			h.sent(batch)
		case isTooLarge(err) && k > 1:
			for i := range batch {
				if err := h.produce(p, batch[i:i+1]); err != nil && !h.dropped(batch[i:i+1], err) {
					keepValues(msgs[i:])
					return msgs[i:], err
				} else if err == nil {
					h.sent(batch[i : i+1])
				}
			}
		case h.dropped(batch, err):
		default:
			keepValues(msgs)
			return msgs, err
		}
		msgs = msgs[k:]
	}
	return nil, nil
}

// sent counts and releases records Kafka acknowledged.
func (h *handler) sent(msgs []kafkago.Message) {
	h.count(resultSent, len(msgs))
	h.sentInstances(msgs...)
	releaseValues(msgs...)
}

// dropped drops a batch the broker refused for good (too large as one
// record, or refused as records), counting and logging it, and reports
// whether it did; other errors can pass.
func (h *handler) dropped(batch []kafkago.Message, err error) bool {
	switch {
	case isTooLarge(err):
		for _, m := range batch {
			h.tooLarge(m, err)
		}
	case isRecordError(err):
		h.count(resultRejected, len(batch))
		for _, m := range batch {
			h.log.Log(context.Background(), h.dropLevel(), "kafka refused a record; dropped", "topic", h.topic, "key", string(m.Key), "error", err)
		}
	default:
		return false
	}
	releaseValues(batch...)
	return true
}

// produce writes msgs to partition p with one produce request and returns
// the partition's error.
func (h *handler) produce(p int, msgs []kafkago.Message) error {
	ctx, cancel := context.WithTimeout(h.ctx, h.writeTimeout)
	defer cancel()
	res, err := h.client.Produce(ctx, &kafkago.ProduceRequest{
		Topic:        h.topic,
		Partition:    p,
		RequiredAcks: h.acks,
		Compression:  h.compression,
		Records:      &recordReader{msgs: msgs},
	})
	switch {
	case err != nil:
		return err
	case res == nil: // requiredAcks none: no response
		return nil
	}
	return res.Error
}

// recordReader hands kafka-go the records of msgs, oldest first, without
// copying them: their keys and values are read once, into the request.
type recordReader struct {
	msgs       []kafkago.Message
	record     kafkago.Record
	key, value bytesReader
}

func (r *recordReader) ReadRecord() (*kafkago.Record, error) {
	if len(r.msgs) == 0 {
		return nil, io.EOF
	}
	m := &r.msgs[0]
	r.msgs = r.msgs[1:]
	r.record = kafkago.Record{Time: m.Time, Headers: m.Headers}
	if m.Key != nil {
		r.key.Reset(m.Key)
		r.record.Key = &r.key
	}
	if m.Value != nil {
		r.value.Reset(m.Value)
		r.record.Value = &r.value
	}
	return &r.record, nil
}

// bytesReader is a record's key or value for kafka-go (protocol.Bytes).
type bytesReader struct{ bytes.Reader }

func (*bytesReader) Close() error { return nil }
