package policy

import (
	"testing"

	"github.com/sidemix/sidemix/internal/testenv"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/kafka"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

const otlpRules = `
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: out}
spec: {adapter: sink}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: raw}
spec: {template: otlp}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: count}
spec:
  template: metric
  params: {value: "1"}
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: forward-shop}
spec:
  match: source.workload.namespace == "shop"
  actions:
  - {handler: out, instances: [raw]}
`

// proxyOnly is a metric rule that leaves OTLP bags out the way
// examples/default's do.
const proxyOnly = `
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: requests}
spec:
  match: default(context.protocol, "http") != "otlp" && request.path != "/healthz"
  actions:
  - {handler: out, instances: [count]}
`

// anyBag is a metric rule that may see OTLP bags.
const anyBag = `
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: slow}
spec:
  match: default(response.code, 200) >= 500
  actions:
  - {handler: out, instances: [count]}
`

func otlpProbe() *attribute.Bag {
	return attribute.NewBuilder(1).SetString(attribute.ContextProtocol, "otlp").Build()
}

func TestOTLPVariety(t *testing.T) {
	for _, c := range []struct {
		name          string
		src           string
		uses, mayBags bool
	}{
		{"forward only", otlpRules, true, false},
		{"proxy rules leave otlp out", otlpRules + proxyOnly, true, false},
		{"a rule may see span bags", otlpRules + proxyOnly + anyBag, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := LoadSources(map[string][]byte{"r.yaml": []byte(c.src)}, Options{Adapters: testRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Uses(VarietyOTLP); got != c.uses {
				t.Errorf("Uses(VarietyOTLP) = %v, want %v", got, c.uses)
			}
			if got := s.MayMatch(VarietyReport, otlpProbe()); got != c.mayBags {
				t.Errorf("MayMatch(VarietyReport, otlp) = %v, want %v", got, c.mayBags)
			}
			// A proxy's bag never yields otlp instances.
			proxy := attribute.NewBuilder(2).SetString(attribute.SourceWorkloadNamespace, "shop").
				SetString(attribute.RequestPath, "/").Build()
			for _, a := range s.Evaluate(proxy, VarietyReport, nil).Actions {
				for _, in := range a.Instances {
					if in.Template() == template.OTLPName {
						t.Errorf("report evaluation of a proxy bag built %+v", in)
					}
				}
			}
			res := attribute.NewBuilder(2).SetString(attribute.ContextProtocol, "otlp").
				SetString(attribute.SourceWorkloadNamespace, "shop").Build()
			got := s.Evaluate(res, VarietyOTLP, nil)
			if len(got.Errors) > 0 || len(got.Actions) != 1 || got.Actions[0].Rule != "forward-shop" {
				t.Fatalf("otlp evaluation = %+v", got)
			}
			if in, ok := got.Actions[0].Instances[0].(*template.OTLP); !ok || in.Name != "raw" {
				t.Fatalf("instance = %#v", got.Actions[0].Instances[0])
			}
			other := attribute.NewBuilder(1).SetString(attribute.SourceWorkloadNamespace, "billing").Build()
			if got := s.Evaluate(other, VarietyOTLP, nil); len(got.Actions) != 0 {
				t.Fatalf("another namespace matched: %+v", got)
			}
		})
	}
}

// TestOTLPKafkaExample loads examples/default/otlp-kafka.yaml with its
// commented part turned on, as an operator would.
func TestOTLPKafkaExample(t *testing.T) {
	text := testenv.CommentedExample(t, "../examples/default/otlp-kafka.yaml")
	reg, err := adapters.NewRegistry(kafka.Factory())
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSources(map[string][]byte{"otlp-kafka.yaml": text}, Options{Adapters: reg})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Uses(VarietyOTLP) || s.MayMatch(VarietyReport, otlpProbe()) {
		t.Error("the example should forward and need no span bags")
	}
}
