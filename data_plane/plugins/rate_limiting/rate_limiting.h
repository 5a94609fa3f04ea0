#pragma once
// rate-limiting: counts requests per identifier (limit_by: consumer, credential, ip, service,
// header, path; the client address when that is missing) in fixed UTC windows of a second,
// minute, hour, day, month and year. A request that would go over a limit gets `error_code` (429)
// with `error_message` and Retry-After; allowed requests are counted in every period. Headers
// (unless hide_client_headers): X-RateLimit-Limit-<Period>, X-RateLimit-Remaining-<Period>,
// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset for the most restrictive period.
// Policy `local`: per the request's route and service, in counters every worker of the DP shares
// (counters.h; limits per DP node, as Kong's). Policy `redis`: in a Redis shared by the DPs, with
// Kong's keys (the plugin's route and service scope) and algorithm; the request suspends while
// Redis answers (redis_connection.h), and a Redis that fails lets it through (fault_tolerant) or
// answers 500.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRateLimiting(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
