package redisquota

import (
	"context"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
)

// Name is what a Handler's spec.adapter says.
const Name = "redisquota"

// Factory returns the redisquota adapter's factory.
func Factory() adapters.Factory {
	return adapters.Factory{
		Name:      Name,
		Templates: []string{template.QuotaName},
		NewConfig: func() adapters.Config { return NewConfig() },
		Create: func(ctx context.Context, set adapters.Settings, cfg adapters.Config) (adapters.Handler, error) {
			return newHandler(ctx, set, cfg)
		},
	}
}
