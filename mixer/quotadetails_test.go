package mixer

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// referenceDetails builds a denial's details the plain way (messages,
// anypb), as the mixer did before encoding them by hand.
func referenceDetails(t *testing.T, g *quotaGrant) []*anypb.Any {
	t.Helper()
	meta := map[string]string{"quota": g.name}
	if c := g.deniedBy; c != nil {
		meta["rule"], meta["handler"] = c.rule, c.handler
	}
	if g.limit > 0 {
		meta["limit"] = strconv.FormatInt(g.limit, 10)
		meta["remaining"] = strconv.FormatInt(g.remaining, 10)
		meta["reset"] = durationString(g.reset)
	}
	var out []*anypb.Any
	add := func(m proto.Message) {
		a := new(anypb.Any)
		if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	add(&errdetails.ErrorInfo{Reason: reasonQuotaExhausted, Domain: errorDomain, Metadata: meta})
	retry := g.validFor
	if retry <= 0 {
		retry = g.reset
	}
	if retry > 0 {
		add(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	return out
}

func TestExhaustedDetailsAsMarshalled(t *testing.T) {
	by := &quotaCall{target: target{rule: "per-destination", handler: "shared-quota"}}
	long := string(bytes.Repeat([]byte("q"), 300)) // lengths past one varint byte
	grants := []*quotaGrant{
		{name: "requestcount"},
		{name: "requestcount", deniedBy: by},
		{name: "requestcount", deniedBy: by, limit: 1000, remaining: 0, reset: 734567 * time.Microsecond, validFor: 734567 * time.Microsecond},
		{name: "requestcount", deniedBy: by, limit: 5, remaining: 0, reset: 2 * time.Second},
		{name: "requestcount", deniedBy: by, limit: 5, remaining: 3, reset: time.Microsecond, validFor: 1500 * time.Millisecond},
		{name: "requestcount", limit: 1 << 40, remaining: -1, reset: 90 * time.Hour, validFor: 1},
		{name: "", deniedBy: &quotaCall{}, limit: 1, reset: time.Second + 1},
		{name: long, deniedBy: &quotaCall{target: target{rule: long, handler: "ünïcode"}}, limit: 7, reset: 123456789 * time.Nanosecond},
	}
	for i, g := range grants {
		got, want := exhaustedDetails(g), referenceDetails(t, g)
		if len(got) != len(want) {
			t.Fatalf("grant %d: %d details, want %d", i, len(got), len(want))
		}
		for j := range got {
			if got[j].GetTypeUrl() != want[j].GetTypeUrl() || !bytes.Equal(got[j].GetValue(), want[j].GetValue()) {
				t.Errorf("grant %d, detail %d:\n got %s %x\nwant %s %x", i, j, got[j].GetTypeUrl(), got[j].GetValue(), want[j].GetTypeUrl(), want[j].GetValue())
			}
			if !proto.Equal(got[j], want[j]) {
				t.Errorf("grant %d, detail %d: not equal to the reference", i, j)
			}
		}
	}
}

func BenchmarkExhaustedDetails(b *testing.B) {
	g := &quotaGrant{name: "requestcount", deniedBy: &quotaCall{target: target{rule: "per-destination", handler: "shared-quota"}},
		limit: 1000, reset: 734567 * time.Microsecond, validFor: 734567 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		exhaustedDetails(g)
	}
}
