package routing

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// The spec types mirror Istio's networking API (networking.istio.io) field
// for field, so that users' files decode unchanged. A field typed yaml.Node
// and tagged `sidemix:"unimplemented"` is accepted and reported as a
// warning: sidemix reads it but does not act on it.

type serviceEntrySpec struct {
	Hosts            []string        `yaml:"hosts"`
	Ports            []servicePort   `yaml:"ports"`
	Resolution       string          `yaml:"resolution"`
	Endpoints        []workloadEntry `yaml:"endpoints"`
	Addresses        yaml.Node       `yaml:"addresses" sidemix:"unimplemented"`
	Location         yaml.Node       `yaml:"location" sidemix:"unimplemented"`
	ExportTo         yaml.Node       `yaml:"exportTo" sidemix:"unimplemented"`
	SubjectAltNames  yaml.Node       `yaml:"subjectAltNames" sidemix:"unimplemented"`
	WorkloadSelector yaml.Node       `yaml:"workloadSelector" sidemix:"unimplemented"`
}

type servicePort struct {
	Number     int    `yaml:"number"`
	Protocol   string `yaml:"protocol"`
	Name       string `yaml:"name"`
	TargetPort int    `yaml:"targetPort"`
}

type workloadEntry struct {
	Address        string            `yaml:"address"`
	Ports          map[string]int    `yaml:"ports"`
	Labels         map[string]string `yaml:"labels"`
	Weight         int               `yaml:"weight"`
	Network        yaml.Node         `yaml:"network" sidemix:"unimplemented"`
	Locality       yaml.Node         `yaml:"locality" sidemix:"unimplemented"`
	ServiceAccount yaml.Node         `yaml:"serviceAccount" sidemix:"unimplemented"`
}

type virtualServiceSpec struct {
	Hosts    []string    `yaml:"hosts"`
	HTTP     []httpRoute `yaml:"http"`
	Gateways yaml.Node   `yaml:"gateways" sidemix:"unimplemented"`
	ExportTo yaml.Node   `yaml:"exportTo" sidemix:"unimplemented"`
	TCP      yaml.Node   `yaml:"tcp" sidemix:"unimplemented"`
	TLS      yaml.Node   `yaml:"tls" sidemix:"unimplemented"`
}

type httpRoute struct {
	Name             string             `yaml:"name"`
	Match            []httpMatch        `yaml:"match"`
	Route            []routeDestination `yaml:"route"`
	Redirect         *httpRedirect      `yaml:"redirect"`
	Rewrite          *httpRewrite       `yaml:"rewrite"`
	Timeout          *duration          `yaml:"timeout"`
	Retries          *httpRetry         `yaml:"retries"`
	Fault            *httpFault         `yaml:"fault"`
	Mirror           *destination       `yaml:"mirror"`
	MirrorPercentage *percent           `yaml:"mirrorPercentage"`
	MirrorPercent    *int               `yaml:"mirrorPercent"` // deprecated by Istio, still read
	Headers          *headers           `yaml:"headers"`
	Mirrors          yaml.Node          `yaml:"mirrors" sidemix:"unimplemented"`
	CorsPolicy       yaml.Node          `yaml:"corsPolicy" sidemix:"unimplemented"`
	Delegate         yaml.Node          `yaml:"delegate" sidemix:"unimplemented"`
	DirectResponse   yaml.Node          `yaml:"directResponse" sidemix:"unimplemented"`
}

type httpMatch struct {
	Name            string                 `yaml:"name"`
	URI             *stringMatch           `yaml:"uri"`
	Method          *stringMatch           `yaml:"method"`
	Authority       *stringMatch           `yaml:"authority"`
	Headers         map[string]stringMatch `yaml:"headers"`
	WithoutHeaders  map[string]stringMatch `yaml:"withoutHeaders"`
	QueryParams     map[string]stringMatch `yaml:"queryParams"`
	Port            int                    `yaml:"port"`
	IgnoreURICase   bool                   `yaml:"ignoreUriCase"`
	Scheme          yaml.Node              `yaml:"scheme" sidemix:"unimplemented"`
	SourceLabels    yaml.Node              `yaml:"sourceLabels" sidemix:"unimplemented"`
	SourceNamespace yaml.Node              `yaml:"sourceNamespace" sidemix:"unimplemented"`
	Gateways        yaml.Node              `yaml:"gateways" sidemix:"unimplemented"`
	StatPrefix      yaml.Node              `yaml:"statPrefix" sidemix:"unimplemented"`
}

