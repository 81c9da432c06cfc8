package routing

import (
	"math/rand/v2"
	"net/http/httptest"
	"testing"
)

const matchYAML = `apiVersion: networking.sidemix.dev/v1
kind: ServiceEntry
metadata: {name: shop}
spec:
  hosts: [shop, "*.shop.example"]
  ports:
  - {number: 80, name: http}
  - {number: 8080, name: admin}
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: 9001, admin: 9101}, labels: {version: v1}}
  - {address: 127.0.0.2, ports: {http: 9002, admin: 9102}, labels: {version: v2}}
---
apiVersion: networking.sidemix.dev/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api]
  ports: [{number: 80}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}, {address: 127.0.0.2, labels: {version: v2}}]
---
apiVersion: networking.sidemix.dev/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.sidemix.dev/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - name: exact
    match: [{uri: {exact: /exact}}]
    route: [{destination: {host: api, subset: v2}}]
  - name: regex-post
    match: [{uri: {regex: "/items/[0-9]+"}, method: {exact: POST}}]
    route: [{destination: {host: api, subset: v2}}]
  - name: query
    match: [{queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: api, subset: v2}}]
  - name: prefix-nocase
    match: [{uri: {prefix: /Old/}, ignoreUriCase: true, withoutHeaders: {x-legacy: {}}}]
    rewrite: {uri: /new/, authority: api.internal}
    route: [{destination: {host: api, subset: v1}}]
  - name: moved
    match: [{uri: {prefix: /moved}}]
    redirect: {uri: /here, authority: other, redirectCode: 302}
  - name: either
    match: [{headers: {x-a: {prefix: "yes"}}}, {port: 8443}]
    route: [{destination: {host: api, subset: v2}}]
  - name: canary
    route:
    - {destination: {host: api, subset: v1}, weight: 90}
    - {destination: {host: api, subset: v2}, weight: 10}
`

func TestLookup(t *testing.T) {
	tb, err := LoadSources(map[string][]byte{"m.yaml": []byte(matchYAML)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, url, host string
		hdr               map[string]string
		route             string
		prefix            string
	}{
		{"GET", "/exact", "api", nil, "exact", ""},
		{"GET", "/exact/no", "api", nil, "canary", ""},
		{"POST", "/items/42", "api:80", nil, "regex-post", ""},
		{"GET", "/items/42", "api", nil, "canary", ""},
		{"POST", "/items/42x", "api", nil, "canary", ""},
		{"GET", "/x?debug=1", "api", nil, "query", ""},
		{"GET", "/x?debug=2", "api", nil, "canary", ""},
		{"GET", "/old/a", "api", nil, "prefix-nocase", "/Old/"},
		{"GET", "/OLD/a", "api", map[string]string{"X-Legacy": ""}, "canary", ""},
		{"GET", "/moved/x", "api", nil, "moved", "/moved"},
		{"GET", "/", "api", map[string]string{"X-A": "yes please"}, "either", ""},
		{"GET", "/", "api:8443", nil, "either", ""},
		{"GET", "/", "API:81", nil, "canary", ""},
	} {
		r := httptest.NewRequest(tc.method, "http://h"+tc.url, nil)
		r.Host = tc.host
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		m, ok := tb.Lookup(r)
		if !ok || m.Route == nil || m.Route.Name != tc.route || m.URIPrefix != tc.prefix {
			name := "<nil>"
			if m.Route != nil {
				name = m.Route.Name
			}
			t.Errorf("%s %s Host %s: route %s prefix %q, want %s %q", tc.method, tc.url, tc.host, name, m.URIPrefix, tc.route, tc.prefix)
		}
	}

	// A ServiceEntry host without a VirtualService: the port in Host picks
	// the service port, a missing or unknown one the first.
	for host, wantPort := range map[string]int{"shop": 80, "shop:8080": 8080, "shop:9": 80, "a.shop.example:8080": 8080} {
		r := httptest.NewRequest("GET", "http://h/", nil)
		r.Host = host
		m, ok := tb.Lookup(r)
		if !ok || m.Route == nil {
			t.Fatalf("%s: no route", host)
		}
		key := m.Route.PickRandom().Cluster
		if key.Port != wantPort || key.Subset != "" {
			t.Errorf("%s: cluster %s, want port %d", host, key, wantPort)
		}
		cl := tb.Clusters()[key]
		if wantEP := map[int]int{80: 9001, 8080: 9101}[wantPort]; len(cl.Endpoints) != 2 || cl.Endpoints[0].Port != wantEP {
			t.Errorf("%s: endpoints %+v", host, cl.Endpoints)
		}
	}
	r := httptest.NewRequest("GET", "http://h/", nil)
	r.Host = "shop.example"
	if _, ok := tb.Lookup(r); ok {
		t.Error("a wildcard host matched its bare suffix")
	}
}

func TestRewriteRedirect(t *testing.T) {
	tb, err := LoadSources(map[string][]byte{"m.yaml": []byte(matchYAML)})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "http://h/OLD/a/b?q=1", nil)
	r.Host = "api"
	m, _ := tb.Lookup(r)
	u := *r.URL
	m.Route.Rewrite.RewritePath(&u, m.URIPrefix)
	if u.Path != "/new/a/b" || u.RawQuery != "q=1" || m.Route.Rewrite.Authority != "api.internal" {
		t.Errorf("rewritten to %s (authority %q)", u.String(), m.Route.Rewrite.Authority)
	}
	r = httptest.NewRequest("GET", "http://h/moved/x?q=1", nil)
	r.Host = "api"
	m, _ = tb.Lookup(r)
	if loc := m.Route.Redirect.Location(r); loc != "http://other/here?q=1" || m.Route.Redirect.Code != 302 {
		t.Errorf("redirect %d %s", m.Route.Redirect.Code, loc)
	}
}

// TestPickWeights draws 20,000 destinations of a 90/10 route: each subset
// lands within 1.5 points of its weight.
func TestPickWeights(t *testing.T) {
	tb, err := LoadSources(map[string][]byte{"m.yaml": []byte(matchYAML)})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "http://h/", nil)
	r.Host = "api"
	m, _ := tb.Lookup(r)
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	counts := map[string]int{}
	for range n {
		counts[m.Route.Pick(rng.Float64()).Cluster.Subset]++
	}
	for subset, want := range map[string]float64{"v1": 90, "v2": 10} {
		got := 100 * float64(counts[subset]) / n
		if got < want-1.5 || got > want+1.5 {
			t.Errorf("subset %s got %.1f%%, want %v%% ±1.5", subset, got, want)
		}
	}
	if m.Route.Pick(0).Cluster.Subset != "v1" || m.Route.Pick(0.8999).Cluster.Subset != "v1" || m.Route.Pick(0.9).Cluster.Subset != "v2" {
		t.Error("weight boundaries")
	}
}
