package policy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/policy"
)

type seqSinkConfig struct{}

func (*seqSinkConfig) Validate() error { return nil }

type seqSink struct{}

func (seqSink) Close(context.Context) error { return nil }

// seqRegistry has a "sink" adapter of the metric, logentry and tracespan
// templates.
func seqRegistry(t *testing.T) adapters.Registry {
	r, err := adapters.NewRegistry(adapters.Factory{
		Name:      "sink",
		Templates: []string{template.MetricName, template.LogEntryName, template.TraceSpanName},
		NewConfig: func() adapters.Config { return &seqSinkConfig{} },
		Create: func(context.Context, adapters.Settings, adapters.Config) (adapters.Handler, error) {
			return seqSink{}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// seqConfig exercises what a Sequence must get right beyond
// examples/default: map keys and whole maps, absent attributes (default,
// has, failing fields), errors, a match that changes between bags.
const seqConfig = `
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: sink}
spec:
  adapter: sink
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: count}
spec:
  template: metric
  params:
    value: "1"
    dimensions:
      reporter: conditional(context.reporter.kind == "outbound", "source", "destination")
      code: default(response.code, 200)
      user: default(request.headers["x-user"], "-")
      nheaders: size(request.headers)
      has_agent: '"user-agent" in request.headers'
      source: source.workload.name
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: ratio}
spec:
  template: metric
  params:
    value: response.size / request.size
    dimensions:
      path: request.path
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: log}
spec:
  template: logentry
  params:
    severity: 'response.code >= 500 ? "error" : "info"'
    variables:
      path: request.path
      user: request.headers["x-user"]
      ip: default(source.ip, ip("0.0.0.0"))
      dest: destination.workload.name + "." + destination.workload.namespace
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: span}
spec:
  template: tracespan
  params:
    traceId: '"4bf92f3577b34da6a3ce929d0e0e4736"'
    spanId: '"00f067aa0ba902b7"'
    spanName: request.path
    startTime: context.time
    endTime: context.time
    spanTags:
      path: request.path
      code: response.code
      ip: default(source.ip, ip("0.0.0.0"))
      took: conditional(default(response.code, 0) >= 500, duration("2s"), duration("1s"))
      user: default(request.headers["x-user"], "-")
      size: double(default(request.size, 0))
      outbound: context.reporter.kind == "outbound"
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: all}
spec:
  actions:
  - {handler: sink, instances: [count, log, span]}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: sized}
spec:
  match: request.size > 0 && destination.workload.name == "web"
  actions:
  - {handler: sink, instances: [ratio]}
`

// seqBags is a batch as a proxy reports it: most attributes repeat, some
// change per request, some come and go (deleted in the delta).
func seqBags(rng *rand.Rand, n int) []*attribute.Bag {
	bags := make([]*attribute.Bag, n)
	t0 := time.Unix(1_700_000_000, 0)
	dest := "web"
	for i := range bags {
		if rng.IntN(10) == 0 {
			dest = []string{"web", "db", "cache"}[rng.IntN(3)]
		}
		b := attribute.NewBuilder(24).
			SetString(attribute.ContextReporterKind, []string{"inbound", "outbound"}[rng.IntN(20)/19]).
			SetString(attribute.ContextProtocol, "http").
			SetTime(attribute.ContextTime, t0.Add(time.Duration(i)*time.Millisecond)).
			SetString(attribute.DestinationWorkloadName, dest).
			SetString(attribute.DestinationWorkloadNamespace, "default").
			SetString(attribute.SourceWorkloadName, "shop").
			SetString(attribute.RequestPath, fmt.Sprintf("/p/%d", rng.IntN(4)))
		if rng.IntN(4) != 0 {
			b.SetInt64(attribute.ResponseCode, []int64{200, 200, 200, 503}[rng.IntN(4)])
		}
		if rng.IntN(3) != 0 {
			b.SetInt64(attribute.RequestSize, int64(rng.IntN(3))) // 0: division by zero
			b.SetInt64(attribute.ResponseSize, int64(rng.IntN(2000)))
		}
		if rng.IntN(5) != 0 {
			b.SetIP(attribute.SourceIP, netipFrom(rng.IntN(2)))
		}
		switch rng.IntN(4) {
		case 0:
		case 1:
			b.SetStringMap(attribute.RequestHeaders, map[string]string{"x-user": "ann"})
		case 2:
			b.SetStringMap(attribute.RequestHeaders, map[string]string{"x-user": "bob", "user-agent": "go"})
		default:
			b.SetStringMap(attribute.RequestHeaders, map[string]string{"user-agent": "curl"})
		}
		bags[i] = b.Build()
	}
	return bags
}

func netipFrom(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 0, 0, byte(k + 1)})
}

// runSequence decodes bags as the mixer's Report does and evaluates them
// with a Sequence; with lie, it is told nothing changed after bag 0.
func runSequence(t *testing.T, s *policy.Snapshot, bags []*attribute.Bag, skip func(int) bool, lie bool, check func(int, policy.Result)) {
	t.Helper()
	req := attribute.NewEncoder(attribute.DefaultDictionary()).EncodeBatch(bags)
	seq, err := attribute.DefaultDictionary().DecodeBatchChanges(req, true)
	if err != nil {
		t.Fatal(err)
	}
	q := s.NewSequence(policy.VarietyReport)
	defer q.Close()
	i := 0
	for b, changed := range seq {
		if skip(i) {
			q.Reset()
		} else {
			if lie && i > 0 {
				changed = nil
			}
			check(i, q.Evaluate(b, changed)) // valid until the next Evaluate
		}
		i++
	}
}

// sameResult compares two results, errors by their text.
func sameResult(a, b policy.Result) bool {
	if len(a.Errors) != len(b.Errors) {
		return false
	}
	for i := range a.Errors {
		if a.Errors[i].Error() != b.Errors[i].Error() {
			return false
		}
	}
	a.Errors, b.Errors = nil, nil
	return reflect.DeepEqual(policy.FlatResult(a), policy.FlatResult(b))
}

// TestSequenceMatchesEvaluate is the differential test of Sequence: every
// bag's result (actions, every instance, errors) equals Evaluate's of the
// bag alone, over random batches, with bags skipped (Reset) now and then.
func TestSequenceMatchesEvaluate(t *testing.T) {
	custom, err := policy.LoadSources(map[string][]byte{"seq.yaml": []byte(seqConfig)}, policy.Options{Adapters: seqRegistry(t)})
	if err != nil {
		t.Fatal(err)
	}
	snaps := map[string]*policy.Snapshot{"custom": custom, "examples/default": examplesDefault(t)}
	for name, s := range snaps {
		t.Run(name, func(t *testing.T) {
			for seed := range uint64(20) {
				rng := rand.New(rand.NewPCG(seed, 7))
				bags := seqBags(rng, 300)
				if name == "examples/default" && seed%2 == 0 {
					for i := range bags {
						bags[i] = reportBag(i / 3) // runs of equal bags
					}
				}
				skip := func(i int) bool { return seed%3 == 0 && i%17 == 5 }
				runSequence(t, s, bags, skip, false, func(i int, got policy.Result) {
					want := s.Evaluate(bags[i], policy.VarietyReport, nil)
					if !sameResult(got, want) {
						t.Fatalf("seed %d bag %d:\n got %+v\nwant %+v", seed, i, got, want)
					}
				})
			}
		})
	}
}

// TestSequenceReuses: a Sequence told that nothing changed keeps the
// previous bag's values, so the differential test above sees a reuse that
// is wrong.
func TestSequenceReuses(t *testing.T) {
	s := examplesDefault(t)
	bags := []*attribute.Bag{reportBag(1), reportBag(2)}
	runSequence(t, s, bags, func(int) bool { return false }, true, func(i int, got policy.Result) {
		if i == 1 && sameResult(got, s.Evaluate(bags[1], policy.VarietyReport, nil)) {
			t.Fatal("told nothing changed, the sequence evaluated the second bag anew")
		}
	})
}