type stringMatch struct {
	Exact  *string `yaml:"exact"`
	Prefix *string `yaml:"prefix"`
	Regex  *string `yaml:"regex"`
	line   int
}

func (s *stringMatch) UnmarshalYAML(n *yaml.Node) error {
	type plain stringMatch
	var p plain
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a mapping with one of exact, prefix or regex", n.Line)}}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "exact", "prefix", "regex":
		default:
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: unknown field %q (want one of exact, prefix or regex)", n.Content[i].Line, k)}}
		}
	}
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = stringMatch(p)
	s.line = n.Line
	return nil
}

type routeDestination struct {
	Destination destination `yaml:"destination"`
	Weight      *int        `yaml:"weight"`
	Headers     *headers    `yaml:"headers"`
}

type destination struct {
	Host   string     `yaml:"host"`
	Subset string     `yaml:"subset"`
	Port   portSelect `yaml:"port"`
}

type portSelect struct {
	Number int `yaml:"number"`
}

type httpRedirect struct {
	URI          string    `yaml:"uri"`
	Authority    string    `yaml:"authority"`
	Port         int       `yaml:"port"`
	Scheme       string    `yaml:"scheme"`
	RedirectCode int       `yaml:"redirectCode"`
	DerivePort   yaml.Node `yaml:"derivePort" sidemix:"unimplemented"`
}

type httpRewrite struct {
	URI       string    `yaml:"uri"`
	Authority string    `yaml:"authority"`
	URIRegex  yaml.Node `yaml:"uriRegexRewrite" sidemix:"unimplemented"`
}

type httpRetry struct {
	Attempts              int       `yaml:"attempts"`
	PerTryTimeout         *duration `yaml:"perTryTimeout"`
	RetryOn               string    `yaml:"retryOn"`
	RetryRemoteLocalities yaml.Node `yaml:"retryRemoteLocalities" sidemix:"unimplemented"`
}

type httpFault struct {
	Delay *faultDelay `yaml:"delay"`
	Abort *faultAbort `yaml:"abort"`
}

type faultDelay struct {
	Percentage       *percent  `yaml:"percentage"`
	Percent          *int      `yaml:"percent"` // deprecated by Istio, still read
	FixedDelay       *duration `yaml:"fixedDelay"`
	ExponentialDelay yaml.Node `yaml:"exponentialDelay" sidemix:"unimplemented"`
}

type faultAbort struct {
	Percentage *percent  `yaml:"percentage"`
	HTTPStatus int       `yaml:"httpStatus"`
	GRPCStatus yaml.Node `yaml:"grpcStatus" sidemix:"unimplemented"`
	HTTP2Error yaml.Node `yaml:"http2Error" sidemix:"unimplemented"`
}

type percent struct {
	Value float64 `yaml:"value"`
}

type headers struct {
	Request  *headerOps `yaml:"request"`
	Response *headerOps `yaml:"response"`
}

