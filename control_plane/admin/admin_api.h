#pragma once
// The Admin API (Kong 3.x shapes, docs/admin-api.md): turns one HttpRequest into one
// HttpResponse. No sockets; the HTTP server that calls Handle() is elsewhere (it answers 413
// for bodies over its limit itself: kAdminMaxBodyBytes). The entity endpoints are those of the
// store's entity kinds (entity_endpoints.h); this adds /, /status, /metrics, /clustering/*,
// /endpoints and OPTIONS with CORS (meta_endpoints.h), /schemas/* (schema_endpoints.h), /tags
// (tag_endpoints.h) and the target-health endpoints (upstream_health.h).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/http/message.h"
#include "control_plane/admin/admin_auth.h"

namespace portico::cp {

// Kong's Admin API body limit (nginx_admin_client_max_body_size 10m): portico-cp's default for
// --max-body-bytes.
inline constexpr size_t kAdminMaxBodyBytes = 10 * 1024 * 1024;

class Store;
class DataPlaneStatusSource;
struct TargetHealthOverride;

struct AdminOptions {
  std::string node_id;
  std::string hostname;
  std::string admin_listen;    // shown by GET /
  std::string cluster_listen;  // shown by GET /
  std::string database_path;   // shown by GET /
  // Kong's cluster_data_plane_purge_delay: a data plane's `ttl` in GET /clustering/data-planes is
  // this minus the seconds since its last_seen.
  int64_t data_plane_purge_delay_seconds = 1209600;
  // Prometheus text for GET /metrics (thread-safe); empty = /metrics answers 404.
  std::function<std::string()> metrics_text;
  // Sends a manual target-health override to every connected DP and returns their node ids
  // (POST /upstreams/{u}/targets/{t}/healthy|unhealthy); empty = sent to none (still 204).
  std::function<std::vector<std::string>(const TargetHealthOverride&)> send_health_override;
  // When set, every request must carry it (Authorization: Bearer <token>) or gets Kong-style 401
  // before anything else runs (admin_auth.h).
  std::optional<AdminToken> token;
  // The HTTP server's body limit, shown by GET / (nginx_admin_client_max_body_size).
  size_t max_body_bytes = kAdminMaxBodyBytes;
  // Kong's admin_gui_origin: the origins a browser UI may call from (meta_endpoints.h CorsPolicy);
  // empty = any (the request's Origin is echoed).
  std::vector<std::string> cors_origins;
};

class AdminApi {
 public:
  // `store` and `clock` must outlive the AdminApi; `data_planes` may be null (then the
  // clustering endpoints list nothing). `on_config_change` (may be empty) is called after every
  // committed write, on the calling thread, after the response has been built.
  AdminApi(Store* store, const DataPlaneStatusSource* data_planes, AdminOptions options,
           std::function<void()> on_config_change, const Clock& clock);
  ~AdminApi();

  // Thread-safe. Writes are serialized (read-modify-write of PATCH/PUT is atomic with respect
  // to other Admin API writes). HEAD is answered as GET (the server drops the body). OPTIONS is
  // answered from the route table alone, before the token check (browsers send preflights
  // without credentials); every response carries the CORS headers.
  HttpResponse Handle(const HttpRequest& request);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::cp
