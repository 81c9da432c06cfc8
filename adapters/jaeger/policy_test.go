package jaeger_test

import (
	"errors"
	"strings"
	"testing"

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
