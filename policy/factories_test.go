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
			template.AuthorizationName, template.TraceSpanName, template.OTLPName},
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

// fakeRedisQuotaConfig has the Istio redisquota params, so that Istio's
// examples load as written without the real adapter.
type fakeRedisQuotaConfig struct {
	RedisServerURL     string `yaml:"redisServerUrl"`
	ConnectionPoolSize int    `yaml:"connectionPoolSize"`
	RateLimitAlgorithm string `yaml:"rateLimitAlgorithm"`
	Quotas             []struct {
		Name           string        `yaml:"name"`
		MaxAmount      int64         `yaml:"maxAmount"`
		ValidDuration  time.Duration `yaml:"validDuration"`
		BucketDuration time.Duration `yaml:"bucketDuration"`
		Overrides      []struct {
			Dimensions    map[string]string `yaml:"dimensions"`
			MaxAmount     int64             `yaml:"maxAmount"`
			ValidDuration time.Duration     `yaml:"validDuration"`
		} `yaml:"overrides"`
	} `yaml:"quotas"`
}

func (c *fakeRedisQuotaConfig) Validate() error {
	if c.RedisServerURL == "" {
		return errors.New("redisServerUrl: required")
	}
	return nil
}

// quotaRegistry is testRegistry plus a fake redisquota.
func quotaRegistry() adapters.Registry {
	r, err := adapters.NewRegistry(denier.Factory(), sinkFactory(), adapters.Factory{
		Name:      "redisquota",
		Templates: []string{template.QuotaName},
		NewConfig: func() adapters.Config { return &fakeRedisQuotaConfig{} },
		Create: func(context.Context, adapters.Settings, adapters.Config) (adapters.Handler, error) {
			return nopHandler{}, nil
		},
	})
	if err != nil {
		panic(err)
	}
	return r
}
