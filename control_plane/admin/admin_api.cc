#include "control_plane/admin/admin_api.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>
#include <thread>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/distributions.h"
#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "common/config/entities.h"
#include "common/config/utf8_fields.h"
#include "common/metrics/metrics.h"
#include "common/plugins/plugin_schema.h"
#include "control_plane/admin/admin_responses.h"
#include "control_plane/admin/config_endpoint.h"
#include "control_plane/admin/entity_endpoints.h"
#include "control_plane/admin/meta_endpoints.h"
#include "control_plane/admin/request_decoding.h"
#include "control_plane/admin/schema_endpoints.h"
#include "control_plane/admin/tag_endpoints.h"
#include "control_plane/admin/upstream_health.h"
#include "control_plane/cluster_status.h"
#include "control_plane/store/store.h"
#include "nlohmann/json.hpp"

namespace portico::cp {
namespace {

using cp::JsonResponse;
using cp::MethodNotAllowed;
using cp::NotFound;
using nlohmann::json;

}  // namespace

class AdminApi::Impl {
 public:
  Impl(Store* store, const DataPlaneStatusSource* data_planes, AdminOptions options,
       std::function<void()> on_config_change, const Clock& clock)
      : store_(*store),
        entities_(*store),
        config_(*store),
        health_(*store, data_planes, options.node_id, options.send_health_override),
        data_planes_(data_planes),
        options_(std::move(options)),
        routes_(AdminRoutes(store->kinds(), static_cast<bool>(options_.metrics_text))),
        cors_{options_.cors_origins},
        on_config_change_(std::move(on_config_change)),
        clock_(clock) {}

  HttpResponse Handle(const HttpRequest& request);

 private:
  HttpResponse Answer(const HttpRequest& request);
  HttpResponse Dispatch(const HttpRequest& request, const std::vector<std::string>& segments, bool* committed);
  HttpResponse Status();
  HttpResponse DataPlanes(const HttpRequest& request);
  HttpResponse ClusterStatus();
  HttpResponse Metrics();

