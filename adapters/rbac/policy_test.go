package rbac_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/rbac"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/policy"
)

// TestShippedExample runs examples/policies/rbac.yaml as the mixer would:
// load it, create its handler, build the authorization instance from a
// request's attributes and check it.
func TestShippedExample(t *testing.T) {
	reg, err := adapters.NewRegistry(rbac.Factory())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load([]string{"../../examples/policies/rbac.yaml"}, policy.Options{Adapters: reg})
	if err != nil {
		t.Fatal(err)
	}
	hc := snap.Handlers()
	if len(hc) != 1 {
		t.Fatalf("handlers: %+v", hc)
	}
	h, err := hc[0].Factory.Create(context.Background(), adapters.Settings{Name: hc[0].Name}, hc[0].Params)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())

	const product, invoice = "cluster.local/ns/shop/sa/product", "cluster.local/ns/shop/sa/invoice"
	tests := []struct {
		principal, namespace, service, method, path string
		want                                        string // denial message, or "" to allow
	}{
		{product, "shop", "invoice", "POST", "/invoices", ""},
		{invoice, "shop", "notification", "POST", "/notify", ""},
		{invoice, "shop", "invoice", "GET", "/invoices/7", ""}, // by namespace
		{"", "", "product", "GET", "/products", ""},            // product is not enforced
		{invoice, "shop", "invoice", "POST", "/invoices", `RBAC: access denied: user "cluster.local/ns/shop/sa/invoice" may not POST /invoices on service "invoice"`},
		{product, "shop", "notification", "POST", "/notify", `RBAC: access denied: user "cluster.local/ns/shop/sa/product" may not POST /notify on service "notification"`},
		{"", "", "invoice", "GET", "/invoices", `RBAC: access denied: user "" may not GET /invoices on service "invoice"`},
	}
	for _, tt := range tests {
		b := attribute.NewBuilder(8).
			Set(attribute.DestinationServiceName, attribute.StringValue(tt.service)).
			Set(attribute.RequestMethod, attribute.StringValue(tt.method)).
			Set(attribute.RequestPath, attribute.StringValue(tt.path))
		if tt.principal != "" {
			b.Set(attribute.SourcePrincipal, attribute.StringValue(tt.principal))
		}
		if tt.namespace != "" {
			b.Set(attribute.SourceNamespace, attribute.StringValue(tt.namespace))
		}
		res := snap.Evaluate(b.Build(), policy.VarietyCheck, nil)
		if len(res.Errors) > 0 || len(res.Actions) != 1 || len(res.Actions[0].Instances) != 1 {
			t.Fatalf("Evaluate: %+v", res)
		}
		got, err := h.(adapters.Checker).Check(context.Background(), res.Actions[0].Instances[0])
		if err != nil {
			t.Fatal(err)
		}
		if got.Message != tt.want || got.OK() != (tt.want == "") {
			t.Errorf("%s %s %s by %q: %+v, want %q", tt.method, tt.service, tt.path, tt.principal, got, tt.want)
		}
	}
}

// TestInvalidConstraintHasFileAndLine is the operator's view of a typo in
// a constraint: the file, the line of the constraint and the key path.
func TestInvalidConstraintHasFileAndLine(t *testing.T) {
	reg, err := adapters.NewRegistry(rbac.Factory())
	if err != nil {
		t.Fatal(err)
	}
	_, err = policy.LoadSources(map[string][]byte{"rbac.yaml": []byte(`apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: rbac}
spec:
  adapter: rbac
  params:
    roles:
    - name: reader
      rules:
      - services: [web]
        constraints:
        - action.path.startsWith('/api')
        - action.pth == '/'
    bindings:
    - {name: all, role: reader, subjects: [{user: "*"}]}
`)}, policy.Options{Adapters: reg})
	want := `rbac.yaml:13: Handler/rbac: spec.params.roles[0].rules[0].constraints[1]: ERROR: <input>:1:7: undefined field 'pth'`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("load error\n got: %v\nwant: %s", err, want)
	}
}
