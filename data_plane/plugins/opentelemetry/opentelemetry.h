#pragma once
// opentelemetry (Kong's plugin): W3C trace context and spans over OTLP/HTTP (JSON).
// Access (priority 14, after the auth and traffic plugins): takes the client's `traceparent`
// (when valid and config.propagation.extract allows w3c) or starts a new trace, decides sampling
// (the parent's sampled flag, else config.sampling_rate on the trace id), and sends upstream
// `traceparent: 00-<trace>-<span of the first upstream attempt>-<flags>` (the client's
// `tracestate` goes along unchanged; without a valid client traceparent it is dropped). Log: for a
// sampled request, the spans "kong" (SERVER, the whole request), "kong.access.plugin.<name>" (one
// per plugin of the chain, INTERNAL) and "kong.balancer" (CLIENT, one per upstream attempt) are
// encoded into the worker's batch for the endpoint (span_export.h). Nothing is allocated per
// request once warm; without the plugin nothing of this runs.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileOpentelemetry(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
