#pragma once
// The CP's table of data planes: every node seen since start (connected, refused, incompatible
// or disconnected), what it serves and what it was last told, as GET /clustering/data-planes
// shows it. Thread-compatible: the SyncServer guards it with its mutex. No gRPC.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config/config_set.h"
#include "control_plane/cluster_status.h"
#include "control_plane/sync/snapshot_builder.h"

namespace portico {
struct BuiltSnapshot;
}  // namespace portico

namespace portico::cp {


class DataPlaneTable {
 public:
  struct Record {
    DataPlaneStatus status;
    ConfigVersion serving;        // what it serves (last Hello/ACK/NACK/heartbeat)
    ConfigVersion nacked;         // parked: not resent until latest differs
    uint64_t active_session = 0;  // 0 = no live stream
    // The latest target-health report of the live stream (cleared when a stream starts or ends):
    // entries from the last FULL heartbeat; reported_at moves with every FULL or UNCHANGED one.
    bool health_reported = false;
    bool health_truncated = false;
    int64_t health_reported_at = 0;  // Clock seconds
    std::shared_ptr<const std::vector<TargetHealthEntry>> health;
  };

  // The node's record, created empty when it is new.
  Record& operator[](const std::string& node_id) { return nodes_[node_id]; }
  const Record* Find(const std::string& node_id) const;
  // Records a refused or incompatible node, unless a stream of that node is live (then the
  // refusal must not overwrite it). It is shown serving nothing.
  void RecordRejected(const std::string& node_id, const DataPlaneStatus& status);
  // Nodes with a live (Hello-accepted) stream.
  size_t connected() const;

  // Every node, sorted by id, with what is derived when listed: `outdated` (a live node that is
  // sent nothing while the store's current version cannot be built), lag_versions and
  // lag_seconds against `lag` (the builder's view). `latest` is what the streams send (may be
  // null). `now`: Clock seconds.
  std::vector<DataPlaneStatus> List(const SnapshotBuilder::LagView& lag, const BuiltSnapshot* latest,
                                    int64_t now) const;
  // The health report of every node with a live stream that has sent one, sorted by id.
  std::vector<DataPlaneTargetHealth> TargetHealth() const;

 private:
  std::map<std::string, Record> nodes_;
};

}  // namespace portico::cp
