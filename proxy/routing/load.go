package routing

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sidemix/sidemix/internal/yamlload"
)

// APIVersion is sidemix's own apiVersion for the routing kinds; Istio's
// networking.istio.io/v1, v1beta1 and v1alpha3 are accepted too.
const APIVersion = "networking.sidemix.dev/v1"

var apiVersions = []string{APIVersion, "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}

// Document kinds.
const (
	KindServiceEntry    = "ServiceEntry"
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"
)

var kinds = []string{KindServiceEntry, KindVirtualService, KindDestinationRule}

// otherIstioKinds are Istio networking kinds a folder of Istio files may
// hold; they are reported as warnings and skipped.
var otherIstioKinds = []string{"Gateway", "Sidecar", "WorkloadEntry", "WorkloadGroup", "EnvoyFilter", "ProxyConfig"}

// Issue is one problem (or warning) of a load, naming file, line and field.
type Issue = yamlload.Issue

// LoadError lists every issue of a failed load.
type LoadError = yamlload.LoadError

// Load reads the files and folders given (*.yaml, *.yml; folders
// recursively), decodes every document strictly, checks every reference,
// and compiles the table, or returns a *LoadError listing every issue.
func Load(paths ...string) (*Table, error) {
	files, issues := yamlload.ReadFiles(paths)
	t, err := LoadSources(files)
	if len(issues) == 0 {
		return t, err
	}
	if le, ok := err.(*LoadError); ok {
		issues = append(issues, le.Issues...)
	}
	yamlload.SortIssues(issues)
	return nil, &LoadError{Issues: issues}
}

// LoadSources is Load over in-memory files (name → content).
func LoadSources(files map[string][]byte) (*Table, error) {
	l := &loader{}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%d:%s\n%d:", len(n), n, len(files[n]))
		h.Write(files[n])
		docs, bad := yamlload.Documents(n, files[n])
		for _, d := range docs {
			l.parseDoc(n, d)
		}
		if bad != nil {
			l.issues = append(l.issues, *bad)
		}
	}
	t := l.build()
	if len(l.issues) > 0 {
		yamlload.SortIssues(l.issues)
		return nil, &LoadError{Issues: l.issues}
	}
	yamlload.SortIssues(l.warnings)
	t.warnings = l.warnings
	t.digest = hex.EncodeToString(h.Sum(nil))
	return t, nil
}

type document struct {
	file, kind, name, namespace string
	line, nameLine              int
	spec                        *yaml.Node
}

type loader struct {
	issues, warnings []Issue
	docs             []*document
}

