package attribute

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Value is one attribute value. The zero Value is invalid (absent).
//
// Values are kept small (40 bytes) because bags are sorted and copied on
// every decode: a double lives in n as its IEEE bits, bytes in s.
type Value struct {
	s    string            // string, bytes
	n    int64             // int64, bool (0/1), timestamp (Unix ns), duration (ns), double bits
	m    map[string]string // string map
	kind Kind
}

// StringValue makes a string value.
func StringValue(s string) Value { return Value{kind: KindString, s: s} }

// Int64Value makes an int64 value.
func Int64Value(n int64) Value { return Value{kind: KindInt64, n: n} }

// DoubleValue makes a double value.
func DoubleValue(f float64) Value { return Value{kind: KindDouble, n: int64(math.Float64bits(f))} }

// BoolValue makes a bool value.
func BoolValue(b bool) Value {
	v := Value{kind: KindBool}
	if b {
		v.n = 1
	}
	return v
}

// TimeValue makes a timestamp value (nanosecond precision, UTC).
func TimeValue(t time.Time) Value { return Value{kind: KindTimestamp, n: t.UnixNano()} }

// DurationValue makes a duration value.
func DurationValue(d time.Duration) Value { return Value{kind: KindDuration, n: int64(d)} }

// BytesValue makes a bytes value; the Value keeps b, which must not change.
func BytesValue(b []byte) Value {
	return Value{kind: KindBytes, s: unsafe.String(unsafe.SliceData(b), len(b))}
}

// IPValue makes the value of an IP_ADDRESS attribute: 4 bytes for IPv4, 16
// for IPv6.
func IPValue(ip netip.Addr) Value {
	ip = ip.Unmap()
	return BytesValue(ip.AsSlice())
}

// StringMapValue makes a map value; the Value keeps m, which must not change.
func StringMapValue(m map[string]string) Value { return Value{kind: KindStringMap, m: m} }

// Kind is the value's kind; KindInvalid for the zero Value.
func (v Value) Kind() Kind { return v.kind }

// Str is the string of a string value.
func (v Value) Str() string { return v.s }

// Int64 is the number of an int64 value.
func (v Value) Int64() int64 { return v.n }

// Double is the number of a double value.
func (v Value) Double() float64 { return math.Float64frombits(uint64(v.n)) }

// Bool is the truth of a bool value.
func (v Value) Bool() bool { return v.n != 0 }

// Time is the instant of a timestamp value.
func (v Value) Time() time.Time { return time.Unix(0, v.n).UTC() }

// Duration is the length of a duration value.
func (v Value) Duration() time.Duration { return time.Duration(v.n) }

// Bytes is the content of a bytes value; callers must not change it.
func (v Value) Bytes() []byte {
	if v.kind != KindBytes {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(v.s), len(v.s))
}

// StringMap is the content of a map value; callers must not change it.
func (v Value) StringMap() map[string]string { return v.m }

// Interface returns the value as a native Go value: string, int64, float64,
// bool, time.Time, time.Duration, []byte or map[string]string (nil for the
// zero Value).
func (v Value) Interface() any {
	switch v.kind {
	case KindString:
		return v.s
	case KindInt64:
		return v.n
	case KindDouble:
		return v.Double()
	case KindBool:
		return v.n != 0
	case KindTimestamp:
		return v.Time()
	case KindDuration:
		return time.Duration(v.n)
	case KindBytes:
		return v.Bytes()
	case KindStringMap:
		return v.m
	}
	return nil
}

// Equal reports whether two values have the same kind and content.
func (v Value) Equal(o Value) bool {
	if v.kind != o.kind {
		return false
	}
	switch v.kind {
	case KindString, KindBytes:
		return v.s == o.s
	case KindDouble:
		f, g := v.Double(), o.Double()
		return f == g || (f != f && g != g) // NaN equals NaN here
	case KindStringMap:
		if len(v.m) != len(o.m) {
			return false
		}
		for k, x := range v.m {
			if y, ok := o.m[k]; !ok || x != y {
				return false
			}
		}
		return true
	}
	return v.n == o.n
}

