#pragma once
// http-log: each request's log entry (Kong's log serializer) queued for `http_endpoint` on a
// BatchSender (data_plane/telemetry/batch_sender.h) configured from the plugin's `queue` record:
// batched (a batch of one is sent as the object itself, a larger one as a JSON array, as Kong),
// retried with exponential backoff until max_retry_time, the queue bounded by max_entries and
// max_bytes, drops counted. Plugins with the same config share one sender (one thread).
// Not supported: https endpoints (refused by the schema), keep-alive connections (one
// connection per batch), concurrency_limit -1 (batches go one at a time either way).
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileHttpLog(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
