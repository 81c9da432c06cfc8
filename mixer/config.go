package mixer

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sidemix/sidemix/adapters"
)

// Config is what a Server is built from. The zero value of every field but
// ConfigPaths and Adapters means its default.
type Config struct {
	// GRPCAddr is where the Mixer API listens; default "127.0.0.1:9091".
	GRPCAddr string
	// AdminAddr is where /healthz, /readyz, /metrics and /debug/config
	// listen; default "127.0.0.1:9093".
	AdminAddr string
	// OTLPGRPCAddr and OTLPHTTPAddr are where the OTLP receivers listen
	// (gRPC: the collector's trace and log services; HTTP: POST /v1/traces
	// and /v1/logs); empty disables a receiver, and both are off by
	// default. Spans and log records received go through the report rules.
	OTLPGRPCAddr string
	OTLPHTTPAddr string
	// ConfigPaths are the policy files and folders, loaded at start and
	// watched for changes.
	ConfigPaths []string
	// Adapters are the factories Handler documents may name.
	Adapters adapters.Registry

	// CheckTimeout bounds all check and quota handlers of one Check
	// together; default 1s. The caller's own deadline applies too.
	CheckTimeout time.Duration
	// DefaultValidDuration and DefaultValidUseCount are how long and how
	// often a client may reuse a check result when no handler said; default
	// 10s and 10000.
	DefaultValidDuration time.Duration
	DefaultValidUseCount int32

	// ReportQueueSize bounds each handler's queue of report instances;
	// default 10000. A full queue drops (and counts) what does not fit.
	ReportQueueSize int
	// ReportBatchSize bounds the instances of one Reporter.Report call;
	// default 1000.
	ReportBatchSize int
	// ReportTimeout bounds one Reporter.Report call; default 10s.
	ReportTimeout time.Duration

	// ConfigPollInterval is how often the config paths are re-examined in
	// case a file system event was missed; default 5s.
	ConfigPollInterval time.Duration
	// ReloadDebounce gathers the events of one edit into one reload;
	// default 200ms.
	ReloadDebounce time.Duration

	// Logger receives start, stop, reload and handler failure logs;
	// default slog.Default().
	Logger *slog.Logger
	// Now is the clock handed to handlers; default time.Now.
	Now func() time.Time

	// noFSNotify leaves the watcher to polling alone (tests of the fallback).
	noFSNotify bool
}

// Defaults of Config.
const (
	DefaultGRPCAddr             = "127.0.0.1:9091"
	DefaultAdminAddr            = "127.0.0.1:9093"
	DefaultCheckTimeout         = time.Second
	DefaultValidDuration        = 10 * time.Second
	DefaultValidUseCount        = 10000
	DefaultReportQueueSize      = 10000
	DefaultReportBatchSize      = 1000
	DefaultReportTimeout        = 10 * time.Second
	DefaultConfigPollInterval   = 5 * time.Second
	DefaultReloadDebounce       = 200 * time.Millisecond
	maxErrorValidDuration       = time.Second
	handlerCreateTimeout        = 30 * time.Second
	retireTimeout               = 2 * time.Minute
	reportErrorLogInterval      = 10 * time.Second
	maxGRPCMessageSize          = 16 << 20
	reportWindow                = 1 << 20
	handlerCloseTimeoutFallback = 2 * time.Second
)

// withDefaults returns c with every unset field set to its default.
func (c Config) withDefaults() Config {
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = DefaultCheckTimeout
	}
	if c.DefaultValidDuration == 0 {
		c.DefaultValidDuration = DefaultValidDuration
	}
	if c.DefaultValidUseCount == 0 {
		c.DefaultValidUseCount = DefaultValidUseCount
	}
	if c.ReportQueueSize == 0 {
		c.ReportQueueSize = DefaultReportQueueSize
	}
	if c.ReportBatchSize == 0 {
		c.ReportBatchSize = DefaultReportBatchSize
	}
	if c.ReportTimeout == 0 {
		c.ReportTimeout = DefaultReportTimeout
	}
	if c.ConfigPollInterval == 0 {
		c.ConfigPollInterval = DefaultConfigPollInterval
	}
	if c.ReloadDebounce == 0 {
		c.ReloadDebounce = DefaultReloadDebounce
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// validate reports every problem of a defaulted config at once.
func (c Config) validate() error {
	var errs []error
	if len(c.ConfigPaths) == 0 {
		errs = append(errs, errors.New("configPaths: at least one policy file or folder is required"))
	}
	for i, p := range c.ConfigPaths {
		if p == "" {
			errs = append(errs, fmt.Errorf("configPaths[%d]: empty path", i))
		}
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"checkTimeout", int64(c.CheckTimeout)},
		{"defaultValidDuration", int64(c.DefaultValidDuration)},
		{"defaultValidUseCount", int64(c.DefaultValidUseCount)},
		{"reportQueueSize", int64(c.ReportQueueSize)},
		{"reportBatchSize", int64(c.ReportBatchSize)},
		{"reportTimeout", int64(c.ReportTimeout)},
		{"configPollInterval", int64(c.ConfigPollInterval)},
		{"reloadDebounce", int64(c.ReloadDebounce)},
	}
	for _, p := range positive {
		if p.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %d", p.name, p.v))
		}
	}
	return errors.Join(errs...)
}
