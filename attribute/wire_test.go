package attribute

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
)

func sampleBag(path string, code int64) *Bag {
	return NewBuilder(24).
		SetString(SourceWorkloadName, "product").
		SetString(SourceWorkloadNamespace, "shop").
		SetString(DestinationWorkloadName, "invoice").
		SetString(DestinationWorkloadNamespace, "shop").
		SetString(DestinationServiceHost, "invoice.shop.svc.cluster.local").
		SetString(DestinationServiceName, "invoice").
		SetString(DestinationServiceNamespace, "shop").
		SetInt64(DestinationPort, 8080).
		SetIP(SourceIP, netip.MustParseAddr("127.0.0.1")).
		SetString(RequestPath, path).
		SetString(RequestMethod, "GET").
		SetString(RequestScheme, "http").
		SetString(RequestHost, "invoice").
		SetString(RequestID, "0f3c1a9e-8c7b-4d5e-9f00-1234567890ab").
		SetStringMap(RequestHeaders, map[string]string{"user-agent": "curl/8", "x-user": "ann", ":path": path}).
		SetTime(RequestTime, time.Unix(1700000000, 5)).
		SetInt64(RequestSize, 0).
		SetInt64(ResponseCode, code).
		SetDuration(ResponseDuration, 1500*time.Microsecond).
		SetString(ContextReporterKind, "inbound").
		SetString(ContextProtocol, "http").
		SetBool(ConnectionMTLS, false).
		SetDouble("custom.score", 0.25).
		Build()
}

func assertSameBag(t *testing.T, got, want *Bag) {
	t.Helper()
	if got.Len() != want.Len() {
		t.Fatalf("got %d attributes, want %d:\n%s\nwant:\n%s", got.Len(), want.Len(), got.Dump(), want.Dump())
	}
	want.Range(func(n string, v Value) bool {
		g, ok := got.Get(n)
		if !ok || !g.Equal(v) {
			t.Errorf("%s = %v (present %v), want %v", n, g, ok, v)
		}
		return true
	})
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	d := DefaultDictionary()
	e := NewEncoder(d)
	bag := sampleBag("/checkout?id=7", 201)
	msg := e.Encode(bag)

	// Through the real protobuf wire form.
	raw, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var back mixerv1.CompressedAttributes
	if err := proto.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	got, err := d.Decode(&back, e.GlobalWordCount())
	if err != nil {
		t.Fatal(err)
	}
	assertSameBag(t, got, bag)

	// Standard names and common values are global words; only the rest
	// travel as message words.
	for _, w := range back.Words {
		if _, global := d.index[w]; global {
			t.Errorf("global word %q sent as a message word", w)
		}
	}
}

func TestDecodeOlderClientDictionary(t *testing.T) {
	// A client that knows fewer global words sends what it doesn't know as
	// message words; the mixer must only use the first N of its own.
	full := DefaultDictionary()
	old := NewDictionary(full.Words()[:10])
	e := NewEncoder(old)
	bag := sampleBag("/a", 200)
	got, err := full.Decode(e.Encode(bag), e.GlobalWordCount())
	if err != nil {
		t.Fatal(err)
	}
	assertSameBag(t, got, bag)

	// A client newer than the mixer is refused with a clear error.
	newer := NewDictionary(append(append([]string(nil), full.Words()...), "brand-new-word"))
	e2 := NewEncoder(newer)
	_, err = full.Decode(e2.Encode(bag), e2.GlobalWordCount())
	if !errors.Is(err, ErrDictionaryNewer) {
		t.Errorf("err = %v, want ErrDictionaryNewer", err)
	}
}

