// Package rbac is an adapter that decides authorization instances by roles
// and bindings, with the semantics of Istio's RBAC (ServiceRole and
// ServiceRoleBinding):
//
//   - A role is a list of rules; a rule allows any of its methods on any of
//     its paths of any of its services, when all its CEL constraints hold.
//   - A binding grants a role to subjects: a principal (user), a group,
//     the caller's namespace (subject.properties["namespace"]) or other
//     properties of the subject. A subject must match in every field it
//     sets; a binding applies when any of its subjects matches.
//   - A service is enforced once any rule of any role names it (a rule
//     with services ["*"] enforces every service). A request to a service
//     that is not enforced is allowed. A request to an enforced service is
//     allowed only when a binding that matches the caller names a role with
//     a rule that matches the request: deny by default.
//
// Services, methods, paths and subject fields are globs: "*" alone matches
// anything (an empty value too, so user "*" admits unauthenticated callers),
// "foo*" is a prefix, "*foo" a suffix, anything else is exact. No methods or
// no paths in a rule mean any. Properties are compared as text; a property
// the caller lacks matches nothing.
//
// Constraints are CEL over subject and action (see adapters/internal/authz
// for the fields). A constraint that fails to evaluate, for instance
// because it indexes a property the request lacks, does not hold; write
// `'version' in action.properties && ...` or
// `action.properties[?'version'].orValue("") == 'v1'` to say what you mean,
// and watch sidemix_rbac_constraint_errors_total.
//
// A denial is PERMISSION_DENIED and names the caller, the method, the path
// and the service, such as
//
//	RBAC: access denied: user "cluster.local/ns/default/sa/frontend" may not DELETE /books/1 on service "web"
//
// Answers, allowing or denying, may be cached by the proxy for
// cachingInterval or cachingUseCount uses, whichever ends first.
//
// It accepts authorization instances.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: rbac}
//	spec:
//	  adapter: rbac
//	  params:
//	    roles:
//	    - name: reader
//	      rules:
//	      - services: ["web", "*-api"]
//	        methods: ["GET", "HEAD"]
//	        paths: ["/books/*", "*/info"]
//	        constraints: ["action.properties['version'] == 'v1'"]
//	    bindings:
//	    - name: readers
//	      role: reader
//	      subjects:
//	      - user: "cluster.local/ns/default/sa/frontend"
//	      - namespace: default
//	      - properties: {source.version: v1}
//	      - group: admins
//	    cachingInterval: 5s
//	    cachingUseCount: 1000
//
// Self metrics: sidemix_rbac_checks_total{handler,result} with result
// allowed, denied or not_enforced, and
// sidemix_rbac_constraint_errors_total{handler}.
package rbac
