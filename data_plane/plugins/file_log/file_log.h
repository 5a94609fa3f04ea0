#pragma once
// file-log: each request's log entry (Kong's log serializer, data_plane/telemetry/log_serializer.h)
// as one JSON line appended to `path`, through the process's LogWriter for that path (the same
// asynchronous writer as --access-log: per-worker rings, drop and count when full, reopen on
// SIGUSR1). A path that cannot be opened does not fail the compile: the writer starts closed,
// drops and counts the lines, logs why (at most once per 10 s) and retries every second and on
// SIGUSR1. Headers and query arguments named by the snapshot's key-auth and jwt plugins are
// redacted.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileFileLog(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
