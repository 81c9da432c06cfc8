package policy_test

import (
	"fmt"

	"github.com/sidemix/sidemix/adapters"
	"github.com/sidemix/sidemix/adapters/denier"
	"github.com/sidemix/sidemix/attribute"
	"github.com/sidemix/sidemix/policy"
)

func ExampleLoadSources() {
	const config = `
apiVersion: sidemix.dev/v1
kind: Handler
metadata: {name: deny-admin}
spec:
  adapter: denier
  params:
    status: PERMISSION_DENIED
    message: admin is closed
---
apiVersion: sidemix.dev/v1
kind: Instance
metadata: {name: nothing}
spec:
  template: checknothing
---
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: no-admin}
spec:
  match: request.path.startsWith("/admin")
  actions:
  - handler: deny-admin
    instances: [nothing]
`
	reg, _ := adapters.NewRegistry(denier.Factory())
	snap, err := policy.LoadSources(map[string][]byte{"deny.yaml": []byte(config)}, policy.Options{Adapters: reg})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, path := range []string{"/admin/users", "/hello"} {
		bag := attribute.NewBuilder(1).SetString(attribute.RequestPath, path).Build()
		var refs attribute.Referenced
		res := snap.Evaluate(bag, policy.VarietyCheck, &refs)
		fmt.Printf("%s: %d action(s)", path, len(res.Actions))
		for _, a := range res.Actions {
			fmt.Printf(", rule %s calls %s with %s", a.Rule, a.Handler, a.Instances[0].InstanceName())
		}
		fmt.Printf("; looked at %v\n", refs.List())
	}

	// A mistake is reported with its file, line, document and field.
	_, err = policy.LoadSources(map[string][]byte{"typo.yaml": []byte(`
apiVersion: sidemix.dev/v1
kind: Rule
metadata: {name: no-admin}
spec:
  match: request.pth.startsWith("/admin")
  actions:
  - {handler: deny-admin, instances: [nothing]}
`)}, policy.Options{Adapters: reg})
	fmt.Println(err)
	// Output:
	// /admin/users: 1 action(s), rule no-admin calls deny-admin with nothing; looked at [{request.path  false true}]
	// /hello: 0 action(s); looked at [{request.path  false true}]
	// typo.yaml:6: Rule/no-admin: spec.match: ERROR: <input>:1:8: undeclared reference to 'request.pth' (did you mean 'request.path'?)
	// typo.yaml:8: Rule/no-admin: spec.actions[0].handler: handler "deny-admin" not found
	// typo.yaml:8: Rule/no-admin: spec.actions[0].instances[0]: instance "nothing" not found
}
