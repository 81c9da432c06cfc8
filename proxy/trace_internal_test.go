package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

const (
	tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	sid = "00f067aa0ba902b7"
	pid = "b7ad6b7169203331"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestExtractTrace(t *testing.T) {
	cases := []struct {
		name      string
		h         http.Header
		trace     string // "" when no parent
		span      string
		sampled   bool
		deferred  bool
		debug     bool
		state     string
		decided   bool // bare sampling decision
		malformed []string
	}{
		{name: "none", h: hdr()},
		{name: "w3c sampled", h: hdr("traceparent", "00-"+tid+"-"+sid+"-01", "tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"),
			trace: tid, span: sid, sampled: true, state: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
		{name: "w3c unsampled, tracestate lines joined", h: hdr("traceparent", "00-"+tid+"-"+sid+"-00", "tracestate", "a=1", "tracestate", "b@x=2"),
			trace: tid, span: sid, state: "a=1,b@x=2"},
		{name: "w3c other flags", h: hdr("traceparent", "00-"+tid+"-"+sid+"-03"), trace: tid, span: sid, sampled: true},
		{name: "w3c future version with more fields", h: hdr("traceparent", "cc-"+tid+"-"+sid+"-01-what-the-future-holds"),
			trace: tid, span: sid, sampled: true},
		{name: "w3c bad tracestate dropped", h: hdr("traceparent", "00-"+tid+"-"+sid+"-01", "tracestate", "no equals sign"),
			trace: tid, span: sid, sampled: true, malformed: []string{"tracestate"}},
		{name: "w3c upper case", h: hdr("traceparent", "00-"+strings.ToUpper(tid)+"-"+sid+"-01"), malformed: []string{"traceparent"}},
		{name: "w3c version ff", h: hdr("traceparent", "ff-"+tid+"-"+sid+"-01"), malformed: []string{"traceparent"}},
		{name: "w3c 00 too long", h: hdr("traceparent", "00-"+tid+"-"+sid+"-01-x"), malformed: []string{"traceparent"}},
		{name: "w3c zero trace", h: hdr("traceparent", "00-"+strings.Repeat("0", 32)+"-"+sid+"-01"), malformed: []string{"traceparent"}},
		{name: "w3c zero span", h: hdr("traceparent", "00-"+tid+"-"+strings.Repeat("0", 16)+"-01"), malformed: []string{"traceparent"}},
		{name: "w3c garbage", h: hdr("traceparent", "hello"), malformed: []string{"traceparent"}},
		{name: "w3c twice", h: hdr("traceparent", "00-"+tid+"-"+sid+"-01", "traceparent", "00-"+tid+"-"+pid+"-01"),
			malformed: []string{"traceparent"}},
		{name: "w3c bad, b3 good", h: hdr("traceparent", "00-xyz", "b3", tid+"-"+sid+"-1"),
			trace: tid, span: sid, sampled: true, malformed: []string{"traceparent"}},
		{name: "b3 single", h: hdr("b3", tid+"-"+sid+"-0-"+pid), trace: tid, span: sid},
		{name: "b3 single deferred", h: hdr("b3", tid+"-"+sid), trace: tid, span: sid, deferred: true},
		{name: "b3 single debug", h: hdr("b3", tid+"-"+sid+"-d"), trace: tid, span: sid, sampled: true, debug: true},
		{name: "b3 single 64-bit", h: hdr("b3", sid+"-"+pid+"-1"), trace: "0000000000000000" + sid, span: pid, sampled: true},
		{name: "b3 single upper case", h: hdr("b3", strings.ToUpper(tid)+"-"+strings.ToUpper(sid)+"-1"), trace: tid, span: sid, sampled: true},
		{name: "b3 single decision only", h: hdr("b3", "0"), decided: true},
		{name: "b3 single bad sampling", h: hdr("b3", tid+"-"+sid+"-2"), malformed: []string{"b3"}},
		{name: "b3 single bad span", h: hdr("b3", tid+"-xyz-1"), malformed: []string{"b3"}},
		{name: "b3 multi", h: hdr("X-B3-TraceId", tid, "X-B3-SpanId", sid, "X-B3-ParentSpanId", pid, "X-B3-Sampled", "1"),
			trace: tid, span: sid, sampled: true},
		{name: "b3 multi legacy true", h: hdr("X-B3-TraceId", tid, "X-B3-SpanId", sid, "X-B3-Sampled", "true"),
			trace: tid, span: sid, sampled: true},
		{name: "b3 multi deferred", h: hdr("X-B3-TraceId", tid, "X-B3-SpanId", sid), trace: tid, span: sid, deferred: true},
		{name: "b3 multi debug", h: hdr("X-B3-TraceId", tid, "X-B3-SpanId", sid, "X-B3-Flags", "1"),
			trace: tid, span: sid, sampled: true, debug: true},
		{name: "b3 multi decision only", h: hdr("X-B3-Sampled", "1"), decided: true, sampled: true},
		{name: "b3 multi no span", h: hdr("X-B3-TraceId", tid, "X-B3-Sampled", "1"), malformed: []string{"x-b3"}},
		{name: "b3 multi bad trace", h: hdr("X-B3-TraceId", "abc", "X-B3-SpanId", sid), malformed: []string{"x-b3"}},
		{name: "b3 multi bad sampled", h: hdr("X-B3-TraceId", tid, "X-B3-SpanId", sid, "X-B3-Sampled", "yes"), malformed: []string{"x-b3"}},
		{name: "all bad", h: hdr("traceparent", "x", "b3", "y", "X-B3-SpanId", sid), malformed: []string{"traceparent", "b3", "x-b3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := extractTrace(c.h)
			if !slices.Equal(got.malformed, c.malformed) {
				t.Errorf("malformed %v, want %v", got.malformed, c.malformed)
			}
			if c.trace == "" {
				if got.parent != nil {
					t.Fatalf("parent %+v", got.parent)
				}
				if got.decided != c.decided || (c.decided && got.sampled != c.sampled) {
					t.Errorf("decision %v %v, want %v %v", got.decided, got.sampled, c.decided, c.sampled)
				}
				return
			}
			p := got.parent
			if p == nil {
				t.Fatal("no parent")
			}
			if p.trace.String() != c.trace || p.span.String() != c.span || p.sampled != c.sampled ||
				p.deferred != c.deferred || p.debug != c.debug || p.state != c.state {
				t.Errorf("parent %s %s sampled=%v deferred=%v debug=%v state=%q", p.trace, p.span, p.sampled, p.deferred, p.debug, p.state)
			}
		})
	}
}

// TestInjectExtract: what a proxy injects, the next one reads back, in
// either format.
func TestInjectExtract(t *testing.T) {
	for _, sp := range []span{
		{trace: newTraceID(), id: newSpanID(), parent: newSpanID(), sampled: true, state: "a=1"},
		{trace: newTraceID(), id: newSpanID()},
		{trace: newTraceID(), id: newSpanID(), sampled: true, debug: true},
	} {
		h := hdr("b3", "stale", "X-B3-Flags", "1", "traceparent", "stale", "tracestate", "stale=1")
		sp.inject(h)
		if got := h.Get("traceparent"); len(got) != 55 || !strings.HasPrefix(got, "00-"+sp.trace.String()+"-"+sp.id.String()+"-") {
			t.Errorf("traceparent %q", got)
		}
		if h.Get("b3") != "" || (sp.state == "" && h.Get("tracestate") != "") {
			t.Errorf("stale headers kept: %v", h)
		}
		ext := extractTrace(h)
		if p := ext.parent; p == nil || p.trace != sp.trace || p.span != sp.id || p.sampled != sp.sampled || p.state != sp.state {
			t.Errorf("w3c read back %+v from %v", p, h)
		}
		delete(h, HeaderTraceparent)
		ext = extractTrace(h)
		if p := ext.parent; p == nil || p.trace != sp.trace || p.span != sp.id || p.sampled != sp.sampled || p.debug != sp.debug {
			t.Errorf("b3 read back %+v from %v", p, h)
		}
		if got := h.Get("X-B3-ParentSpanId"); sp.parent.isZero() != (got == "") || (got != "" && got != sp.parent.String()) {
			t.Errorf("X-B3-ParentSpanId %q, want %s", got, sp.parent)
		}
	}
}

func TestOversizedTraceHeader(t *testing.T) {
	big := strings.Repeat("a", 600)
	for _, c := range []struct {
		h    http.Header
		want string
	}{
		{hdr("traceparent", "00-"+tid+"-"+sid+"-01", "tracestate", strings.Repeat("k=v,", 1000)), ""},
		{hdr("traceparent", big), "traceparent"},
		{hdr("tracestate", strings.Repeat("k=v,", 1000), "tracestate", strings.Repeat("k=v,", 1100)), "tracestate"},
		{hdr("b3", big), "b3"},
		{hdr("X-B3-Sampled", big), "x-b3"},
		{hdr("X-Other", big), ""},
	} {
		if got := oversizedTraceHeader(c.h); got != c.want {
			t.Errorf("%v: got %q, want %q", c.h, got, c.want)
		}
	}
}

func TestSampler(t *testing.T) {
	all, none, half := newSampler(1), newSampler(0), newSampler(0.5)
	n := 0
	for range 10000 {
		id := newTraceID()
		if !all.sample(id) || none.sample(id) {
			t.Fatal("ratio 1 or 0 undecided")
		}
		if half.sample(id) {
			n++
		}
	}
	if n < 4500 || n > 5500 {
		t.Errorf("ratio 0.5 sampled %d of 10000", n)
	}
}
