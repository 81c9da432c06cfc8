// Package adapters is the adapter SDK: what a handler is, the roles it can
// play (check, quota, report), and the factory through which the mixer
// creates it from a Handler document's typed params.
//
// Each adapter lives in its own sub-package with a Factory() function. The
// binary wires the factories it ships into a Registry in one place
// (cmd/sidemix); nothing registers itself from init().
//
// Lifecycle of a handler: the policy loader decodes spec.params strictly into
// the value NewConfig returns (defaults pre-filled, unknown keys are errors)
// and calls Validate; the mixer then calls Create once per configuration
// snapshot and Close when the snapshot is retired.
package adapters

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/sidemix/sidemix/adapters/template"
)

// Config is an adapter's typed params. Validate reports every problem at
// once (errors.Join), each naming the YAML key it is about.
type Config interface {
	Validate() error
}

// Redactor is a Config that holds secrets (passwords, tokens). Whatever
// shows or logs params (/debug/config, errors, logs) shows Redacted()
// instead: a copy of the params with every secret replaced.
type Redactor interface {
	Redacted() any
}

// InstanceChecker is a Config whose handlers take instances of some of
// their Factory's templates only with some params (a jaeger handler takes
// otlp instances only with protocol otlp). CheckInstance says why
// instances of template tmpl cannot go to such a handler, or returns nil;
// signal is an otlp instance's signal param ("" for both, and for other
// templates). Config loading reports it at the rule's instance reference.
type InstanceChecker interface {
	CheckInstance(tmpl, signal string) error
}

// Settings is what the mixer gives every handler it creates.
type Settings struct {
	// Name is the Handler document's name.
	Name string
	// Logger is already scoped to the handler.
	Logger *slog.Logger
	// Registerer is the mixer's own registry, for the handler's self metrics.
	Registerer prometheus.Registerer
	// Now is the clock; tests inject their own.
	Now func() time.Time
}

// Factory creates handlers of one adapter.
type Factory struct {
	// Name is what a Handler's spec.adapter says.
	Name string
	// Templates lists the templates whose instances the handlers accept.
	Templates []string
	// NewConfig returns a pointer to params filled with defaults.
	NewConfig func() Config
	// Create builds a handler from validated params.
	Create func(ctx context.Context, set Settings, cfg Config) (Handler, error)
}

// Accepts reports whether handlers of f accept instances of the template.
func (f Factory) Accepts(tmpl string) bool {
	for _, t := range f.Templates {
		if t == tmpl {
			return true
		}
	}
	return false
}

// Registry maps adapter names to factories.
type Registry map[string]Factory

// NewRegistry builds a registry; a name given twice is a programming error.
func NewRegistry(factories ...Factory) (Registry, error) {
	r := make(Registry, len(factories))
	for _, f := range factories {
		if _, dup := r[f.Name]; dup {
			return nil, fmt.Errorf("adapter %q registered twice", f.Name)
		}
		r[f.Name] = f
	}
	return r, nil
}

// Names lists the registered adapters in order.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Handler is a configured adapter. Close releases what Create acquired and
// flushes what it buffered.
type Handler interface {
	Close(ctx context.Context) error
}

// CheckResult is a handler's policy decision.
type CheckResult struct {
	// Code is codes.OK to allow; anything else denies.
	Code codes.Code
	// Message explains a denial to the caller.
	Message string
	// ValidDuration and ValidUseCount bound how long and how often the
	// caller may reuse the decision; zero means the mixer's default.
	ValidDuration time.Duration
	ValidUseCount int32
}

// OK reports whether the result allows the request.
func (r CheckResult) OK() bool { return r.Code == codes.OK }

// Checker decides on check instances (checknothing, listentry, ...).
type Checker interface {
	Handler
	Check(ctx context.Context, inst template.Instance) (CheckResult, error)
}

// QuotaArgs are the caller's terms of one allocation.
type QuotaArgs struct {
	// DeduplicationID identifies a retried request so it is charged once.
	DeduplicationID string
	// Amount to allocate.
	Amount int64
	// BestEffort grants what is left instead of all or nothing.
	BestEffort bool
}

// QuotaResult is the outcome of one allocation.
type QuotaResult struct {
	// Amount granted; zero when the quota is exhausted.
	Amount int64
	// ValidDuration is how long the grant holds or, when nothing was
	// granted, when the caller should try again.
	ValidDuration time.Duration
	// Limit is the tightest limit the allocation was counted against
	// (0: unknown), Remaining what is left of it afterwards, and Reset how
	// long until the window has freed enough to grant again. They become
	// the proxy's RateLimit-Limit/-Remaining/-Reset headers.
	Limit     int64
	Remaining int64
	Reset     time.Duration
}

// QuotaNamer is implemented by the params of quota adapters: the names of
// the quotas they define, so that the policy loader can reject a rule that
// sends a handler a quota instance it has no limit for.
type QuotaNamer interface {
	QuotaNames() []string
}

// QuotaAllocator allocates from quota instances.
type QuotaAllocator interface {
	Handler
	Allocate(ctx context.Context, inst *template.Quota, args QuotaArgs) (QuotaResult, error)
}

// Reporter consumes report instances (metric, logentry, ...). The mixer
// calls Report from the handler's own queue goroutine, never from the request
// path, and never concurrently for the same handler.
// A Reporter may keep the instances and the slice it is handed.
type Reporter interface {
	Handler
	Report(ctx context.Context, insts []template.Instance) error
}

// BatchReleaser is a Reporter that keeps nothing of the slice a Report call
// is handed once the call has returned: it may keep the instances (the
// slice's elements, copied out), not the slice. The mixer then fills the
// slice's array again for later Reports instead of a new array per Report.
type BatchReleaser interface {
	Reporter
	ReportReleasesBatch()
}
