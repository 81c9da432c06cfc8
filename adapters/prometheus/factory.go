package prometheus

import (
	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

// Name is what a Handler's spec.adapter says.
const Name = "prometheus"

// Factory returns the prometheus adapter's factory.
func Factory() adapters.Factory {
	return adapters.Factory{
		Name:      Name,
		Templates: []string{template.MetricName},
		NewConfig: func() adapters.Config { return NewConfig() },
		Create:    newHandler,
	}
}