func TestBatchDeltaRoundTrip(t *testing.T) {
	d := DefaultDictionary()
	e := NewEncoder(d)
	b1 := sampleBag("/a", 200)
	b2 := sampleBag("/b", 200)
	b3 := b2.Builder().Delete(RequestHeaders).SetString("custom.new", "x").Build()
	b4 := NewBuilder(0).SetString(RequestPath, "/only").Build()
	bags := []*Bag{b1, b2, b3, b4, b4}
	req := e.EncodeBatch(bags)

	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var back mixerv1.ReportRequest
	if err := proto.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	got, err := d.DecodeBatch(&back)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(bags) {
		t.Fatalf("decoded %d bags, want %d", len(got), len(bags))
	}
	for i := range bags {
		assertSameBag(t, got[i], bags[i])
	}
	// DecodeBatchSeq yields the same bags, one at a time, and stops when
	// asked to.
	for _, reuse := range []bool{false, true} {
		seq, err := d.DecodeBatchSeq(&back, reuse)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		var kept []*Bag
		for b := range seq {
			assertSameBag(t, b, bags[i])
			kept = append(kept, b)
			i++
		}
		if i != len(bags) {
			t.Errorf("DecodeBatchSeq(reuse %v) yielded %d bags, want %d", reuse, i, len(bags))
		}
		if !reuse {
			for i, b := range kept {
				assertSameBag(t, b, bags[i]) // still intact
			}
		}
	}
	seq, _ := d.DecodeBatchSeq(&back, true)
	i := 0
	for range seq {
		if i++; i == 2 {
			break
		}
	}
	// Delta: the second bag carries only what changed (path and the header map).
	if n := decodedLen(req.Attributes[1]); n != 2 {
		t.Errorf("delta of bag 2 carries %d attributes, want 2", n)
	}
	if n := decodedLen(req.Attributes[4]) + len(req.Attributes[4].Deleted); n != 0 {
		t.Errorf("a repeated bag carries %d attributes, want 0", n)
	}
}

func TestDecodeMalformed(t *testing.T) {
	d := DefaultDictionary()
	n := uint32(d.Len())
	for name, msg := range map[string]*mixerv1.CompressedAttributes{
		"name past dictionary":    {StringNames: []int32{int32(n)}, StringValues: []int32{0}},
		"name past message words": {StringNames: []int32{-2}, StringValues: []int32{0}, Words: []string{"x"}},
		"value past words":        {StringNames: []int32{0}, StringValues: []int32{-1}},
		"length mismatch":         {Int64Names: []int32{0, 1}, Int64Values: int32ToInt64(1)},
		"map length mismatch": {StringMapNames: []int32{22}, StringMapValues: []*mixerv1.StringMap{
			{Keys: []int32{0}},
		}},
		"nil map":         {StringMapNames: []int32{22}},
		"deleted unknown": {Deleted: []int32{-5}},
	} {
		if _, err := d.Decode(msg, n); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := d.DecodeBatch(&mixerv1.ReportRequest{Attributes: []*mixerv1.CompressedAttributes{nil}, GlobalWordCount: n}); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil bag in batch: err = %v", err)
	}
	// A batch whose last bag is malformed gives no bag at all.
	good := NewEncoder(d).EncodeBatch([]*Bag{sampleBag("/a", 200), sampleBag("/b", 200)})
	good.Attributes[1].StringMapValues = nil
	if seq, err := d.DecodeBatchSeq(good, false); !errors.Is(err, ErrMalformed) || seq != nil {
		t.Errorf("malformed last bag: err = %v, seq %v", err, seq != nil)
	}
}

func int32ToInt64(v int64) []int64 { return []int64{v} }

func FuzzDecode(f *testing.F) {
	d := DefaultDictionary()
	e := NewEncoder(d)
	seed, _ := proto.Marshal(e.Encode(sampleBag("/seed", 200)))
	f.Add(seed, uint32(d.Len()))
	f.Add([]byte{}, uint32(0))
	f.Add([]byte{0x12, 0x02, 0x01, 0x02}, uint32(5))
	f.Fuzz(func(t *testing.T, raw []byte, words uint32) {
		var msg mixerv1.CompressedAttributes
		if proto.Unmarshal(raw, &msg) != nil {
			return
		}
		bag, err := d.Decode(&msg, words)
		if err != nil {
			return
		}
		// What decodes must encode and decode to the same bag.
		again, err := d.Decode(NewEncoder(d).Encode(bag), uint32(d.Len()))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		assertSameBag(t, again, bag)
	})
}

