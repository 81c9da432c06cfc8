package yamlload

import (
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FieldIssue is a problem found while decoding one node, relative to the
// document it belongs to.
type FieldIssue struct {
	Line    int
	Field   string
	Message string
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	nodeType        = reflect.TypeFor[yaml.Node]()
	durationType    = reflect.TypeFor[time.Duration]()
	timeType        = reflect.TypeFor[time.Time]()
)

// DecodeStrict decodes node into out (a pointer) and reports every unknown
// key, with its line and YAML path under prefix, and every type error of the
// decode. yaml.v3's own KnownFields stops at the first unknown key and only
// works on a Decoder, not on a Node, so the check walks the node against
// out's type first. decoded is false when the decode itself failed (a type
// error), so out is not worth validating further; unknown keys alone leave
// out fully decoded.
func DecodeStrict(node *yaml.Node, out any, prefix string) (issues []FieldIssue, decoded bool) {
	if node == nil || node.Kind == 0 {
		return nil, true
	}
	w := walker{paths: map[int]string{}, scalar: map[int]bool{}, budget: maxWalk}
	w.check(node, reflect.TypeOf(out), prefix)
	issues = w.issues
	if err := node.Decode(out); err != nil {
		return append(issues, yamlErrIssues(err, node.Line, prefix, w.paths, ownPackage(out))...), false
	}
	return issues, true
}

// maxWalk bounds the nodes one check visits: aliases can make a small
// document a huge tree.
const maxWalk = 100000

var (
	yamlLineRE      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	cannotDecodeRE  = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
	friendlyTargets = []struct{ prefix, want string }{
		{"[]", "a list"},
		{"map[", "a mapping"},
		{"bool", "a boolean"},
	}
	tagNames = map[string]string{"!!str": "a string", "!!int": "a number", "!!float": "a number",
		"!!bool": "a boolean", "!!map": "a mapping", "!!seq": "a list", "!!null": "null"}
)

// yamlErrIssues splits a yaml.v3 error into issues, taking each message's
// line from its "line N:" prefix and its field from the path walked to that
// line.
func yamlErrIssues(err error, line int, field string, paths map[int]string, own string) []FieldIssue {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]FieldIssue, 0, len(msgs))
	for _, m := range msgs {
		l, f := line, field
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			if n, err := strconv.Atoi(sm[1]); err == nil {
				l = n
				if p, ok := paths[n]; ok {
					f = p
				}
			}
			m = sm[2]
		}
		out = append(out, FieldIssue{Line: l, Field: f, Message: friendlyDecodeError(m, own)})
	}
	return out
}

// ownPackage is the name of the package that declares the type out points
// to: its types are the caller's YAML mappings, named in no message.
func ownPackage(out any) string {
	t := reflect.TypeOf(out)
	for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map) {
		t = t.Elem()
	}
	if t == nil || t.PkgPath() == "" {
		return ""
	}
	p := t.PkgPath()
	return p[strings.LastIndexByte(p, '/')+1:]
}

// friendlyDecodeError rewrites "cannot unmarshal !!str `x` into
// []policy.actionSpec" so that it names no Go types of the package own.
func friendlyDecodeError(m, own string) string {
	sm := cannotDecodeRE.FindStringSubmatch(m)
	if sm == nil {
		return m
	}
	got := tagNames[sm[1]]
	if got == "" {
		got = sm[1]
	}
	if sm[2] != "" {
		got += " (" + strconv.Quote(sm[2]) + ")"
	}
	for _, t := range friendlyTargets {
		if strings.HasPrefix(sm[3], t.prefix) {
			return "want " + t.want + ", got " + got
		}
	}
	if own != "" && strings.HasPrefix(strings.TrimPrefix(sm[3], "*"), own+".") {
		return "want a mapping, got " + got
	}
	return "cannot decode " + got + " into " + sm[3]
}

// Resolve follows documents and aliases to the node that holds the value.
func Resolve(n *yaml.Node) *yaml.Node {
	for depth := 0; n != nil && depth < 32; depth++ {
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return n
}

// JoinPath appends key to a YAML path.
func JoinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// walker checks a node against a type.
type walker struct {
	issues []FieldIssue
	paths  map[int]string // line → path of the first value on it
	scalar map[int]bool   // lines whose path is a scalar's
	budget int
}

// check walks node against t and records every mapping key that names no
// field. It stops at types that decode themselves.
func (w *walker) check(node *yaml.Node, t reflect.Type, path string) {
	node = Resolve(node)
	if node == nil || t == nil || w.budget <= 0 {
		return
	}
	w.budget--
	leaf := node.Kind == yaml.ScalarNode
	for t.Kind() == reflect.Pointer && !t.Implements(unmarshalerType) {
		t = t.Elem()
	}
	stop := t == nodeType || t == durationType || t == timeType ||
		reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType)
	if path != "" {
		// Prefer the first leaf on a line (a scalar, or a value that
		// decodes itself): that is what a type error is about, while a
		// mapping starts on the line of its first key.
		leaf = leaf || stop
		if _, ok := w.paths[node.Line]; !ok || (leaf && !w.scalar[node.Line]) {
			w.paths[node.Line] = path
			if leaf {
				w.scalar[node.Line] = true
			}
		}
	}
	if stop {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			return // the decode reports the type error
		}
		fields, all := yamlFields(t)
		if all {
			return
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				w.check(v, t, path)
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				w.issues = append(w.issues, FieldIssue{Line: k.Line, Field: JoinPath(path, k.Value), Message: "unknown field"})
				continue
			}
			w.check(v, ft, JoinPath(path, k.Value))
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			w.check(node.Content[i+1], t.Elem(), JoinPath(path, node.Content[i].Value))
		}
	case reflect.Slice, reflect.Array:
		if node.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range node.Content {
			w.check(c, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	}
}

// yamlFields maps the YAML keys of struct t to field types, following
// yaml.v3's rules: the tag's name, else the lower-cased field name; ",inline"
// structs and maps merge into the parent; "-" is skipped.
func yamlFields(t reflect.Type) (map[string]reflect.Type, bool) {
	out := map[string]reflect.Type{}
	var walk func(t reflect.Type, depth int)
	walk = func(t reflect.Type, depth int) {
		if depth > 8 {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.PkgPath != "" && !f.Anonymous {
				continue // unexported
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			inline := false
			for _, o := range strings.Split(opts, ",") {
				if o == "inline" {
					inline = true
				}
			}
			if inline {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft, depth+1)
				} else if ft.Kind() == reflect.Map {
					out["\x00inline-map"] = ft.Elem()
				}
				continue
			}
			if f.PkgPath != "" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			out[name] = f.Type
		}
	}
	walk(t, 0)
	if _, ok := out["\x00inline-map"]; ok {
		return nil, true // an inline map takes every key
	}
	return out, false
}