type headerOps struct {
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

type destinationRuleSpec struct {
	Host             string         `yaml:"host"`
	TrafficPolicy    *trafficPolicy `yaml:"trafficPolicy"`
	Subsets          []subset       `yaml:"subsets"`
	ExportTo         yaml.Node      `yaml:"exportTo" sidemix:"unimplemented"`
	WorkloadSelector yaml.Node      `yaml:"workloadSelector" sidemix:"unimplemented"`
}

type subset struct {
	Name          string            `yaml:"name"`
	Labels        map[string]string `yaml:"labels"`
	TrafficPolicy *trafficPolicy    `yaml:"trafficPolicy"`
}

type trafficPolicy struct {
	LoadBalancer      *loadBalancer     `yaml:"loadBalancer"`
	ConnectionPool    *connectionPool   `yaml:"connectionPool"`
	OutlierDetection  *outlierDetection `yaml:"outlierDetection"`
	HealthCheck       *healthCheck      `yaml:"healthCheck"` // sidemix: active HTTP checks
	TLS               yaml.Node         `yaml:"tls" sidemix:"unimplemented"`
	PortLevelSettings yaml.Node         `yaml:"portLevelSettings" sidemix:"unimplemented"`
	Tunnel            yaml.Node         `yaml:"tunnel" sidemix:"unimplemented"`
	ProxyProtocol     yaml.Node         `yaml:"proxyProtocol" sidemix:"unimplemented"`
}

type loadBalancer struct {
	Simple             string    `yaml:"simple"`
	ConsistentHash     yaml.Node `yaml:"consistentHash" sidemix:"unimplemented"`
	LocalityLbSetting  yaml.Node `yaml:"localityLbSetting" sidemix:"unimplemented"`
	WarmupDurationSecs yaml.Node `yaml:"warmupDurationSecs" sidemix:"unimplemented"`
}

type connectionPool struct {
	TCP  *tcpSettings  `yaml:"tcp"`
	HTTP *httpSettings `yaml:"http"`
}

type tcpSettings struct {
	MaxConnections int       `yaml:"maxConnections"`
	ConnectTimeout *duration `yaml:"connectTimeout"`
	TCPKeepalive   yaml.Node `yaml:"tcpKeepalive" sidemix:"unimplemented"`
	MaxConnDur     yaml.Node `yaml:"maxConnectionDuration" sidemix:"unimplemented"`
	IdleTimeout    yaml.Node `yaml:"idleTimeout" sidemix:"unimplemented"`
}

type httpSettings struct {
	HTTP1MaxPendingRequests  int       `yaml:"http1MaxPendingRequests"`
	HTTP2MaxRequests         int       `yaml:"http2MaxRequests"`
	MaxRequestsPerConnection int       `yaml:"maxRequestsPerConnection"`
	MaxRetries               int       `yaml:"maxRetries"`
	IdleTimeout              *duration `yaml:"idleTimeout"`
	H2UpgradePolicy          yaml.Node `yaml:"h2UpgradePolicy" sidemix:"unimplemented"`
	UseClientProtocol        yaml.Node `yaml:"useClientProtocol" sidemix:"unimplemented"`
	MaxConcurrentStreams     yaml.Node `yaml:"maxConcurrentStreams" sidemix:"unimplemented"`
}

type outlierDetection struct {
	Consecutive5xxErrors           *int      `yaml:"consecutive5xxErrors"`
	ConsecutiveGatewayErrors       *int      `yaml:"consecutiveGatewayErrors"`
	Interval                       *duration `yaml:"interval"`
	BaseEjectionTime               *duration `yaml:"baseEjectionTime"`
	MaxEjectionPercent             *int      `yaml:"maxEjectionPercent"`
	MinHealthPercent               *int      `yaml:"minHealthPercent"`
	ConsecutiveErrors              yaml.Node `yaml:"consecutiveErrors" sidemix:"unimplemented"`
	SplitExternalLocalOriginErrors yaml.Node `yaml:"splitExternalLocalOriginErrors" sidemix:"unimplemented"`
	ConsecutiveLocalOriginFailures yaml.Node `yaml:"consecutiveLocalOriginFailures" sidemix:"unimplemented"`
}

type healthCheck struct {
	Path               string    `yaml:"path"`
	Interval           *duration `yaml:"interval"`
	Timeout            *duration `yaml:"timeout"`
	HealthyThreshold   int       `yaml:"healthyThreshold"`
	UnhealthyThreshold int       `yaml:"unhealthyThreshold"`
}

// duration is a Go or protobuf duration string ("5s", "0.5s", "250ms")
// with the line it was written on.
type duration struct {
	D    time.Duration
	Line int
}

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as \"5s\"", n.Line)}}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration such as \"5s\" or \"250ms\"", n.Line, n.Value)}}
	}
	*d = duration{D: v, Line: n.Line}
	return nil
}
