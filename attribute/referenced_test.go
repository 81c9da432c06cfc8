package attribute

import (
	"testing"
)

func TestReferencedSignature(t *testing.T) {
	var r Referenced
	r.Add(RequestPath, true)
	r.AddMapKey(RequestHeaders, "x-user", true)
	r.Add(SourcePrincipal, false)
	r.Add(RequestPath, true) // duplicates collapse
	refs := r.List()
	if len(refs) != 3 {
		t.Fatalf("refs = %v", refs)
	}

	a := NewBuilder(0).SetString(RequestPath, "/a").SetStringMap(RequestHeaders, map[string]string{"x-user": "ann", "other": "1"}).Build()
	// Differs only in what the decision did not look at.
	b := NewBuilder(0).SetString(RequestPath, "/a").SetString(RequestMethod, "POST").SetStringMap(RequestHeaders, map[string]string{"x-user": "ann", "other": "2"}).Build()
	if Signature(a, refs) != Signature(b, refs) || !EqualOn(a, b, refs) {
		t.Error("bags equal on the references got different keys")
	}
	for name, c := range map[string]*Bag{
		"other path":     NewBuilder(0).SetString(RequestPath, "/b").SetStringMap(RequestHeaders, map[string]string{"x-user": "ann"}).Build(),
		"other user":     NewBuilder(0).SetString(RequestPath, "/a").SetStringMap(RequestHeaders, map[string]string{"x-user": "bob"}).Build(),
		"user absent":    NewBuilder(0).SetString(RequestPath, "/a").Build(),
		"principal set":  a.Builder().SetString(SourcePrincipal, "p").Build(),
		"path as number": NewBuilder(0).SetInt64(RequestPath, 1).SetStringMap(RequestHeaders, map[string]string{"x-user": "ann"}).Build(),
	} {
		if EqualOn(a, c, refs) {
			t.Errorf("%s: EqualOn = true", name)
		}
		if Signature(a, refs) == Signature(c, refs) {
			t.Errorf("%s: same signature", name)
		}
	}
	if !Matches(a, refs) {
		t.Error("Matches(a) = false")
	}
	if Matches(a.Builder().SetString(SourcePrincipal, "p").Build(), refs) {
		t.Error("Matches ignored a reference recorded absent")
	}
}

func TestReferencedProtoRoundTrip(t *testing.T) {
	var r Referenced
	r.AddMapKey(RequestHeaders, "", false)
	r.Add(RequestHeaders, true)
	r.Add(RequestPath, true)
	want := r.List()
	got := FromProto(ToProto(want))
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ref %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if Shape(got) != Shape(want) {
		t.Error("shape changed through the wire")
	}
}

func TestSignatureMapOrderIndependent(t *testing.T) {
	refs := []Reference{{Name: RequestHeaders, Present: true}}
	m1 := map[string]string{}
	m2 := map[string]string{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		m1[k] = k + "v"
	}
	for _, k := range []string{"f", "e", "d", "c", "b", "a"} {
		m2[k] = k + "v"
	}
	a := NewBuilder(0).SetStringMap(RequestHeaders, m1).Build()
	b := NewBuilder(0).SetStringMap(RequestHeaders, m2).Build()
	if Signature(a, refs) != Signature(b, refs) {
		t.Error("equal maps hash differently")
	}
}

func BenchmarkSignature(b *testing.B) {
	bag := sampleBag("/a", 200)
	refs := []Reference{{Name: RequestPath, Present: true}, {Name: SourcePrincipal}, {Name: RequestHeaders, MapKey: "x-user", HasKey: true, Present: true}}
	b.ReportAllocs()
	for b.Loop() {
		Signature(bag, refs)
	}
}
