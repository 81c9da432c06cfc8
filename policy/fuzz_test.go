package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sidemix/sidemix/attribute"
)

// FuzzLoad feeds arbitrary bytes to the loader: it may reject them, never
// panic; whatever it accepts must evaluate without panicking.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(denyExample))
	f.Add([]byte(evalConfig))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("apiVersion: sidemix.dev/v1\nkind: Rule\nmetadata: {name: r}\nspec: {match: '(((', actions: [{handler: h}]}\n"))
	for _, dir := range []string{"testdata/errors", "testdata/good", "testdata/good/telemetry", "testdata/quota", "testdata/tracing", "../examples/policies"} {
		paths, _ := filepath.Glob(filepath.Join(dir, "*.y*ml"))
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	reg := quotaRegistry()
	bag := testBag().Builder().SetString(attribute.DestinationServiceName, "web").Build()
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := LoadSources(map[string][]byte{"f.yaml": data}, Options{Adapters: reg})
		if err != nil {
			if s != nil {
				t.Fatal("snapshot with an error")
			}
			_ = err.Error()
			return
		}
		var refs attribute.Referenced
		for v := VarietyCheck; v <= VarietyReport; v++ {
			s.Evaluate(bag, v, &refs)
		}
		s.QuotaCharges(bag, &refs)
		_ = s.View()
	})
}
