#pragma once
// file-log: each request's log entry (Kong's log serializer, data_plane/telemetry/log_serializer.h)
// as one JSON line appended to `path`, through the process's LogWriter for that path (the same
// asynchronous writer as --access-log: per-worker rings, drop and count when full, reopen on
// SIGUSR1). A path that cannot be opened fails the compile (the config is NACKed, naming it).
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileFileLog(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
