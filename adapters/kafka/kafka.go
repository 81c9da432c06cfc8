package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/internal/handlerkit"
	"github.com/sidemix/sidemix/adapters/template"
)

var _ adapters.BatchReleaser = (*handler)(nil)

// Outcomes of a record, the result label of sidemix_kafka_records_total.
const (
	resultSent          = "sent"
	resultBufferFull    = "buffer_full"    // the buffer held bufferSize records or bufferBytes bytes
	resultTooLarge      = "too_large"      // above batchBytes or the broker's limit
	resultRejected      = "rejected"       // the broker refused the record itself
	resultEncodeError   = "encode_error"   // the instance could not be encoded
	resultWrongTemplate = "wrong_template" // not a logentry, tracespan or otlp
	resultShutdown      = "shutdown"       // still buffered when Close ran out of time
)

// Retry backoff after a failed write: doubling from retryMin, at most
// retryMax, with jitter.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 2 * time.Second
)

// dropLogInterval spaces the warnings about dropped records.
const dropLogInterval = 10 * time.Second

// maxBatches is how many batches' worth of records one write takes from
// the buffer.
const maxBatches = 16

var requiredAcks = map[string]kafkago.RequiredAcks{
	AcksNone: kafkago.RequireNone,
	AcksOne:  kafkago.RequireOne,
	AcksAll:  kafkago.RequireAll,
}

var compressions = map[string]compress.Compression{
	"none":   0,
	"gzip":   kafkago.Gzip,
	"snappy": kafkago.Snappy,
	"lz4":    kafkago.Lz4,
	"zstd":   kafkago.Zstd,
}

// handler buffers encoded records and writes them from its lanes'
// goroutines, so Report never waits for Kafka.
type handler struct {
	name   string
	log    *slog.Logger
	now    func() time.Time
	topic  string
	key    *keyProgram // nil: records have no key
	encode encoder
	// jsonLines: log entries are encoded as JSON lines (encoding json),
	// which Report writes with one lineWriter for all of them into slabs
	// (lines.go).
	jsonLines bool
	writers   writerList
	slabs     slabList
	// otlpBatch: the spans (log entries) of one report that share a key
	// are written as one OTLP record.
	otlpBatch   bool
	bufferSize  int
	bufferBytes int64
	batchBytes  int64
	take        int   // records per write
	takeBytes   int64 // bytes per write
	linger      time.Duration

	transport    *kafkago.Transport // shared by all lanes
	client       *kafkago.Client    // produces through transport
	acks         kafkago.RequiredAcks
	compression  kafkago.Compression
	batchSize    int
	writeTimeout time.Duration
	autoCreate   bool // allowAutoTopicCreation
	lanes        []*lane

	mu        sync.Mutex
	held      int   // records in the lanes' buffers and in flight
	heldBytes int64 // their bytes (key, value, framing)
	next      int   // the lane of the next record without a key
	closed    bool

	stop   chan struct{} // closed by Close: deliver what is buffered, then exit
	done   chan struct{} // closed when every lane's goroutine has exited
	ctx    context.Context
	cancel context.CancelFunc // Close ran out of time: give up

	// buffered is shared with handlers of the same name (the one a reload
	// replaces drains while the new one fills), so it only moves by deltas.
	buffered      prometheus.Gauge
	bufferedBytes prometheus.Gauge
	records       *prometheus.CounterVec
	errs          prometheus.Counter
	keyErrors     prometheus.Counter
	// instancesSent counts the instances in sent records (each record's
	// WriterData is its instance count, or a *pooledValue holding it, or
	// the *lineSlab holding its value: one log entry).
	instancesSent prometheus.Counter
	failing       atomic.Int32 // lanes whose last write failed

	lastDropLog atomic.Int64 // unix nanos of the last dropped record logged as a warning
}

// lane is one writer goroutine with its own buffer, so with several lanes
// several produce requests (per partition) are in flight at once: a lane
// writes one batch at a time per partition. Records of one key always take
// the same lane, where they stay in order; records without a key take the
// lanes in turn.
type lane struct {
	buf   []kafkago.Message // oldest first; under handler.mu
	bytes int64             // of buf; under handler.mu
	// spare is an emptied array of a delivered write's records, buf's
	// next array: a lane that writes its whole buffer each time swaps
	// two arrays instead of growing a new one per write. Under handler.mu.
	spare []kafkago.Message
	wake  chan struct{} // records were added
}

