package policy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/adapters/template"
)

// testConfig is the params of the test-only "sink" adapter: a bit of every
// shape the strict decoder must walk.
type testConfig struct {
	Prefix  string               `yaml:"prefix"`
	Timeout time.Duration        `yaml:"timeout"`
	Quotas  []testQuota          `yaml:"quotas"`
	Labels  map[string]testLabel `yaml:"labels"`
}

type testQuota struct {
	Name      string `yaml:"name"`
	MaxAmount int64  `yaml:"maxAmount"`
}

type testLabel struct {
	Help string `yaml:"help"`
}

func (c *testConfig) Validate() error {
	var errs []error
	for i, q := range c.Quotas {
		if q.MaxAmount <= 0 {
			errs = append(errs, fmt.Errorf("quotas[%d].maxAmount: %d is not positive", i, q.MaxAmount))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout is negative"))
	}
	return errors.Join(errs...)
}

type nopHandler struct{}

func (nopHandler) Close(context.Context) error { return nil }

func sinkFactory() adapters.Factory {
	return adapters.Factory{
		Name: "sink",
		Templates: []string{template.MetricName, template.LogEntryName, template.QuotaName, template.ListEntryName,
			template.AuthorizationName},
		NewConfig: func() adapters.Config { return &testConfig{Prefix: "default"} },
		Create: func(context.Context, adapters.Settings, adapters.Config) (adapters.Handler, error) {
			return nopHandler{}, nil
		},
	}
}

func testRegistry() adapters.Registry {
	r, err := adapters.NewRegistry(denier.Factory(), sinkFactory())
	if err != nil {
		panic(err)
	}
	return r
}
