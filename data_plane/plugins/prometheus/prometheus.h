#pragma once
// prometheus: records Kong's traffic metrics for the requests it applies to, in its log phase,
// into TrafficMetrics::Process() (traffic_metrics.h), which the DP's status listener renders on
// GET /metrics with the node-level kong_* series (data_plane/main.cc). Like Kong, each family is
// opt-in: status_code_metrics (kong_http_requests_total), latency_metrics (kong_kong_latency_ms,
// kong_upstream_latency_ms, kong_request_latency_ms), bandwidth_metrics (kong_bandwidth_bytes),
// per_consumer (the consumer label), upstream_health_metrics (kong_upstream_target_health).
// Requests without a service (no route matched, a route without a service) are not recorded.
//
// Compiling the plugin interns the label sets of the routes in its scope (the route, the service's
// routes, or every route for a global or consumer-scoped instance) and of the snapshot's
// consumers, off the request path; Log() finds them with one hash lookup on the route's address.
#include "data_plane/plugins/plugin.h"

namespace portico::dp::plugins {

class TrafficMetrics;

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompilePrometheus(const PluginCompileContext& context);
// The same, recording into `store` (tests).
absl::StatusOr<std::unique_ptr<const PluginHandler>> CompilePrometheusInto(const PluginCompileContext& context,
                                                                         TrafficMetrics* store);

// Kong's label values: a service's name, or its host when it has none; a route's name, or its id;
// a consumer's username, or its custom_id.
std::string ServiceLabel(const config::v1::Service& service);
std::string RouteLabel(const config::v1::Route& route);
std::string ConsumerLabel(const config::v1::Consumer& consumer);

}  // namespace portico::dp::plugins
