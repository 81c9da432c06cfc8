package policy

import (
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"

	"github.com/sidemix/sidemix/attribute"
)

// celType is the CEL type of an attribute kind.
func celType(k attribute.Kind) *cel.Type {
	switch k {
	case attribute.KindString:
		return cel.StringType
	case attribute.KindInt64:
		return cel.IntType
	case attribute.KindDouble:
		return cel.DoubleType
	case attribute.KindBool:
		return cel.BoolType
	case attribute.KindTimestamp:
		return cel.TimestampType
	case attribute.KindDuration:
		return cel.DurationType
	case attribute.KindBytes, attribute.KindIPAddress:
		return cel.BytesType
	case attribute.KindStringMap:
		return cel.MapType(cel.StringType, cel.StringType)
	}
	return cel.DynType
}

// newEnv builds the CEL environment of a manifest: one variable per
// attribute, named with its dotted name, plus the mesh's helpers.
func newEnv(m *attribute.Manifest) (*cel.Env, error) {
	names := m.Names()
	opts := make([]cel.EnvOption, 0, len(names)+8)
	for _, n := range names {
		k, _ := m.Kind(n)
		opts = append(opts, cel.Variable(n, celType(k)))
	}
	opts = append(opts, ext.Strings(), helpers())
	return cel.NewEnv(opts...)
}

// helpers declares ip, match, conditional, default, dnsName, email and uri.
func helpers() cel.EnvOption {
	t := cel.TypeParamType("T")
	return cel.Lib(helperLib{t: t})
}

type helperLib struct{ t *cel.Type }

func (l helperLib) LibraryName() string { return "sidemix.helpers" }

func (l helperLib) ProgramOptions() []cel.ProgramOption { return nil }

