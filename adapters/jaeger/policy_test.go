package jaeger_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sidemix/sidemix/internal/testenv"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/jaeger"
	"github.com/sidemix/sidemix/policy"
)

// TestOTLPInstanceNeedsProtocolOTLP: config loading refuses an otlp
// instance sent to a jaeger handler with protocol grpc, or one that takes
// logs, at the rule's reference to the instance.
func TestOTLPInstanceNeedsProtocolOTLP(t *testing.T) {
	reg, err := adapters.NewRegistry(jaeger.Factory())
	if err != nil {
		t.Fatal(err)
	}
	file := "testdata/policy/otlpgrpc.bad.yaml"
	_, err = policy.Load([]string{file}, policy.Options{Adapters: reg})
	var le *policy.LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want a *policy.LoadError", err)
	}
	want := lines(
		file+`:35: Rule/app-traces: spec.actions[0].instances[0]: handler "jaeger" (adapter jaeger) cannot take instance "appspans": otlp instances (an app's OTLP resources, forwarded undecoded) need protocol: otlp; protocol grpc sends Jaeger's api_v2 model`,
		file+`:39: Rule/app-traces: spec.actions[1].instances[1]: handler "jaeger-otlp" (adapter jaeger) cannot take instance "applogs": the instance takes logs; Jaeger takes spans only (signal: traces)`,
	)
	if got := strings.TrimSpace(le.Error()); got != want {
		t.Errorf("issues:\n%s\nwant:\n%s", got, want)
	}
}

// TestOTLPJaegerExample loads examples/default/otlp-jaeger.yaml with its
// commented part turned on, as an operator would.
func TestOTLPJaegerExample(t *testing.T) {
	text := testenv.CommentedExample(t, "../../examples/default/otlp-jaeger.yaml")
	reg, err := adapters.NewRegistry(jaeger.Factory())
	if err != nil {
		t.Fatal(err)
	}
	s, err := policy.LoadSources(map[string][]byte{"otlp-jaeger.yaml": text}, policy.Options{Adapters: reg})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Uses(policy.VarietyOTLP) {
		t.Error("the example should forward otlp instances")
	}
	// The same rule with the handler on protocol grpc is refused.
	grpc := strings.Replace(string(text), "protocol: otlp", "protocol: grpc", 1)
	if _, err := policy.LoadSources(map[string][]byte{"otlp-jaeger.yaml": []byte(grpc)}, policy.Options{Adapters: reg}); err == nil ||
		!strings.Contains(err.Error(), `cannot take instance "appspans": otlp instances`) {
		t.Errorf("protocol grpc: err = %v", err)
	}
}
