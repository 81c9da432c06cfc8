package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sidemix/sidemix/adapters/template"
	"github.com/sidemix/sidemix/attribute"
)

// TestIstioQuotaExample loads the Istio example as written: a
// redisquota handler, a quota instance and rule, and a QuotaSpec bound to
// service web.
func TestIstioQuotaExample(t *testing.T) {
	s, err := Load([]string{"testdata/quota/istio.yaml"}, Options{Adapters: quotaRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.Handlers()[0].Params.(*fakeRedisQuotaConfig)
	if cfg.RedisServerURL != "127.0.0.1:16379" || cfg.RateLimitAlgorithm != "ROLLING_WINDOW" ||
		len(cfg.Quotas) != 1 || cfg.Quotas[0].MaxAmount != 100 || cfg.Quotas[0].BucketDuration.String() != "500ms" {
		t.Fatalf("params = %+v", cfg)
	}

	web := attribute.NewBuilder(1).SetString(attribute.DestinationServiceName, "web").Build()
	var refs attribute.Referenced
	charges, bound := s.QuotaCharges(web, &refs)
	if !bound || fmt.Sprint(charges) != "[{requestcount 1}]" {
		t.Fatalf("web: %v %v", charges, bound)
	}
	if got := fmt.Sprint(refs.List()); got != "[{destination.service.name  false true}]" {
		t.Fatalf("web referenced %s", got)
	}
	res := s.Evaluate(web, VarietyQuota, nil)
	if len(res.Actions) != 1 || res.Actions[0].Handler != "shared-quota" ||
		fmt.Sprint(res.Actions[0].Instances[0].(*template.Quota).Dimensions) != "map[destination:web]" {
		t.Fatalf("quota actions = %+v", res)
	}

	for _, bag := range []*attribute.Bag{
		attribute.NewBuilder(1).SetString(attribute.DestinationServiceName, "db").Build(),
		attribute.Empty,
	} {
		refs.Reset()
		if charges, bound := s.QuotaCharges(bag, &refs); bound || charges != nil {
			t.Fatalf("%s: %v %v", bag.Dump(), charges, bound)
		}
		if refs.Len() != 1 {
			t.Fatalf("%s: referenced %v", bag.Dump(), refs.List())
		}
	}

	v := s.View().(*ConfigView)
	if len(v.QuotaSpecs) != 1 || len(v.QuotaSpecBindings) != 1 || v.QuotaSpecs[0].Source != "testdata/quota/istio.yaml:34" {
		t.Fatalf("view = %+v", v)
	}
}

func TestQuotaCharges(t *testing.T) {
	s, err := Load([]string{"testdata/quota/specs.yaml"}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	type req struct {
		service, namespace, method, path, tier string
	}
	cases := []struct {
		req     req
		charges string // "" and bound false: not bound
		bound   bool
		refs    string
	}{
		{req{service: "web", method: "GET", path: "/"}, "requestcount:1", true,
			"destination.service.name destination.service.namespace(absent)"},
		{req{service: "web", namespace: "dev", method: "POST"}, "requestcount:1", true,
			"destination.service.name destination.service.namespace"},
		{req{service: "web", namespace: "prod", method: "POST"}, "requestcount:1 writes:5", true,
			"destination.service.name destination.service.namespace request.headers(absent) request.method"},
		{req{service: "api", namespace: "dev", method: "POST"}, "", false,
			"destination.service.name destination.service.namespace"},
		{req{service: "api", method: "POST"}, "", false,
			"destination.service.name destination.service.namespace(absent)"},
		{req{service: "api", namespace: "prod", method: "PUT", path: "/api/x"}, "requestcount:1 writes:5", true,
			"destination.service.name destination.service.namespace request.headers(absent) request.method request.path"},
		{req{service: "api", namespace: "prod", method: "PUT", path: "/apix"}, "requestcount:1", true,
			"destination.service.name destination.service.namespace request.headers(absent) request.method request.path"},
		{req{service: "api", namespace: "prod", method: "GET", path: "/upload/12", tier: "free"}, "requestcount:1 bytes:10 requestcount:2", true,
			"destination.service.name destination.service.namespace request.headers[x-tier] request.method request.path"},
		{req{service: "api", namespace: "prod", method: "GET", path: "/upload/12x", tier: "free"}, "requestcount:1", true,
			"destination.service.name destination.service.namespace request.headers[x-tier] request.method request.path"},
		{req{service: "api", namespace: "prod", method: "GET", path: "/upload/12", tier: "gold"}, "requestcount:1", true,
			"destination.service.name destination.service.namespace request.headers[x-tier] request.method"},
		{req{service: "db", namespace: "prod"}, "", false, "destination.service.name"},
		{req{}, "", false, "destination.service.name(absent)"},
	}
	for _, c := range cases {
		b := attribute.NewBuilder(6)
		set := func(name, v string) {
			if v != "" {
				b.SetString(name, v)
			}
		}
		set(attribute.DestinationServiceName, c.req.service)
		set(attribute.DestinationServiceNamespace, c.req.namespace)
		set(attribute.RequestMethod, c.req.method)
		set(attribute.RequestPath, c.req.path)
		if c.req.tier != "" {
			b.SetStringMap(attribute.RequestHeaders, map[string]string{"x-tier": c.req.tier, "other": "x"})
		}
		bag := b.Build()
		var refs attribute.Referenced
		charges, bound := s.QuotaCharges(bag, &refs)
		var got []string
		for _, ch := range charges {
			got = append(got, fmt.Sprintf("%s:%d", ch.Quota, ch.Charge))
		}
		var gotRefs []string
		for _, r := range refs.List() {
			n := r.Name
			if r.HasKey {
				n += "[" + r.MapKey + "]"
			}
			if !r.Present {
				n += "(absent)"
			}
			gotRefs = append(gotRefs, n)
		}
		if strings.Join(got, " ") != c.charges || bound != c.bound || strings.Join(gotRefs, " ") != c.refs {
			t.Errorf("%+v:\n got %q %v refs %q\nwant %q %v refs %q", c.req,
				strings.Join(got, " "), bound, strings.Join(gotRefs, " "), c.charges, c.bound, c.refs)
		}
		// Without refs, the same answer.
		charges2, bound2 := s.QuotaCharges(bag, nil)
		if fmt.Sprint(charges2) != fmt.Sprint(charges) || bound2 != bound {
			t.Errorf("%+v: without refs %v %v", c.req, charges2, bound2)
		}
	}
}

// TestQuotaChargesNoBindings: without bindings nothing is bound and no
// attribute is looked at, so cached answers stay as wide as before.
func TestQuotaChargesNoBindings(t *testing.T) {
	s, err := LoadSources(map[string][]byte{"a.yaml": []byte(denyExample)}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	var refs attribute.Referenced
	if charges, bound := s.QuotaCharges(quotaBag(), &refs); bound || charges != nil || refs.Len() != 0 {
		t.Fatalf("%v %v %v", charges, bound, refs.List())
	}
	var nilSnap *Snapshot
	if _, bound := nilSnap.QuotaCharges(quotaBag(), nil); bound {
		t.Fatal("nil snapshot bound")
	}
}

func quotaBag() *attribute.Bag {
	return attribute.NewBuilder(5).
		SetString(attribute.DestinationServiceName, "api").
		SetString(attribute.DestinationServiceNamespace, "prod").
		SetString(attribute.RequestMethod, "GET").
		SetString(attribute.RequestPath, "/upload/12").
		SetStringMap(attribute.RequestHeaders, map[string]string{"x-tier": "free"}).Build()
}

// TestQuotaChargesAllocs: the result is the only allocation.
func TestQuotaChargesAllocs(t *testing.T) {
	s, err := Load([]string{"testdata/quota/specs.yaml"}, Options{Adapters: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	bag := quotaBag()
	var refs attribute.Referenced
	s.QuotaCharges(bag, &refs) // grows refs once
	allocs := testing.AllocsPerRun(100, func() {
		refs.Reset()
		if ch, _ := s.QuotaCharges(bag, &refs); len(ch) != 3 {
			t.Fatalf("charges = %v", ch)
		}
	})
	if allocs > 1 {
		t.Fatalf("%v allocations per call, want 1", allocs)
	}
}

func BenchmarkQuotaCharges(b *testing.B) {
	s, err := Load([]string{"testdata/quota/specs.yaml"}, Options{Adapters: testRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	bag := quotaBag()
	var refs attribute.Referenced
	b.ReportAllocs()
	for b.Loop() {
		refs.Reset()
		s.QuotaCharges(bag, &refs)
	}
}
