package jaeger

import (
	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

// Name is what a Handler's spec.adapter says.
const Name = "jaeger"

// Factory returns the jaeger adapter's factory.
func Factory() adapters.Factory {
	return adapters.Factory{
		Name:      Name,
		Templates: []string{template.TraceSpanName, template.OTLPName},
		NewConfig: func() adapters.Config { return NewConfig() },
		Create:    newHandler,
	}
}
