#pragma once
// The steps every snapshot's pipeline starts with (the proxy's own behaviour, docs/proxy.md):
//   route:        RouteStep (normalise the path, match a route; 404), DebugHeadersStep
//                 (Kong-Route-*/Kong-Service-* for Kong-Debug, with --allow-debug-header)
//   access:       HttpsOnlyStep (426 or redirect for a route without "http"), WebSocketOnlyStep
//                 (426 for a request that is not a WebSocket handshake on a ws/wss-only route)
//   destination:  ServiceStep (503 without an enabled service), DestinationStep (a target from the
//                 service's destination set; 503 "name resolution failed" without one)
//   upstream:     UpstreamRequestStep (the HTTP/1.1 head to send, upstream_request.h)
#include "absl/container/flat_hash_map.h"
#include "data_plane/balancer/destinations.h"
#include "data_plane/pipeline/pipeline.h"
#include "data_plane/router/router.h"

namespace portico::dp {

// The compiled services of a snapshot, by the config's service pointers (what Router::Find returns).
using ServiceMap = absl::flat_hash_map<const config::v1::Service*, dp::UpstreamService>;

// Adds the built-in steps. `router` and `services` must outlive the pipeline.
void AddBuiltinSteps(Pipeline* pipeline, const dp::Router* router, const ServiceMap* services);

}  // namespace portico::dp
