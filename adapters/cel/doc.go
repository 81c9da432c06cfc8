// Package cel is an adapter that decides authorization instances with a
// list of CEL conditions, for policies that do not fit rbac's roles: "no
// DELETE from outside the namespace", "only v2 clients on /beta".
//
// Rules are tried in order and the first whose condition holds decides:
// ALLOW, or DENY with its status (a gRPC code name, PERMISSION_DENIED
// unless set) and message. When none holds, default decides; it is DENY
// unless set, so a list of ALLOW rules is an allow list, and a list of
// DENY rules wants `default: ALLOW`.
//
// Conditions are CEL over subject and action (see adapters/internal/authz
// for the fields). A condition that fails to evaluate, for instance because
// it indexes a property the request lacks, does not hold, whatever its
// effect: write `'debug' in action.properties && ...` or
// `action.properties[?'debug'].orValue("") == 'true'` to say what you mean,
// and watch sidemix_cel_eval_errors_total.
//
// Answers may be cached by the proxy for cachingInterval or cachingUseCount
// uses, whichever ends first.
//
// It accepts authorization instances.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: books-policy}
//	spec:
//	  adapter: cel
//	  params:
//	    rules:
//	    - condition: action.method == 'DELETE' && subject.properties[?'namespace'].orValue('') != action.namespace
//	      effect: DENY
//	      message: deletes only from inside the namespace
//	    - condition: action.path.startsWith('/beta') && action.properties[?'version'].orValue('') != 'v2'
//	      effect: DENY
//	      status: FAILED_PRECONDITION
//	      message: /beta needs a v2 client
//	    default: ALLOW
//	    cachingInterval: 5s
//	    cachingUseCount: 1000
//
// Self metrics: sidemix_cel_checks_total{handler,result} with result allowed
// or denied, and sidemix_cel_eval_errors_total{handler}.
package cel
