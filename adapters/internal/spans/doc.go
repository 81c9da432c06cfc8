// Package spans converts the report instances that tracing and logging
// backends take into the OpenTelemetry data model (the collector's pdata),
// so that every adapter speaking OTLP, Jaeger or Kafka starts from the same
// ptrace.Traces and plog.Logs.
//
// [Traces] groups tracespan instances into one ResourceSpans per service
// (resource attribute service.name = [template.TraceSpan.ServiceName]),
// each with one scope named [ScopeName]. Ids are parsed from hex; a span
// with an invalid id is left out and counted, never sent half-formed.
// [Logs] turns logentry instances into log records of one resource.
//
// A handler typically converts a batch and marshals it:
//
//	td, skipped := spans.Traces(batch)
//	buf, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
package spans
