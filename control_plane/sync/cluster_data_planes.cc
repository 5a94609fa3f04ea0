#include "control_plane/sync/cluster_data_planes.h"

#include <algorithm>
#include <chrono>
#include <tuple>
#include <utility>

#include "common/base/log.h"
#include "control_plane/store/store.h"

namespace portico::cp {
namespace {

constexpr char kLog[] = "cp-cluster";

bool Connected(const DataPlaneStatus& dp) { return dp.connected_since != 0; }

// Everything saved but last_seen and the lag fields (derived when listed).
bool SameRow(const DataPlaneStatus& a, const DataPlaneStatus& b) {
  auto key = [](const DataPlaneStatus& s) {
    return std::tie(s.id, s.hostname, s.ip, s.version, s.config_hash, s.config_version, s.sync_status, s.state,
                    s.last_error, s.labels, s.cert_expiry, s.connected_since, s.nack_count, s.control_plane_id,
                    s.control_plane_hostname);
  };
  return key(a) == key(b);
}

}  // namespace

ClusterDataPlanes::ClusterDataPlanes(const DataPlaneStatusSource& local, Store& store, const Clock& clock,
                                     ClusterDataPlanesOptions options)
    : local_(local), store_(store), clock_(clock), options_(std::move(options)) {}

ClusterDataPlanes::~ClusterDataPlanes() { Stop(); }

void ClusterDataPlanes::Start() {
  std::lock_guard<std::mutex> lock(wake_->mu);
  if (thread_.joinable() || wake_->stop) return;
  thread_ = std::thread([this] { Run(); });
}

void ClusterDataPlanes::Poke() { Poker()(); }

std::function<void()> ClusterDataPlanes::Poker() const {
  return [wake = wake_] {
    {
      std::lock_guard<std::mutex> lock(wake->mu);
      wake->poked = true;
    }
    wake->cv.notify_all();
  };
}

void ClusterDataPlanes::Stop() {
  {
    std::lock_guard<std::mutex> lock(wake_->mu);
    if (wake_->stopped) return;
    wake_->stopped = true;
    wake_->stop = true;
  }
  wake_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
  (void)Flush();  // the ends of this CP's streams, recorded by the source's stop
}

void ClusterDataPlanes::Run() {
  const auto period = absl::ToChronoMilliseconds(options_.flush_interval);
  while (true) {
    {
      std::unique_lock<std::mutex> lock(wake_->mu);
      wake_->cv.wait_for(lock, period, [&] { return wake_->stop || wake_->poked; });
      if (wake_->stop) return;
      wake_->poked = false;
    }
    (void)Flush();
  }
}

std::vector<DataPlaneStatus> ClusterDataPlanes::LocalRows() const {
  std::vector<DataPlaneStatus> rows = local_.ListDataPlanes();
  for (DataPlaneStatus& dp : rows) {
    dp.control_plane_id = options_.cp_id;
    dp.control_plane_hostname = options_.cp_hostname;
  }
  return rows;
}

absl::Status ClusterDataPlanes::Flush() {
  // One round at a time, so an older read of the table is never saved after a newer one. The
  // source's lock is taken and released inside ListDataPlanes: the store is called without it.
  std::lock_guard<std::mutex> lock(flush_mu_);
  const std::vector<DataPlaneStatus> local = LocalRows();
  const int64_t now = clock_.NowSeconds();
  std::vector<StoredDataPlane> due;
  for (const DataPlaneStatus& dp : local) {
    const bool connected = Connected(dp);
    auto it = saved_.find(dp.id);
    const bool changed = it == saved_.end() || it->second.connected != connected || !SameRow(it->second.status, dp);
    const bool refresh = connected && it != saved_.end() && now - it->second.saved_at >= options_.refresh_seconds;
    if (!changed && !refresh) continue;
    StoredDataPlane& row = due.emplace_back();
    row.status = dp;
    row.status.lag_versions = 0;
    row.status.lag_seconds = 0;
    // A connected row says when this CP last vouched for the stream.
    if (connected) row.status.last_seen = std::max(dp.last_seen, now);
    row.connected = connected;
    row.purge_at = row.status.last_seen + options_.purge_delay_seconds;
  }
  absl::Status status = store_.SaveDataPlanes(due);
  if (status.ok()) {
    for (const StoredDataPlane& row : due) saved_[row.status.id] = Saved{row.status, row.connected, now};
    if (now >= next_purge_) {
      absl::StatusOr<int64_t> purged = store_.PurgeDataPlanes(now);
      if (purged.ok()) {
        next_purge_ = now + options_.purge_every_seconds;
        if (*purged > 0) PORTICO_LOG(kInfo, kLog, "purged ", *purged, " data plane row(s) past their purge delay");
      } else {
        status = purged.status();
      }
    }
  }
  if (!status.ok() && !store_down_) {
    store_down_ = true;
    PORTICO_LOG(kError, kLog, "cannot record data planes in the database (retrying every ",
                absl::FormatDuration(options_.flush_interval), "; other CPs do not see this CP's changes meanwhile): ",
                status.message());
  } else if (status.ok() && store_down_) {
    store_down_ = false;
    PORTICO_LOG(kInfo, kLog, "recording data planes in the database again");
  }
  return status;
}

std::vector<DataPlaneStatus> ClusterDataPlanes::ListDataPlanes() const {
  const std::vector<DataPlaneStatus> local = LocalRows();
  const int64_t now = clock_.NowSeconds();
  absl::StatusOr<std::vector<StoredDataPlane>> stored = store_.ListDataPlaneRows(now);
  if (!stored.ok()) return local;  // database down: this CP's own view (Flush logs the outage)
  const ConfigBuildStatus build = local_.BuildStatus();
  std::map<std::string, DataPlaneStatus> merged;
  for (const DataPlaneStatus& dp : local) {
    // Past its purge time: gone here too, as from the database.
    if (!Connected(dp) && dp.last_seen + options_.purge_delay_seconds <= now) continue;
    merged[dp.id] = dp;
  }
  for (StoredDataPlane& row : *stored) {
    DataPlaneStatus& dp = row.status;
    auto it = merged.find(dp.id);
    if (it != merged.end() && (Connected(it->second) || dp.control_plane_id == options_.cp_id)) continue;
    if (row.connected && dp.control_plane_id != options_.cp_id && now - dp.last_seen > 3 * options_.refresh_seconds) {
      dp.state = "disconnected";  // its CP stopped refreshing the row
      dp.connected_since = 0;
    }
    dp.lag_versions = 0;
    dp.lag_seconds = 0;
    if (build.known && dp.config_version < build.store_version) dp.lag_versions = build.store_version - dp.config_version;
    merged[dp.id] = std::move(dp);
  }
  std::vector<DataPlaneStatus> out;
  out.reserve(merged.size());
  for (auto& [id, dp] : merged) out.push_back(std::move(dp));
  return out;
}

}  // namespace portico::cp
