#pragma once
// The Admin API's description of itself (docs/admin-api.md): GET / (node information in Kong's
// shape, with the Kong version Portico's Admin API speaks), GET /endpoints, and OPTIONS with the
// CORS headers a browser admin UI needs. All of them are derived from one route table
// (AdminRoutes): the entity routes from the store's registry, the others listed here. Pure
// functions over their arguments (NodeInfoResponse reads the store), thread-safe. Private to
// control_plane/admin.
#include <string>
#include <vector>

#include "common/config/entity_descriptor.h"
#include "common/http/message.h"

namespace portico::cp {

class Store;
struct AdminOptions;

// The Kong release whose Admin API Portico follows (KONG-REFERENCE.md): GET / reports it as
// `version`, which decK and other tools parse as semver to pick their behaviour.
inline constexpr char kKongCompatibleVersion[] = "3.9.0";

// One path the Admin API serves, in Kong's /endpoints notation ("/services/{services}"), and the
// methods it accepts there (sorted; HEAD and OPTIONS are implied).
struct AdminRoute {
  std::string pattern;
  std::vector<std::string> methods;
};

// Every route: the fixed ones, /metrics when `with_metrics`, and the entity routes of `kinds`
// (as entity_endpoints.h derives them; placeholders named after the kinds, as Kong names them).
// Sorted as Kong sorts /endpoints (segment by segment).
std::vector<AdminRoute> AdminRoutes(const EntityRegistry& kinds, bool with_metrics);

// The route `segments` (a percent-decoded path) falls on, or null. A literal segment wins over a
// placeholder at the first position where candidates differ (/plugins/enabled over
// /plugins/{plugins}). Looks at the path only: nothing is read.
const AdminRoute* MatchRoute(const std::vector<AdminRoute>& routes, const std::vector<std::string>& segments);

// GET /endpoints: {"data":["/", "/acls", ...]}.
HttpResponse EndpointsResponse(const std::vector<AdminRoute>& routes);

// GET /: Kong's node information (tagline, version, hostname, node_id, plugins, configuration)
// plus Portico's `portico_version` and `config_version`.
HttpResponse NodeInfoResponse(Store& store, const AdminOptions& options);

// CORS as Kong's Admin API answers it (its admin_gui_origin rule): with no allowed origins
// configured, Access-Control-Allow-Origin is the request's Origin, or "*" without one; with some,
// the request's Origin when it is one of them, else the first.
struct CorsPolicy {
  std::vector<std::string> allowed_origins;
};
inline constexpr int kPreflightMaxAgeSeconds = 3600;

// Adds Access-Control-Allow-Origin and -Credentials (and Vary: Origin when the origin depends on
// the request) to any Admin API response.
void AddCorsHeaders(const CorsPolicy& policy, const HttpRequest& request, HttpResponse* response);

// OPTIONS on a path: 204 with Allow and Access-Control-Allow-Methods (the route's methods plus
// HEAD and OPTIONS, sorted), Access-Control-Allow-Headers (the request's
// Access-Control-Request-Headers, or Content-Type) and Access-Control-Max-Age; Kong's 404 when
// `route` is null. The caller adds AddCorsHeaders. Reads nothing beyond the route table.
HttpResponse PreflightResponse(const AdminRoute* route, const HttpRequest& request);

}  // namespace portico::cp
