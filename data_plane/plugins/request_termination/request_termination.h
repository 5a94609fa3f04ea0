#pragma once
// request-termination: answers with the configured status and message or body (Kong 3.x), for
// every request, or with `trigger` only for requests carrying that header or query argument.
// With `echo`, the body is Kong's echo of the request: {"message", "request": {scheme, host, port,
// headers, query, body, raw_body, method, path}, "matched_route", "matched_service"}; the request
// body is not read (body null, raw_body ""). Echo builds JSON per request (a debugging aid; it
// allocates).
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRequestTermination(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
