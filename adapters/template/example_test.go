package template_test

import (
	"fmt"

	"github.com/sidemix/sidemix/adapters/template"
)

// An adapter reads a metric's dimensions by position: it finds where the
// names it needs are once per Layout (one per Instance document) and then
// takes each instance's values by index.
func ExampleFields() {
	layout, err := template.NewLayout("response_code", "destination_workload")
	if err != nil {
		panic(err)
	}
	labels := []string{"destination_workload", "response_code", "source_workload"}
	where := make([]int, len(labels)) // found once for the layout
	for i, l := range labels {
		where[i] = layout.Index(l)
	}

	m := &template.Metric{Name: "requestcount", Value: int64(1),
		Dimensions: template.FieldsIn(layout, map[string]any{"destination_workload": "invoice", "response_code": int64(200)})}
	for i, p := range where {
		v := "unknown"
		if p >= 0 && m.Dimensions.Layout() == layout {
			v = template.FormatValue(m.Dimensions.At(p))
		}
		fmt.Printf("%s=%s\n", labels[i], v)
	}
	code, _ := m.Dimensions.Get("response_code")
	fmt.Println(code)
	// Output:
	// destination_workload=invoice
	// response_code=200
	// source_workload=unknown
	// 200
}
