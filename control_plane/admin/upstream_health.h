#pragma once
// Target health on the control plane (docs/admin-api.md "Target health"):
//
//   GET /upstreams/{u}/health[?per_data_plane=true][&balancer_health=1]
//       Kong's list of the upstream's targets with `health`, aggregated over the connected DPs'
//       heartbeat reports, and per DP on request.
//   POST|PUT /upstreams/{u}/targets/{t}/healthy|unhealthy
//       the manual override, sent to every connected DP over the sync stream (204).
//
// {u} is an id or a name, {t} an id or the stored target text. The aggregation is pure
// (AggregateTargetHealth, unit-tested); the endpoints read the store and the status source.
// Private to control_plane/admin.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/http/message.h"
#include "control_plane/cluster_status.h"

namespace portico::cp {

class Store;

// What the connected DPs report about one target of one upstream.
struct TargetHealthAggregate {
  struct PerDataPlane {
    std::string id, hostname, health;
    int64_t reported_at = 0;
  };
  std::map<std::string, int> counts;        // health word -> number of DPs reporting it
  std::vector<PerDataPlane> data_planes;    // sorted by node id
};

// The reports' entries for the upstream (matched by id; by name when a DP sent no id), keyed by
// target text. A DP that reports a target twice counts once (its first entry).
std::map<std::string, TargetHealthAggregate> AggregateTargetHealth(const std::string& upstream_id,
                                                                   const std::string& upstream_name,
                                                                   const std::vector<DataPlaneTargetHealth>& reports);

// The health shown for one target: HEALTHCHECKS_OFF when the upstream's checks are off; else
// UNHEALTHY when a DP reports it so, else DNS_ERROR when a DP reports that, else HEALTHY (also
// when no connected DP reports the target).
std::string AggregatedHealth(bool checks_on, const TargetHealthAggregate* aggregate);

// Sends an override to every connected DP; returns the node ids it went to.
using SendHealthOverrideFn = std::function<std::vector<std::string>(const TargetHealthOverride&)>;

class UpstreamHealthEndpoints {
 public:
  // `data_planes` may be null (no DP reports); `send_override` may be empty (sent to none).
  UpstreamHealthEndpoints(Store& store, const DataPlaneStatusSource* data_planes, std::string node_id,
                          SendHealthOverrideFn send_override)
      : store_(store),
        data_planes_(data_planes),
        node_id_(std::move(node_id)),
        send_override_(std::move(send_override)) {}

  // The answer when `segments` is one of the paths above, else nullopt.
  std::optional<HttpResponse> Handle(const HttpRequest& request, const std::vector<std::string>& segments);

 private:
  HttpResponse Health(const HttpRequest& request, const std::string& upstream_key);
  HttpResponse SetHealth(const std::string& upstream_key, const std::string& target_key, bool healthy);

  Store& store_;
  const DataPlaneStatusSource* const data_planes_;
  const std::string node_id_;
  const SendHealthOverrideFn send_override_;
};

}  // namespace portico::cp
