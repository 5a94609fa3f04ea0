#include "control_plane/admin/meta_endpoints.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/config/entities.h"
#include "common/plugins/plugin_schema.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/admin/admin_responses.h"
#include "control_plane/store/postgres_store.h"
#include "control_plane/store/store.h"
#include "nlohmann/json.hpp"

namespace portico::cp {
namespace {

using nlohmann::json;

const std::vector<std::string> kRead = {"GET"};
const std::vector<std::string> kCollection = {"GET", "POST"};
const std::vector<std::string> kEntity = {"DELETE", "GET", "PATCH", "PUT"};
const std::vector<std::string> kReferenced = {"GET", "PATCH", "PUT"};

std::string Placeholder(const std::string& name) { return absl::StrCat("{", name, "}"); }

// The entity routes entity_endpoints.cc serves for `kind` (only kinds with top-level endpoints
// have any; nested kinds appear under their parents).
void AddEntityRoutes(const EntityRegistry& kinds, const EntityDescriptor& kind, std::vector<AdminRoute>* out) {
  if (!kind.top_level_endpoints()) return;
  const std::string base = absl::StrCat("/", kind.admin_name());
  const std::string self = absl::StrCat(base, "/", Placeholder(kind.name()));
  out->push_back({base, kCollection});
  out->push_back({self, kEntity});
  std::set<std::string> nested;
  for (const EntityRegistry::Reference& ref : kinds.ReferencesTo(kind)) {
    const std::string children = absl::StrCat(self, "/", ref.kind->nested_admin_name());
    if (!nested.insert(ref.kind->nested_admin_name()).second) continue;
    out->push_back({children, kCollection});
    out->push_back({absl::StrCat(children, "/", Placeholder(ref.kind->name())), kEntity});
    if (ref.kind->endpoint_key_scope() == ref.field->name) out->push_back({absl::StrCat(children, "/all"), kRead});
  }
  for (const FieldSpec* fk : kind.stored_foreign_keys()) {
    if (nested.count(fk->name) != 0) continue;  // a child collection of that name wins (Classify)
    out->push_back({absl::StrCat(self, "/", fk->name), kReferenced});
  }
}

// Kong's /endpoints order: compare with '/' below every other character.
bool KongPathLess(const std::string& a, const std::string& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char ca = a[i] == '/' ? 0 : static_cast<unsigned char>(a[i]);
    const unsigned char cb = b[i] == '/' ? 0 : static_cast<unsigned char>(b[i]);
    if (ca != cb) return ca < cb;
  }
  return a.size() < b.size();
}

bool IsPlaceholder(absl::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

// nginx's notation for a size ("10m"), as Kong shows nginx_admin_client_max_body_size.
std::string NginxSize(size_t bytes) {
  if (bytes != 0 && bytes % (1024 * 1024) == 0) return absl::StrCat(bytes / (1024 * 1024), "m");
  if (bytes != 0 && bytes % 1024 == 0) return absl::StrCat(bytes / 1024, "k");
  return absl::StrCat(bytes);
}

// Kong's `plugins.available_on_server`: every bundled plugin with its version and priority.
json AvailablePlugins() {
  json out = json::object();
  for (const plugins::PluginSchema* schema : plugins::BundledPluginSchemas()) {
    out[schema->name] = {{"version", PORTICO_VERSION}, {"priority", schema->priority}};
  }
  return out;
}

// Kong's `plugins.enabled_in_cluster`: the names of the plugins configured, sorted (null when the
// store cannot be read).
json EnabledInCluster(Store& store) {
  std::set<std::string> names;
  ListQuery query;
  query.size = kMaxPageSize;
  for (;;) {
    absl::StatusOr<ListPage<EntityPtr>> page = store.ListEntities(PluginsKind(), query);
    if (!page.ok()) return nullptr;
    for (const EntityPtr& entity : page->items) {
      const auto& plugin = static_cast<const config::v1::Plugin&>(*entity);
      names.insert(plugin.name());
      query.after_id = plugin.id();
    }
    if (!page->has_more || page->items.empty()) break;
  }
  json out = json::array();
  for (const std::string& name : names) out.push_back(name);
  return out;
}

}  // namespace

std::vector<AdminRoute> AdminRoutes(const EntityRegistry& kinds, bool with_metrics) {
  std::vector<AdminRoute> routes = {
      {"/", kRead},
      {"/status", kRead},
      {"/endpoints", kRead},
      {"/config", {"GET", "POST"}},
      {"/clustering/data-planes", kRead},
      {"/clustering/status", kRead},
      {"/plugins/enabled", kRead},
      {"/schemas/{name}", kRead},
      {"/schemas/{db_entity_name}/validate", {"POST"}},
      {"/schemas/plugins/validate", {"POST"}},
      {"/schemas/plugins/{name}", kRead},
      {"/tags", kRead},
      {"/tags/{tags}", kRead},
      {"/upstreams/{upstreams}/health", kRead},
      {"/upstreams/{upstreams}/targets/{targets}/healthy", {"POST", "PUT"}},
      {"/upstreams/{upstreams}/targets/{targets}/unhealthy", {"POST", "PUT"}},
  };
  if (with_metrics) routes.push_back({"/metrics", kRead});
  for (const EntityDescriptor* kind : kinds.kinds()) AddEntityRoutes(kinds, *kind, &routes);
  std::sort(routes.begin(), routes.end(),
            [](const AdminRoute& a, const AdminRoute& b) { return KongPathLess(a.pattern, b.pattern); });
  return routes;
}

const AdminRoute* MatchRoute(const std::vector<AdminRoute>& routes, const std::vector<std::string>& segments) {
  const AdminRoute* best = nullptr;
  std::vector<bool> best_literals;
  for (const AdminRoute& route : routes) {
    std::vector<std::string> parts = absl::StrSplit(route.pattern, '/', absl::SkipEmpty());
    if (parts.size() != segments.size()) continue;
    std::vector<bool> literals;
    bool matches = true;
    for (size_t i = 0; i < parts.size() && matches; ++i) {
      const bool literal = !IsPlaceholder(parts[i]);
      matches = !literal || parts[i] == segments[i];
      literals.push_back(literal);
    }
    if (matches && (best == nullptr || literals > best_literals)) {
      best = &route;
      best_literals = std::move(literals);
    }
  }
  return best;
}

HttpResponse EndpointsResponse(const std::vector<AdminRoute>& routes) {
  json data = json::array();
  for (const AdminRoute& route : routes) data.push_back(route.pattern);
  return JsonResponse(200, json{{"data", std::move(data)}});
}

HttpResponse NodeInfoResponse(Store& store, const AdminOptions& options) {
  json configuration = {
      {"role", "control_plane"},
      {"database", IsPostgresLocation(options.database_path) ? "postgres" : "sqlite"},
      {"database_path", options.database_path},
      {"admin_listen", json::array({options.admin_listen})},
      {"cluster_listen", json::array({options.cluster_listen})},
      {"router_flavor", "traditional_compatible"},
      {"plugins", json::array({"bundled"})},
      {"nginx_admin_client_max_body_size", NginxSize(options.max_body_bytes)},
      {"admin_gui_origin", options.cors_origins.empty() ? json(nullptr) : json(options.cors_origins)},
  };
  json body = {
      {"tagline", "Welcome to kong"},
      {"version", kKongCompatibleVersion},
      {"edition", "community"},
      {"portico_version", PORTICO_VERSION},
      {"node_id", options.node_id},
      {"hostname", options.hostname},
      {"configuration", std::move(configuration)},
      {"plugins", {{"available_on_server", AvailablePlugins()}, {"enabled_in_cluster", EnabledInCluster(store)}}},
      {"config_version", store.CurrentVersion()},
  };
  return JsonResponse(200, body);
}

bool OriginAllowed(const CorsPolicy& policy, const std::string& origin) {
  return std::find(policy.allowed_origins.begin(), policy.allowed_origins.end(), origin) !=
         policy.allowed_origins.end();
}

void AddCorsHeaders(const CorsPolicy& policy, const HttpRequest& request, HttpResponse* response) {
  // Without configured origins no browser page may read the Admin API (Kong would echo any).
  if (policy.allowed_origins.empty()) return;
  const std::string* origin = request.Header("Origin");
  const bool listed = origin != nullptr && OriginAllowed(policy, *origin);
  response->headers.emplace_back("Access-Control-Allow-Origin", listed ? *origin : policy.allowed_origins.front());
  response->headers.emplace_back("Access-Control-Allow-Credentials", "true");
  response->headers.emplace_back("Vary", "Origin");
}

std::optional<HttpResponse> RefuseCrossOriginWrite(const CorsPolicy& policy, const HttpRequest& request) {
  if (request.method == "GET" || request.method == "HEAD" || request.method == "OPTIONS") return std::nullopt;
  const std::string* origin = request.Header("Origin");
  if (origin == nullptr || OriginAllowed(policy, *origin)) return std::nullopt;
  return Message(403, "cross-origin write refused: this origin is not in --admin-gui-origin");
}

HttpResponse PreflightResponse(const AdminRoute* route, const HttpRequest& request) {
  if (route == nullptr) return NotFound();
  std::set<std::string> methods(route->methods.begin(), route->methods.end());
  if (methods.count("GET") != 0) methods.insert("HEAD");
  methods.insert("OPTIONS");
  const std::string allow = absl::StrJoin(methods, ", ");
  const std::string* requested_headers = request.Header("Access-Control-Request-Headers");
  HttpResponse response = NoContent();
  response.headers.emplace_back("Allow", allow);
  response.headers.emplace_back("Access-Control-Allow-Methods", allow);
  response.headers.emplace_back("Access-Control-Allow-Headers",
                                requested_headers != nullptr ? *requested_headers : "Content-Type");
  response.headers.emplace_back("Access-Control-Max-Age", absl::StrCat(kPreflightMaxAgeSeconds));
  return response;
}

}  // namespace portico::cp
