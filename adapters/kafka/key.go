package kafka

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/sidemix/sidemix/adapters/template"
)

// The key expression's environment: the fields of the templates the
// adapter accepts, each bound only for instances of its template.
var keyEnv = sync.OnceValues(func() (*cel.Env, error) {
	dynMap := cel.MapType(cel.StringType, cel.DynType)
	return cel.NewEnv(
		// both
		cel.Variable("name", cel.StringType),
		// logentry
		cel.Variable("variables", dynMap),
		cel.Variable("severity", cel.StringType),
		cel.Variable("timestamp", cel.TimestampType),
		// tracespan
		cel.Variable("traceId", cel.StringType),
		cel.Variable("spanId", cel.StringType),
		cel.Variable("parentSpanId", cel.StringType),
		cel.Variable("spanName", cel.StringType),
		cel.Variable("spanKind", cel.StringType),
		cel.Variable("status", cel.StringType),
		cel.Variable("httpStatusCode", cel.IntType),
		cel.Variable("sourceName", cel.StringType),
		cel.Variable("destinationName", cel.StringType),
		cel.Variable("serviceName", cel.StringType),
		cel.Variable("startTime", cel.TimestampType),
		cel.Variable("endTime", cel.TimestampType),
		cel.Variable("spanTags", dynMap),
		// otlp (serviceName too)
		cel.Variable("signal", cel.StringType),
		cel.Variable("serviceNamespace", cel.StringType),
		cel.OptionalTypes(),
		ext.Strings(),
	)
})

// keyProgram computes record keys.
type keyProgram struct {
	text string
	prg  cel.Program
	// mapName and mapKey are set when the expression is one entry of a
	// map field (variables.destinationServiceHost, spanTags["x"]): a
	// string value there is the key without running CEL.
	mapName, mapKey string
}

// compileKey parses and type-checks a key expression. Its result must be a
// scalar: a string, number, bool, timestamp or duration (or dyn, checked
// when evaluated).
func compileKey(text string) (*keyProgram, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("empty expression")
	}
	env, err := keyEnv()
	if err != nil {
		return nil, fmt.Errorf("key expression environment: %w", err)
	}
	ast, iss := env.Compile(text)
	if iss != nil && iss.Err() != nil {
		msgs := make([]string, 0, len(iss.Errors()))
		for _, ce := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("ERROR: <input>:%d:%d: %s",
				ce.Location.Line(), ce.Location.Column()+1, ce.Message))
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	switch ast.OutputType().Kind() {
	case types.StringKind, types.IntKind, types.UintKind, types.DoubleKind, types.BoolKind,
		types.TimestampKind, types.DurationKind, types.BytesKind, types.DynKind:
	default:
		return nil, fmt.Errorf("expression has type %s, want a scalar (string, number, bool, ...)", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	kp := &keyProgram{text: text, prg: prg}
	kp.mapName, kp.mapKey = mapEntry(ast)
	return kp, nil
}

// mapEntry returns the map field and key of an expression that is
// variables.k, variables["k"], spanTags.k or spanTags["k"]; empty strings
// otherwise.
func mapEntry(ast *cel.Ast) (name, key string) {
	e := ast.NativeRep().Expr()
	var operand celast.Expr
	switch e.Kind() {
	case celast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return "", ""
		}
		operand, key = sel.Operand(), sel.FieldName()
	case celast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != operators.Index || c.IsMemberFunction() || len(c.Args()) != 2 || c.Args()[1].Kind() != celast.LiteralKind {
			return "", ""
		}
		k, ok := c.Args()[1].AsLiteral().(types.String)
		if !ok {
			return "", ""
		}
		operand, key = c.Args()[0], string(k)
	default:
		return "", ""
	}
	if operand.Kind() != celast.IdentKind {
		return "", ""
	}
	switch name = operand.AsIdent(); name {
	case "variables", "spanTags":
		return name, key
	}
	return "", ""
}

