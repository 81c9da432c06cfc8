package attribute

import (
	"errors"
	"fmt"
	"iter"
	"strings"
	"unicode/utf8"

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
	// check: apply only checks the message and sets nothing.
	check bool
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

// add appends e to bl's entries, unless the table only checks.
func (t *wordTable) add(bl *Builder, e entry) {
	if !t.check {
		bl.entries = append(bl.entries, e)
	}
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
		var mv map[string]string
		if !t.check {
			mv = make(map[string]string, len(sm.GetKeys()))
		}
		for j, ki := range sm.GetKeys() {
			k, err := t.word(ki)
			if err != nil {
				return err
			}
			v, err := t.word(sm.GetValues()[j])
			if err != nil {
				return err
			}
			if mv != nil {
				mv[k] = v
			}
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
	var delta Builder // one bag's changes, reused across the batch
	for i := range req.GetAttributes() {
		if err := d.batchDelta(req, i, &delta, true); err != nil {
			return nil, err
		}
	}
	return func(yield func(*Bag, []string) bool) {
		var prev *Bag
		var delta Builder
		var spare [2]Bag // with reuse, a bag is decoded into the spare prev is not
		var changed []string
		var at []int // where each change goes in prev (setInPlace)
		for i := range req.GetAttributes() {
			if d.batchDelta(req, i, &delta, false) != nil {
				return // checked above: the request did not change
			}
			changed = changed[:0]
			for j := range delta.entries {
				changed = append(changed, delta.entries[j].name)
			}
			if reuse && prev != nil {
				var ok bool
				if at, ok = setInPlace(prev, delta.entries, at); ok {
					if !yield(prev, changed) {
						return
					}
					continue
				}
			}
			var into *Bag
			if reuse {
				into = &spare[0]
				if prev == into {
					into = &spare[1]
				}
			}
			prev = mergeDelta(prev, delta.entries, into)
			if !yield(prev, changed) {
				return
			}
		}
	}, nil
}

// batchDelta decodes the changes of bag i of req into delta; with check,
// only checks them (delta is left empty).
func (d *Dictionary) batchDelta(req *mixerv1.ReportRequest, i int, delta *Builder, check bool) error {
	m := req.GetAttributes()[i]
	if m == nil {
		return malformed("bag %d is missing", i)
	}
	words := req.GetDefaultWords()
	if len(m.Words) > 0 {
		words = m.Words
	}
	t, err := d.table(req.GetGlobalWordCount(), words)
	if err != nil {
		return err
	}
	t.check = check
	delta.entries = delta.entries[:0]
	if err := t.apply(delta, m); err != nil {
		return fmt.Errorf("bag %d: %w", i, err)
	}
	return nil
}

// setInPlace sets the changes in delta in prev itself when they only
// change values of attributes prev has (no attribute comes or goes, the
// common case: a request's id, path, sizes and times): no entry moves, and
// delta need not be sorted. at holds, by change, where its name was in the
// last call (the deltas of a batch mostly name the same attributes in the
// same order); it is returned for the next call. ok false: prev is
// unchanged, mergeDelta must make the bag.
func setInPlace(prev *Bag, delta []entry, at []int) ([]int, bool) {
	es := prev.entries
	for j := range delta {
		d := &delta[j]
		if d.value.kind == KindInvalid {
			return at, false // a deletion
		}
		if j < len(at) && at[j] < len(es) && es[at[j]].name == d.name {
			continue
		}
		_, found, pos := prev.GetHinted(d.name, -1)
		if !found {
			return at, false // a new attribute
		}
		if j < len(at) {
			at[j] = pos
		} else {
			at = append(at, pos)
		}
	}
	// In order: a later change of the same name wins.
	for j := range delta {
		es[at[j]].value = delta[j].value
	}
	return at, true
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