// String renders the value for people: logs, the CLI, debug pages.
func (v Value) String() string {
	switch v.kind {
	case KindString:
		return v.s
	case KindInt64:
		return strconv.FormatInt(v.n, 10)
	case KindDouble:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64)
	case KindBool:
		return strconv.FormatBool(v.n != 0)
	case KindTimestamp:
		return v.Time().Format(time.RFC3339Nano)
	case KindDuration:
		return time.Duration(v.n).String()
	case KindBytes:
		if ip, ok := netip.AddrFromSlice(v.Bytes()); ok {
			return ip.String()
		}
		return fmt.Sprintf("%x", v.s)
	case KindStringMap:
		keys := make([]string, 0, len(v.m))
		for k := range v.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var sb strings.Builder
		sb.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(k)
			sb.WriteByte(':')
			sb.WriteString(v.m[k])
		}
		sb.WriteByte('}')
		return sb.String()
	}
	return "<invalid>"
}

// ParseValue reads the textual form of a value of the given kind, as an
// operator types it on the command line (`-a request.code=200`). Maps are
// written k1:v1;k2:v2.
func ParseValue(k Kind, s string) (Value, error) {
	switch k {
	case KindString:
		return StringValue(s), nil
	case KindInt64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("not an integer: %q", s)
		}
		return Int64Value(n), nil
	case KindDouble:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Value{}, fmt.Errorf("not a number: %q", s)
		}
		return DoubleValue(f), nil
	case KindBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return Value{}, fmt.Errorf("not a bool: %q", s)
		}
		return BoolValue(b), nil
	case KindTimestamp:
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Value{}, fmt.Errorf("not an RFC 3339 time: %q", s)
		}
		return TimeValue(t), nil
	case KindDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return Value{}, fmt.Errorf("not a duration: %q", s)
		}
		return DurationValue(d), nil
	case KindBytes:
		return BytesValue([]byte(s)), nil
	case KindIPAddress:
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return Value{}, fmt.Errorf("not an IP address: %q", s)
		}
		return IPValue(ip), nil
	case KindStringMap:
		m := map[string]string{}
		for _, kv := range strings.Split(s, ";") {
			if kv == "" {
				continue
			}
			key, val, ok := strings.Cut(kv, ":")
			if !ok {
				return Value{}, fmt.Errorf("map entry %q is not key:value", kv)
			}
			m[key] = val
		}
		return StringMapValue(m), nil
	}
	return Value{}, fmt.Errorf("cannot parse a %s value", k)
}

type entry struct {
	name  string
	value Value
}

// Bag is an immutable set of named attribute values. A nil *Bag is empty.
// Lookups are binary searches over names kept sorted, so a bag is one
// allocation however many attributes it holds.
type Bag struct {
	entries []entry
}

// Empty is the bag without attributes.
var Empty = &Bag{}

// Len is the number of attributes.
func (b *Bag) Len() int {
	if b == nil {
		return 0
	}
	return len(b.entries)
}

// Get returns an attribute's value and whether it is present.
func (b *Bag) Get(name string) (Value, bool) {
	if b == nil {
		return Value{}, false
	}
	es := b.entries
	lo, hi := 0, len(es)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if es[m].name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(es) && es[lo].name == name {
		return es[lo].value, true
	}
	return Value{}, false
}

// GetHinted is Get starting at position hint (where the name was in a bag
// of the same shape, such as the previous bag of a report batch): it
// returns the value, whether it is present, and the name's position (or
// -1) for the next call.
func (b *Bag) GetHinted(name string, hint int) (Value, bool, int) {
	if b == nil {
		return Value{}, false, -1
	}
	es := b.entries
	if hint >= 0 && hint < len(es) && es[hint].name == name {
		return es[hint].value, true, hint
	}
	lo, hi := 0, len(es)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if es[m].name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(es) && es[lo].name == name {
		return es[lo].value, true, lo
	}
	return Value{}, false, -1
}