  Store& store_;
  EntityEndpoints entities_;
  ConfigEndpoint config_;
  UpstreamHealthEndpoints health_;
  const DataPlaneStatusSource* data_planes_;
  const AdminOptions options_;
  const std::vector<AdminRoute> routes_;  // GET /endpoints and OPTIONS
  const CorsPolicy cors_;
  const std::function<void()> on_config_change_;
  const Clock& clock_;
  std::mutex write_mu_;  // serializes the Admin API's read-modify-write sequences
  absl::BitGen bitgen_;  // under write_mu_
  // A write whose checks another CP's write made stale runs again, up to this many times.
  static constexpr int kMaxWriteAttempts = 50;
};

HttpResponse AdminApi::Impl::Handle(const HttpRequest& request) {
  HttpResponse response = Answer(request);
  AddCorsHeaders(cors_, request, &response);
  return response;
}

HttpResponse AdminApi::Impl::Answer(const HttpRequest& request) {
  std::vector<std::string> segments;
  for (absl::string_view raw : absl::StrSplit(request.path, '/', absl::SkipEmpty())) {
    segments.push_back(PercentDecode(raw, false));
  }
  // A preflight carries no credentials and reveals only which methods a path shape takes.
  if (request.method == "OPTIONS") return PreflightResponse(MatchRoute(routes_, segments), request);
  if (std::optional<HttpResponse> refused = RefuseCrossOriginWrite(cors_, request)) return *std::move(refused);
  if (options_.token) {
    if (std::optional<HttpResponse> refused = options_.token->Check(request)) return *std::move(refused);
  }
  if (request.method == "HEAD") {
    HttpRequest get = request;
    get.method = "GET";
    return Answer(get);
  }
  bool committed = false;
  HttpResponse response;
  if (request.method == "GET") {
    response = Dispatch(request, segments, &committed);
  } else {
    // The handler's reads and checks hold only if no write lands between them and its own: this
    // CP's writes queue on write_mu_, other CPs' (and `config import`'s) are caught by the fence,
    // and the handler runs again on fresh reads (nothing of a refused attempt was written).
    std::lock_guard<std::mutex> lock(write_mu_);
    for (int attempt = 1;; ++attempt) {
      const uint64_t version = store_.CurrentVersion();
      // 0 is also what an unreadable version reads as: a fence on it would only make every
      // attempt stale. A datastore that does not answer is a 503 before anything is tried.
      if (version == 0) {
        if (absl::Status reachable = store_.Ping(); !reachable.ok()) {
          response = Unexpected(reachable);
          break;
        }
      }
      VersionFence fence(version);
      bool attempt_committed = false;
      response = Dispatch(request, segments, &attempt_committed);
      committed = committed || attempt_committed;
      if (!fence.stale()) break;
      if (fence.committed_writes() > 0 || attempt == kMaxWriteAttempts) {
        PORTICO_LOG(kWarn, "admin", request.method, " ", request.path, ": refused with 409 after ", attempt,
                    " attempts whose checks other writes made stale");
        response = Message(409, "the configuration kept changing under this request (writes through other control "
                                "planes); nothing of its last attempt was written: send it again");
        break;
      }
      // Others keep writing: let them through before the next attempt (0-7 ms, grows with attempts).
      std::this_thread::sleep_for(std::chrono::microseconds(absl::Uniform(bitgen_, 0, 1000 * std::min(attempt, 8))));
    }
  }
  if (committed && on_config_change_) on_config_change_();
  return response;
}

HttpResponse AdminApi::Impl::Dispatch(const HttpRequest& request, const std::vector<std::string>& seg,
                                      bool* committed) {
  const std::string& method = request.method;
  const size_t n = seg.size();
  if (n == 0) return method == "GET" ? NodeInfoResponse(store_, options_) : MethodNotAllowed();
  if (seg[0] == "status" && n == 1) return method == "GET" ? Status() : MethodNotAllowed();
  if (seg[0] == "endpoints" && n == 1) return method == "GET" ? EndpointsResponse(routes_) : MethodNotAllowed();
  if (seg[0] == "tags" && n <= 2) return TagsResponse(store_, request, n == 2 ? &seg[1] : nullptr);
  if (seg[0] == "metrics" && n == 1 && options_.metrics_text) {
    return method == "GET" ? Metrics() : MethodNotAllowed();
  }
  if (seg[0] == "clustering" && n == 2) {
    if (seg[1] == "data-planes") return method == "GET" ? DataPlanes(request) : MethodNotAllowed();
    if (seg[1] == "status") return method == "GET" ? ClusterStatus() : MethodNotAllowed();
    return NotFound();
  }
  if (seg[0] == "plugins" && n == 2 && seg[1] == "enabled") {
    if (method != "GET") return MethodNotAllowed();
    json names = json::array();
    for (const plugins::PluginSchema* schema : plugins::BundledPluginSchemas()) names.push_back(schema->name);
    return JsonResponse(200, json{{"enabled_plugins", std::move(names)}});
  }
  if (seg[0] == "schemas" && n == 3 && seg[1] == "plugins" && seg[2] != "validate") {
    if (method != "GET") return MethodNotAllowed();
    return PluginSchemaResponse(seg[2]);
  }
  if (seg[0] == "schemas" && n == 2) {
    return method == "GET" ? EntitySchemaResponse(store_.kinds(), seg[1]) : MethodNotAllowed();
  }
  if (std::optional<HttpResponse> response = config_.Handle(request, seg, committed)) return *std::move(response);
  if (std::optional<HttpResponse> response = health_.Handle(request, seg)) return *std::move(response);
  if (std::optional<HttpResponse> response = entities_.Handle(request, seg, committed)) return *std::move(response);
  return NotFound();
}

HttpResponse AdminApi::Impl::Status() {
  const bool reachable = store_.Ping().ok();
  json body = {
      {"database", {{"reachable", reachable}}},
      {"configuration_version", store_.CurrentVersion()},
      {"epoch", ToHex(store_.Epoch())},
      {"data_planes", data_planes_ ? data_planes_->ListDataPlanes().size() : 0},
  };
  const ConfigBuildStatus build = data_planes_ ? data_planes_->BuildStatus() : ConfigBuildStatus{};
  if (build.known) {
    json corrupt = json::array();
    for (const CorruptRow& row : build.corrupt_rows) {
      corrupt.push_back({{"entity", row.kind},
                         {"id", IsValidUtf8(row.id) ? row.id : absl::CHexEscape(row.id)},
                         {"error", row.error}});
    }
    auto or_null = [](bool present, json value) { return present ? std::move(value) : json(nullptr); };
    body["config_build"] = {
        {"ok", !build.failing},
        {"store_version", build.store_version},
        {"published_version", or_null(build.published, build.published_version)},
        {"reason", or_null(build.failing, build.reason)},
        {"error", or_null(build.failing, build.error)},
        {"failing_since", or_null(build.failing, build.failing_since)},
        {"corrupt_row_count", build.corrupt_row_count},
        {"corrupt_rows", std::move(corrupt)},
    };
  }
  return JsonResponse(200, body);
}

HttpResponse AdminApi::Impl::DataPlanes(const HttpRequest& request) {
  cp::PageArguments page;
  if (std::optional<HttpResponse> bad = cp::ParsePageArguments(ParseQuery(request.query), &page)) {
    return *std::move(bad);
  }
  const int size = page.size;
  const std::string& after = page.after_id;
  std::vector<DataPlaneStatus> all;
  if (data_planes_) all = data_planes_->ListDataPlanes();
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  const int64_t now = clock_.NowSeconds();
  json data = json::array();
  std::string last_id;
  bool has_more = false;
  for (const DataPlaneStatus& dp : all) {
    if (!after.empty() && dp.id <= after) continue;
    if (static_cast<int>(data.size()) == size) {
      has_more = true;
      break;
    }
    json labels = json::object();
    for (const auto& [k, v] : dp.labels) labels[k] = v;
    data.push_back({
        {"id", dp.id},
        {"hostname", dp.hostname},
        {"ip", dp.ip},
        {"version", dp.version},
        {"config_hash", dp.config_hash},
        {"last_seen", dp.last_seen},
        {"updated_at", dp.last_seen},
        {"ttl", std::max<int64_t>(0, options_.data_plane_purge_delay_seconds - (now - dp.last_seen))},
        {"sync_status", dp.sync_status.empty() ? "unknown" : dp.sync_status},
        {"labels", std::move(labels)},
        {"cert_details", {{"expiry_timestamp", dp.cert_expiry ? json(dp.cert_expiry) : json(nullptr)}}},
        {"config_version", dp.config_version},
        {"state", dp.state},
        {"last_error", dp.last_error.empty() ? json(nullptr) : json(dp.last_error)},
        {"lag_versions", dp.lag_versions},
        {"lag_seconds", dp.lag_seconds},
        {"connected_since", dp.connected_since ? json(dp.connected_since) : json(nullptr)},
        {"nack_count", dp.nack_count},
        {"control_plane_id", dp.control_plane_id.empty() ? json(nullptr) : json(dp.control_plane_id)},
        {"control_plane_hostname", dp.control_plane_hostname.empty() ? json(nullptr) : json(dp.control_plane_hostname)},
    });
    last_id = dp.id;
  }
  return JsonResponse(200, cp::ListBody(std::move(data), request.path, has_more, last_id, page.next_suffix));
}

HttpResponse AdminApi::Impl::ClusterStatus() {
  json body = json::object();
  if (data_planes_) {
    for (const DataPlaneStatus& dp : data_planes_->ListDataPlanes()) {
      body[dp.id] = {{"config_hash", dp.config_hash},
                     {"hostname", dp.hostname},
                     {"ip", dp.ip},
                     {"last_seen", dp.last_seen}};
    }
  }
  HttpResponse response = JsonResponse(200, body);
  response.headers.emplace_back("Deprecation", "true");
  return response;
}

HttpResponse AdminApi::Impl::Metrics() {
  HttpResponse response;
  response.status = 200;
  response.headers.emplace_back("Content-Type", kTextContentType);
  response.body = options_.metrics_text();
  return response;
}

AdminApi::AdminApi(Store* store, const DataPlaneStatusSource* data_planes, AdminOptions options,
                   std::function<void()> on_config_change, const Clock& clock)
    : impl_(std::make_unique<Impl>(store, data_planes, std::move(options), std::move(on_config_change), clock)) {}

AdminApi::~AdminApi() = default;

HttpResponse AdminApi::Handle(const HttpRequest& request) { return impl_->Handle(request); }

}  // namespace portico::cp
