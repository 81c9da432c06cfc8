package policy

import "strconv"

// ConfigView is the active configuration as plain data, for /debug/config
// and `validate`: it marshals to JSON and YAML.
type ConfigView struct {
	Digest            string            `json:"digest" yaml:"digest"`
	Attributes        map[string]string `json:"attributes,omitempty" yaml:"attributes,omitempty"` // added by AttributeManifest documents
	Handlers          []HandlerView     `json:"handlers" yaml:"handlers"`
	Instances         []InstanceView    `json:"instances" yaml:"instances"`
	Rules             []RuleView        `json:"rules" yaml:"rules"`
	QuotaSpecs        []DocumentView    `json:"quotaSpecs,omitempty" yaml:"quotaSpecs,omitempty"`
	QuotaSpecBindings []DocumentView    `json:"quotaSpecBindings,omitempty" yaml:"quotaSpecBindings,omitempty"`
}

// DocumentView is a document shown as written: a QuotaSpec or a
// QuotaSpecBinding.
type DocumentView struct {
	Name      string `json:"name" yaml:"name"`
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Source    string `json:"source" yaml:"source"`
	Spec      any    `json:"spec,omitempty" yaml:"spec,omitempty"`
}

// HandlerView is one Handler as written.
type HandlerView struct {
	Name      string   `json:"name" yaml:"name"`
	Namespace string   `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Source    string   `json:"source" yaml:"source"` // file:line
	Adapter   string   `json:"adapter" yaml:"adapter"`
	Params    any      `json:"params,omitempty" yaml:"params,omitempty"`
	Templates []string `json:"templates,omitempty" yaml:"templates,omitempty"`
}

// InstanceView is one Instance as written.
type InstanceView struct {
	Name      string `json:"name" yaml:"name"`
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Source    string `json:"source" yaml:"source"`
	Template  string `json:"template" yaml:"template"`
	Params    any    `json:"params,omitempty" yaml:"params,omitempty"`
}

// RuleView is one Rule.
type RuleView struct {
	Name                     string         `json:"name" yaml:"name"`
	Namespace                string         `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Source                   string         `json:"source" yaml:"source"`
	Match                    string         `json:"match,omitempty" yaml:"match,omitempty"`
	FailPolicy               string         `json:"failPolicy" yaml:"failPolicy"` // "open" or "closed"
	Shadow                   bool           `json:"shadow,omitempty" yaml:"shadow,omitempty"`
	Actions                  []ActionView   `json:"actions,omitempty" yaml:"actions,omitempty"`
	RequestHeaderOperations  []HeaderOpView `json:"requestHeaderOperations,omitempty" yaml:"requestHeaderOperations,omitempty"`
	ResponseHeaderOperations []HeaderOpView `json:"responseHeaderOperations,omitempty" yaml:"responseHeaderOperations,omitempty"`
}

// ActionView is one action of a rule.
type ActionView struct {
	Handler   string   `json:"handler" yaml:"handler"`
	Instances []string `json:"instances" yaml:"instances"`
}

// HeaderOpView is one header operation of a rule.
type HeaderOpView struct {
	Name      string   `json:"name" yaml:"name"`
	Values    []string `json:"values,omitempty" yaml:"values,omitempty"`
	Operation string   `json:"operation" yaml:"operation"`
}

func (o HeaderOp) String() string {
	switch o {
	case HeaderReplace:
		return "REPLACE"
	case HeaderRemove:
		return "REMOVE"
	case HeaderAppend:
		return "APPEND"
	}
	return "UNKNOWN"
}

func source(file string, line int) string {
	if line > 0 {
		return file + ":" + strconv.Itoa(line)
	}
	return file
}

// View returns the active configuration as a *ConfigView.
func (s *Snapshot) View() any {
	v := &ConfigView{Digest: s.digest, Handlers: []HandlerView{}, Instances: []InstanceView{}, Rules: []RuleView{}}
	if len(s.extraAttributes) > 0 {
		v.Attributes = s.extraAttributes
	}
	for _, hc := range s.Handlers() {
		var h *handler
		for _, x := range s.handlers {
			if x.name == hc.Name {
				h = x
				break
			}
		}
		v.Handlers = append(v.Handlers, HandlerView{Name: h.name, Namespace: h.namespace, Source: source(h.file, h.line),
			Adapter: h.adapter, Params: h.view, Templates: hc.Templates})
	}
	for _, in := range s.instances {
		v.Instances = append(v.Instances, InstanceView{Name: in.name, Namespace: in.namespace, Source: source(in.file, in.line),
			Template: in.template, Params: in.view})
	}
	for _, r := range s.rules {
		rv := RuleView{Name: r.name, Namespace: r.namespace, Source: source(r.file, r.line), FailPolicy: "closed", Shadow: r.shadow}
		if r.failOpen {
			rv.FailPolicy = "open"
		}
		if r.match != nil {
			rv.Match = r.match.text
		}
		for _, a := range r.actions {
			av := ActionView{Handler: a.handler.name}
			for _, in := range a.instances {
				av.Instances = append(av.Instances, in.name)
			}
			rv.Actions = append(rv.Actions, av)
		}
		rv.RequestHeaderOperations = opViews(r.requestOps)
		rv.ResponseHeaderOperations = opViews(r.responseOps)
		v.Rules = append(v.Rules, rv)
	}
	for _, qs := range s.quotaSpecs {
		v.QuotaSpecs = append(v.QuotaSpecs, DocumentView{Name: qs.name, Namespace: qs.namespace,
			Source: source(qs.file, qs.line), Spec: qs.view})
	}
	for _, b := range s.quotaBindings {
		v.QuotaSpecBindings = append(v.QuotaSpecBindings, DocumentView{Name: b.name, Namespace: b.namespace,
			Source: source(b.file, b.line), Spec: b.view})
	}
	return v
}

func opViews(ops []headerOp) []HeaderOpView {
	var out []HeaderOpView
	for _, o := range ops {
		ov := HeaderOpView{Name: o.name, Operation: o.op.String()}
		for _, p := range o.values {
			ov.Values = append(ov.Values, p.text)
		}
		out = append(out, ov)
	}
	return out
}