func (b *Bag) typed(name string, k Kind) (Value, bool) {
	v, ok := b.Get(name)
	if !ok || v.kind != k {
		return Value{}, false
	}
	return v, true
}

// String returns a string attribute; false when absent or of another kind.
func (b *Bag) String(name string) (string, bool) {
	v, ok := b.typed(name, KindString)
	return v.s, ok
}

// Int64 returns an int64 attribute; false when absent or of another kind.
func (b *Bag) Int64(name string) (int64, bool) {
	v, ok := b.typed(name, KindInt64)
	return v.n, ok
}

// Double returns a double attribute; false when absent or of another kind.
func (b *Bag) Double(name string) (float64, bool) {
	v, ok := b.typed(name, KindDouble)
	return v.Double(), ok
}

// Bool returns a bool attribute; false when absent or of another kind.
func (b *Bag) Bool(name string) (value, ok bool) {
	v, ok := b.typed(name, KindBool)
	return v.n != 0, ok
}

// Time returns a timestamp attribute; false when absent or of another kind.
func (b *Bag) Time(name string) (time.Time, bool) {
	v, ok := b.typed(name, KindTimestamp)
	if !ok {
		return time.Time{}, false
	}
	return v.Time(), true
}

// Duration returns a duration attribute; false when absent or of another kind.
func (b *Bag) Duration(name string) (time.Duration, bool) {
	v, ok := b.typed(name, KindDuration)
	return time.Duration(v.n), ok
}

// Bytes returns a bytes attribute; false when absent or of another kind.
func (b *Bag) Bytes(name string) ([]byte, bool) {
	v, ok := b.typed(name, KindBytes)
	return v.Bytes(), ok
}

// IP returns an IP_ADDRESS attribute; false when absent or not an address.
func (b *Bag) IP(name string) (netip.Addr, bool) {
	v, ok := b.typed(name, KindBytes)
	if !ok {
		return netip.Addr{}, false
	}
	return netip.AddrFromSlice(v.Bytes())
}

// StringMap returns a map attribute; false when absent or of another kind.
func (b *Bag) StringMap(name string) (map[string]string, bool) {
	v, ok := b.typed(name, KindStringMap)
	return v.m, ok
}

// MapValue looks up one key of a map attribute.
func (b *Bag) MapValue(name, key string) (string, bool) {
	m, ok := b.StringMap(name)
	if !ok {
		return "", false
	}
	s, ok := m[key]
	return s, ok
}

// Range calls fn for every attribute in name order until fn returns false.
func (b *Bag) Range(fn func(name string, v Value) bool) {
	if b == nil {
		return
	}
	for i := range b.entries {
		if !fn(b.entries[i].name, b.entries[i].value) {
			return
		}
	}
}

// Names lists the attribute names, sorted.
func (b *Bag) Names() []string {
	names := make([]string, 0, b.Len())
	b.Range(func(n string, _ Value) bool {
		names = append(names, n)
		return true
	})
	return names
}

// Dump renders the bag for people, one name=value per line.
func (b *Bag) Dump() string {
	var sb strings.Builder
	b.Range(func(n string, v Value) bool {
		sb.WriteString(n)
		sb.WriteByte('=')
		sb.WriteString(v.String())
		sb.WriteByte('\n')
		return true
	})
	return sb.String()
}

// Builder collects attributes for a new Bag. The zero Builder is ready.
type Builder struct {
	entries []entry
	sorted  bool
}

// NewBuilder returns a builder with room for n attributes.
func NewBuilder(n int) *Builder {
	return &Builder{entries: make([]entry, 0, n), sorted: true}
}

