package main

import (
	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/accesslog"
	"github.com/sidemix/sidemix/adapters/cel"
	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/adapters/jaeger"
	"github.com/sidemix/sidemix/adapters/kafka"
	"github.com/sidemix/sidemix/adapters/list"
	"github.com/sidemix/sidemix/adapters/memquota"
	"github.com/sidemix/sidemix/adapters/otlp"
	"github.com/sidemix/sidemix/adapters/prometheus"
	"github.com/sidemix/sidemix/adapters/rbac"
	"github.com/sidemix/sidemix/adapters/redisquota"
)

// newRegistry is the one place where the adapters this binary ships are
// wired in. To add an adapter, add its Factory() here.
func newRegistry() (adapters.Registry, error) {
	return adapters.NewRegistry(
		denier.Factory(),
		list.Factory(),
		memquota.Factory(),
		redisquota.Factory(),
		rbac.Factory(),
		cel.Factory(),
		prometheus.Factory(),
		accesslog.Factory(),
		jaeger.Factory(),
		kafka.Factory(),
		otlp.Factory(),
	)
}
