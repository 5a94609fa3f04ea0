#pragma once
// request-termination: answers with the configured status and message or body (Kong 3.x), for
// every request, or with `trigger` only for requests carrying that header or query argument.
// `echo` is refused by the schema (common/plugins/request_termination.cc).
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRequestTermination(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
