// Package handlerkit holds the few helpers every adapter's Create needs:
// filling unset Settings, asserting the params type, and registering self
// metrics so that a handler re-created on every config reload shares the
// collectors of its predecessor instead of failing to register. Batcher is
// the queue, batching and retry with backoff of a handler that sends to a
// remote backend, so adapters do not each write their own.
package handlerkit

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidemix/sidemix/adapters"
)

// Defaults returns set with a discarding logger, the wall clock and a
// private registry wherever set leaves them nil, so adapters never check.
func Defaults(set adapters.Settings) adapters.Settings {
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	if set.Now == nil {
		set.Now = time.Now
	}
	if set.Registerer == nil {
		set.Registerer = prometheus.NewRegistry()
	}
	return set
}

// Params asserts that cfg is the adapter's params type *T and validates it
// again: Create must not trust that its caller did, because an invalid
// config could make a client library panic.
func Params[T any, PT interface {
	*T
	adapters.Config
}](adapter string, cfg adapters.Config) (PT, error) {
	p, ok := cfg.(PT)
	if !ok || p == nil {
		return nil, fmt.Errorf("%s: params are %T, want %T", adapter, cfg, PT(nil))
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Register registers c on r and returns it or, when an equal collector is
// already registered (a handler of the same adapter created earlier), the
// existing one. Self metrics are vectors labelled by handler name, so all
// handlers of an adapter share them across reloads.
func Register[C prometheus.Collector](r prometheus.Registerer, c C) (C, error) {
	err := r.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	var zero C
	return zero, err
}