func (l helperLib) CompileOptions() []cel.EnvOption {
	t := l.t
	return []cel.EnvOption{
		cel.Function("ip",
			cel.Overload("ip_string", []*cel.Type{cel.StringType}, cel.BytesType,
				cel.UnaryBinding(celIP))),
		cel.Function("match",
			cel.Overload("match_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(celMatch))),
		cel.Function("conditional",
			cel.Overload("conditional_bool_T_T", []*cel.Type{cel.BoolType, t, t}, t,
				cel.OverloadIsNonStrict(),
				cel.FunctionBinding(celConditional))),
		cel.Function("default",
			cel.Overload("default_T_T", []*cel.Type{t, t}, t,
				cel.OverloadIsNonStrict(),
				cel.BinaryBinding(celDefault))),
		cel.Function("dnsName",
			cel.Overload("dnsName_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(validator("dnsName", validDNSName)))),
		cel.Function("email",
			cel.Overload("email_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(validator("email", validEmail)))),
		cel.Function("uri",
			cel.Overload("uri_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(validator("uri", validURI)))),
	}
}

func celIP(v ref.Val) ref.Val {
	s, ok := v.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(v)
	}
	a, err := netip.ParseAddr(string(s))
	if err != nil {
		return types.NewErr("ip(%q): not an IP address", string(s))
	}
	return types.Bytes(a.Unmap().AsSlice())
}

func celMatch(a, b ref.Val) ref.Val {
	s, ok1 := a.(types.String)
	p, ok2 := b.(types.String)
	if !ok1 || !ok2 {
		return types.MaybeNoSuchOverloadErr(a)
	}
	return types.Bool(globMatch(string(s), string(p)))
}

// globMatch is Istio's match(): "*" alone matches everything, "abc*" is a
// prefix, "*abc" a suffix, anything else must be equal.
func globMatch(s, pattern string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(s, pattern[:len(pattern)-1])
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(s, pattern[1:])
	}
	return s == pattern
}

// celConditional is non-strict so that an error in the branch not taken
// (an absent attribute, say) does not fail the whole expression.
func celConditional(args ...ref.Val) ref.Val {
	if len(args) != 3 {
		return types.NewErr("conditional: want 3 arguments, got %d", len(args))
	}
	c := args[0]
	if types.IsUnknownOrError(c) {
		return c
	}
	b, ok := c.(types.Bool)
	if !ok {
		return types.MaybeNoSuchOverloadErr(c)
	}
	if b {
		return args[1]
	}
	return args[2]
}

// celDefault returns a unless it failed to evaluate (an absent attribute or
// map key), in which case it returns b.
func celDefault(a, b ref.Val) ref.Val {
	if types.IsUnknownOrError(a) {
		return b
	}
	return a
}

func validator(name string, valid func(string) bool) func(ref.Val) ref.Val {
	return func(v ref.Val) ref.Val {
		s, ok := v.(types.String)
		if !ok {
			return types.MaybeNoSuchOverloadErr(v)
		}
		if !valid(string(s)) {
			return types.NewErr("%s(%q): invalid %s", name, string(s), name)
		}
		return s
	}
}

var dnsLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

func validURI(s string) bool {
	if s == "" {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme != "" || u.Host != "" || u.Path != "")
}

// program is one compiled expression.
type program struct {
	text string
	prg  cel.Program
	fast *fastExpr // nil: evaluated by CEL
	// id is the program's slot in an activation's memo: the compiler
	// gives one program (and one id) to every occurrence of the same
	// text, so an expression several instances share (Istio's metrics
	// repeat their dimensions) is evaluated once per bag.
	id int
	// out is the checked output type, for the type rule of each use.
	out *cel.Type
	// slots are the compiler's attribute slots (shared, read-only once
	// loaded).
	slots map[string]int
	// reads are the attributes the expression names, sorted.
	reads []string
}

// celIssue is a compile error of one expression, located inside it.
type celIssue struct {
	line, col int // 1-based, inside the expression
	msg       string
}

func (c celIssue) String() string {
	if c.line == 0 {
		return c.msg // about the whole expression
	}
	return fmt.Sprintf("ERROR: <input>:%d:%d: %s", c.line, c.col, c.msg)
}

// typeRule says which result types a field accepts.
type typeRule struct {
	desc string
	ok   func(*cel.Type) bool
}

func kindsOf(desc string, kinds ...types.Kind) typeRule {
	return typeRule{desc: desc, ok: func(t *cel.Type) bool {
		k := t.Kind()
		if k == types.DynKind || k == types.AnyKind {
			return true // checked when evaluated
		}
		for _, want := range kinds {
			if k == want {
				return true
			}
		}
		return false
	}}
}

var (
	wantBool      = kindsOf("bool", types.BoolKind)
	wantString    = kindsOf("string", types.StringKind)
	wantTimestamp = kindsOf("timestamp", types.TimestampKind)
	wantInt       = kindsOf("int", types.IntKind)
	wantNumber    = kindsOf("int, double or duration", types.IntKind, types.DoubleKind, types.DurationKind)
	wantListValue = kindsOf("string or bytes", types.StringKind, types.BytesKind)
	wantGroups    = typeRule{desc: "string or list(string)", ok: func(t *cel.Type) bool {
		switch t.Kind() {
		case types.DynKind, types.AnyKind, types.StringKind:
			return true
		case types.ListKind:
			if ps := t.Parameters(); len(ps) == 1 {
				k := ps[0].Kind()
				return k == types.StringKind || k == types.DynKind || k == types.AnyKind
			}
		}
		return false
	}}
	wantScalar = typeRule{desc: "a scalar (not a map or list)", ok: func(t *cel.Type) bool {
		k := t.Kind()
		return k != types.MapKind && k != types.ListKind
	}}
	wantAny = typeRule{desc: "any", ok: func(*cel.Type) bool { return true }}
)

// compiler compiles expressions against one environment.
type compiler struct {
	env   *cel.Env
	names []string // declared attributes, for suggestions
	// slots numbers the declared attributes (their index in names), built
	// on first use: an activation caches each attribute it resolves in
	// its slot.
	slots map[string]int
	// programs are the expressions compiled so far, by text.
	programs map[string]*program
}

// compile parses and type-checks text and checks its result type.
func (c *compiler) compile(text string, want typeRule) (*program, []celIssue) {
	if p, ok := c.programs[text]; ok {
		if !want.ok(p.out) {
			return nil, []celIssue{{msg: fmt.Sprintf("expression has type %s, want %s", typeName(p.out), want.desc)}}
		}
		return p, nil
	}
	c.slotsOf()
	ast, iss := c.env.Compile(text)
	if iss != nil && iss.Err() != nil {
		var out []celIssue
		for _, e := range iss.Errors() {
			ci := celIssue{line: e.Location.Line(), col: e.Location.Column() + 1, msg: e.Message}
			if strings.HasPrefix(ci.msg, "undeclared reference to ") {
				ci.msg = c.undeclared(text, ci.line, ci.col, ci.msg)
			}
			out = append(out, ci)
		}
		return nil, out
	}
	if t := ast.OutputType(); !want.ok(t) {
		return nil, []celIssue{{msg: fmt.Sprintf("expression has type %s, want %s", typeName(t), want.desc)}}
	}
	prg, err := c.env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, []celIssue{{msg: err.Error()}}
	}
	if c.programs == nil {
		c.programs = make(map[string]*program)
	}
	p := &program{text: text, prg: prg, fast: compileFast(ast, c.slots), id: len(c.programs), out: ast.OutputType(),
		slots: c.slots, reads: c.reads(ast)}
	c.programs[text] = p
	return p, nil
}

// reads lists the attributes a checked expression names, sorted.
func (c *compiler) reads(ast *cel.Ast) []string {
	var out []string
	for _, r := range ast.NativeRep().ReferenceMap() {
		if _, isAttr := c.slots[r.Name]; isAttr && !slices.Contains(out, r.Name) {
			out = append(out, r.Name)
		}
	}
	slices.Sort(out)
	return out
}

// slotsOf numbers the declared attributes, once.
func (c *compiler) slotsOf() map[string]int {
	if c.slots == nil {
		c.slots = make(map[string]int, len(c.names))
		for i, n := range c.names {
			c.slots[n] = i
		}
	}
	return c.slots
}

var undeclaredRE = regexp.MustCompile(`^undeclared reference to '([^']*)' \(in container '[^']*'\)$`)

// undeclared rewrites cel-go's "undeclared reference to 'request'" into
// the dotted name the author wrote, with the closest attribute as a hint.
func (c *compiler) undeclared(text string, line, col int, msg string) string {
	m := undeclaredRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	name := m[1]
	lines := strings.Split(text, "\n")
	if line >= 1 && line <= len(lines) {
		l := []rune(lines[line-1])
		if col >= 1 && col <= len(l) {
			end := col - 1
			for end < len(l) && isIdentRune(l[end]) {
				end++
			}
			full := string(l[col-1 : end])
			if end < len(l) && l[end] == '(' {
				// request.pth.startsWith(...): the last part is a method.
				if i := strings.LastIndexByte(full, '.'); i > 0 {
					full = full[:i]
				}
			}
			if full = strings.TrimRight(full, "."); strings.HasPrefix(full, name) {
				name = full
			}
		}
	}
	msg = fmt.Sprintf("undeclared reference to '%s'", name)
	if s := c.suggest(name); s != "" {
		msg += fmt.Sprintf(" (did you mean '%s'?)", s)
	}
	return msg
}

func isIdentRune(r rune) bool {
	return r == '.' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// suggest returns the declared attribute closest to name, when it is
// close enough to be a typo.
func (c *compiler) suggest(name string) string {
	best, bestD := "", min(3, len(name)/5+1)
	for _, n := range c.names {
		if d := editDistance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if a == b {
		return 0
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func typeName(t *cel.Type) string {
	if t.Kind() == types.TimestampKind {
		return "timestamp"
	}
	if t.Kind() == types.DurationKind {
		return "duration"
	}
	return t.String()
}

// readers returns the attribute slots and, by slot, the ids of the
// programs that read that attribute.
func (c *compiler) readers() (map[string]int, [][]int) {
	if c == nil {
		return nil, nil
	}
	slots := c.slotsOf()
	out := make([][]int, len(c.names))
	for _, p := range c.programs {
		for _, name := range p.reads {
			if slot, ok := slots[name]; ok {
				out[slot] = append(out[slot], p.id)
			}
		}
	}
	return slots, out
}
