// Package denier is an adapter that refuses every request it is asked about.
// Pair it with a rule whose match selects what must be blocked: the rule
// decides, the denier only supplies the status, the message and how long the
// proxy may cache the answer.
//
// It accepts checknothing and listentry instances and ignores their data.
//
//	apiVersion: sidemix.dev/v1
//	kind: Handler
//	metadata: {name: deny-admin}
//	spec:
//	  adapter: denier
//	  params:
//	    status: PERMISSION_DENIED   # a gRPC code name other than OK
//	    message: admin is closed    # default "denied by handler <name>"
//	    validDuration: 5s           # how long the proxy may cache the denial
//	    validUseCount: 1000         # and for how many requests
package denier