// mapString is the string value of the map entry the expression is, if it
// is one and holds a string; ok false sends the instance through CEL.
// last remembers where the entry was in the previous log entry's
// variables: the entries of one instance document share their layout.
func (p *keyProgram) mapString(inst template.Instance, last *lastKey) (string, bool) {
	var v any
	switch i := inst.(type) {
	case *template.LogEntry:
		if p.mapName != "variables" {
			return "", false
		}
		if l := i.Variables.Layout(); l != last.layout || l == nil {
			last.layout, last.index = l, l.Index(p.mapKey)
		}
		if last.index >= 0 {
			v = i.Variables.At(last.index)
		}
	case *template.TraceSpan:
		if p.mapName != "spanTags" {
			return "", false
		}
		v, _ = i.Tag(p.mapKey)
	default:
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// lastKey is the key of the previous record of a report: records of one
// key (one destination service, say) share its bytes, which records never
// modify. The zero value holds no key.
type lastKey struct {
	s     string
	b     []byte
	valid bool
	// layout and index: where the key's entry was in the layout of the
	// previous log entry's variables (-1: absent).
	layout *template.Layout
	index  int
}

// bytes is s as a record key.
func (k *lastKey) bytes(s string) []byte {
	if !k.valid || k.s != s {
		k.s, k.b, k.valid = s, []byte(s), true
	}
	return k.b
}

// eval returns the key of inst's record; last (nil: none) is the key of
// the report's previous record.
func (p *keyProgram) eval(inst template.Instance, last *lastKey) ([]byte, error) {
	if last == nil {
		last = new(lastKey)
	}
	if p.mapName != "" {
		if s, ok := p.mapString(inst, last); ok {
			return last.bytes(s), nil
		}
	}
	out, _, err := p.prg.Eval(keyVars{inst})
	if err != nil {
		return nil, err
	}
	switch v := out.(type) {
	case types.String:
		return last.bytes(string(v)), nil
	case types.Bytes:
		return []byte(v), nil
	case types.Null:
		return nil, errors.New("key is null")
	case ref.Val:
		switch v.Type() {
		case types.MapType, types.ListType:
			return nil, fmt.Errorf("key has type %s, want a scalar", v.Type().TypeName())
		}
		return []byte(template.FormatValue(v.Value())), nil
	}
	return nil, fmt.Errorf("key has type %T", out)
}

// keyVars binds the variables to one instance's fields.
type keyVars struct{ inst template.Instance }

var _ interpreter.Activation = keyVars{}

// ResolveName implements interpreter.Activation.
func (v keyVars) ResolveName(name string) (any, bool) {
	switch i := v.inst.(type) {
	case *template.LogEntry:
		switch name {
		case "name":
			return i.Name, true
		case "variables":
			if i.Variables.Len() == 0 {
				return map[string]any{}, true
			}
			return i.Variables.Map(), true
		case "severity":
			return i.Severity, true
		case "timestamp":
			return i.Timestamp, true
		}
	case *template.TraceSpan:
		switch name {
		case "name":
			return i.Name, true
		case "traceId":
			return i.TraceID, true
		case "spanId":
			return i.SpanID, true
		case "parentSpanId":
			return i.ParentSpanID, true
		case "spanName":
			return i.SpanName, true
		case "spanKind":
			return i.SpanKind, true
		case "status":
			return i.Status, true
		case "httpStatusCode":
			return i.HTTPStatusCode, true
		case "sourceName":
			return i.SourceName, true
		case "destinationName":
			return i.DestinationName, true
		case "serviceName":
			return i.ServiceName(), true
		case "startTime":
			return i.StartTime, true
		case "endTime":
			return i.EndTime, true
		case "spanTags":
			if len(i.SpanTags) == 0 {
				return map[string]any{}, true
			}
			return i.TagMap(), true
		}
	case *template.OTLP:
		switch name {
		case "name":
			return i.Name, true
		case "signal":
			return i.Signal, true
		case "serviceName":
			return i.ServiceName, true
		case "serviceNamespace":
			return i.ServiceNamespace, true
		}
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (keyVars) Parent() interpreter.Activation { return nil }
