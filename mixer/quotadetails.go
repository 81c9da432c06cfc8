package mixer

import (
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// A quota denial's details (an ErrorInfo, and a RetryInfo when there is a
// delay to give) are encoded here by hand: going through anypb.New, a map
// and proto.Marshal cost about a tenth of the mixer's CPU when most Checks
// are denied. The bytes are what a deterministic proto.Marshal of the same
// messages gives (map entries sorted by key); the tests hold both to that.

const (
	errorInfoTypeURL = "type.googleapis.com/google.rpc.ErrorInfo"
	retryInfoTypeURL = "type.googleapis.com/google.rpc.RetryInfo"
)

// quotaDetails is a denial's details in one allocation.
type quotaDetails struct {
	anys [2]anypb.Any
	ptrs [2]*anypb.Any
}

// exhaustedDetails names the quota and the refusing rule and handler, with
// the tightest window when known and when to try again.
func exhaustedDetails(g *quotaGrant) []*anypb.Any {
	// The metadata, sorted by key: handler, limit, quota, remaining, reset,
	// rule. The numbers are formatted into num, on the stack.
	var num [3][24]byte
	var meta [6]metaEntry
	n := 0
	add := func(k, s string, b []byte) {
		meta[n] = metaEntry{k: k, s: s, b: b}
		n++
	}
	c := g.deniedBy
	if c != nil {
		add("handler", c.handler, nil)
	}
	if g.limit > 0 {
		add("limit", "", strconv.AppendInt(num[0][:0], g.limit, 10))
	}
	add("quota", g.name, nil)
	if g.limit > 0 {
		add("remaining", "", strconv.AppendInt(num[1][:0], g.remaining, 10))
		// durationString's form.
		add("reset", "", append(strconv.AppendFloat(num[2][:0], g.reset.Seconds(), 'f', -1, 64), 's'))
	}
	if c != nil {
		add("rule", c.rule, nil)
	}
	retry := g.validFor
	if retry <= 0 {
		retry = g.reset
	}

	size := sizeString(1, reasonQuotaExhausted) + sizeString(2, errorDomain)
	for i := range meta[:n] {
		size += sizeMessage(3, meta[i].size())
	}
	total := size
	var durSize int
	if retry > 0 {
		durSize = durationSize(retry)
		total += sizeMessage(1, durSize)
	}
	buf := make([]byte, 0, total)
	buf = appendString(buf, 1, reasonQuotaExhausted)
	buf = appendString(buf, 2, errorDomain)
	for i := range meta[:n] {
		e := &meta[i]
		buf = protowire.AppendTag(buf, 3, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(e.size()))
		buf = appendString(buf, 1, e.k)
		buf = protowire.AppendTag(buf, 2, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(len(e.s)+len(e.b)))
		buf = append(append(buf, e.s...), e.b...)
	}

	d := new(quotaDetails)
	d.anys[0].TypeUrl, d.anys[0].Value = errorInfoTypeURL, buf[:size:size]
	d.ptrs[0] = &d.anys[0]
	if retry <= 0 {
		return d.ptrs[:1]
	}
	buf = protowire.AppendTag(buf, 1, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(durSize))
	buf = appendDuration(buf, retry)
	d.anys[1].TypeUrl, d.anys[1].Value = retryInfoTypeURL, buf[size:]
	d.ptrs[1] = &d.anys[1]
	return d.ptrs[:]
}

// metaEntry is one entry of the ErrorInfo's metadata; its value is s or b.
type metaEntry struct {
	k, s string
	b    []byte
}

// size is the entry's size in a map<string, string>: key and value are
// written even when empty, as proto.Marshal does.
func (e *metaEntry) size() int {
	return sizeString(1, e.k) + protowire.SizeTag(2) + protowire.SizeBytes(len(e.s)+len(e.b))
}

func sizeString(num protowire.Number, s string) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func sizeMessage(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// durationSize and appendDuration encode d as a google.protobuf.Duration
// (durationpb.New's seconds and nanos; zero fields omitted).
func durationSize(d time.Duration) int {
	s, ns := durationParts(d)
	n := 0
	if s != 0 {
		n += protowire.SizeTag(1) + protowire.SizeVarint(uint64(s))
	}
	if ns != 0 {
		n += protowire.SizeTag(2) + protowire.SizeVarint(uint64(ns))
	}
	return n
}

func appendDuration(b []byte, d time.Duration) []byte {
	s, ns := durationParts(d)
	if s != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s))
	}
	if ns != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(ns))
	}
	return b
}

func durationParts(d time.Duration) (int64, int64) {
	nanos := d.Nanoseconds()
	return nanos / 1e9, int64(int32(nanos % 1e9))
}
