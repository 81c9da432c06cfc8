package policy

import (
	"time"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/internal/yamlload"
)

// Options configure a load.
type Options struct {
	// Adapters decode and validate Handler params; a Handler naming an
	// adapter missing here is an error.
	Adapters adapters.Registry
	// Manifest is the base vocabulary that AttributeManifest documents
	// extend; nil means attribute.DefaultManifest().
	Manifest *attribute.Manifest
	// Now is the clock for logentry timestamps when neither the instance's
	// timestamp nor context.time says; nil means time.Now.
	Now func() time.Time
}

// Issue is one problem found by a load: file, line, document, field and
// message.
type Issue = yamlload.Issue

// LoadError lists every issue of a failed load.
type LoadError = yamlload.LoadError

// Variety says which side of the API an evaluation serves.
type Variety int

const (
	// VarietyCheck selects actions whose instances are check templates
	// (checknothing, listentry, authorization).
	VarietyCheck Variety = iota
	// VarietyQuota selects actions whose instances are quota instances.
	VarietyQuota
	// VarietyReport selects actions whose instances are report templates
	// (metric, logentry, tracespan).
	VarietyReport
	// VarietyOTLP selects actions whose instances are otlp instances: the
	// telemetry an app exported over OTLP, forwarded as received. Only the
	// mixer's OTLP ingest evaluates it, once per resource of an export,
	// with a bag of the resource's attributes (see [OTLPAttributes]); the
	// instances it returns carry only their names, the mixer fills in the
	// data.
	VarietyOTLP
)

// OTLPAttributes are the attributes of the bag an OTLP export's resource
// is evaluated with for VarietyOTLP: all a rule sending otlp instances may
// read (a load error otherwise), since such a rule decides per resource,
// before any span or log record is decoded.
var OTLPAttributes = []string{attribute.ContextProtocol, attribute.SourceWorkloadName, attribute.SourceWorkloadNamespace}

// Action is one handler to call with the instances built for it.
type Action struct {
	Rule      string
	Handler   string
	Instances []template.Instance
	// FailOpen is the rule's failPolicy: when true, a handler that errors,
	// times out or could not be created lets the request through; when
	// false (the default) it denies with UNAVAILABLE.
	FailOpen bool
	// Shadow is the rule's shadow flag: its denials are counted, never
	// enforced.
	Shadow bool
}

// QuotaCharge is one quota a request draws on, from a QuotaSpec.
type QuotaCharge struct {
	Quota  string // quota instance name
	Charge int64
}

// HeaderOp is what a HeaderOperation does.
type HeaderOp int

const (
	HeaderReplace HeaderOp = iota
	HeaderRemove
	HeaderAppend
)

// HeaderOperation is an evaluated header edit of a matching rule.
type HeaderOperation struct {
	Name      string
	Value     string
	Operation HeaderOp
}

// EvalError is a failed evaluation of one expression: the rule or instance
// and field it belongs to. The action it would have fed is skipped.
type EvalError struct {
	Rule     string
	Instance string // empty for the rule's match
	Field    string
	Err      error
}

func (e *EvalError) Error() string {
	where := "rule " + e.Rule
	if e.Instance != "" {
		where += ": instance " + e.Instance
	}
	return where + ": " + e.Field + ": " + e.Err.Error()
}

func (e *EvalError) Unwrap() error { return e.Err }

// Result is the outcome of evaluating a snapshot against one bag.
type Result struct {
	Actions []Action
	// Header operations of matching rules (check variety only).
	RequestHeaderOperations  []HeaderOperation
	ResponseHeaderOperations []HeaderOperation
	// Errors of expressions that could not be evaluated, such as a match
	// over an absent attribute. Such a rule does not match.
	Errors []*EvalError
}
