// Package mixer is the sidemix mixer service: the gRPC Mixer API (Check,
// Report) over a policy snapshot, the dispatcher that calls the snapshot's
// handlers, the config watcher and the admin HTTP endpoints.
//
// # Using it
//
//	srv, err := mixer.New(mixer.Config{
//		ConfigPaths: []string{"/etc/sidemix"},
//		Adapters:    registry, // adapters.NewRegistry(denier.Factory(), ...)
//	})
//	if err != nil { ... }        // an invalid config is a *policy.LoadError, wrapped
//	if err := srv.Start(); err != nil { ... }
//	...
//	err = srv.Shutdown(ctx)      // on SIGTERM
//
// # Check
//
// The bag is decoded (malformed → InvalidArgument) and checked against the
// snapshot's manifest (a value of the wrong kind → InvalidArgument). Every
// check action of the matching rules is sent to its handler; all calls run
// concurrently under one deadline, the smaller of Config.CheckTimeout and the
// caller's. The results combine as follows:
//
//   - The first denial in rule order wins, so the answer is deterministic
//     however the handlers race.
//   - A handler that errs, times out, panics or could not be created denies
//     with UNAVAILABLE naming it: the mixer fails closed. Such an answer may
//     be cached for at most a second and used once.
//   - The valid duration and use count are the least any handler gave; a
//     handler that says 0 has no opinion, and when none has one the
//     configured defaults apply.
//   - The referenced attributes are those the rules' matches and the
//     instances' fields looked at, so a client may reuse the answer for any
//     request that agrees on them.
//   - Header operations of the matching rules go into the route directive.
//
// A denial carries a google.rpc.ErrorInfo detail (domain "sidemix.dev",
// reason POLICY_DENIED, HANDLER_UNAVAILABLE or QUOTA_EXHAUSTED) whose
// metadata names the rule, handler and instance, so a proxy can say which
// rule refused a request.
//
// When the checks allow the request, its quotas are allocated: those the
// request names (with its amounts), or when it names none every quota
// instance of the matching rules with an amount of 1. A named quota that no
// rule limits is granted in full. Results go into the response by instance
// name. A quota that was not granted also turns the precondition into
// RESOURCE_EXHAUSTED `quota "name" exhausted` (with a RetryInfo of the
// quota's valid duration), so that a client that only reads the
// precondition still refuses the request. A precondition that depends on
// quota is never cacheable (use count 1, duration 0): both when a quota was
// exhausted and when the client did not name the quotas it was charged for,
// as such a client could not know to ask again. Clients that name their
// quotas manage quota caching themselves and get cacheable preconditions.
//
// # Report
//
// Report decodes the batch (malformed → InvalidArgument), evaluates every
// bag and appends each action's instances to the handler's bounded queue,
// then returns: it never waits for a handler. One goroutine per handler
// drains its queue in batches into Reporter.Report. Nothing is lost without
// a count: sidemix_mixer_report_instances_dropped_total says how many
// instances were dropped for which handler and why (queue_full,
// handler_error, no_handler, shutdown).
//
// # Config reloads
//
// The config paths are watched with fsnotify (folders recursively, files
// through their folder, so renames by editors and config maps are seen) and
// polled every Config.ConfigPollInterval as a fallback. A change loads the
// whole config again. An invalid config is logged issue by issue, counted
// and shown on /debug/config and by LastReloadError, and the old config
// keeps serving. A valid one gets new handlers and queues, is swapped in
// atomically, and the old state is retired in the background: its in-flight
// requests finish, its queues drain into its handlers, then the handlers are
// closed. A reload whose files did not change keeps the running handlers
// (and so their quota counters and connections).
//
// # Admin endpoints
//
// /healthz answers 200 while the process runs; /readyz 200 once the gRPC
// listener is up and 503 from the start of Shutdown; /metrics serves the
// mixer's own registry (Go and process collectors, the sidemix_mixer_*
// metrics and the handlers' self metrics); /debug/config shows the active
// snapshot (digest, counts, handler status, the config itself) and the last
// reload's outcome, as JSON or, with ?format=yaml or Accept:
// application/yaml, as YAML.
package mixer
