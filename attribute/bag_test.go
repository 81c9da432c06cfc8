package attribute

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestBagGetters(t *testing.T) {
	now := time.Date(2026, 11, 23, 14, 0, 0, 123, time.UTC)
	bag := NewBuilder(0).
		SetString(RequestPath, "/hello").
		SetInt64(ResponseCode, 200).
		SetDouble("custom.ratio", 0.5).
		SetBool(ConnectionMTLS, true).
		SetTime(RequestTime, now).
		SetDuration(ResponseDuration, 3*time.Millisecond).
		SetIP(SourceIP, netip.MustParseAddr("10.1.2.3")).
		SetStringMap(RequestHeaders, map[string]string{"x-user": "ann"}).
		Build()

	if s, ok := bag.String(RequestPath); !ok || s != "/hello" {
		t.Errorf("String = %q, %v", s, ok)
	}
	if n, ok := bag.Int64(ResponseCode); !ok || n != 200 {
		t.Errorf("Int64 = %d, %v", n, ok)
	}
	if f, ok := bag.Double("custom.ratio"); !ok || f != 0.5 {
		t.Errorf("Double = %v, %v", f, ok)
	}
	if b, ok := bag.Bool(ConnectionMTLS); !ok || !b {
		t.Errorf("Bool = %v, %v", b, ok)
	}
	if tm, ok := bag.Time(RequestTime); !ok || !tm.Equal(now) {
		t.Errorf("Time = %v, %v", tm, ok)
	}
	if d, ok := bag.Duration(ResponseDuration); !ok || d != 3*time.Millisecond {
		t.Errorf("Duration = %v, %v", d, ok)
	}
	if ip, ok := bag.IP(SourceIP); !ok || ip.String() != "10.1.2.3" {
		t.Errorf("IP = %v, %v", ip, ok)
	}
	if v, ok := bag.MapValue(RequestHeaders, "x-user"); !ok || v != "ann" {
		t.Errorf("MapValue = %q, %v", v, ok)
	}
	if _, ok := bag.MapValue(RequestHeaders, "x-none"); ok {
		t.Error("absent map key reported present")
	}
	// Absent and wrong-kind lookups say so.
	if _, ok := bag.String(SourcePrincipal); ok {
		t.Error("absent attribute reported present")
	}
	if _, ok := bag.String(ResponseCode); ok {
		t.Error("int64 attribute returned as string")
	}
	if bag.Len() != 8 {
		t.Errorf("Len = %d, want 8", bag.Len())
	}
}

func TestBuilderLastSetWinsAndDelete(t *testing.T) {
	base := NewBuilder(0).SetString("b", "1").SetString("a", "1").SetString("b", "2").Build()
	if s, _ := base.String("b"); s != "2" {
		t.Errorf("b = %q, want the last Set", s)
	}
	next := base.Builder().Delete("a").SetString("c", "3").Build()
	if _, ok := next.Get("a"); ok {
		t.Error("deleted attribute still present")
	}
	if got := next.Names(); len(got) != 2 || got[0] != "b" || got[1] != "c" {
		t.Errorf("names = %v", got)
	}
	// The original is unchanged: bags are immutable.
	if _, ok := base.Get("a"); !ok {
		t.Error("deriving a bag changed its base")
	}
}

func TestNilBagIsEmpty(t *testing.T) {
	var b *Bag
	if _, ok := b.Get("x"); ok || b.Len() != 0 {
		t.Error("nil bag not empty")
	}
}

func TestParseValue(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		in   string
		want string
	}{
		{KindString, "abc", "abc"},
		{KindInt64, "42", "42"},
		{KindDouble, "1.5", "1.5"},
		{KindBool, "true", "true"},
		{KindDuration, "1.5s", "1.5s"},
		{KindIPAddress, "::ffff:10.0.0.1", "10.0.0.1"},
		{KindStringMap, "a:1;b:2", "{a:1, b:2}"},
		{KindTimestamp, "2026-11-23T14:00:00Z", "2026-11-23T14:00:00Z"},
	} {
		v, err := ParseValue(tc.kind, tc.in)
		if err != nil {
			t.Errorf("ParseValue(%s, %q): %v", tc.kind, tc.in, err)
			continue
		}
		if v.String() != tc.want {
			t.Errorf("ParseValue(%s, %q) = %q, want %q", tc.kind, tc.in, v.String(), tc.want)
		}
	}
	if _, err := ParseValue(KindInt64, "x"); err == nil {
		t.Error("ParseValue accepted a bad integer")
	}
}

