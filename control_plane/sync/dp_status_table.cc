#include "control_plane/sync/dp_status_table.h"

#include <algorithm>

#include "common/snapshot/snapshot.h"

namespace portico::cp {

const DataPlaneTable::Record* DataPlaneTable::Find(const std::string& node_id) const {
  auto it = nodes_.find(node_id);
  return it == nodes_.end() ? nullptr : &it->second;
}

void DataPlaneTable::RecordRejected(const std::string& node_id, const DataPlaneStatus& status) {
  Record& record = nodes_[node_id];
  if (record.active_session != 0) return;  // a legitimate stream of that node is live
  const uint64_t nack_count = record.status.nack_count;
  record.status = status;  // carries no config_version/hash: a refused DP serves nothing here
  record.status.nack_count = nack_count;
  record.serving = ConfigVersion{};
}

std::vector<DataPlaneTargetHealth> DataPlaneTable::TargetHealth() const {
  std::vector<DataPlaneTargetHealth> out;
  for (const auto& [id, record] : nodes_) {
    if (record.active_session == 0 || !record.health_reported || !record.health) continue;
    DataPlaneTargetHealth& dp = out.emplace_back();
    dp.node_id = id;
    dp.hostname = record.status.hostname;
    dp.reported_at = record.health_reported_at;
    dp.truncated = record.health_truncated;
    dp.targets = record.health;  // shared, immutable: no copy of the entries under the lock
  }
  return out;
}

size_t DataPlaneTable::connected() const {
  size_t n = 0;
  for (const auto& [id, record] : nodes_) n += record.active_session != 0 ? 1 : 0;
  return n;
}

std::vector<DataPlaneStatus> DataPlaneTable::List(const SnapshotBuilder::LagView& lag, const BuiltSnapshot* latest,
                                                  int64_t now) const {
  // The version DPs should serve: the store's, as last read (published or not).
  const ConfigVersion& current = lag.current;
  std::vector<DataPlaneStatus> out;
  out.reserve(nodes_.size());
  for (const auto& [id, record] : nodes_) {
    out.push_back(record.status);
    DataPlaneStatus& dp = out.back();
    dp.id = id;
    const ConfigVersion& serving = record.serving;
    // A live DP that is not being sent anything while the store's version cannot be built.
    const bool idle = dp.state == "connected_synced" ||
                      (dp.state == "syncing" && (!latest || serving == latest->version));
    if (lag.failing && record.active_session != 0 && idle) dp.state = "outdated";
    if (current.empty()) continue;
    const bool same_epoch = serving.epoch == current.epoch;
    if (same_epoch && serving.version >= current.version) continue;
    dp.lag_versions = same_epoch ? current.version - serving.version : current.version;
    // The oldest published version it lacks carries the oldest commit it lacks.
    for (const SnapshotBuilder::Published& published : lag.history) {
      if (same_epoch && published.version.version <= serving.version) continue;
      dp.lag_seconds = std::max<int64_t>(0, now - published.first_change_wall);
      break;
    }
    if (lag.failing && dp.lag_seconds == 0) dp.lag_seconds = std::max<int64_t>(0, now - lag.failing_since);
  }
  return out;
}

}  // namespace portico::cp
