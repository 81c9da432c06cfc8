package routing

import (
	"errors"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadBad(t *testing.T) {
	const vs = "VirtualService/shop: spec.http[0]."
	cases := map[string][]string{
		"weights.bad.yaml": {":33: " + vs + "route: weights sum to 110, want 100"},
		"subset.bad.yaml":  {":36: " + vs + `route[0].destination.subset: unknown subset "v9" (DestinationRule shop defines v1)`},
		"timeout.bad.yaml": {":33: " + vs + "timeout: negative: -2s"},
		"nohost.bad.yaml": {
			":34: " + vs + `route[0].destination.host: no ServiceEntry has host "payments"`,
			":36: " + vs + "mirrorPercentage.value: 150 is not a percentage (0 to 100)",
		},
		"fields.bad.yaml": {
			":36: " + vs + `match[0].uri: unknown field "prefx" (want one of exact, prefix or regex)`,
			":39: " + vs + "route[0].wieght: unknown field",
			":41: " + vs + `retries.attempts: cannot decode a string ("three") into int`,
		},
		"compile.bad.yaml": {
			":35: " + vs + "match[0].uri.regex: invalid regex: error parsing regexp: missing closing ): `^(?:(unclosed)$`",
			":37: " + vs + "match[0].headers.x-a: give only one of exact, prefix or regex",
			":39: " + vs + `route[0].destination.port.number: host "shop" has no port 81`,
			":42: " + vs + `retries.retryOn: unknown condition "sometimes" (want 5xx, gateway-error, connect-failure, reset, retriable-status-codes or status codes)`,
			":43: " + vs + "redirect: a route cannot have both route and redirect",
		},
		"fault.bad.yaml": {
			":34: " + vs + "fault.delay.fixedDelay: required",
			":37: " + vs + "fault.abort.percentage.value: -1 is not a percentage (0 to 100)",
			":38: " + vs + "fault.abort.httpStatus: 700 is not an HTTP status (200 to 599)",
		},
		"duplicate.bad.yaml": {
			`:19: DestinationRule/full: spec.host: host "shop.default.svc.cluster.local" already has DestinationRule short (testdata/bad/duplicate.bad.yaml:11)`,
			`:32: VirtualService/b: spec.hosts[0]: host "shop.default.svc.cluster.local" already has VirtualService a (testdata/bad/duplicate.bad.yaml:23)`,
			`:37: VirtualService/a: metadata.name: VirtualService "a" already defined at testdata/bad/duplicate.bad.yaml:23`,
		},
		"envelope.bad.yaml": {
			`:1: VirtualService/a: apiVersion: unknown apiVersion "networking.istio.io/v2" (want one of networking.sidemix.dev/v1, networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3)`,
			`:8: Route/b: kind: unknown kind "Route" (want one of ServiceEntry, VirtualService, DestinationRule)`,
			`:18: ServiceEntry/c: spec.hosts[0]: "shop:80" is not a host name (no port, path or spaces)`,
			`:20: ServiceEntry/c: spec.ports[0].number: 70000 is not a port (1 to 65535)`,
			`:23: ServiceEntry/c: spec.endpoints[0].address: "shop.example" is not an IP address (resolution STATIC)`,
		},
	}
	files, _ := filepath.Glob("testdata/bad/*.bad.yaml")
	if len(files) != len(cases) {
		t.Errorf("%d bad files, %d cases", len(files), len(cases))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, ok := cases[filepath.Base(f)]
			if !ok {
				t.Fatal("no expectation")
			}
			tb, err := Load(f)
			var le *LoadError
			if tb != nil || !errors.As(err, &le) {
				t.Fatalf("Load = %v, %v; want a *LoadError", tb, err)
			}
			var got []string
			for _, is := range le.Issues {
				got = append(got, strings.TrimPrefix(is.String(), f))
			}
			if !slices.Equal(got, want) {
				t.Errorf("issues:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestLoadIstio loads Istio's own files unchanged: what sidemix does not
// implement comes back as warnings naming file and line.
func TestLoadIstio(t *testing.T) {
	tb, err := Load("testdata/istio")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range tb.Warnings() {
		got = append(got, w.String())
	}
	want := []string{
		`testdata/istio/ratings.yaml:29: VirtualService/ratings: spec.http[1].retries.retryOn: condition "refused-stream" is not implemented by sidemix; ignored`,
		"testdata/istio/reviews.yaml:35: DestinationRule/reviews: spec.trafficPolicy.tls: not implemented by sidemix; ignored",
		"testdata/istio/services.yaml:11: ServiceEntry/reviews: spec.location: not implemented by sidemix; ignored",
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	const reviews = "reviews.default.svc.cluster.local"
	cl := tb.Clusters()[ClusterKey{Host: reviews, Subset: "v2", Port: 9080}]
	if cl == nil || len(cl.Endpoints) != 1 || cl.Endpoints[0].Port != 19082 || cl.Policy.LB != "RANDOM" {
		t.Fatalf("reviews v2 cluster = %+v", cl)
	}
	for _, tc := range []struct {
		host, user string
		subset     string
		route      string
	}{
		{"reviews:9080", "jason", "v2", "reviews.0"},
		{"reviews", "", "v3", "reviews.1"},
		{"REVIEWS.default.svc.cluster.local:9080", "jason", "v2", "reviews.0"},
		{"reviews.default", "mallory", "v3", "reviews.1"},
	} {
		r := httptest.NewRequest("GET", "http://x/reviews/0", nil)
		r.Host = tc.host
		if tc.user != "" {
			r.Header.Set("End-User", tc.user)
		}
		m, ok := tb.Lookup(r)
		if !ok || m.Route == nil {
			t.Fatalf("%s: no route", tc.host)
		}
		if d := m.Route.PickRandom(); d.Cluster.Subset != tc.subset || m.Route.Name != tc.route {
			t.Errorf("%s user %q: route %s subset %q, want %s %q", tc.host, tc.user, m.Route.Name, d.Cluster.Subset, tc.route, tc.subset)
		}
	}

	r := httptest.NewRequest("GET", "http://x/ratings/0", nil)
	r.Host = "ratings:9080"
	m, _ := tb.Lookup(r)
	if rt := m.Route; rt == nil || rt.Retries.Attempts != 3 || rt.Retries.PerTryTimeout.Seconds() != 2 ||
		!rt.Retries.On[RetryGatewayError] || !rt.Retries.On[RetryConnectFailure] || rt.Timeout.Seconds() != 10 {
		t.Errorf("ratings route = %+v", m.Route)
	}
	r.Header.Set("end-user", "jason")
	if m, _ := tb.Lookup(r); m.Route == nil || m.Route.Fault == nil || m.Route.Fault.AbortStatus != 500 || m.Route.Fault.AbortPercent != 100 {
		t.Errorf("ratings fault route = %+v", m.Route)
	}
	// DNS endpoints keep their name; the dial resolves it.
	if cl := tb.Clusters()[ClusterKey{Host: "ratings.default.svc.cluster.local", Port: 9080}]; cl == nil ||
		len(cl.Endpoints) != 1 || cl.Endpoints[0].Address != "localhost" || cl.Endpoints[0].Port != 19090 {
		t.Errorf("ratings cluster = %+v", cl)
	}
	r.Host = "unknown"
	if _, ok := tb.Lookup(r); ok {
		t.Error("unknown host routed")
	}
}

// TestLoadExample loads examples/routes, which `sidemix proxy --routes`
// is documented to take, without errors or warnings.
func TestLoadExample(t *testing.T) {
	tb, err := Load("../../examples/routes")
	if err != nil {
		t.Fatal(err)
	}
	if w := tb.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
	r := httptest.NewRequest("GET", "http://x/", nil)
	r.Host = "reviews.shop:9080"
	m, ok := tb.Lookup(r)
	if !ok || m.Route == nil || m.Route.Name != "canary" || len(m.Route.Destinations) != 2 ||
		m.Route.Retries.Attempts != 2 || m.Route.Timeout.Seconds() != 3 {
		t.Fatalf("reviews route = %+v", m.Route)
	}
	cl := tb.Clusters()[ClusterKey{Host: "reviews.shop.svc.cluster.local", Subset: "v3", Port: 9080}]
	if cl == nil || len(cl.Endpoints) != 1 || cl.Endpoints[0].Port != 9083 || cl.Policy.Consecutive5xxErrors != 5 ||
		cl.Policy.LB != "LEAST_REQUEST" || cl.Policy.MaxRetries != 10 {
		t.Errorf("reviews v3 cluster = %+v", cl)
	}
}