// Builder returns a builder that starts from the bag's attributes.
func (b *Bag) Builder() *Builder {
	nb := NewBuilder(b.Len() + 8)
	if b != nil {
		nb.entries = append(nb.entries, b.entries...)
	}
	return nb
}

// Set sets an attribute; a later Set of the same name wins. A zero Value
// deletes the attribute.
func (bl *Builder) Set(name string, v Value) *Builder {
	if n := len(bl.entries); n > 0 && bl.entries[n-1].name >= name {
		bl.sorted = false
	} else if n == 0 {
		bl.sorted = true
	}
	bl.entries = append(bl.entries, entry{name: name, value: v})
	return bl
}

// Delete removes an attribute.
func (bl *Builder) Delete(name string) *Builder { return bl.Set(name, Value{}) }

// SetString sets a string attribute.
func (bl *Builder) SetString(name, s string) *Builder { return bl.Set(name, StringValue(s)) }

// SetInt64 sets an int64 attribute.
func (bl *Builder) SetInt64(name string, n int64) *Builder { return bl.Set(name, Int64Value(n)) }

// SetDouble sets a double attribute.
func (bl *Builder) SetDouble(name string, f float64) *Builder { return bl.Set(name, DoubleValue(f)) }

// SetBool sets a bool attribute.
func (bl *Builder) SetBool(name string, v bool) *Builder { return bl.Set(name, BoolValue(v)) }

// SetTime sets a timestamp attribute.
func (bl *Builder) SetTime(name string, t time.Time) *Builder { return bl.Set(name, TimeValue(t)) }

// SetDuration sets a duration attribute.
func (bl *Builder) SetDuration(name string, d time.Duration) *Builder {
	return bl.Set(name, DurationValue(d))
}

// SetBytes sets a bytes attribute.
func (bl *Builder) SetBytes(name string, b []byte) *Builder { return bl.Set(name, BytesValue(b)) }

// SetIP sets an IP_ADDRESS attribute.
func (bl *Builder) SetIP(name string, ip netip.Addr) *Builder { return bl.Set(name, IPValue(ip)) }

// SetStringMap sets a map attribute.
func (bl *Builder) SetStringMap(name string, m map[string]string) *Builder {
	return bl.Set(name, StringMapValue(m))
}

// Build returns the bag. The builder must not be used afterwards.
func (bl *Builder) Build() *Bag {
	es := bl.entries
	bl.entries = nil
	if !bl.sorted {
		sortEntries(es)
	}
	// Keep the last of each name, drop deletions.
	out := es[:0]
	for i := 0; i < len(es); i++ {
		if i+1 < len(es) && es[i+1].name == es[i].name {
			continue
		}
		if es[i].value.kind != KindInvalid {
			out = append(out, es[i])
		}
	}
	return &Bag{entries: out}
}

// sortEntries sorts by name, stably, so the last Set of a name stays last
// among equals. Bags are small: sorting one-byte indices and then moving
// each entry once is several times cheaper than moving entries around.
func sortEntries(es []entry) {
	if len(es) > 255 {
		slices.SortStableFunc(es, func(a, b entry) int { return strings.Compare(a.name, b.name) })
		return
	}
	var idxBuf [255]uint8
	idx := idxBuf[:len(es)]
	for i := range idx {
		idx[i] = uint8(i)
	}
	for i := 1; i < len(idx); i++ {
		x := idx[i]
		name := es[x].name
		j := i
		for j > 0 && es[idx[j-1]].name > name {
			idx[j] = idx[j-1]
			j--
		}
		idx[j] = x
	}
	// Apply the permutation in place, one cycle at a time: position i
	// receives the entry at idx[i].
	for i := range idx {
		if idx[i] == uint8(i) {
			continue
		}
		tmp := es[i]
		j := i
		for {
			k := int(idx[j])
			idx[j] = uint8(j)
			if k == i {
				es[j] = tmp
				break
			}
			es[j] = es[k]
			j = k
		}
	}
}
