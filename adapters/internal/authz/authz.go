// Package authz is the CEL environment shared by the adapters that decide on
// authorization instances (rbac constraints, cel conditions), plus the glob
// patterns they match names with.
//
// Expressions see two variables typed as objects, so that a misspelt field
// is a compile error rather than a denial at run time:
//
//	subject: user string, groups list(string), properties map(string, dyn)
//	action:  namespace, service, method, path string, properties map(string, dyn)
//
// for example
//
//	action.path.startsWith('/api') && 'admins' in subject.groups
//	action.properties['version'] == 'v1'
//	subject.properties[?'namespace'].orValue('') == 'prod'
//
// Fields are read straight from the *template.Authorization: evaluating an
// expression allocates no maps, and one Vars serves every expression of a
// check.
package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/sidemix/sidemix/adapters/template"
)

// CEL type names of the two variables.
const (
	subjectType = "sidemix.authz.Subject"
	actionType  = "sidemix.authz.Action"
)

var stringMap = cel.MapType(cel.StringType, cel.DynType)

// field is one readable field of an object type.
type field struct {
	typ *types.Type
	get func(target any) (any, bool) // value, and whether it is set
}

var (
	subjectFields = map[string]field{
		"user": {cel.StringType, subjectField(func(s *template.Subject) (any, bool) { return s.User, s.User != "" })},
		"groups": {cel.ListType(cel.StringType), subjectField(func(s *template.Subject) (any, bool) {
			if s.Groups == nil {
				return []string{}, false
			}
			return s.Groups, len(s.Groups) > 0
		})},
		"properties": {stringMap, subjectField(func(s *template.Subject) (any, bool) { return propertiesOf(s.Properties) })},
	}
	actionFields = map[string]field{
		"namespace":  {cel.StringType, actionField(func(a *template.Action) (any, bool) { return a.Namespace, a.Namespace != "" })},
		"service":    {cel.StringType, actionField(func(a *template.Action) (any, bool) { return a.Service, a.Service != "" })},
		"method":     {cel.StringType, actionField(func(a *template.Action) (any, bool) { return a.Method, a.Method != "" })},
		"path":       {cel.StringType, actionField(func(a *template.Action) (any, bool) { return a.Path, a.Path != "" })},
		"properties": {stringMap, actionField(func(a *template.Action) (any, bool) { return propertiesOf(a.Properties) })},
	}
	objects = map[string]map[string]field{subjectType: subjectFields, actionType: actionFields}
)

var emptyProperties = map[string]any{}

// propertiesOf never hands CEL a nil map, so `'k' in x.properties` is false
// instead of an error.
func propertiesOf(m map[string]any) (any, bool) {
	if m == nil {
		return emptyProperties, false
	}
	return m, len(m) > 0
}

func subjectField(get func(*template.Subject) (any, bool)) func(any) (any, bool) {
	return func(target any) (any, bool) {
		s, ok := target.(*template.Subject)
		if !ok || s == nil {
			return nil, false
		}
		return get(s)
	}
}

func actionField(get func(*template.Action) (any, bool)) func(any) (any, bool) {
	return func(target any) (any, bool) {
		a, ok := target.(*template.Action)
		if !ok || a == nil {
			return nil, false
		}
		return get(a)
	}
}

// provider adds the Subject and Action object types to CEL's registry.
type provider struct {
	*types.Registry
}

func (p provider) FindStructType(name string) (*types.Type, bool) {
	if _, ok := objects[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Registry.FindStructType(name)
}

func (p provider) FindStructFieldNames(name string) ([]string, bool) {
	if fields, ok := objects[name]; ok {
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		slices.Sort(names)
		return names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	fields, ok := objects[name]
	if !ok {
		return p.Registry.FindStructFieldType(name, fieldName)
	}
	f, ok := fields[fieldName]
	if !ok {
		return nil, false
	}
	return &types.FieldType{
		Type: f.typ,
		IsSet: func(target any) bool {
			_, set := f.get(target)
			return set
		},
		GetFrom: func(target any) (any, error) {
			v, _ := f.get(target)
			if v == nil {
				return nil, fmt.Errorf("no field %q on %T", fieldName, target)
			}
			return v, nil
		},
	}, true
}

// NewValue refuses to build the two object types: expressions read them,
// they do not construct them.
func (p provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := objects[name]; ok {
		return types.NewErr("cannot construct %s", name)
	}
	return p.Registry.NewValue(name, fields)
}

var env = sync.OnceValues(func() (*cel.Env, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	return cel.NewEnv(
		cel.CustomTypeProvider(provider{reg}),
		cel.Variable("subject", cel.ObjectType(subjectType)),
		cel.Variable("action", cel.ObjectType(actionType)),
		cel.OptionalTypes(),
		ext.Strings(),
	)
})

// Program is a compiled boolean expression. It is safe for concurrent use.
type Program struct {
	text string
	prg  cel.Program
}

// String returns the expression's text.
func (p *Program) String() string { return p.text }

// Compile parses and type-checks a boolean expression over subject and
// action. Its error is one line, in the form the policy loader prints CEL
// errors: "ERROR: <input>:1:8: undefined field 'pth'".
func Compile(text string) (*Program, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("empty expression")
	}
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("authorization expression environment: %w", err)
	}
	ast, iss := e.Compile(text)
	if iss != nil && iss.Err() != nil {
		msgs := make([]string, 0, len(iss.Errors()))
		for _, ce := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("ERROR: <input>:%d:%d: %s",
				ce.Location.Line(), ce.Location.Column()+1, ce.Message))
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	if t := ast.OutputType(); t.Kind() != types.BoolKind {
		return nil, fmt.Errorf("expression has type %s, want bool", t)
	}
	prg, err := e.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &Program{text: text, prg: prg}, nil
}

// MustCompile is Compile for tests and fixed expressions; it panics on error.
func MustCompile(text string) *Program {
	p, err := Compile(text)
	if err != nil {
		panic(fmt.Sprintf("authz.MustCompile(%q): %v", text, err))
	}
	return p
}

// Vars binds subject and action to one authorization instance. Build one per
// check and evaluate every expression of the check against it.
type Vars struct {
	inst *template.Authorization
}

var _ interpreter.Activation = (*Vars)(nil)

// NewVars binds the variables to a.
func NewVars(a *template.Authorization) *Vars { return &Vars{inst: a} }

// ResolveName implements interpreter.Activation.
func (v *Vars) ResolveName(name string) (any, bool) {
	switch name {
	case "subject":
		return &v.inst.Subject, true
	case "action":
		return &v.inst.Action, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (v *Vars) Parent() interpreter.Activation { return nil }

// Eval evaluates p against vars. An error means the expression could not be
// evaluated, such as a missing map key; callers decide what that means.
func (p *Program) Eval(vars *Vars) (bool, error) {
	out, _, err := p.prg.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("expression returned %s, want bool", out.Type())
	}
	return bool(b), nil
}
