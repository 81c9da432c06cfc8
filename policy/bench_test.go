package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sidemix/sidemix/attribute"
)

// hundredRules is 100 rules with distinct matches: half on the path, half
// on a header, all feeding one denier through one checknothing instance.
func hundredRules() []byte {
	var sb strings.Builder
	sb.WriteString(`apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny}
spec: {adapter: denier}
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: nothing}
spec: {template: checknothing}
`)
	for i := 0; i < 100; i++ {
		match := fmt.Sprintf(`request.path.startsWith("/svc%d/")`, i)
		if i%2 == 1 {
			match = fmt.Sprintf(`default(request.headers["x-tenant"], "") == "tenant-%d"`, i)
		}
		fmt.Fprintf(&sb, `---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: rule-%03d}
spec:
  match: '%s'
  actions:
  - {handler: deny, instances: [nothing]}
`, i, match)
	}
	return []byte(sb.String())
}

func BenchmarkEvaluate100Rules(b *testing.B) {
	s, err := LoadSources(map[string][]byte{"bench.yaml": hundredRules()}, Options{Adapters: testRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	bag := attribute.NewBuilder(4).
		SetString(attribute.RequestPath, "/svc42/items").
		SetString(attribute.RequestMethod, "GET").
		SetStringMap(attribute.RequestHeaders, map[string]string{"x-tenant": "tenant-7", "accept": "*/*"}).
		Build()
	var refs attribute.Referenced
	res := s.Evaluate(bag, VarietyCheck, &refs)
	if len(res.Actions) != 2 || len(res.Errors) != 0 {
		b.Fatalf("result = %+v", res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		refs.Reset()
		s.Evaluate(bag, VarietyCheck, &refs)
	}
}