func FuzzDecodeBatch(f *testing.F) {
	d := DefaultDictionary()
	seed, _ := proto.Marshal(NewEncoder(d).EncodeBatch([]*Bag{sampleBag("/a", 200), sampleBag("/b", 500)}))
	f.Add(seed)
	f.Add([]byte{})
	// Values only change, one of them to another kind, then one bag
	// carries its own words.
	b1 := sampleBag("/c", 200)
	b2 := b1.Builder().SetInt64(RequestPath, 7).SetString(RequestID, "x").Build()
	b3 := b1.Builder().SetString(RequestID, "y").Build()
	req := NewEncoder(d).EncodeBatch([]*Bag{b1, b2, b3, b3})
	own := NewEncoder(d)
	req.Attributes[3] = own.EncodeDelta(b3, b1.Builder().SetString(RequestID, "z").Build())
	req.Attributes[3].Words = own.Words()
	seed, _ = proto.Marshal(req)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req mixerv1.ReportRequest
		if proto.Unmarshal(raw, &req) != nil {
			return
		}
		checkDecodeBatchChecked(t, d, &req)
	})
}

// checkDecodeBatchChecked checks that DecodeBatchChecked fails when
// DecodeBatch does, and otherwise yields DecodeBatch's bags, each with
// an error exactly when CheckBag finds one, and with every attribute that
// differs from the bag before among its changes.
func checkDecodeBatchChecked(t *testing.T, d *Dictionary, req *mixerv1.ReportRequest) {
	t.Helper()
	m := DefaultManifest()
	want, werr := d.DecodeBatch(req)
	seq, err := d.DecodeBatchChecked(req, m)
	if (err == nil) != (werr == nil) {
		t.Fatalf("DecodeBatchChecked: %v, DecodeBatch: %v", err, werr)
	}
	if err != nil {
		return
	}
	i := 0
	for b, c := range seq {
		if got, want := b.Dump(), want[i].Dump(); got != want {
			t.Fatalf("bag %d:\n%s\nwant\n%s", i, got, want)
		}
		if cerr := m.CheckBag(want[i]); (c.Err == nil) != (cerr == nil) {
			t.Fatalf("bag %d: Err %v, CheckBag %v", i, c.Err, cerr)
		}
		if i > 0 {
			for _, n := range append(want[i-1].Names(), want[i].Names()...) {
				x, xok := want[i-1].Get(n)
				y, yok := want[i].Get(n)
				if (xok != yok || !x.Equal(y)) && !slices.Contains(c.Names, n) {
					t.Fatalf("bag %d: %s changed, not in %q", i, n, c.Names)
				}
			}
		}
		i++
	}
	if i != len(want) {
		t.Fatalf("%d bags, want %d", i, len(want))
	}
}

