package mixer

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	mixerv1 "github.com/sidemix/sidemix/api/mixer/v1"
	"github.com/sidemix/sidemix/attribute"
)

func serviceBag(service, path string) *attribute.Bag {
	b := attribute.NewBuilder(2).SetString(attribute.RequestPath, path)
	if service != "" {
		b.SetString(attribute.DestinationServiceName, service)
	}
	return b.Build()
}

func chargesOf(resp *mixerv1.CheckResponse) string {
	var s []string
	for _, c := range resp.GetQuotaCharges() {
		s = append(s, fmt.Sprintf("%s:%d", c.GetQuota(), c.GetCharge()))
	}
	return fmt.Sprint(s)
}

func grantsOf(resp *mixerv1.CheckResponse) string {
	var names []string
	for n := range resp.GetQuotas() {
		names = append(names, n)
	}
	slices.Sort(names)
	var s []string
	for _, n := range names {
		s = append(s, fmt.Sprintf("%s:%d", n, resp.GetQuotas()[n].GetGrantedAmount()))
	}
	return fmt.Sprint(s)
}

func TestQuotaChargesFromQuotaSpecs(t *testing.T) {
	e := start(t, testdata(t, "quotaspec.yaml"), Config{})

	cases := []struct {
		name, service, path string
		charges, grants     string
		refs                []string // among the precondition's referenced attributes
	}{
		{"bound, every request", "web", "/home", "[requestcount:1]", "[requestcount:1]",
			[]string{attribute.DestinationServiceName, attribute.RequestPath}},
		{"bound, clause matches", "web", "/api/items", "[requestcount:3 writes:3]", "[requestcount:3 writes:3]",
			[]string{attribute.DestinationServiceName, attribute.RequestPath}},
		{"not bound", "shop", "/api/items", "[requestcount:1 writes:1]", "[requestcount:1 writes:1]",
			[]string{attribute.DestinationServiceName}},
		{"no service", "", "/", "[requestcount:1 writes:1]", "[requestcount:1 writes:1]",
			[]string{attribute.DestinationServiceName}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := e.check(serviceBag(c.service, c.path))
			pre := resp.GetPrecondition()
			if code := codes.Code(pre.GetStatus().GetCode()); code != codes.OK {
				t.Fatalf("code %v (%s)", code, pre.GetStatus().GetMessage())
			}
			if got := chargesOf(resp); got != c.charges {
				t.Errorf("charges %s, want %s", got, c.charges)
			}
			if got := grantsOf(resp); got != c.grants {
				t.Errorf("grants %s, want %s", got, c.grants)
			}
			// The client learns the charges, so the answer may be reused.
			if pre.GetValidUseCount() <= 1 || pre.GetValidDuration().AsDuration() <= 0 {
				t.Errorf("precondition reusable for %v, %d uses", pre.GetValidDuration().AsDuration(), pre.GetValidUseCount())
			}
			refs := refNames(pre.GetReferencedAttributes())
			for _, r := range c.refs {
				if !slices.Contains(refs, r) {
					t.Errorf("referenced %v, want %s among them", refs, r)
				}
			}
			// The quota results name what tells counters apart (here the
			// dimension destination.service.name), not the QuotaSpec's
			// clauses: those would split the proxy's pools per path.
			for name, qr := range resp.GetQuotas() {
				if qrefs := refNames(qr.GetReferencedAttributes()); slices.Contains(qrefs, attribute.RequestPath) {
					t.Errorf("quota %s references %v, want no %s", name, qrefs, attribute.RequestPath)
				}
			}
		})
	}

	// web's requestcount: 1 + 3 used of 10. Two more /api requests take
	// it to 10; the next is refused and its answer is not reusable, but it
	// still says what requests of its shape are charged.
	for range 2 {
		if code := e.check(serviceBag("web", "/api/x")).GetPrecondition().GetStatus().GetCode(); code != 0 {
			t.Fatalf("code %v before the limit", code)
		}
	}
	resp := e.check(serviceBag("web", "/api/x"))
	pre := resp.GetPrecondition()
	if codes.Code(pre.GetStatus().GetCode()) != codes.ResourceExhausted || pre.GetValidUseCount() != 1 ||
		pre.GetValidDuration().AsDuration() != 0 {
		t.Errorf("over the limit: %v, reusable for %v, %d uses", pre.GetStatus(), pre.GetValidDuration().AsDuration(), pre.GetValidUseCount())
	}
	if got := chargesOf(resp); got != "[requestcount:3 writes:3]" {
		t.Errorf("over the limit: charges %s", got)
	}
	// Named quotas, as a client that learned them asks: the same charge,
	// from the same counters, and no charges repeated back.
	req := e.checkReq(serviceBag("web", "/home"))
	req.Quotas = map[string]*mixerv1.CheckRequest_QuotaParams{"writes": {Amount: 3}}
	named, err := e.client.Check(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := grantsOf(named); got != "[writes:3]" || len(named.GetQuotaCharges()) != 0 {
		t.Errorf("named: grants %s, charges %v", got, named.GetQuotaCharges())
	}
}
