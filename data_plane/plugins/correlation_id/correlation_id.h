#pragma once
// correlation-id: a request without `header_name` gets one, sent upstream (and to the client with
// echo_downstream): `uuid` a random UUID per request; `uuid#counter` (Kong's default) a UUID per
// worker thread and a counter, "<uuid>#<n>". A request that carries the header keeps its value.
// Formatted into the request's own storage: no allocation once warm.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileCorrelationId(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
