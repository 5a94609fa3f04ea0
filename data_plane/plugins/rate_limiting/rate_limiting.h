#pragma once
// rate-limiting, policy `local`: counts requests per identifier (limit_by: consumer, credential,
// ip, service, header, path; the client address when that is missing) and per route and service
// (as Kong's counter keys), in fixed UTC windows of a second, minute, hour, day, month and year,
// in counters every worker of the DP shares (counters.h). A request that would go over a limit
// gets `error_code` (429) with `error_message` and Retry-After; allowed requests are counted in
// every period. Headers (unless hide_client_headers): X-RateLimit-Limit-<Period>,
// X-RateLimit-Remaining-<Period>, RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset for
// the most restrictive period. Limits are per DP node, as Kong's `local` policy is per node.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileRateLimiting(const PluginCompileContext& context);

}  // namespace portico::dp::plugins
