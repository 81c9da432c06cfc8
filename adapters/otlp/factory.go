package otlp

import (
	"context"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

// Name is what a Handler's spec.adapter says.
const Name = "otlp"

// Factory returns the otlp adapter's factory.
func Factory() adapters.Factory {
	return adapters.Factory{
		Name:      Name,
		Templates: []string{template.TraceSpanName, template.LogEntryName, template.OTLPName},
		NewConfig: func() adapters.Config { return NewConfig() },
		Create: func(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
			return newHandler(set, cfg)
		},
	}
}