// TestDecodeBatchChecked: over batches whose attributes change values,
// kinds (declared or not) and words, come and go, DecodeBatchChecked
// yields the bags DecodeBatch does, each checked as CheckBag would.
func TestDecodeBatchChecked(t *testing.T) {
	d := DefaultDictionary()
	names := []string{RequestPath, ResponseCode, RequestTime, "custom.a", SourceIP, RequestHeaders, "custom.b"}
	rng := rand.New(rand.NewPCG(9, 10))
	errs := 0
	for round := range 20 {
		bl := NewBuilder(len(names))
		for _, n := range names[:4] {
			bl.SetString(n, "v")
		}
		var bags []*Bag
		for i := range 200 {
			for range 1 + rng.IntN(3) {
				n := names[rng.IntN(len(names))]
				switch r := rng.IntN(20); {
				case r == 0 && round%2 == 0:
					bl.Delete(n)
				case r == 1 && round%2 == 0:
					bl.SetStringMap(n, map[string]string{"k": fmt.Sprint(i)})
				case r < 4:
					bl.SetInt64(n, rng.Int64N(3))
				case r < 6:
					bl.SetTime(n, time.Unix(rng.Int64N(3), 0))
				default:
					bl.SetString(n, fmt.Sprint(i%7))
				}
			}
			b := bl.Build()
			bags = append(bags, b)
			bl = b.Builder()
		}
		enc := NewEncoder(d)
		req := enc.EncodeBatch(bags)
		if round%3 == 0 {
			// Some bags carry their own words.
			for i := 5; i < len(bags); i += 17 {
				own := NewEncoder(d)
				req.Attributes[i] = own.EncodeDelta(bags[i-1], bags[i])
				req.Attributes[i].Words = own.Words()
			}
		}
		checkDecodeBatchChecked(t, d, req)
		for _, b := range bags {
			if DefaultManifest().CheckBag(b) != nil {
				errs++
			}
		}
	}
	if errs == 0 {
		t.Fatal("no bag had an attribute of the wrong kind")
	}
}

// TestMergeDeltaMatchesBuilder: DecodeBatch's merge of a bag's changes
// into the previous bag gives the bag a Builder would, for changes in any
// order, repeated names and deletions of present and absent names.
func TestMergeDeltaMatchesBuilder(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	rng := rand.New(rand.NewPCG(1, 2))
	var prev *Bag
	var spare [2]Bag
	for round := range 2000 {
		var delta []entry
		bl := prev.Builder()
		for range rng.IntN(8) {
			name := names[rng.IntN(len(names))]
			v := Int64Value(int64(round))
			if rng.IntN(4) == 0 {
				v = Value{} // deletion
			}
			delta = append(delta, entry{name, v})
			bl.Set(name, v)
		}
		want := bl.Build()
		// Two rounds in three merge into the memory of the bag before
		// prev, as DecodeBatchSeq with reuse does.
		var into *Bag
		if round%3 != 0 {
			into = &spare[round%2]
		}
		got := mergeDelta(prev, delta, into)
		if got.Dump() != want.Dump() {
			t.Fatalf("round %d: merged\n%s\nwant\n%s", round, got.Dump(), want.Dump())
		}
		prev = got
	}
}

// TestDictionaryAppendOnly pins the global dictionary's layout: a peer that
// knows the first N words must agree with every newer peer on them, so a
// change may only add words after the last one in testdata/dictionary.txt
// (then append them there too).
func TestDictionaryAppendOnly(t *testing.T) {
	data, err := os.ReadFile("testdata/dictionary.txt")
	if err != nil {
		t.Fatal(err)
	}
	pinned := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	words := DefaultDictionary().Words()
	if len(words) < len(pinned) {
		t.Fatalf("the dictionary has %d words, fewer than the %d pinned", len(words), len(pinned))
	}
	for i, w := range pinned {
		if words[i] != w {
			t.Fatalf("word %d is %q, pinned as %q: existing indices must not move (append new vocabulary names at the end of standard)", i, words[i], w)
		}
	}
}