func TestManifestCheckBag(t *testing.T) {
	m := DefaultManifest()
	good := NewBuilder(0).SetString(RequestPath, "/").SetIP(SourceIP, netip.MustParseAddr("::1")).Build()
	if err := m.CheckBag(good); err != nil {
		t.Errorf("CheckBag(good) = %v", err)
	}
	bad := NewBuilder(0).SetInt64(RequestPath, 1).Build()
	if err := m.CheckBag(bad); err == nil {
		t.Error("CheckBag accepted request.path as INT64")
	}
	if _, err := m.With(map[string]Kind{RequestPath: KindInt64}); err == nil {
		t.Error("With let an attribute change kind")
	}
	k, err := ParseKind("ip_address")
	if err != nil || k != KindIPAddress {
		t.Errorf("ParseKind = %v, %v", k, err)
	}
}

// GetHinted finds what Get finds whatever the hint, and returns the
// position that makes the next call a hit.
func TestGetHinted(t *testing.T) {
	b := NewBuilder(4).SetString("a", "1").SetInt64("b", 2).SetString("c", "3").SetBool("d", true).Build()
	for _, name := range []string{"a", "b", "c", "d", "", "bb", "z"} {
		want, wantOK := b.Get(name)
		for hint := -2; hint <= 5; hint++ {
			v, ok, at := b.GetHinted(name, hint)
			if ok != wantOK || !v.Equal(want) {
				t.Fatalf("GetHinted(%q, %d) = %v, %v; Get: %v, %v", name, hint, v, ok, want, wantOK)
			}
			if ok {
				if v2, ok2, at2 := b.GetHinted(name, at); !ok2 || at2 != at || !v2.Equal(want) {
					t.Fatalf("GetHinted(%q, %d) after hint %d: %v %v %d", name, at, hint, v2, ok2, at2)
				}
			} else if at != -1 {
				t.Fatalf("GetHinted(%q, %d) position %d for an absent name", name, hint, at)
			}
		}
	}
	var nilBag *Bag
	if _, ok, at := nilBag.GetHinted("a", 0); ok || at != -1 {
		t.Fatal("nil bag")
	}
}

// DecodeBatchChanges names every attribute that differs from the bag
// before, so CheckChanged after a bag CheckBag accepted answers as
// CheckBag does.
func TestDecodeBatchChangesCheckChanged(t *testing.T) {
	m := DefaultManifest()
	var bags []*Bag
	for i := range 40 {
		b := NewBuilder(4).SetString(DestinationWorkloadName, "web").SetString(RequestID, strconv.Itoa(i/2))
		switch i % 5 {
		case 1:
			b.SetInt64(RequestPath, 1) // wrong kind
		case 2:
			b.SetString(RequestPath, "/")
		case 3:
			b.SetInt64(ResponseCode, 200)
		case 4:
			b.SetString(ResponseCode, "200") // wrong kind
		}
		bags = append(bags, b.Build())
	}
	req := NewEncoder(DefaultDictionary()).EncodeBatch(bags)
	seq, err := DefaultDictionary().DecodeBatchChanges(req, true)
	if err != nil {
		t.Fatal(err)
	}
	i, passed, rejected := 0, false, 0
	for b, changed := range seq {
		if got, want := b.Names(), bags[i].Names(); !slices.Equal(got, want) {
			t.Fatalf("bag %d has %q, want %q", i, got, want)
		}
		want := m.CheckBag(b)
		if passed {
			if got := m.CheckChanged(b, changed); (got == nil) != (want == nil) {
				t.Fatalf("bag %d: CheckChanged(%q) = %v, CheckBag = %v", i, changed, got, want)
			}
		}
		passed = want == nil
		if !passed {
			rejected++
		}
		i++
	}
	if i != len(bags) || rejected != 16 {
		t.Fatalf("%d bags, %d rejected; want %d, 16", i, rejected, len(bags))
	}
}
