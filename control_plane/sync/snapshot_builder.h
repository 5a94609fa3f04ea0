#pragma once
// The CP's snapshot builder (docs/sync.md "Snapshot build and hash"). After committed changes
// (NotifyConfigChanged, debounced: `debounce_quiet` without a new one, or only `debounce_first`
// for a change that follows none for `debounce_quiet`; at most `debounce_max` after the first),
// it reads the store in one transaction, drops what Kong does not export,
// validates the set, builds one snapshot (serialize, hash, gzip, chunk), attaches the deltas to
// it from the versions its change log covers (change_log.h), and publishes it. When
// the store's current version cannot be built (a corrupt row, an invalid set, a build or read
// error) it keeps the last snapshot and says why (Status(), portico_cp_config_build_failing).
//
// One thread of its own. Thread-safe. No gRPC: the sessions that send what it publishes are
// elsewhere (on_published).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/config/config_set.h"
#include "control_plane/cluster_status.h"
#include "control_plane/sync/change_log.h"

namespace portico {
struct BuiltSnapshot;
}  // namespace portico

namespace portico::cp {

struct SyncMetrics;

class SnapshotBuilder {
 public:
  using SteadyClock = std::chrono::steady_clock;

  struct Options {
    // A build waits for `debounce_quiet` without a new change, at most `debounce_max` after the
    // first one. A change that comes after `debounce_quiet` without any (an isolated change, or
    // the first of a burst) waits only `debounce_first` (if shorter): changes that keep coming
    // are coalesced as before, an isolated one is not held up.
    absl::Duration debounce_quiet = absl::Milliseconds(50);
    absl::Duration debounce_max = absl::Milliseconds(500);
    absl::Duration debounce_first = absl::Milliseconds(10);
    size_t chunk_bytes = size_t{1} << 20;
    ChangeLog::Options change_log;  // the versions a DP can get a delta from
  };
  // Reads the store in one transaction (called on the builder's thread, and in Start).
  using ReadConfigFn = std::function<absl::StatusOr<StoredConfig>()>;
  // Receives each newly published snapshot, on the builder's thread (the first one on the thread
  // calling Start), without the builder's lock held.
  using PublishedFn = std::function<void(std::shared_ptr<const BuiltSnapshot>)>;

  // `metrics` and `clock` must outlive the builder.
  SnapshotBuilder(Options options, ReadConfigFn read_config, SyncMetrics& metrics, const Clock& clock,
                  PublishedFn on_published);
  ~SnapshotBuilder();  // Stop()s
  SnapshotBuilder(const SnapshotBuilder&) = delete;
  SnapshotBuilder& operator=(const SnapshotBuilder&) = delete;

  // Builds the first snapshot from one read, then starts the thread. A read error fails Start;
  // a version that cannot be built does not (it is recorded, as later ones are).
  absl::Status Start();
  // Ends the thread (a build in progress finishes first). Idempotent.
  void Stop();
  // A write committed (call right after the commit). Never blocks on a build.
  void NotifyConfigChanged();

  std::shared_ptr<const BuiltSnapshot> latest() const;  // null before the first publication
  uint64_t published_count() const;
  ConfigBuildStatus Status() const;

  // A published version, remembered (the last 256) for lag and convergence.
  struct Published {
    ConfigVersion version;
    int64_t first_change_wall = 0;                        // Clock seconds of the oldest commit in it
    std::optional<SteadyClock::time_point> first_change;  // unset for a build without a change (start)
    SteadyClock::time_point published_at;
  };
  // What data-plane lag is measured against (DataPlaneTable::List).
  struct LagView {
    ConfigVersion current;     // the store's version as last read (published or not), else the latest published
    bool failing = false;      // `current` cannot be built
    int64_t failing_since = 0;
    std::vector<Published> history;  // oldest first
  };
  LagView Lag() const;
  std::optional<Published> FindPublished(const ConfigVersion& version) const;

 private:
  enum class PublishResult { kPublished, kUnchanged, kFailed };

  void Loop();
  void BuildAndPublish(std::optional<SteadyClock::time_point> change_at, int64_t change_wall);
  // Consumes `stored` (its entities are moved into the exported config).
  PublishResult Publish(StoredConfig stored, std::optional<SteadyClock::time_point> change_at, int64_t change_wall);
  // Makes `snapshot` the latest and hands it to on_published_ (mu_ is taken inside, not held when
  // called). A second call for the same version (now with its payload) is not recorded again;
  // published_count() counts the publications with a payload.
  void PublishVersion(std::shared_ptr<const BuiltSnapshot> snapshot, std::optional<SteadyClock::time_point> change_at,
                     int64_t change_wall);
  // Builds the full payload of the latest version when it was published without it (deltas
  // only) and publishes it again; on failure schedules a retry. True when nothing is pending.
  bool CompletePendingPayload();
  void SchedulePayloadRetry(uint64_t version, const absl::Status& error);
  // `reason` is one of kBuildFailureReasons.
  void SetFailure(const std::string& reason, const std::string& error);
  void ClearFailureLocked();

  const Options options_;
  const ReadConfigFn read_config_;
  SyncMetrics& metrics_;
  const Clock& clock_;
  const PublishedFn on_published_;
  std::thread thread_;
  // Used by Publish only (Start, then the builder's thread): not guarded by mu_.
  ChangeLog change_log_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  bool stopping_ = false;
  bool dirty_ = false;
  SteadyClock::time_point first_notify_, last_notify_;  // last_notify_: of any cycle (none: epoch)
  std::chrono::milliseconds cycle_quiet_{0};  // the quiet time of the pending build (dirty_)
  // Oldest commit not yet in a published snapshot (for lag and convergence).
  std::optional<SteadyClock::time_point> unpublished_change_;
  int64_t unpublished_change_wall_ = 0;
  std::shared_ptr<const BuiltSnapshot> latest_;
  // Set when the latest version's full payload failed to build: when to try again (1 s, doubling
  // up to 60 s while it keeps failing).
  std::optional<SteadyClock::time_point> payload_retry_at_;
  std::chrono::milliseconds payload_retry_delay_{1000};
  std::deque<Published> history_;  // oldest first
  uint64_t published_ = 0;
  // What the last read of the store said, and whether it could be published.
  ConfigVersion store_version_;  // epoch + version (no hash); empty before the first read
  std::vector<CorruptRow> corrupt_rows_;
  uint64_t corrupt_row_count_ = 0;
  std::string failure_reason_;  // "" = the store's version is published (or unchanged)
  std::string failure_error_;
  int64_t failing_since_ = 0;  // Clock seconds
};

}  // namespace portico::cp