func newHandler(_ context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
	set = handlerkit.Defaults(set)
	c, err := handlerkit.Params[Config](Name, cfg)
	if err != nil {
		return nil, err
	}
	h := &handler{
		name:        set.Name,
		log:         set.Logger,
		now:         set.Now,
		topic:       c.Topic,
		encode:      newEncoder(c.Encoding),
		jsonLines:   c.Encoding == EncodingJSON,
		otlpBatch:   c.OTLPBatch,
		bufferSize:  c.BufferSize,
		bufferBytes: c.BufferBytes,
		batchBytes:  c.BatchBytes,
		take:        min(c.BatchSize*maxBatches, c.BufferSize),
		takeBytes:   max(c.BatchBytes*maxBatches, c.BatchBytes),
		linger:      c.Linger,
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	if c.Key != "" {
		if h.key, err = compileKey(c.Key); err != nil {
			return nil, fmt.Errorf("%s: key: %w", Name, err)
		}
	}
	if err := h.registerMetrics(set.Registerer); err != nil {
		return nil, err
	}
	transport := &kafkago.Transport{ClientID: "sidemix", DialTimeout: 5 * time.Second, MetadataTTL: 10 * time.Second}
	if c.TLS.Enabled {
		if transport.TLS, err = c.TLS.Config(); err != nil {
			return nil, fmt.Errorf("%s: tls: %w", Name, err)
		}
	} else {
		transport.Dial = dialRequestConns((&net.Dialer{Timeout: transport.DialTimeout}).DialContext)
	}
	if c.SASL.Mechanism != "" {
		if transport.SASL, err = mechanism(c.SASL); err != nil {
			return nil, fmt.Errorf("%s: sasl: %w", Name, err)
		}
	}
	h.transport = transport
	h.client = &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Transport: transport, Timeout: c.WriteTimeout}
	h.acks = requiredAcks[c.RequiredAcks]
	h.compression = compressions[c.Compression]
	h.batchSize = c.BatchSize
	h.writeTimeout = c.WriteTimeout
	h.autoCreate = c.AllowAutoTopicCreation
	h.ctx, h.cancel = context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range c.MaxInFlight {
		l := &lane{wake: make(chan struct{}, 1)}
		h.lanes = append(h.lanes, l)
		wg.Go(func() { h.run(l) })
	}
	go func() {
		wg.Wait()
		close(h.done)
	}()
	set.Logger.Info("writing records to kafka", "brokers", c.Brokers, "topic", c.Topic, "encoding", c.Encoding, "maxInFlight", c.MaxInFlight)
	return h, nil
}

func mechanism(s SASL) (sasl.Mechanism, error) {
	switch s.Mechanism {
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
	return nil, fmt.Errorf("unknown mechanism %q", s.Mechanism)
}

func (h *handler) registerMetrics(r prometheus.Registerer) error {
	buffered, err := handlerkit.Register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sidemix_kafka_buffered_records",
		Help: "Records kafka handlers hold that Kafka has not acknowledged yet.",
	}, []string{"handler"}))
	if err != nil {
		return err
	}
	records, err := handlerkit.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_kafka_records_total",
		Help: "Records of kafka handlers by outcome: sent, or the reason they were dropped.",
	}, []string{"handler", "result"}))
	if err != nil {
		return err
	}
	errs, err := handlerkit.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_kafka_write_errors_total",
		Help: "Writes of kafka handlers that failed and were retried after a backoff.",
	}, []string{"handler"}))
	if err != nil {
		return err
	}
	keyErrors, err := handlerkit.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_kafka_key_errors_total",
		Help: "Records kafka handlers sent without a key because the key expression failed.",
	}, []string{"handler"}))
	if err != nil {
		return err
	}
	instances, err := handlerkit.Register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sidemix_kafka_instances_sent_total",
		Help: "Instances (log entries, spans) in the records kafka handlers sent: with otlp_proto one record may hold many.",
	}, []string{"handler"}))
	if err != nil {
		return err
	}
	bufferedBytes, err := handlerkit.Register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sidemix_kafka_buffered_bytes",
		Help: "Bytes (keys, values, framing) of the records kafka handlers hold that Kafka has not acknowledged yet.",
	}, []string{"handler"}))
	if err != nil {
		return err
	}
	h.instancesSent = instances.WithLabelValues(h.name)
	h.buffered = buffered.WithLabelValues(h.name)
	h.bufferedBytes = bufferedBytes.WithLabelValues(h.name)
	h.records = records
	h.errs = errs.WithLabelValues(h.name)
	h.keyErrors = keyErrors.WithLabelValues(h.name)
	for _, res := range []string{resultSent, resultBufferFull, resultTooLarge} {
		records.WithLabelValues(h.name, res) // visible at 0 before the first event
	}
	return nil
}