func (l *loader) add(d *document, line int, field, format string, args ...any) {
	l.issues = append(l.issues, Issue{File: d.file, Line: line, Kind: d.kind, Name: d.name, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (l *loader) warn(d *document, line int, field, format string, args ...any) {
	l.warnings = append(l.warnings, Issue{File: d.file, Line: line, Kind: d.kind, Name: d.name, Field: field, Message: fmt.Sprintf(format, args...)})
}

func (l *loader) addFields(d *document, fi []yamlload.FieldIssue) {
	for _, f := range fi {
		l.add(d, f.Line, f.Field, "%s", f.Message)
	}
}

type envelope struct {
	APIVersion string    `yaml:"apiVersion"`
	Kind       string    `yaml:"kind"`
	Metadata   metadata  `yaml:"metadata"`
	Spec       yaml.Node `yaml:"spec"`
	Status     yaml.Node `yaml:"status" sidemix:"unimplemented"`
}

type metadata struct {
	Name        string               `yaml:"name"`
	Namespace   string               `yaml:"namespace"`
	Labels      map[string]string    `yaml:"labels"`
	Annotations map[string]string    `yaml:"annotations"`
	Other       map[string]yaml.Node `yaml:",inline"` // what `kubectl get -o yaml` adds: warned, unused
}

func (l *loader) parseDoc(file string, root *yaml.Node) {
	n := yamlload.Resolve(root)
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return
	}
	d := &document{file: file, line: n.Line}
	if n.Kind != yaml.MappingNode {
		l.add(d, n.Line, "", "a document must be a mapping with apiVersion, kind, metadata and spec")
		return
	}
	var env envelope
	fi, decoded := yamlload.DecodeStrict(n, &env, "")
	d.kind, d.name, d.namespace = env.Kind, env.Metadata.Name, env.Metadata.Namespace
	l.addFields(d, fi)
	if !decoded {
		return
	}
	if k := yamlload.ValueNode(n, "apiVersion"); k == nil {
		l.add(d, n.Line, "apiVersion", "required (want one of %s)", strings.Join(apiVersions, ", "))
		return
	} else if !slices.Contains(apiVersions, env.APIVersion) {
		l.add(d, k.Line, "apiVersion", "unknown apiVersion %q (want one of %s)", env.APIVersion, strings.Join(apiVersions, ", "))
		return
	}
	kindLine := yamlload.LineOf(yamlload.ValueNode(n, "kind"), n.Line)
	switch {
	case env.Kind == "":
		l.add(d, n.Line, "kind", "required (one of %s)", strings.Join(kinds, ", "))
		return
	case slices.Contains(otherIstioKinds, env.Kind):
		l.warn(d, kindLine, "kind", "sidemix does not implement %s; the document is skipped", env.Kind)
		return
	case !slices.Contains(kinds, env.Kind):
		l.add(d, kindLine, "kind", "unknown kind %q (want one of %s)", env.Kind, strings.Join(kinds, ", "))
		return
	}
	meta := yamlload.Resolve(yamlload.ValueNode(n, "metadata"))
	d.nameLine = yamlload.LineOf(yamlload.ValueNode(meta, "name"), yamlload.LineOf(meta, n.Line))
	if env.Metadata.Name == "" {
		l.add(d, d.nameLine, "metadata.name", "required")
		return
	}
	keys := make([]string, 0, len(env.Metadata.Other))
	for k := range env.Metadata.Other {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		l.warn(d, yamlload.LineOf(yamlload.KeyNode(meta, k), d.nameLine), "metadata."+k, "not used by sidemix")
	}
	l.unimplemented(d, reflect.ValueOf(env), "")
	if sn := yamlload.ValueNode(n, "spec"); sn != nil {
		d.spec = yamlload.Resolve(sn)
	}
	if d.spec == nil || d.spec.Kind != yaml.MappingNode {
		l.add(d, yamlload.LineOf(d.spec, n.Line), "spec", "required: a mapping")
		return
	}
	l.docs = append(l.docs, d)
}

// unimplemented warns of every field tagged `sidemix:"unimplemented"` that
// the document sets, walking v (a decoded spec) along its YAML paths.
func (l *loader) unimplemented(d *document, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			l.unimplemented(d, v.Elem(), path)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			l.unimplemented(d, v.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
	case reflect.Map:
		if v.Type().Elem().Kind() != reflect.Struct || v.Type().Elem() == reflect.TypeFor[yaml.Node]() {
			return
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			l.unimplemented(d, v.MapIndex(k), yamlload.JoinPath(path, k.String()))
		}
	case reflect.Struct:
		t := v.Type()
		if t == reflect.TypeFor[yaml.Node]() {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := yamlload.JoinPath(path, name)
			if f.Tag.Get("sidemix") == "unimplemented" {
				if n := v.Field(i).Interface().(yaml.Node); n.Kind != 0 {
					l.warn(d, n.Line, p, "not implemented by sidemix; ignored")
				}
				continue
			}
			l.unimplemented(d, v.Field(i), p)
		}
	}
}

// service is a compiled ServiceEntry.
type service struct {
	doc        *document
	hosts      []string
	ports      []servicePort
	endpoints  []Endpoint // with the port still to choose: Port holds 0
	epPorts    []map[string]int
	resolution string
}

type rule struct {
	doc     *document
	spec    destinationRuleSpec
	subsets map[string]*subset
}

func (l *loader) build() *Table {
	t := &Table{exact: map[string]*vhost{}, clusters: map[ClusterKey]*Cluster{}}
	services := map[string]*service{} // by host
	rules := map[string]*rule{}       // by host
	type vsDoc struct {
		d    *document
		spec virtualServiceSpec
	}
	var vss []vsDoc
	seen := map[string]*document{}
	for _, d := range l.docs {
		key := d.kind + "/" + d.namespace + "/" + d.name
		if prev := seen[key]; prev != nil {
			l.add(d, d.nameLine, "metadata.name", "%s %q already defined at %s:%d", d.kind, d.name, prev.file, prev.nameLine)
			continue
		}
		seen[key] = d
		switch d.kind {
		case KindServiceEntry:
			var spec serviceEntrySpec
			fi, ok := yamlload.DecodeStrict(d.spec, &spec, "spec")
			l.addFields(d, fi)
			if !ok {
				continue
			}
			l.unimplemented(d, reflect.ValueOf(spec), "spec")
			if s := l.serviceEntry(d, &spec); s != nil {
				for _, h := range s.hosts {
					if prev := services[h]; prev != nil {
						l.add(d, lineAt(d.spec, "hosts"), "spec.hosts", "host %q already has ServiceEntry %s (%s:%d)", h, prev.doc.name, prev.doc.file, prev.doc.nameLine)
						continue
					}
					services[h] = s
				}
			}
		case KindDestinationRule:
			var spec destinationRuleSpec
			fi, ok := yamlload.DecodeStrict(d.spec, &spec, "spec")
			l.addFields(d, fi)
			if !ok {
				continue
			}
			l.unimplemented(d, reflect.ValueOf(spec), "spec")
			if r := l.destinationRule(d, &spec); r != nil {
				h := strings.ToLower(spec.Host)
				if prev := rules[h]; prev != nil {
					l.add(d, lineAt(d.spec, "host"), "spec.host", "host %q already has DestinationRule %s (%s:%d)", h, prev.doc.name, prev.doc.file, prev.doc.nameLine)
					continue
				}
				rules[h] = r
			}
		case KindVirtualService:
			var spec virtualServiceSpec
			fi, ok := yamlload.DecodeStrict(d.spec, &spec, "spec")
			l.addFields(d, fi)
			if !ok {
				continue
			}
			l.unimplemented(d, reflect.ValueOf(spec), "spec")
			vss = append(vss, vsDoc{d, spec})
		}
	}
	c := &compiler{l: l, t: t, services: services, rules: map[string]*rule{}, aliases: map[string]bool{}}
	// Rules by the ServiceEntry host they name, however spelled.
	ruleHosts := make([]string, 0, len(rules))
	for h := range rules {
		ruleHosts = append(ruleHosts, h)
	}
	sort.Strings(ruleHosts)
	for _, h := range ruleHosts {
		r := rules[h]
		full := c.resolveHost(h, r.doc.namespace)
		if full == "" {
			l.warn(r.doc, lineAt(r.doc.spec, "host"), "spec.host", "no ServiceEntry has host %q; the rule applies to nothing", r.spec.Host)
			continue
		}
		if prev := c.rules[full]; prev != nil {
			l.add(r.doc, lineAt(r.doc.spec, "host"), "spec.host", "host %q already has DestinationRule %s (%s:%d)", full, prev.doc.name, prev.doc.file, prev.doc.nameLine)
			continue
		}
		c.rules[full] = r
	}
	vsHosts := map[string]*document{}
	for _, v := range vss {
		c.virtualService(v.d, &v.spec, vsHosts)
	}
	// Every ServiceEntry host without a VirtualService gets a default route
	// per port, to all its endpoints.
	hosts := make([]string, 0, len(services))
	for h := range services {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		if vsHosts[h] != nil {
			continue
		}
		s := services[h]
		v := &vhost{host: h, defaults: map[int]*Route{}}
		for i, p := range s.ports {
			key := ClusterKey{Host: h, Port: p.Number}
			c.cluster(s, key)
			rt := &Route{Name: h, Destinations: []Destination{{Cluster: key, Weight: 100}}, totalWeight: 100, Retries: DefaultRetries}
			v.defaults[p.Number] = rt
			if i == 0 {
				v.first = rt
			}
		}
		c.addVhost(v)
	}
	sort.SliceStable(t.wild, func(i, j int) bool { return len(t.wild[i].suffix) > len(t.wild[j].suffix) })
	return t
}

var resolutions = []string{"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"}
var protocols = []string{"HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTPS", "TCP", "TLS", "MONGO", "MYSQL", "REDIS", ""}

func (l *loader) serviceEntry(d *document, spec *serviceEntrySpec) *service {
	n := len(l.issues)
	s := &service{doc: d, resolution: strings.ToUpper(spec.Resolution)}
	if s.resolution == "" {
		s.resolution = "NONE"
	}
	if len(spec.Hosts) == 0 {
		l.add(d, d.spec.Line, "spec.hosts", "required: at least one host")
	}
	for i, h := range spec.Hosts {
		f := fmt.Sprintf("spec.hosts[%d]", i)
		if err := checkHost(h); err != nil {
			l.add(d, lineAt(d.spec, f), f, "%v", err)
			continue
		}
		s.hosts = append(s.hosts, strings.ToLower(h))
	}
	if len(spec.Ports) == 0 {
		l.add(d, d.spec.Line, "spec.ports", "required: at least one port")
	}
	names := map[string]bool{}
	for i, p := range spec.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		if p.Number < 1 || p.Number > 65535 {
			l.add(d, lineAt(d.spec, f+".number"), f+".number", "%d is not a port (1 to 65535)", p.Number)
		}
		if p.TargetPort < 0 || p.TargetPort > 65535 {
			l.add(d, lineAt(d.spec, f+".targetPort"), f+".targetPort", "%d is not a port (1 to 65535)", p.TargetPort)
		}
		if p.Name != "" {
			if names[p.Name] {
				l.add(d, lineAt(d.spec, f+".name"), f+".name", "port name %q used twice", p.Name)
			}
			names[p.Name] = true
		}
		proto := strings.ToUpper(p.Protocol)
		if !slices.Contains(protocols, proto) {
			l.add(d, lineAt(d.spec, f+".protocol"), f+".protocol", "unknown protocol %q (want HTTP, HTTP2, GRPC, ...)", p.Protocol)
		} else if proto != "" && proto != "HTTP" && proto != "HTTP2" && proto != "GRPC" && proto != "GRPC-WEB" {
			l.warn(d, lineAt(d.spec, f+".protocol"), f+".protocol", "protocol %s is routed as HTTP by the outbound listener", proto)
		}
		spec.Ports[i].Protocol = proto
	}
	s.ports = spec.Ports
	if !slices.Contains(resolutions, s.resolution) {
		l.add(d, lineAt(d.spec, "resolution"), "spec.resolution", "unknown resolution %q (want STATIC, DNS, DNS_ROUND_ROBIN or NONE)", spec.Resolution)
	}
	if s.resolution == "STATIC" && len(spec.Endpoints) == 0 {
		l.add(d, lineAt(d.spec, "resolution"), "spec.endpoints", "required with resolution STATIC")
	}
	for i, ep := range spec.Endpoints {
		f := fmt.Sprintf("spec.endpoints[%d]", i)
		if ep.Address == "" {
			l.add(d, lineAt(d.spec, f), f+".address", "required")
			continue
		}
		if _, err := netip.ParseAddr(ep.Address); err != nil {
			if s.resolution == "STATIC" {
				l.add(d, lineAt(d.spec, f+".address"), f+".address", "%q is not an IP address (resolution STATIC)", ep.Address)
			} else if err := checkHost(ep.Address); err != nil || strings.HasPrefix(ep.Address, "*") {
				l.add(d, lineAt(d.spec, f+".address"), f+".address", "%q is neither an IP address nor a host name", ep.Address)
			}
		}
		for name, port := range ep.Ports {
			if !names[name] {
				l.add(d, lineAt(d.spec, f+".ports."+name), f+".ports."+name, "no port named %q in spec.ports", name)
			}
			if port < 1 || port > 65535 {
				l.add(d, lineAt(d.spec, f+".ports."+name), f+".ports."+name, "%d is not a port (1 to 65535)", port)
			}
		}
		if ep.Weight < 0 {
			l.add(d, lineAt(d.spec, f+".weight"), f+".weight", "negative: %d", ep.Weight)
		}
		s.endpoints = append(s.endpoints, Endpoint{Address: ep.Address, Labels: ep.Labels, Weight: uint32(max(ep.Weight, 0))})
		s.epPorts = append(s.epPorts, ep.Ports)
	}
	if len(spec.Endpoints) == 0 && s.resolution != "STATIC" {
		// DNS (and NONE) without endpoints: the hosts themselves.
		for i, h := range s.hosts {
			if strings.HasPrefix(h, "*") {
				l.add(d, lineAt(d.spec, fmt.Sprintf("spec.hosts[%d]", i)), fmt.Sprintf("spec.hosts[%d]", i),
					"a wildcard host needs endpoints (resolution %s)", s.resolution)
				continue
			}
			s.endpoints = append(s.endpoints, Endpoint{Address: h})
			s.epPorts = append(s.epPorts, nil)
		}
	}
	if len(l.issues) > n {
		return nil
	}
	return s
}

func checkHost(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("empty host")
	case strings.ContainsAny(h, ":/ \t"):
		return fmt.Errorf("%q is not a host name (no port, path or spaces)", h)
	case strings.Contains(h[1:], "*") || (h[0] == '*' && h != "*" && !strings.HasPrefix(h, "*.")):
		return fmt.Errorf("%q: a wildcard must be the whole first label (*.example.com)", h)
	}
	return nil
}

