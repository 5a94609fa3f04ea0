#pragma once
// The CP's snapshot builder (docs/sync.md "Snapshot build and hash"). After committed changes
// (NotifyConfigChanged, debounced: `debounce_quiet` without a new one, or only `debounce_first`
// for a change that follows none for `debounce_quiet`; at most `debounce_max` after the first),
// it reads what changed in the store since the published version (ConfigMirror; or, when the
// store's change log does not cover it, the whole config in one transaction), drops what Kong
// does not export, validates, indexes the resources, attaches the deltas to it from the versions
// its change log covers (change_log.h) and publishes it; its payload thread then builds the full
// payload (serialize, gzip, chunk) and the larger deltas, and publishes it again. When
// the store's current version cannot be built (a corrupt row, an invalid set, a build or read
// error) it keeps the last snapshot and says why (Status(), portico_cp_config_build_failing).
//
// Two threads of its own (builds, payloads). Thread-safe. No gRPC: the sessions that send what it
// publishes are elsewhere (on_published).
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
#include "control_plane/sync/config_mirror.h"

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
    // The store's change feed (rows changed since a version, one read transaction; called on the
    // builder's thread). Set: a build applies the changes to the ConfigMirror of the published
    // version and costs the changed rows only; unset (or not covering): every build reads the
    // whole config.
    std::function<absl::StatusOr<StoredChanges>(uint64_t since)> read_changes;
    // Deltas whose composed changes carry at most this many bytes go out with the first
    // publication; those from older bases are built on the payload thread (docs/sync.md).
    uint64_t quick_delta_bytes = uint64_t{1} << 20;
    // Tests: called before each full payload the payload thread builds; an error fails that build.
    std::function<absl::Status(const BuiltSnapshot&)> payload_fault_for_test;
  };
  // Reads the store in one transaction (called on the builder's thread, and in Start).
  using ReadConfigFn = std::function<absl::StatusOr<StoredConfig>()>;
  // Receives each newly published snapshot, on the builder's thread or its payload thread (the
  // first one on the thread calling Start), one call at a time and in publication order, without
  // the builder's mutex held.
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
  // Consumes `stored` (its entities are moved into the exported config, or into the mirror).
  PublishResult Publish(StoredConfig stored, std::optional<SteadyClock::time_point> change_at, int64_t change_wall);
  // The build from the mirror and the store's changes since its version; nullopt when it cannot
  // be used (the caller then reads and builds the whole config).
  std::optional<PublishResult> PublishIncremental(std::optional<SteadyClock::time_point> change_at,
                                                  int64_t change_wall);
  // Records the store's version as read (and its corrupt rows); kUnchanged when it is the
  // published one. Sets `previous` to the published snapshot.
  std::optional<PublishResult> NoteStoreVersion(const ConfigVersion& version, const std::vector<CorruptRow>& corrupt,
                                                std::shared_ptr<const BuiltSnapshot>* previous);
  // The common tail of both builds: deltas from the change log, the deltas-first publication,
  // the full payload, the second publication. `diff` null: not incremental (no previous version
  // of the same epoch).
  PublishResult PublishIndexed(const std::shared_ptr<const BuiltSnapshot>& previous, std::shared_ptr<BuiltSnapshot> indexed,
                               ChangeList* diff, size_t validated, SteadyClock::time_point build_start,
                               std::optional<SteadyClock::time_point> change_at, int64_t change_wall, const char* how,
                               std::shared_ptr<const BuiltSnapshot>* published);
  PublishResult Fail(uint64_t version, uint64_t published_version, const char* reason, const std::string& error);
  // Makes `snapshot` the latest and hands it to on_published_ (mu_ is taken inside, not held when
  // called; publish_mu_ keeps the hand-offs of both threads in the order latest_ took them). A
  // second call for the same version (now with its payload) is not recorded again;
  // published_count() counts the publications with a payload. `payload_of_latest`: publish only
  // if `snapshot` is the payload of the version that is still the latest; false otherwise.
  bool PublishVersion(std::shared_ptr<const BuiltSnapshot> snapshot, std::optional<SteadyClock::time_point> change_at,
                      int64_t change_wall, bool payload_of_latest = false);
  // The payload thread: builds the full payload of the latest version published without it
  // (deltas first), publishes it again, and retries a failure (1 s, doubling up to 60 s). A
  // version superseded meanwhile is dropped (the newer one gets its own payload).
  void PayloadLoop();
  void SchedulePayloadRetryLocked(uint64_t version, const absl::Status& error);
  // `reason` is one of kBuildFailureReasons.
  void SetFailure(const std::string& reason, const std::string& error);
  void SetFailureLocked(const std::string& reason, const std::string& error);
  void ClearFailureLocked();

  const Options options_;
  const ReadConfigFn read_config_;
  SyncMetrics& metrics_;
  const Clock& clock_;
  const PublishedFn on_published_;
  std::thread thread_;
  std::thread payload_thread_;
  std::mutex publish_mu_;  // held across a PublishVersion (latest_ and its hand-off)
  // Used by Publish only (Start, then the builder's thread): not guarded by mu_.
  ChangeLog change_log_;
  ConfigMirror mirror_;  // the published version's stored config (when read_changes is set)

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
  // The latest version published without its full payload, for the payload thread (null: none).
  struct PayloadTodo {
    std::shared_ptr<const BuiltSnapshot> snapshot;
    std::vector<ChangeLog::Step> steps;  // the log's steps to it, newest first
    size_t next_step = 0;                // the first step whose delta is still to build
  };
  std::shared_ptr<const PayloadTodo> payload_todo_;
  std::condition_variable payload_cv_;
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
