package policy

import (
	"slices"

	"github.com/sidemix/sidemix/adapters/template"
)

// FlatResult is flatResult for the external tests.
var FlatResult = flatResult

// flatResult is r with its instances' Fields unpatched (template.Patch):
// copies of them with every value at its position, so that
// reflect.DeepEqual compares the values a Sequence and Evaluate give, not
// how they are laid out.
func flatResult(r Result) Result {
	if r.Actions == nil {
		return r
	}
	acts := slices.Clone(r.Actions)
	for i := range acts {
		insts := slices.Clone(acts[i].Instances)
		for j, in := range insts {
			switch x := in.(type) {
			case *template.Metric:
				insts[j] = &template.Metric{Name: x.Name, Value: x.Value, Dimensions: flatFields(x.Dimensions)}
			case *template.LogEntry:
				insts[j] = &template.LogEntry{Name: x.Name, Variables: flatFields(x.Variables), Severity: x.Severity, Timestamp: x.Timestamp}
			}
		}
		acts[i].Instances = insts
	}
	r.Actions = acts
	return r
}

// flatFields is f with its values laid out flat.
func flatFields(f template.Fields) template.Fields {
	if f.Len() == 0 {
		return f
	}
	vals := make([]any, f.Len())
	for i := range vals {
		vals[i] = f.At(i)
	}
	return template.MakeFields(f.Layout(), vals)
}