func (h *handler) count(result string, n int) {
	if n > 0 {
		h.records.WithLabelValues(h.name, result).Add(float64(n))
	}
}

// ReportReleasesBatch says Report keeps nothing of the slice it is
// handed (adapters.BatchReleaser).
func (h *handler) ReportReleasesBatch() {}

// Report encodes each instance into a record and buffers it in its lane;
// it never waits for Kafka. Records that do not fit the buffer (bufferSize
// records, bufferBytes bytes) are dropped and counted.
func (h *handler) Report(_ context.Context, insts []template.Instance) error {
	now := h.now()
	var msgs []kafkago.Message
	if h.otlpBatch {
		msgs = h.otlpRecords(insts, now)
	} else {
		scratch := reportScratch.Get().(*[]kafkago.Message)
		defer func() {
			clear(msgs) // the pool must not keep values alive
			*scratch = msgs[:0]
			reportScratch.Put(scratch)
		}()
		msgs = (*scratch)[:0]
		var last lastKey
		// One writer for the report's log entries, which are encoded
		// after the one before (of the request before).
		var lines *lineWriter
		if h.jsonLines {
			lines = h.writers.get()
			defer h.writers.put(lines)
		}
		for _, inst := range insts {
			if m, ok := h.record(inst, now, &last, lines); ok {
				msgs = append(msgs, m)
			}
		}
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return fmt.Errorf("%s: handler %s is closed", Name, h.name)
	}
	full, added := 0, 0
	var bytes int64
	var woken uint64 // lanes given records (at most 64)
	var prevKey []byte
	prevLane := 0
	for _, m := range msgs {
		size := recordSize(m)
		if h.held >= h.bufferSize || h.heldBytes+size > h.bufferBytes {
			full++
			releaseValues(m)
			continue
		}
		i := prevLane
		if len(m.Key) == 0 || len(m.Key) != len(prevKey) || &m.Key[0] != &prevKey[0] {
			// not the previous record's key (whose bytes records of one
			// key share, see lastKey)
			i = h.laneOf(m)
			prevKey, prevLane = m.Key, i
		}
		h.lanes[i].buf = append(h.lanes[i].buf, m)
		h.lanes[i].bytes += size
		h.held++
		h.heldBytes += size
		added++
		bytes += size
		woken |= 1 << i
	}
	h.buffered.Add(float64(added))
	h.bufferedBytes.Add(float64(bytes))
	h.mu.Unlock()
	h.count(resultBufferFull, full)
	for i, l := range h.lanes {
		if woken&(1<<i) != 0 {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// reportScratch holds the records of a Report until they are in their
// lanes.
var reportScratch = sync.Pool{New: func() any { return new([]kafkago.Message) }}

// laneOf picks m's lane: by its key's hash (32-bit FNV-1a), so one key's
// records stay in order, or in turn for records without a key. h.mu is
// held.
func (h *handler) laneOf(m kafkago.Message) int {
	n := len(h.lanes)
	if n == 1 {
		return 0
	}
	if m.Key == nil {
		h.next = (h.next + 1) % n
		return h.next
	}
	hash := uint32(2166136261)
	for _, c := range m.Key {
		hash ^= uint32(c)
		hash *= 16777619
	}
	return int(hash % uint32(n))
}

// recordSize is what a record holds in the buffer: its key and value and
// kafka-go's framing.
func recordSize(m kafkago.Message) int64 {
	return int64(len(m.Key) + len(m.Value) + recordOverhead)
}

func recordsSize(msgs []kafkago.Message) int64 {
	var n int64
	for _, m := range msgs {
		n += recordSize(m)
	}
	return n
}

// record builds inst's record, or counts why it cannot. lines, when not
// nil, writes log entries (encoding json).
func (h *handler) record(inst template.Instance, now time.Time, last *lastKey, lines *lineWriter) (kafkago.Message, bool) {
	if inst == nil {
		h.count(resultWrongTemplate, 1)
		return kafkago.Message{}, false
	}
	var value []byte
	var err error
	var data any // the record's WriterData
	if e, ok := inst.(*template.LogEntry); ok && lines != nil {
		var slab *lineSlab
		value, slab = lines.line(&h.slabs, e, now) // as encodeJSON writes it
		if slab != nil {
			data = slab
		}
	} else {
		value, err = h.encode(inst, now)
	}
	if err != nil {
		if errors.Is(err, errWrongTemplate) {
			h.count(resultWrongTemplate, 1)
		} else {
			h.count(resultEncodeError, 1)
			h.log.Debug("record dropped: cannot encode", "instance", inst.InstanceName(), "error", err)
		}
		return kafkago.Message{}, false
	}
	var key []byte
	if h.key != nil {
		if key, err = h.key.eval(inst, last); err != nil {
			h.keyErrors.Inc()
			h.log.Debug("record sent without a key", "instance", inst.InstanceName(), "key", h.key.text, "error", err)
		}
	}
	if data == nil {
		data = itemsOf(inst)
	}
	m := kafkago.Message{Key: key, Value: value, Time: now, WriterData: data}
	// kafka-go refuses a whole write for one record above batchBytes; its
	// size is the record's key, value and 23 bytes of framing.
	if size := int64(len(key) + len(value) + recordOverhead); size > h.batchBytes {
		h.tooLarge(m, fmt.Errorf("%d bytes, batchBytes is %d", size, h.batchBytes))
		releaseValues(m)
		return kafkago.Message{}, false
	}
	return m, true
}

func (h *handler) tooLarge(m kafkago.Message, err error) {
	h.count(resultTooLarge, 1)
	h.log.Log(context.Background(), h.dropLevel(), "record too large for kafka; dropped", "topic", h.topic, "key", string(m.Key), "bytes", len(m.Value), "error", err)
}

// dropLevel is Warn for the first dropped record in dropLogInterval and
// Debug for the others, so a flood of them does not flood the log; the
// counters have them all.
func (h *handler) dropLevel() slog.Level {
	now := h.now().UnixNano()
	last := h.lastDropLog.Load()
	if now-last >= int64(dropLogInterval) && h.lastDropLog.CompareAndSwap(last, now) {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// run is a lane's writer goroutine: it takes records from the head of the
// lane's buffer and writes them until they are acknowledged or dropped,
// one write at a time, so one key's records keep their order.
//
// A lane lingers: it starts a write at most once per linger, unless it
// holds a whole write's worth (take records or takeBytes), so that under
// load the records reported while a write is in flight or within linger
// of its start go together into the next one; a record that comes to a
// lane idle for linger or longer is written at once. Waiting for every
// write (as kafka-go's BatchTimeout did) would only add a wake-up per
// write when records come slower than linger, each one too late to share
// it: at 40,000 spans/s that was a quarter of the mixer's CPU.
func (h *handler) run(l *lane) {
	var last time.Time // when the lane's last write started
	var timer *time.Timer
	stopping := false
	for {
		if !h.hasRecords(l) {
			if stopping {
				return
			}
			select {
			case <-l.wake:
			case <-h.stop:
				stopping = true
			}
			continue
		}
		if wait := h.linger - time.Since(last); wait > 0 && !stopping && !h.fullWrite(l) {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-l.wake: // see whether the lane now holds a whole write
				timer.Stop()
				continue
			case <-h.stop:
				timer.Stop()
				stopping = true
			}
		}
		msgs := h.takeBatch(l)
		if msgs == nil {
			continue
		}
		last = time.Now()
		sent, failed := h.deliver(msgs)
		if !sent {
			return // Close gave up
		}
		if !failed {
			// After a failed write kafka-go's connection may still read
			// the records while it gives up (see pooledValue.keep): the
			// array is left to the garbage collector then.
			h.recycle(l, msgs)
		}
	}
}

// hasRecords reports whether l's buffer holds records.
func (h *handler) hasRecords(l *lane) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(l.buf) > 0
}

// fullWrite reports whether l's buffer holds a whole write's worth.
func (h *handler) fullWrite(l *lane) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(l.buf) >= h.take || l.bytes >= h.takeBytes
}

// takeBatch moves up to h.take records (h.takeBytes bytes, at least one
// record) from l's buffer to in flight.
func (h *handler) takeBatch(l *lane) []kafkago.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(l.buf) == 0 {
		return nil
	}
	n, bytes := 0, int64(0)
	for n < len(l.buf) && n < h.take {
		size := recordSize(l.buf[n])
		if n > 0 && bytes+size > h.takeBytes {
			break
		}
		bytes += size
		n++
	}
	l.bytes -= bytes
	if n == len(l.buf) {
		msgs := l.buf
		l.buf, l.spare = l.spare, nil
		return msgs
	}
	msgs := make([]kafkago.Message, n)
	copy(msgs, l.buf)
	clear(l.buf[:n]) // the buffer's array must not keep the values alive
	l.buf = l.buf[n:]
	return msgs
}

// maxSpare bounds the arrays lanes keep for their next records.
const maxSpare = 4096

// recycle keeps the array of msgs, delivered, as l's buffer when it has
// none, else as its spare.
func (h *handler) recycle(l *lane, msgs []kafkago.Message) {
	if cap(msgs) > maxSpare {
		return
	}
	clear(msgs) // the array must not keep the values alive
	h.mu.Lock()
	switch {
	case l.buf == nil:
		// takeBatch emptied the buffer without a spare (this array was
		// in flight) and no record came since: the buffer's next array,
		// instead of one grown afresh by the next Report.
		l.buf = msgs[:0]
	case l.spare == nil:
		l.spare = msgs[:0]
	}
	h.mu.Unlock()
}

// settle marks in-flight records done: n of them, bytes in all.
func (h *handler) settle(n int, bytes int64) {
	h.mu.Lock()
	h.held -= n
	h.heldBytes -= bytes
	h.buffered.Sub(float64(n))
	h.bufferedBytes.Sub(float64(bytes))
	h.mu.Unlock()
}

// deliver writes msgs, retrying the records that failed for a reason that
// can pass, with backoff, until all are sent or dropped. It returns sent
// false when Close gave up, after counting what was left, and failed when
// a write failed.
func (h *handler) deliver(msgs []kafkago.Message) (sent, failed bool) {
	attempt := 0
	failing := false
	for len(msgs) > 0 {
		if h.ctx.Err() != nil {
			h.count(resultShutdown, len(msgs))
			h.settle(len(msgs), recordsSize(msgs))
			return false, true
		}
		retry, err := h.write(msgs)
		h.settle(len(msgs)-len(retry), recordsSize(msgs)-recordsSize(retry))
		msgs = retry
		if err == nil || len(msgs) == 0 {
			if failing {
				failing = false
				if h.failing.Add(-1) == 0 {
					h.log.Info("kafka writes succeed again", "topic", h.topic)
				}
			}
			attempt = 0
			continue
		}
		h.errs.Inc()
		failed = true
		if !failing {
			failing = true
			if h.failing.Add(1) == 1 {
				h.log.Warn("kafka write failed; records stay buffered and are retried", "topic", h.topic, "records", len(msgs), "error", err)
			}
		} else {
			h.log.Debug("kafka write failed again", "records", len(msgs), "error", err)
		}
		delay := min(retryMin<<min(attempt, 10), retryMax)
		delay = delay/2 + rand.N(delay/2+1)
		attempt++
		select {
		case <-time.After(delay):
		case <-h.ctx.Done():
		}
	}
	return true, failed
}

// isTooLarge reports whether the broker refused a batch for its size.
func isTooLarge(err error) bool {
	return errors.Is(err, kafkago.MessageSizeTooLarge) || errors.Is(err, kafkago.RecordListTooLarge)
}

// isRecordError reports whether the broker refused the records themselves,
// so that writing them again cannot succeed.
func isRecordError(err error) bool {
	return errors.Is(err, kafkago.InvalidMessage) || errors.Is(err, kafkago.InvalidTimestamp) ||
		errors.Is(err, kafkago.InvalidRecord) || errors.Is(err, kafkago.UnsupportedForMessageFormat)
}

// Close stops taking records and delivers what is buffered until ctx ends;
// what is left then is dropped and counted as shutdown.
func (h *handler) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	close(h.stop)
	var err error
	select {
	case <-h.done:
	case <-ctx.Done():
		h.cancel()
		<-h.done
		err = fmt.Errorf("%s: handler %s: records left undelivered: %w", Name, h.name, ctx.Err())
	}
	h.cancel()
	h.mu.Lock()
	left, bytes := 0, int64(0)
	for _, l := range h.lanes {
		left += len(l.buf)
		bytes += recordsSize(l.buf)
		releaseValues(l.buf...) // never given to kafka-go
		l.buf, l.bytes = nil, 0
	}
	h.held -= left
	h.heldBytes -= bytes
	h.buffered.Sub(float64(left))
	h.bufferedBytes.Sub(float64(bytes))
	h.mu.Unlock()
	h.count(resultShutdown, left)
	// The lanes have exited; no request of theirs is in flight.
	h.transport.CloseIdleConnections()
	return err
}

// sentInstances counts the instances the records hold.
func (h *handler) sentInstances(msgs ...kafkago.Message) {
	n := 0
	for _, m := range msgs {
		n += itemsIn(m)
	}
	h.instancesSent.Add(float64(n))
}
