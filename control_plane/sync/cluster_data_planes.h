#pragma once
// The data planes of every CP on one database (Kong's clustering_data_planes): a
// DataPlaneStatusSource over this CP's own table (the SyncServer) that records this CP's DPs in the
// store (Store::SaveDataPlanes) and lists them merged with the rows other CPs recorded there.
//
// Writes: a flusher thread, every flush_interval, saves the rows of this CP's table that changed
// since the last save (last_seen and the derived lag fields do not count as a change), plus every
// connected row again each refresh_seconds with last_seen = now, so a connected row of a CP that
// stopped refreshing it (crashed) can be told apart. purge_at = last_seen + purge_delay; rows whose
// purge_at passed are deleted every purge_every_seconds (by any CP). A failing store (database
// down) is logged once per outage and retried at the next flush; the table in memory stays.
//
// Lists: this CP's table, authoritative for its own rows and for any DP with a live stream here
// (less its disconnected rows past last_seen + purge delay), merged by node id with the stored
// rows of other CPs. A stored row connected to another CP whose
// last_seen is older than 3 x refresh_seconds is shown "disconnected" (connected_since 0). Other
// CPs' rows get lag_versions against this CP's builder view (BuildStatus().store_version: all CPs
// on one database share its epoch); their lag_seconds is 0 (not known here).
//
// Thread-safe. Never calls the store while the local source's lock is held (it only calls the
// source's public, self-locking methods).
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "control_plane/cluster_status.h"

namespace portico::cp {

class Store;

// Kong's cluster_data_plane_purge_delay: its default, and the least it accepts.
inline constexpr int64_t kDefaultDataPlanePurgeDelaySeconds = 1209600;
inline constexpr int64_t kMinDataPlanePurgeDelaySeconds = 60;

struct ClusterDataPlanesOptions {
  std::string cp_id;        // this CP's node id: control_plane_id of its rows
  std::string cp_hostname;  // control_plane_hostname of its rows
  absl::Duration flush_interval = absl::Seconds(1);
  int64_t refresh_seconds = 10;  // connected rows are saved again this often
  int64_t purge_delay_seconds = kDefaultDataPlanePurgeDelaySeconds;
  int64_t purge_every_seconds = 60;
};

class ClusterDataPlanes final : public DataPlaneStatusSource {
 public:
  // `local`, `store` and `clock` must outlive this.
  ClusterDataPlanes(const DataPlaneStatusSource& local, Store& store, const Clock& clock,
                    ClusterDataPlanesOptions options);
  ~ClusterDataPlanes() override;  // Stop()s

  // Starts the flusher thread. At most once.
  void Start();
  // Asks the flusher for a flush now (e.g. a DP connected or disconnected). Only signals: never
  // blocks on the store or calls the local source.
  void Poke();
  // Poke as a callable that may outlive this object (then it does nothing useful, safely), for
  // SyncServer::SetOnDataPlanesChanged.
  std::function<void()> Poker() const;
  // Joins the flusher, then flushes once more (call after the local source stopped its streams, so
  // their ends are saved). Idempotent.
  void Stop();
  // One flush round (the flusher's; tests call it with a fake clock): saves what is due, purges
  // when due. The store's error, if any (the rows are then retried next round).
  absl::Status Flush();

  std::vector<DataPlaneStatus> ListDataPlanes() const override;
  ConfigBuildStatus BuildStatus() const override { return local_.BuildStatus(); }
  std::vector<DataPlaneTargetHealth> TargetHealth() const override { return local_.TargetHealth(); }

  const ClusterDataPlanesOptions& options() const { return options_; }

 private:
  struct Saved {
    DataPlaneStatus status;  // as saved (last_seen and lag fields not compared)
    bool connected = false;
    int64_t saved_at = 0;  // Clock seconds
  };
  // This CP's table with its id and hostname on every row.
  std::vector<DataPlaneStatus> LocalRows() const;
  void Run();

  const DataPlaneStatusSource& local_;
  Store& store_;
  const Clock& clock_;
  const ClusterDataPlanesOptions options_;

  // One Flush at a time; guards the members below. Taken before the source's lock (inside
  // local_.ListDataPlanes), never after it.
  std::mutex flush_mu_;
  std::map<std::string, Saved> saved_;
  bool store_down_ = false;  // an outage is being logged already
  int64_t next_purge_ = 0;

  // Shared with Poker()s; its mutex is never held while calling local_ or the store.
  struct Wake {
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;
    bool stopped = false;
    bool poked = false;
  };
  const std::shared_ptr<Wake> wake_ = std::make_shared<Wake>();
  std::thread thread_;
};

}  // namespace portico::cp
