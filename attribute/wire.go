package attribute

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"strings"
	"unicode/utf8"
	"unsafe"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

// commonValues are frequent attribute values and map keys; in the global
// dictionary they follow the first namesBeforeValues standard names. The
// list is frozen: a value added here would move the index of every name
// appended to the vocabulary since; a new frequent value travels as a
// per-message word instead.
var commonValues = []string{
	// context.protocol, request.scheme
	"http", "https", "grpc", "tcp", "http2",
	// context.reporter.kind
	"inbound", "outbound",
	// request.method
	"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT",
	// request headers
	":authority", ":path", ":method", ":scheme", "host", "user-agent", "accept", "accept-encoding",
	"accept-language", "content-type", "content-length", "x-request-id", "x-forwarded-for",
	"x-forwarded-proto", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled",
	"b3", "traceparent", "tracestate", "authorization", "cookie", "connection", "date", "server",
	"cache-control", "te", "grpc-status", "grpc-message", "grpc-timeout", "x-envoy-upstream-service-time",
	// header values
	"application/json", "application/grpc", "text/plain", "text/html", "gzip", "*/*", "keep-alive", "close",
	// response.grpc_status, response flags and misc.
	"0", "-", "unknown", "true", "false", "default",
	// source.labels / destination.labels keys
	"app", "version", "v1", "v2",
}

// Dictionary is the global word list proxy and mixer share. It is versioned
// by its length: words are only ever appended, so a peer that knows N words
// agrees with every newer peer on the first N.
type Dictionary struct {
	words []string
	index map[string]int32
}

// NewDictionary builds a dictionary from words (duplicates keep their first
// index).
func NewDictionary(words []string) *Dictionary {
	d := &Dictionary{words: words, index: make(map[string]int32, len(words))}
	for i, w := range words {
		if _, dup := d.index[w]; !dup {
			d.index[w] = int32(i)
		}
	}
	return d
}

// namesBeforeValues is how many standard names precede commonValues in the
// global dictionary: the names the vocabulary had when the layout was fixed.
// Names appended to the vocabulary since come after commonValues, so every
// word keeps its index and an older peer's shorter dictionary stays a prefix
// of a newer one's (testdata/dictionary.txt pins the layout).
const namesBeforeValues = 61

var defaultDictionary = func() *Dictionary {
	words := make([]string, 0, len(standard)+len(commonValues))
	for _, a := range standard[:namesBeforeValues] {
		words = append(words, a.name)
	}
	words = append(words, commonValues...)
	for _, a := range standard[namesBeforeValues:] {
		words = append(words, a.name)
	}
	return NewDictionary(words)
}()

// DefaultDictionary is the built-in global dictionary: the standard attribute
// names followed by common values.
func DefaultDictionary() *Dictionary { return defaultDictionary }

// Len is the dictionary's word count: its version.
func (d *Dictionary) Len() int { return len(d.words) }

// Words returns the words; callers must not change them.
func (d *Dictionary) Words() []string { return d.words }

