#include "control_plane/admin/upstream_health.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "common/config/entity_json.h"
#include "common/config/upstreams.h"
#include "control_plane/admin/admin_responses.h"
#include "control_plane/admin/request_decoding.h"
#include "control_plane/store/store.h"
#include "nlohmann/json.hpp"
#include "portico/config/v1/config.pb.h"

namespace portico::cp {
namespace {

using config::v1::Target;
using config::v1::Upstream;
using nlohmann::json;

constexpr char kLog[] = "admin";
// Node ids named in the override's log line; the rest are counted.
constexpr size_t kLoggedNodeIds = 10;

bool Truthy(const std::string* value) {
  return value != nullptr && (*value == "true" || *value == "1" || value->empty());
}

// The entity under `key` (an id when it is a UUID, else the endpoint key), or NotFound.
absl::StatusOr<EntityPtr> FindUpstream(Store& store, const EntityDescriptor& kind, const std::string& key) {
  if (IsUuid(key)) return store.GetEntity(kind, absl::AsciiStrToLower(key));
  return store.GetEntityByField(kind, kind.endpoint_key(), key);
}

// The target `key` (id, or stored target text) of the upstream `upstream_id`, or NotFound (also
// when the id names another upstream's target).
absl::StatusOr<EntityPtr> FindTarget(Store& store, const EntityDescriptor& kind, const std::string& upstream_id,
                                     const std::string& key) {
  absl::StatusOr<EntityPtr> found;
  if (IsUuid(key)) {
    found = store.GetEntity(kind, absl::AsciiStrToLower(key));
  } else {
    EntityPtr probe = kind.New();
    const FieldSpec* upstream_field = kind.field(kind.endpoint_key_scope());
    const FieldSpec* target_field = kind.field(kind.endpoint_key());
    if (upstream_field == nullptr || target_field == nullptr) return absl::NotFoundError("no endpoint key");
    kind.SetText(probe.get(), *upstream_field, upstream_id);
    kind.SetText(probe.get(), *target_field, key);
    found = store.GetEntityByField(kind, "cache_key", kind.CacheKey(*probe));
  }
  if (found.ok() && static_cast<const Target&>(**found).upstream_id() != upstream_id) {
    return absl::NotFoundError("another upstream's target");
  }
  return found;
}

// Per DP: whether its balancer for the upstream is healthy (Kong's balancer health): the weight
// of the targets it does not report UNHEALTHY or DNS_ERROR is above 0 and at least `threshold`
// percent of the total weight.
bool BalancerHealthy(const std::vector<std::pair<std::string, int>>& targets, const std::set<std::string>& down,
                     double threshold) {
  int64_t total = 0, available = 0;
  for (const auto& [target, weight] : targets) {
    if (weight <= 0) continue;
    total += weight;
    if (down.count(target) == 0) available += weight;
  }
  return available > 0 && static_cast<double>(available) * 100 >= threshold * static_cast<double>(total);
}

}  // namespace

std::map<std::string, TargetHealthAggregate> AggregateTargetHealth(const std::string& upstream_id,
                                                                   const std::string& upstream_name,
                                                                   const std::vector<DataPlaneTargetHealth>& reports) {
  std::map<std::string, TargetHealthAggregate> out;
  for (const DataPlaneTargetHealth& dp : reports) {
    if (!dp.targets) continue;
    std::set<std::string> seen;
    for (const TargetHealthEntry& e : *dp.targets) {
      const bool ours = e.upstream_id.empty() ? e.upstream_name == upstream_name : e.upstream_id == upstream_id;
      if (!ours || !seen.insert(e.target).second) continue;
      TargetHealthAggregate& agg = out[e.target];
      ++agg.counts[e.health];
      agg.data_planes.push_back({dp.node_id, dp.hostname, e.health, dp.reported_at});
    }
  }
  for (auto& [target, agg] : out) {
    std::sort(agg.data_planes.begin(), agg.data_planes.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
  }
  return out;
}

std::string AggregatedHealth(bool checks_on, const TargetHealthAggregate* aggregate) {
  // A name that does not resolve is shown whether checks are on or not (Kong's DNS_ERROR).
  if (!checks_on) {
    return aggregate != nullptr && aggregate->counts.count(kHealthDnsError) != 0 ? kHealthDnsError
                                                                                : kHealthChecksOff;
  }
  if (aggregate != nullptr) {
    if (aggregate->counts.count(kHealthUnhealthy) != 0) return kHealthUnhealthy;
    if (aggregate->counts.count(kHealthDnsError) != 0) return kHealthDnsError;
  }
  return kHealthHealthy;
}

std::optional<HttpResponse> UpstreamHealthEndpoints::Handle(const HttpRequest& request,
                                                            const std::vector<std::string>& seg) {
  if (seg.empty() || seg[0] != "upstreams") return std::nullopt;
  if (seg.size() == 3 && seg[2] == "health") {
    return request.method == "GET" ? Health(request, seg[1]) : MethodNotAllowed();
  }
  if (seg.size() == 5 && seg[2] == "targets" && (seg[4] == "healthy" || seg[4] == "unhealthy")) {
    // Kong 3.x answers PUT; Kong before 2.x (and the examples) use POST: both are accepted.
    if (request.method != "POST" && request.method != "PUT") return MethodNotAllowed();
    return SetHealth(seg[1], seg[3], seg[4] == "healthy");
  }
  return std::nullopt;
}

HttpResponse UpstreamHealthEndpoints::Health(const HttpRequest& request, const std::string& upstream_key) {
  const EntityDescriptor* upstreams = store_.kinds().FindByAdminName("upstreams");
  const EntityDescriptor* targets_kind = store_.kinds().Find("targets");
  if (upstreams == nullptr || targets_kind == nullptr) return NotFound();
  absl::StatusOr<EntityPtr> found = FindUpstream(store_, *upstreams, upstream_key);
  if (!found.ok()) {
    if (absl::IsNotFound(found.status())) return NotFound();
    PORTICO_LOG(kError, kLog, "GET /upstreams/", upstream_key, "/health: ", found.status().ToString());
    return Unexpected(found.status());
  }
  const Upstream& upstream = static_cast<const Upstream&>(**found);
  const json checks = json::parse(upstream.healthchecks(), nullptr, false);
  const bool checks_on = !checks.is_discarded() && UpstreamUsesHealthchecks(checks);

  const QueryParams params = ParseQuery(request.query);
  const bool per_dp = Truthy(QueryParam(params, "per_data_plane"));
  const std::vector<DataPlaneTargetHealth> reports =
      data_planes_ ? data_planes_->TargetHealth() : std::vector<DataPlaneTargetHealth>{};
  const std::map<std::string, TargetHealthAggregate> aggregated =
      AggregateTargetHealth(upstream.id(), upstream.name(), reports);

  if (const std::string* balancer = QueryParam(params, "balancer_health"); balancer && *balancer == "1") {
    // Kong's {"data":{"health","id"}}, aggregated: UNHEALTHY when a reporting DP's balancer is.
    std::vector<std::pair<std::string, int>> weights;
    ListQuery query;
    query.size = 1000;
    query.parent_field = "upstream";
    query.parent_id = upstream.id();
    for (;;) {
      absl::StatusOr<ListPage<EntityPtr>> page = store_.ListEntities(*targets_kind, query);
      if (!page.ok()) return Unexpected(page.status());
      for (const EntityPtr& entity : page->items) {
        const Target& t = static_cast<const Target&>(*entity);
        weights.emplace_back(t.target(), t.weight());
        query.after_id = t.id();
      }
      if (!page->has_more || page->items.empty()) break;
    }
    const double threshold = checks.is_object() ? checks.value("threshold", 0.0) : 0.0;
    std::map<std::string, int> counts;
    json per = json::array();
    for (const DataPlaneTargetHealth& dp : reports) {
      bool reports_upstream = false;
      std::set<std::string> down;
      for (const TargetHealthEntry& e : *dp.targets) {
        const bool ours = e.upstream_id.empty() ? e.upstream_name == upstream.name() : e.upstream_id == upstream.id();
        if (!ours) continue;
        reports_upstream = true;
        if (e.health == kHealthUnhealthy || e.health == kHealthDnsError) down.insert(e.target);
      }
      if (!reports_upstream) continue;
      const std::string health = !checks_on                               ? kHealthChecksOff
                                 : BalancerHealthy(weights, down, threshold) ? kHealthHealthy
                                                                           : kHealthUnhealthy;
      ++counts[health];
      per.push_back({{"id", dp.node_id}, {"hostname", dp.hostname}, {"health", health}, {"reported_at", dp.reported_at}});
    }
    const std::string health = !checks_on                         ? kHealthChecksOff
                               : counts.count(kHealthUnhealthy) != 0 ? kHealthUnhealthy
                                                                     : kHealthHealthy;
    json data = {{"health", health}, {"id", upstream.id()}, {"data_planes", counts}};
    if (per_dp) data["per_data_plane"] = std::move(per);
    return JsonResponse(200, json{{"data", std::move(data)}, {"next", nullptr}, {"node_id", node_id_}});
  }

  PageArguments page;
  if (std::optional<HttpResponse> bad = ParsePageArguments(params, &page)) return *std::move(bad);
  ListQuery query;
  query.size = page.size;
  query.after_id = page.after_id;
  query.parent_field = "upstream";
  query.parent_id = upstream.id();
  absl::StatusOr<ListPage<EntityPtr>> listed = store_.ListEntities(*targets_kind, query);
  if (!listed.ok()) {
    PORTICO_LOG(kError, kLog, "GET /upstreams/", upstream_key, "/health: ", listed.status().ToString());
    return Unexpected(listed.status());
  }
  json data = json::array();
  std::string last_id;
  for (const EntityPtr& entity : listed->items) {
    const Target& target = static_cast<const Target&>(*entity);
    json row = EntityToJson(*targets_kind, target);
    auto it = aggregated.find(target.target());
    const TargetHealthAggregate* agg = it == aggregated.end() ? nullptr : &it->second;
    row["health"] = AggregatedHealth(checks_on, agg);
    json counts = json::object();
    if (agg != nullptr) {
      for (const auto& [health, n] : agg->counts) counts[health] = n;
    }
    json details = {{"data_planes", std::move(counts)}};
    if (per_dp) {
      json per = json::array();
      if (agg != nullptr) {
        for (const auto& dp : agg->data_planes) {
          per.push_back({{"id", dp.id}, {"hostname", dp.hostname}, {"health", dp.health}, {"reported_at", dp.reported_at}});
        }
      }
      details["per_data_plane"] = std::move(per);
    }
    row["data"] = std::move(details);
    data.push_back(std::move(row));
    last_id = target.id();
  }
  std::string next_suffix = page.next_suffix;
  if (per_dp) absl::StrAppend(&next_suffix, "&per_data_plane=true");
  json body = ListBody(std::move(data), request.path, listed->has_more, last_id, next_suffix);
  body["node_id"] = node_id_;
  body["reporting_data_planes"] = reports.size();
  // DPs whose report was cut (more than 10,000 entries): a target they do not list may be missing.
  json truncated = json::array();
  for (const DataPlaneTargetHealth& dp : reports) {
    if (dp.truncated) truncated.push_back(dp.node_id);
  }
  body["truncated_reports"] = std::move(truncated);
  return JsonResponse(200, body);
}

HttpResponse UpstreamHealthEndpoints::SetHealth(const std::string& upstream_key, const std::string& target_key,
                                                bool healthy) {
  const EntityDescriptor* upstreams = store_.kinds().FindByAdminName("upstreams");
  const EntityDescriptor* targets_kind = store_.kinds().Find("targets");
  if (upstreams == nullptr || targets_kind == nullptr) return NotFound();
  absl::StatusOr<EntityPtr> upstream_entity = FindUpstream(store_, *upstreams, upstream_key);
  if (!upstream_entity.ok()) {
    if (absl::IsNotFound(upstream_entity.status())) return NotFound();
    PORTICO_LOG(kError, kLog, "health override: upstream ", upstream_key, ": ", upstream_entity.status().ToString());
    return Unexpected(upstream_entity.status());
  }
  const Upstream& upstream = static_cast<const Upstream&>(**upstream_entity);
  absl::StatusOr<EntityPtr> target_entity = FindTarget(store_, *targets_kind, upstream.id(), target_key);
  if (!target_entity.ok()) {
    if (absl::IsNotFound(target_entity.status())) return NotFound();
    PORTICO_LOG(kError, kLog, "health override: target ", target_key, ": ", target_entity.status().ToString());
    return Unexpected(target_entity.status());
  }
  const Target& target = static_cast<const Target&>(**target_entity);
  TargetHealthOverride command;
  command.id = NewUuid();
  command.upstream_id = upstream.id();
  command.upstream_name = upstream.name();
  command.target = target.target();
  command.healthy = healthy;
  const std::vector<std::string> sent = send_override_ ? send_override_(command) : std::vector<std::string>{};
  std::string named;
  if (!sent.empty()) {
    const size_t shown = std::min(sent.size(), kLoggedNodeIds);
    named = absl::StrCat(": ", absl::StrJoin(sent.begin(), sent.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
                         sent.size() > shown ? absl::StrCat(" and ", sent.size() - shown, " more") : "");
  }
  PORTICO_LOG(kInfo, kLog, "health override ", command.id, ": target ", command.target, " of upstream ",
              command.upstream_name, " (", command.upstream_id, ") set ", healthy ? "healthy" : "unhealthy",
              "; sent to ", sent.size(), " data plane(s)", named);
  return NoContent();
}

}  // namespace portico::cp