// TestDecodeBatchChangesReuse: a batch decoded with reuse (each bag's
// changes set in the previous bag's memory, in place when no attribute
// comes or goes) yields every bag as sent, with every attribute that
// differs from the bag before among the changed names.
func TestDecodeBatchChangesReuse(t *testing.T) {
	names := []string{RequestPath, RequestID, ResponseCode, ResponseSize, RequestTime, "custom.a", "custom.b", "custom.c"}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 20 {
		bl := NewBuilder(len(names))
		for _, n := range names[:5] {
			bl.SetString(n, "v0")
		}
		var bags []*Bag
		for i := range 300 {
			if round%2 == 0 && i%7 != 0 && len(bags) > 0 {
				// Values only, of attributes the bag has, of every kind:
				// the in-place case.
				for range 1 + rng.IntN(3) {
					n := names[rng.IntN(len(names))]
					if _, ok := bags[len(bags)-1].Get(n); ok {
						setAnyKind(bl, n, rng.IntN(8), i)
					}
				}
			} else {
				for range rng.IntN(4) {
					n := names[rng.IntN(len(names))]
					switch {
					case rng.IntN(5) == 0:
						bl.Delete(n)
					case rng.IntN(2) == 0:
						bl.SetString(n, fmt.Sprint("s", rng.IntN(3)))
					default:
						bl.SetInt64(n, int64(rng.IntN(3))) // another kind, same name
					}
				}
			}
			b := bl.Build()
			bags = append(bags, b)
			bl = b.Builder()
		}
		req := NewEncoder(DefaultDictionary()).EncodeBatch(bags)
		seq, err := DefaultDictionary().DecodeBatchChanges(req, true)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for b, changed := range seq {
			if got, want := b.Dump(), bags[i].Dump(); got != want {
				t.Fatalf("round %d bag %d:\n%s\nwant\n%s", round, i, got, want)
			}
			if i > 0 {
				for _, n := range names {
					x, xok := bags[i-1].Get(n)
					y, yok := bags[i].Get(n)
					if (xok != yok || !x.Equal(y)) && !slices.Contains(changed, n) {
						t.Fatalf("round %d bag %d: %s changed, not in %v", round, i, n, changed)
					}
				}
			}
			i++
		}
		if i != len(bags) {
			t.Fatalf("round %d: %d bags, want %d", round, i, len(bags))
		}
	}
}

// setAnyKind sets name to a value of kind number k (0-7) made of i.
func setAnyKind(bl *Builder, name string, k, i int) {
	switch k {
	case 0:
		bl.SetString(name, fmt.Sprint("p", i))
	case 1:
		bl.SetInt64(name, int64(i))
	case 2:
		bl.SetDouble(name, float64(i)/3)
	case 3:
		bl.SetBool(name, i%2 == 0)
	case 4:
		bl.SetTime(name, time.Unix(int64(i), 7))
	case 5:
		bl.SetDuration(name, time.Duration(i)*time.Millisecond)
	case 6:
		bl.SetBytes(name, []byte{byte(i), 0, 1})
	default:
		bl.SetStringMap(name, map[string]string{"k": fmt.Sprint(i), "p": "q"})
	}
}

// TestEncodeInvalidUTF8: a request's bytes need not be UTF-8 (a header
// value with obs-text, a path), but proto3 strings must be: one such value
// made proto.Marshal refuse the whole batch. The encoder sends it with
// each invalid sequence replaced by U+FFFD, and every other attribute as
// it was.
func TestEncodeInvalidUTF8(t *testing.T) {
	d := DefaultDictionary()
	e := NewEncoder(d)
	good := sampleBag("/ok", 200)
	bad := sampleBag("/caf\xe9", 200).Builder().
		SetStringMap(RequestHeaders, map[string]string{"user-agent": "bot\xff\xfe/1", "x-\xc3": "v"}).
		Build()
	req := e.EncodeBatch([]*Bag{good, bad, bad})
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatalf("the batch does not marshal: %v", err)
	}
	var back mixerv1.ReportRequest
	if err := proto.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	got, err := d.DecodeBatch(&back)
	if err != nil {
		t.Fatal(err)
	}
	assertSameBag(t, got[0], good)
	want := sampleBag("/caf\uFFFD", 200).Builder().
		SetStringMap(RequestHeaders, map[string]string{"user-agent": "bot\uFFFD/1", "x-\uFFFD": "v"}).
		Build()
	assertSameBag(t, got[1], want)
	assertSameBag(t, got[2], want)

	e.Reset()
	if _, err := proto.Marshal(e.Encode(bad)); err != nil {
		t.Errorf("a single bag does not marshal: %v", err)
	}
}