var lbPolicies = []string{"UNSPECIFIED", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM", "PASSTHROUGH"}

func (l *loader) destinationRule(d *document, spec *destinationRuleSpec) *rule {
	n := len(l.issues)
	if spec.Host == "" {
		l.add(d, d.spec.Line, "spec.host", "required")
	} else if err := checkHost(spec.Host); err != nil {
		l.add(d, lineAt(d.spec, "host"), "spec.host", "%v", err)
	}
	l.trafficPolicy(d, spec.TrafficPolicy, "spec.trafficPolicy")
	r := &rule{doc: d, spec: *spec, subsets: map[string]*subset{}}
	for i := range spec.Subsets {
		ss := &spec.Subsets[i]
		f := fmt.Sprintf("spec.subsets[%d]", i)
		if ss.Name == "" {
			l.add(d, lineAt(d.spec, f), f+".name", "required")
			continue
		}
		if r.subsets[ss.Name] != nil {
			l.add(d, lineAt(d.spec, f+".name"), f+".name", "subset %q defined twice", ss.Name)
		}
		r.subsets[ss.Name] = ss
		l.trafficPolicy(d, ss.TrafficPolicy, f+".trafficPolicy")
	}
	if len(l.issues) > n {
		return nil
	}
	return r
}

func (l *loader) trafficPolicy(d *document, tp *trafficPolicy, f string) {
	if tp == nil {
		return
	}
	nonNeg := func(field string, v int) {
		if v < 0 {
			l.add(d, lineAt(d.spec, field), field, "negative: %d", v)
		}
	}
	dur := func(field string, v *duration) {
		if v != nil && v.D < 0 {
			l.add(d, v.Line, field, "negative: %v", v.D)
		}
	}
	if lb := tp.LoadBalancer; lb != nil && lb.Simple != "" && !slices.Contains(lbPolicies, strings.ToUpper(lb.Simple)) {
		l.add(d, lineAt(d.spec, f+".loadBalancer.simple"), f+".loadBalancer.simple", "unknown policy %q (want ROUND_ROBIN, LEAST_REQUEST, RANDOM or PASSTHROUGH)", lb.Simple)
	}
	if cp := tp.ConnectionPool; cp != nil {
		if t := cp.TCP; t != nil {
			nonNeg(f+".connectionPool.tcp.maxConnections", t.MaxConnections)
			dur(f+".connectionPool.tcp.connectTimeout", t.ConnectTimeout)
		}
		if h := cp.HTTP; h != nil {
			p := f + ".connectionPool.http."
			nonNeg(p+"http1MaxPendingRequests", h.HTTP1MaxPendingRequests)
			nonNeg(p+"http2MaxRequests", h.HTTP2MaxRequests)
			nonNeg(p+"maxRequestsPerConnection", h.MaxRequestsPerConnection)
			nonNeg(p+"maxRetries", h.MaxRetries)
			dur(p+"idleTimeout", h.IdleTimeout)
		}
	}
	if od := tp.OutlierDetection; od != nil {
		p := f + ".outlierDetection."
		for name, v := range map[string]*int{"consecutive5xxErrors": od.Consecutive5xxErrors, "consecutiveGatewayErrors": od.ConsecutiveGatewayErrors} {
			if v != nil {
				nonNeg(p+name, *v)
			}
		}
		for name, v := range map[string]*int{"maxEjectionPercent": od.MaxEjectionPercent, "minHealthPercent": od.MinHealthPercent} {
			if v != nil && (*v < 0 || *v > 100) {
				l.add(d, lineAt(d.spec, p+name), p+name, "%d is not a percentage (0 to 100)", *v)
			}
		}
		dur(p+"interval", od.Interval)
		dur(p+"baseEjectionTime", od.BaseEjectionTime)
	}
	if hc := tp.HealthCheck; hc != nil {
		p := f + ".healthCheck."
		if hc.Path == "" || hc.Path[0] != '/' {
			l.add(d, lineAt(d.spec, p+"path"), p+"path", "required: an absolute path such as /healthz")
		}
		dur(p+"interval", hc.Interval)
		dur(p+"timeout", hc.Timeout)
		nonNeg(p+"healthyThreshold", hc.HealthyThreshold)
		nonNeg(p+"unhealthyThreshold", hc.UnhealthyThreshold)
	}
}

// lineAt finds the line of a YAML path ("http[0].route[1].weight") under
// n, or of the deepest node on the way.
func lineAt(n *yaml.Node, path string) int {
	n = yamlload.Resolve(n)
	line := yamlload.LineOf(n, 0)
	for _, seg := range splitPath(strings.TrimPrefix(path, "spec.")) {
		if n == nil {
			break
		}
		if i, err := strconv.Atoi(seg); err == nil && n.Kind == yaml.SequenceNode {
			if i >= len(n.Content) {
				break
			}
			n = yamlload.Resolve(n.Content[i])
		} else {
			k := yamlload.KeyNode(n, seg)
			if k == nil {
				break
			}
			line = k.Line
			n = yamlload.Resolve(yamlload.ValueNode(n, seg))
			if n != nil && n.Kind == yaml.ScalarNode {
				line = n.Line
			}
			continue
		}
		line = yamlload.LineOf(n, line)
	}
	return line
}

func splitPath(p string) []string {
	p = strings.NewReplacer("[", ".", "]", "").Replace(p)
	if p == "" || p == "spec" {
		return nil
	}
	return strings.Split(p, ".")
}

var statusRE = regexp.MustCompile(`^[1-5][0-9][0-9]$`)