// Errors of decoding. Every malformed message yields an error wrapping
// ErrMalformed; none panics.
var (
	ErrMalformed       = errors.New("malformed attributes")
	ErrDictionaryNewer = errors.New("client dictionary is newer than the mixer's")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// wordTable resolves indices of one message: globals below count, message
// words by negative index.
type wordTable struct {
	global []string
	local  []string
}

func (d *Dictionary) table(globalWordCount uint32, local []string) (wordTable, error) {
	if int64(globalWordCount) > int64(len(d.words)) {
		return wordTable{}, fmt.Errorf("%w: client knows %d words, mixer %d", ErrDictionaryNewer, globalWordCount, len(d.words))
	}
	return wordTable{global: d.words[:globalWordCount], local: local}, nil
}

func (t *wordTable) word(i int32) (string, error) {
	if i >= 0 {
		if int(i) < len(t.global) {
			return t.global[i], nil
		}
		return "", malformed("word %d outside the global dictionary of %d words", i, len(t.global))
	}
	j := -int64(i) - 1
	if j < int64(len(t.local)) {
		return t.local[j], nil
	}
	return "", malformed("word %d outside the message's %d words", i, len(t.local))
}

// Decode turns one compressed bag into a Bag.
func (d *Dictionary) Decode(msg *mixerv1.CompressedAttributes, globalWordCount uint32) (*Bag, error) {
	t, err := d.table(globalWordCount, msg.GetWords())
	if err != nil {
		return nil, err
	}
	bl := Builder{entries: make([]entry, 0, decodedLen(msg))}
	if err := t.apply(&bl, msg); err != nil {
		return nil, err
	}
	return bl.Build(), nil
}

func decodedLen(m *mixerv1.CompressedAttributes) int {
	return len(m.StringNames) + len(m.Int64Names) + len(m.DoubleNames) + len(m.BoolNames) +
		len(m.TimestampNames) + len(m.DurationNames) + len(m.BytesNames) + len(m.StringMapNames)
}

// add appends e to bl's entries.
func (t *wordTable) add(bl *Builder, e entry) {
	bl.entries = append(bl.entries, e)
}

// apply sets the attributes msg carries (and deletes those it lists) in bl.
func (t *wordTable) apply(bl *Builder, m *mixerv1.CompressedAttributes) error {
	bl.sorted = false
	if len(m.StringNames) != len(m.StringValues) {
		return malformed("%d string names but %d values", len(m.StringNames), len(m.StringValues))
	}
	for i, ni := range m.StringNames {
		name, err := t.word(ni)
		if err != nil {
			return err
		}
		s, err := t.word(m.StringValues[i])
		if err != nil {
			return err
		}
		t.add(bl, entry{name, Value{kind: KindString, s: s}})
	}
	if err := setNumbers(t, bl, m.Int64Names, m.Int64Values, KindInt64, "int64"); err != nil {
		return err
	}
	if len(m.DoubleNames) != len(m.DoubleValues) {
		return malformed("%d double names but %d values", len(m.DoubleNames), len(m.DoubleValues))
	}
	for i, ni := range m.DoubleNames {
		name, err := t.word(ni)
		if err != nil {
			return err
		}
		t.add(bl, entry{name, DoubleValue(m.DoubleValues[i])})
	}
	if len(m.BoolNames) != len(m.BoolValues) {
		return malformed("%d bool names but %d values", len(m.BoolNames), len(m.BoolValues))
	}
	for i, ni := range m.BoolNames {
		name, err := t.word(ni)
		if err != nil {
			return err
		}
		t.add(bl, entry{name, BoolValue(m.BoolValues[i])})
	}
	if err := setNumbers(t, bl, m.TimestampNames, m.TimestampValues, KindTimestamp, "timestamp"); err != nil {
		return err
	}
	if err := setNumbers(t, bl, m.DurationNames, m.DurationValues, KindDuration, "duration"); err != nil {
		return err
	}
	if len(m.BytesNames) != len(m.BytesValues) {
		return malformed("%d bytes names but %d values", len(m.BytesNames), len(m.BytesValues))
	}
	for i, ni := range m.BytesNames {
		name, err := t.word(ni)
		if err != nil {
			return err
		}
		t.add(bl, entry{name, BytesValue(m.BytesValues[i])})
	}
	if len(m.StringMapNames) != len(m.StringMapValues) {
		return malformed("%d map names but %d values", len(m.StringMapNames), len(m.StringMapValues))
	}
	for i, ni := range m.StringMapNames {
		name, err := t.word(ni)
		if err != nil {
			return err
		}
		sm := m.StringMapValues[i]
		if len(sm.GetKeys()) != len(sm.GetValues()) {
			return malformed("map %q has %d keys but %d values", name, len(sm.GetKeys()), len(sm.GetValues()))
		}
		mv := make(map[string]string, len(sm.GetKeys()))
		for j, ki := range sm.GetKeys() {
			k, err := t.word(ki)
			if err != nil {
				return err
			}
			v, err := t.word(sm.GetValues()[j])
			if err != nil {
				return err
			}
			mv[k] = v
		}
		t.add(bl, entry{name, StringMapValue(mv)})
	}
	for _, ni := range m.Deleted {
		name, err := t.word(ni)
		if err != nil {
			return err
		}
		t.add(bl, entry{name, Value{}})
	}
	return nil
}

func setNumbers(t *wordTable, bl *Builder, names []int32, values []int64, k Kind, what string) error {
	if len(names) != len(values) {
		return malformed("%d %s names but %d values", len(names), what, len(values))
	}
	for i, ni := range names {
		name, err := t.word(ni)
		if err != nil {
			return err
		}
		t.add(bl, entry{name, Value{kind: k, n: values[i]}})
	}
	return nil
}

// Encoder compresses bags against a dictionary. Words not in the dictionary
// become message words; an Encoder reused across a batch shares them. An
// Encoder is not safe for concurrent use.
type Encoder struct {
	dict  *Dictionary
	local map[string]int32
	words []string
}

// NewEncoder returns an encoder for the dictionary.
func NewEncoder(d *Dictionary) *Encoder {
	return &Encoder{dict: d, local: make(map[string]int32)}
}

// Reset forgets the message words, to start a new message.
func (e *Encoder) Reset() {
	clear(e.local)
	e.words = nil
}

// Words returns the message words collected since the last Reset.
func (e *Encoder) Words() []string { return e.words }

// GlobalWordCount is the dictionary version to send along.
func (e *Encoder) GlobalWordCount() uint32 { return uint32(e.dict.Len()) }

func (e *Encoder) word(s string) int32 {
	if i, ok := e.dict.index[s]; ok {
		return i
	}
	if i, ok := e.local[s]; ok {
		return i
	}
	// Words travel as proto3 strings, which must be UTF-8: one value
	// that is not (a header with obs-text) would make the whole message,
	// a batch of a thousand reports, fail to marshal.
	w := s
	if !utf8.ValidString(w) {
		w = strings.ToValidUTF8(w, "\uFFFD")
	}
	e.words = append(e.words, w)
	i := -int32(len(e.words))
	e.local[s] = i
	return i
}

// Encode compresses bag into a new message whose words are the encoder's
// words so far (call Reset first for a standalone message).
func (e *Encoder) Encode(bag *Bag) *mixerv1.CompressedAttributes {
	out := &mixerv1.CompressedAttributes{}
	bag.Range(func(name string, v Value) bool {
		e.put(out, name, v)
		return true
	})
	out.Words = e.words
	return out
}

// EncodeDelta compresses only what changed from prev to bag: changed or new
// attributes, and the names bag no longer has in Deleted. The message does
// not carry words: the batch does.
func (e *Encoder) EncodeDelta(prev, bag *Bag) *mixerv1.CompressedAttributes {
	out := &mixerv1.CompressedAttributes{}
	var pe []entry
	if prev != nil {
		pe = prev.entries
	}
	var be []entry
	if bag != nil {
		be = bag.entries
	}
	i, j := 0, 0
	for i < len(pe) || j < len(be) {
		switch {
		case j == len(be) || (i < len(pe) && pe[i].name < be[j].name):
			out.Deleted = append(out.Deleted, e.word(pe[i].name))
			i++
		case i == len(pe) || be[j].name < pe[i].name:
			e.put(out, be[j].name, be[j].value)
			j++
		default:
			if !pe[i].value.Equal(be[j].value) {
				e.put(out, be[j].name, be[j].value)
			}
			i++
			j++
		}
	}
	return out
}

func (e *Encoder) put(out *mixerv1.CompressedAttributes, name string, v Value) {
	ni := e.word(name)
	switch v.kind {
	case KindString:
		out.StringNames = append(out.StringNames, ni)
		out.StringValues = append(out.StringValues, e.word(v.s))
	case KindInt64:
		out.Int64Names = append(out.Int64Names, ni)
		out.Int64Values = append(out.Int64Values, v.n)
	case KindDouble:
		out.DoubleNames = append(out.DoubleNames, ni)
		out.DoubleValues = append(out.DoubleValues, v.Double())
	case KindBool:
		out.BoolNames = append(out.BoolNames, ni)
		out.BoolValues = append(out.BoolValues, v.n != 0)
	case KindTimestamp:
		out.TimestampNames = append(out.TimestampNames, ni)
		out.TimestampValues = append(out.TimestampValues, v.n)
	case KindDuration:
		out.DurationNames = append(out.DurationNames, ni)
		out.DurationValues = append(out.DurationValues, v.n)
	case KindBytes:
		out.BytesNames = append(out.BytesNames, ni)
		out.BytesValues = append(out.BytesValues, v.Bytes())
	case KindStringMap:
		sm := &mixerv1.StringMap{Keys: make([]int32, 0, len(v.m)), Values: make([]int32, 0, len(v.m))}
		for k, x := range v.m {
			sm.Keys = append(sm.Keys, e.word(k))
			sm.Values = append(sm.Values, e.word(x))
		}
		out.StringMapNames = append(out.StringMapNames, ni)
		out.StringMapValues = append(out.StringMapValues, sm)
	}
}

// EncodeBatch builds a report batch: each bag a delta against the one before
// it, all sharing the batch's words.
func (e *Encoder) EncodeBatch(bags []*Bag) *mixerv1.ReportRequest {
	e.Reset()
	req := &mixerv1.ReportRequest{
		Attributes:      make([]*mixerv1.CompressedAttributes, len(bags)),
		GlobalWordCount: e.GlobalWordCount(),
	}
	var prev *Bag
	for i, b := range bags {
		req.Attributes[i] = e.EncodeDelta(prev, b)
		prev = b
	}
	req.DefaultWords = e.words
	e.Reset()
	return req
}

// DecodeBatch undoes EncodeBatch. A bag that carries its own words uses them
// instead of the batch's.
func (d *Dictionary) DecodeBatch(req *mixerv1.ReportRequest) ([]*Bag, error) {
	bags := make([]*Bag, 0, len(req.GetAttributes()))
	seq, err := d.DecodeBatchSeq(req, false)
	if err != nil {
		return nil, err
	}
	for b := range seq {
		bags = append(bags, b)
	}
	return bags, nil
}

// DecodeBatchSeq is DecodeBatch for a caller that uses one bag at a time:
// it checks the whole batch first (an error means no bag is given), then
// yields the bags in order, each decoded when the iteration reaches it. A
// batch of 1000 bags decoded at once is megabytes, which the CPU's caches
// no longer hold by the time the first bags are used.
//
// With reuse, a yielded bag is valid only until the iteration continues:
// the next bags are decoded into its memory, so the batch costs two bags'
// worth instead of one per bag. The caller must not keep it, nor anything
// that refers to it (values read from it, such as strings and maps, stay
// valid).
func (d *Dictionary) DecodeBatchSeq(req *mixerv1.ReportRequest, reuse bool) (iter.Seq[*Bag], error) {
	seq, err := d.DecodeBatchChanges(req, reuse)
	if err != nil {
		return nil, err
	}
	return func(yield func(*Bag) bool) {
		for b := range seq {
			if !yield(b) {
				return
			}
		}
	}, nil
}

// DecodeBatchChanges is DecodeBatchSeq that also yields, with each bag
// after the first, the names of the attributes the batch's delta set or
// deleted: every attribute whose presence or value differs from the bag
// yielded before it is among them (an attribute the sender sent again
// unchanged may be too). The first bag's list names all it holds. The
// list is valid only until the iteration continues.
func (d *Dictionary) DecodeBatchChanges(req *mixerv1.ReportRequest, reuse bool) (iter.Seq2[*Bag, []string], error) {
	if err := d.checkBatch(req); err != nil {
		return nil, err
	}
	return func(yield func(*Bag, []string) bool) {
		r := newBatchReader(d, req, reuse, nil)
		for i := range req.GetAttributes() {
			if !yield(r.next(i), r.changed) {
				return
			}
		}
	}, nil
}

// Changes is what DecodeBatchChecked says of a bag besides the bag.
type Changes struct {
	// Names are the attributes the bag's delta set or deleted, as
	// DecodeBatchChanges yields them; valid only until the iteration
	// continues.
	Names []string
	// Err is nil when the bag passes the manifest's CheckBag, otherwise
	// an error naming an attribute of the bag with a value of another
	// kind than declared.
	Err error
}

// DecodeBatchChecked is DecodeBatchChanges with reuse for a receiver that
// checks every bag against m and evaluates only those that pass, as the
// mixer's Report does: each bag comes with the names of what it changed
// and the result of its check. After a bag that passed, only the changes
// are checked (as CheckChanged would), and while decoding: a change's
// declared kind is looked up once per batch position, not per bag.
func (d *Dictionary) DecodeBatchChecked(req *mixerv1.ReportRequest, m *Manifest) (iter.Seq2[*Bag, Changes], error) {
	if err := d.checkBatch(req); err != nil {
		return nil, err
	}
	return func(yield func(*Bag, Changes) bool) {
		r := newBatchReader(d, req, true, m)
		for i := range req.GetAttributes() {
			b := r.next(i)
			if !yield(b, Changes{Names: r.changed, Err: r.err}) {
				return
			}
		}
	}, nil
}

// checkBatch checks every bag of req, so that decoding it cannot fail.
func (d *Dictionary) checkBatch(req *mixerv1.ReportRequest) error {
	shared, err := d.table(req.GetGlobalWordCount(), req.GetDefaultWords())
	if err != nil {
		return err
	}
	for i, m := range req.GetAttributes() {
		if m == nil {
			return malformed("bag %d is missing", i)
		}
		t := shared
		if len(m.Words) > 0 {
			t.local = m.Words
		}
		if err := t.validate(m); err != nil {
			return fmt.Errorf("bag %d: %w", i, err)
		}
	}
	return nil
}

// validate checks what apply would: that names and values pair up and
// every word index is in the table. It resolves no word.
func (t *wordTable) validate(m *mixerv1.CompressedAttributes) error {
	if err := t.validateIndices(m.StringNames, len(m.StringValues), "string"); err != nil {
		return err
	}
	if err := t.validateIndices(m.StringValues, -1, ""); err != nil {
		return err
	}
	if err := t.validateIndices(m.Int64Names, len(m.Int64Values), "int64"); err != nil {
		return err
	}
	if err := t.validateIndices(m.DoubleNames, len(m.DoubleValues), "double"); err != nil {
		return err
	}
	if err := t.validateIndices(m.BoolNames, len(m.BoolValues), "bool"); err != nil {
		return err
	}
	if err := t.validateIndices(m.TimestampNames, len(m.TimestampValues), "timestamp"); err != nil {
		return err
	}
	if err := t.validateIndices(m.DurationNames, len(m.DurationValues), "duration"); err != nil {
		return err
	}
	if err := t.validateIndices(m.BytesNames, len(m.BytesValues), "bytes"); err != nil {
		return err
	}
	if err := t.validateIndices(m.StringMapNames, len(m.StringMapValues), "map"); err != nil {
		return err
	}
	for i, sm := range m.StringMapValues {
		if len(sm.GetKeys()) != len(sm.GetValues()) {
			name, _ := t.word(m.StringMapNames[i])
			return malformed("map %q has %d keys but %d values", name, len(sm.GetKeys()), len(sm.GetValues()))
		}
		if err := t.validateIndices(sm.GetKeys(), -1, ""); err != nil {
			return err
		}
		if err := t.validateIndices(sm.GetValues(), -1, ""); err != nil {
			return err
		}
	}
	return t.validateIndices(m.Deleted, -1, "")
}

// validateIndices checks that every index of idx is in the table and,
// unless values is -1, that there are values of them.
func (t *wordTable) validateIndices(idx []int32, values int, what string) error {
	if values >= 0 && len(idx) != values {
		return malformed("%d %s names but %d values", len(idx), what, values)
	}
	lo, hi := -int64(len(t.local)), int64(len(t.global))
	for _, i := range idx {
		if int64(i) < lo || int64(i) >= hi {
			_, err := t.word(i)
			return err
		}
	}
	return nil
}

// at is the word at index i, which validate has checked.
func (t *wordTable) at(i int32) string {
	if i >= 0 {
		return t.global[i]
	}
	return t.local[-int64(i)-1]
}

// batchReader decodes the bags of a checked batch one after the other.
type batchReader struct {
	req    *mixerv1.ReportRequest
	shared wordTable // the table of the bags without words of their own
	reuse  bool
	m      *Manifest // nil: bags are not checked

	prev  *Bag
	delta Builder // one bag's changes, reused across the batch
	spare [2]Bag  // with reuse, a bag is decoded into the spare prev is not

	changed []string
	err     error // the last bag's check against m
	passed  bool  // the last bag passed its check

	// hints are, by position of a change in the bag's message, where its
	// name was in prev and its declared kind: a batch's deltas mostly name
	// the same attributes in the same order, and prev keeps its layout
	// while only values change. A hint holds while gen and words are
	// those it was made with.
	hints []hint
	gen   int32    // counts the layouts prev has had
	words []string // the table's local words the hints were made with
	// inPlace's state: the change being set, and whether all so far had
	// their declared kinds.
	slot    int
	kindsOK bool
}

type hint struct {
	word int32 // the name's word index
	gen  int32
	pos  int32 // where the name is in prev.entries
	kind Kind  // declared kind (KindInvalid: undeclared, or no manifest)
}

// newBatchReader reads req, which checkBatch has checked.
func newBatchReader(d *Dictionary, req *mixerv1.ReportRequest, reuse bool, m *Manifest) *batchReader {
	r := &batchReader{req: req, reuse: reuse, m: m}
	r.shared, _ = d.table(req.GetGlobalWordCount(), req.GetDefaultWords()) // checked
	return r
}

// next decodes bag i. The table and every index are valid (checkBatch).
func (r *batchReader) next(i int) *Bag {
	m := r.req.GetAttributes()[i]
	t := r.shared
	if len(m.Words) > 0 {
		t.local = m.Words
	}
	r.changed = r.changed[:0]
	if r.reuse && r.prev != nil && len(m.Deleted) == 0 {
		if ok, kindsOK := r.inPlace(&t, m); ok {
			r.check(kindsOK)
			return r.prev
		}
		r.changed = r.changed[:0]
	}
	r.delta.entries = r.delta.entries[:0]
	_ = t.apply(&r.delta, m) // checked: cannot fail
	for j := range r.delta.entries {
		r.changed = append(r.changed, r.delta.entries[j].name)
	}
	var into *Bag
	if r.reuse {
		into = &r.spare[0]
		if r.prev == into {
			into = &r.spare[1]
		}
	}
	r.prev = mergeDelta(r.prev, r.delta.entries, into)
	r.gen++
	r.check(false)
	return r.prev
}

// check sets r.err and r.passed for the bag just decoded into r.prev.
// kindsOK: every value the delta set has the declared kind of its name.
func (r *batchReader) check(kindsOK bool) {
	switch {
	case r.m == nil:
		return
	case !r.passed:
		r.err = r.m.CheckBag(r.prev)
	case kindsOK:
		r.err = nil
	default:
		r.err = r.m.CheckChanged(r.prev, r.changed)
	}
	r.passed = r.err == nil
}

// inPlace sets the values m carries in r.prev itself, when it has each of
// their names (the common case: a request's id, path, sizes and times
// change, no attribute comes or goes). No entry moves. ok false: an
// attribute is new, and r.prev may have some of m's values already,
// which a merge of m's changes replaces. kindsOK: each value has its
// name's declared kind.
func (r *batchReader) inPlace(t *wordTable, m *mixerv1.CompressedAttributes) (ok, kindsOK bool) {
	if len(t.local) != len(r.words) || (len(t.local) > 0 && &t.local[0] != &r.words[0]) {
		r.words = t.local
		r.gen++
	}
	r.slot, r.kindsOK = 0, true
	for i, ni := range m.StringNames {
		if !r.set(t, ni, KindString, t.at(m.StringValues[i]), 0, nil) {
			return false, false
		}
	}
	for i, ni := range m.Int64Names {
		if !r.set(t, ni, KindInt64, "", m.Int64Values[i], nil) {
			return false, false
		}
	}
	for i, ni := range m.DoubleNames {
		if !r.set(t, ni, KindDouble, "", int64(math.Float64bits(m.DoubleValues[i])), nil) {
			return false, false
		}
	}
	for i, ni := range m.BoolNames {
		var n int64
		if m.BoolValues[i] {
			n = 1
		}
		if !r.set(t, ni, KindBool, "", n, nil) {
			return false, false
		}
	}
	for i, ni := range m.TimestampNames {
		if !r.set(t, ni, KindTimestamp, "", m.TimestampValues[i], nil) {
			return false, false
		}
	}
	for i, ni := range m.DurationNames {
		if !r.set(t, ni, KindDuration, "", m.DurationValues[i], nil) {
			return false, false
		}
	}
	for i, ni := range m.BytesNames {
		b := m.BytesValues[i]
		if !r.set(t, ni, KindBytes, unsafe.String(unsafe.SliceData(b), len(b)), 0, nil) {
			return false, false
		}
	}
	for i, ni := range m.StringMapNames {
		sm := m.StringMapValues[i]
		mv := make(map[string]string, len(sm.GetKeys()))
		for j, ki := range sm.GetKeys() {
			mv[t.at(ki)] = t.at(sm.GetValues()[j])
		}
		if !r.set(t, ni, KindStringMap, "", 0, mv) {
			return false, false
		}
	}
	return true, r.kindsOK
}

// set is inPlace's write of the value (k, s, n, mv: Value's fields) to
// the attribute named by word ni, the message's change number r.slot;
// false when r.prev lacks it. The value comes in its fields, stored one
// by one: a Value built on the stack and copied whole was read back
// before its parts had reached memory, a stall on every change.
func (r *batchReader) set(t *wordTable, ni int32, k Kind, s string, n int64, mv map[string]string) bool {
	var h *hint
	if r.slot < len(r.hints) {
		h = &r.hints[r.slot]
	} else {
		r.hints = append(r.hints, hint{pos: -1})
		h = &r.hints[r.slot]
	}
	if h.word != ni || h.gen != r.gen {
		name := t.at(ni)
		_, found, pos := r.prev.GetHinted(name, int(h.pos))
		if !found {
			return false
		}
		*h = hint{word: ni, gen: r.gen, pos: int32(pos)}
		if r.m != nil {
			h.kind = r.m.kinds[name] // KindInvalid when undeclared
		}
	}
	e := &r.prev.entries[h.pos]
	e.value.s, e.value.n, e.value.m, e.value.kind = s, n, mv, k
	r.changed = append(r.changed, e.name)
	if h.kind != KindInvalid && h.kind.ValueKind() != k {
		r.kindsOK = false
	}
	r.slot++
	return true
}

// mergeDelta returns prev with the changes in delta (a later entry of a
// name wins; a zero value deletes): the same bag as prev.Builder(), the
// changes set, Build(), without sorting the unchanged attributes again.
// delta is sorted in place. With into (not prev) the bag is made there, in
// its memory; otherwise it is new.
func mergeDelta(prev *Bag, delta []entry, into *Bag) *Bag {
	sortEntries(delta)
	var old []entry
	if prev != nil {
		old = prev.entries
	}
	var out []entry
	if into != nil && cap(into.entries) >= len(old)+len(delta) {
		out = into.entries[:0]
	} else {
		out = make([]entry, 0, len(old)+len(delta))
	}
	i := 0
	for j := 0; j < len(delta); j++ {
		if j+1 < len(delta) && delta[j+1].name == delta[j].name {
			continue // a later change of the same name wins
		}
		d := delta[j]
		for i < len(old) && old[i].name < d.name {
			out = append(out, old[i])
			i++
		}
		if i < len(old) && old[i].name == d.name {
			i++ // replaced or deleted
		}
		if d.value.kind != KindInvalid {
			out = append(out, d)
		}
	}
	out = append(out, old[i:]...)
	if into != nil {
		into.entries = out
		return into
	}
	return &Bag{entries: out}
}
