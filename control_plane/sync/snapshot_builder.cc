#include "control_plane/sync/snapshot_builder.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/memory.h"
#include "common/base/thread_priority.h"
#include "common/base/uuid.h"
#include "common/config/validate.h"
#include "common/metrics/metrics.h"
#include "common/snapshot/snapshot.h"
#include "control_plane/sync/sync_metrics.h"

namespace portico::cp {
namespace {

constexpr char kLog[] = "cp-sync";
constexpr size_t kMaxErrorText = 4096;
// Published versions remembered for lag_seconds and the convergence histogram.
constexpr size_t kHistoryDepth = 256;
// Corrupt rows kept for GET /status (all are counted).
constexpr size_t kMaxCorruptRowsKept = 100;
// The payload thread's nice value (Linux: per thread): the lowest. The payload serves only DPs that
// cannot take a delta, and a newer version supersedes it; the deltas' fan-out (and, on a shared
// host, a DP's apply at --apply-nice 10) goes first.
constexpr int kPayloadNice = 19;

std::chrono::milliseconds ToChrono(absl::Duration d) { return std::chrono::milliseconds(absl::ToInt64Milliseconds(d)); }

}  // namespace

SnapshotBuilder::SnapshotBuilder(Options options, ReadConfigFn read_config, SyncMetrics& metrics, const Clock& clock,
                                 PublishedFn on_published)
    : options_(options),
      read_config_(std::move(read_config)),
      metrics_(metrics),
      clock_(clock),
      on_published_(std::move(on_published)),
      change_log_(options_.change_log) {}

SnapshotBuilder::~SnapshotBuilder() { Stop(); }

absl::Status SnapshotBuilder::Start() {
  absl::StatusOr<StoredConfig> stored = read_config_();
  if (!stored.ok()) return stored.status();
  Publish(*std::move(stored), std::nullopt, clock_.NowSeconds());
  thread_ = std::thread([this] { Loop(); });
  payload_thread_ = std::thread([this] { PayloadLoop(); });
  return absl::OkStatus();
}

void SnapshotBuilder::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  payload_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (payload_thread_.joinable()) payload_thread_.join();
}

void SnapshotBuilder::NotifyConfigChanged() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const SteadyClock::time_point now = SteadyClock::now();
    if (!dirty_) {
      dirty_ = true;
      first_notify_ = now;
      const std::chrono::milliseconds quiet = ToChrono(options_.debounce_quiet);
      cycle_quiet_ = now - last_notify_ < quiet ? quiet : std::min(quiet, ToChrono(options_.debounce_first));
    }
    last_notify_ = now;
    if (!unpublished_change_) {
      unpublished_change_ = now;
      unpublished_change_wall_ = clock_.NowSeconds();
    }
  }
  cv_.notify_all();
}

void SnapshotBuilder::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || dirty_; });
    if (stopping_) return;
    // Debounce: build once no notification came for the cycle's quiet time (`debounce_first` or
    // `debounce_quiet`, set by its first notification), or `max` after the first one.
    while (true) {
      const SteadyClock::time_point deadline =
          std::min(last_notify_ + cycle_quiet_, first_notify_ + ToChrono(options_.debounce_max));
      if (SteadyClock::now() >= deadline) break;
      cv_.wait_until(lock, deadline);
      if (stopping_) return;
    }
    dirty_ = false;
    // Changes notified from here on belong to the next build.
    std::optional<SteadyClock::time_point> change_at = unpublished_change_;
    const int64_t change_wall = unpublished_change_wall_;
    unpublished_change_.reset();
    lock.unlock();
    BuildAndPublish(change_at, change_wall);
    ReleaseFreedMemory();  // the config read for the build (large for a large config) is freed
    lock.lock();
  }
}

void SnapshotBuilder::PayloadLoop() {
  // Below the builder and the sessions: the payload only serves DPs that need the whole config.
  LowerThisThreadPriority(kPayloadNice, kLog, "snapshot payload thread");
  SnapshotBuildOptions build_options;
  build_options.chunk_bytes = options_.chunk_bytes;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (stopping_) return;
    if (payload_todo_ == nullptr) {
      payload_cv_.wait(lock);
      continue;
    }
    if (payload_retry_at_ && SteadyClock::now() < *payload_retry_at_) {
      payload_cv_.wait_until(lock, *payload_retry_at_);
      continue;
    }
    std::shared_ptr<const PayloadTodo> todo_entry = payload_todo_;
    lock.unlock();
    const SteadyClock::time_point start = SteadyClock::now();
    if (todo_entry->next_step < todo_entry->steps.size()) {
      // The deltas from the older bases (larger), which did not hold up the first publication:
      // published at once (their DPs do not wait for the payload), and kept for a retry.
      std::vector<std::shared_ptr<const BuiltSnapshot>> more = ChangeLog::BuildDeltasFrom(
          todo_entry->steps, *todo_entry->snapshot, clock_, build_options, todo_entry->next_step);
      std::shared_ptr<const BuiltSnapshot> snapshot = todo_entry->snapshot;
      if (!more.empty()) {
        auto with_more = std::make_shared<BuiltSnapshot>(*snapshot);
        with_more->deltas.insert(with_more->deltas.end(), more.begin(), more.end());
        snapshot = std::move(with_more);
        PublishVersion(snapshot, std::nullopt, 0, /*payload_of_latest=*/true);
      }
      auto updated = std::make_shared<const PayloadTodo>(PayloadTodo{std::move(snapshot), {}, 0});
      lock.lock();
      if (payload_todo_ != todo_entry) continue;  // superseded meanwhile
      payload_todo_ = updated;
      lock.unlock();
      todo_entry = std::move(updated);
    }
    const std::shared_ptr<const BuiltSnapshot>& todo = todo_entry->snapshot;
    const absl::Status fault =
        options_.payload_fault_for_test ? options_.payload_fault_for_test(*todo) : absl::OkStatus();
    absl::StatusOr<std::shared_ptr<BuiltSnapshot>> built =
        fault.ok() ? CompleteSnapshotPayload(*todo, build_options) : absl::StatusOr<std::shared_ptr<BuiltSnapshot>>(fault);
    if (built.ok() && PublishVersion(*built, std::nullopt, 0, /*payload_of_latest=*/true)) {
      metrics_.builds->Inc();
      PORTICO_LOG(kInfo, kLog, "config version ", todo->version.version, ": full payload of ",
                  (*built)->compressed.size(), " bytes gzip in ", (*built)->chunk_count(), " chunks built in ",
                  static_cast<int64_t>(std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count()),
                  " ms; ", todo->deltas.size(), " delta(s) in all");
    }
    ReleaseFreedMemory();
    lock.lock();
    // Superseded meanwhile (the newer version may already be the latest, before it is handed
    // over here): nothing to retry or record for this one.
    if (payload_todo_ != todo_entry || !latest_ || latest_->version != todo->version) continue;
    if (built.ok()) {
      payload_todo_.reset();
    } else {
      SchedulePayloadRetryLocked(todo->version.version, built.status());
    }
  }
}

void SnapshotBuilder::SchedulePayloadRetryLocked(uint64_t version, const absl::Status& error) {
  SetFailureLocked("build_error", error.ToString());
  payload_retry_delay_ = payload_retry_at_ ? std::min(payload_retry_delay_ * 2, std::chrono::milliseconds(60000))
                                           : std::chrono::milliseconds(1000);
  payload_retry_at_ = SteadyClock::now() + payload_retry_delay_;
  PORTICO_LOG(kError, kLog, "config version ", version, " went out as deltas only: its full payload cannot be built (",
              error.ToString(), "); retrying in ", payload_retry_delay_.count(), " ms");
}

void SnapshotBuilder::BuildAndPublish(std::optional<SteadyClock::time_point> change_at, int64_t change_wall) {
  PublishResult result = PublishResult::kFailed;
  if (std::optional<PublishResult> incremental = PublishIncremental(change_at, change_wall)) {
    result = *incremental;
  } else if (absl::StatusOr<StoredConfig> stored = read_config_(); !stored.ok()) {
    PORTICO_LOG(kError, kLog, "cannot read config for a snapshot: ", stored.status().ToString());
    SetFailure("read_error", stored.status().ToString());
  } else {
    result = Publish(*std::move(stored), change_at, change_wall);
  }
  // A failed build carries the oldest unpublished commit to the next one. An unchanged version
  // does not: its commit was already published (the notify arrived after the build read it).
  if (result == PublishResult::kFailed && change_at) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!unpublished_change_ || *change_at < *unpublished_change_) {
      unpublished_change_ = change_at;
      unpublished_change_wall_ = change_wall;
    }
  }
}

void SnapshotBuilder::SetFailure(const std::string& reason, const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  SetFailureLocked(reason, error);
}

void SnapshotBuilder::SetFailureLocked(const std::string& reason, const std::string& error) {
  if (failure_reason_.empty()) failing_since_ = clock_.NowSeconds();
  failure_reason_ = reason;
  failure_error_ = error.substr(0, kMaxErrorText);
  for (size_t i = 0; i < std::size(kBuildFailureReasons); ++i) {
    metrics_.build_failing[i]->Set(reason == kBuildFailureReasons[i] ? 1 : 0);
  }
}

void SnapshotBuilder::ClearFailureLocked() {
  failure_reason_.clear();
  failure_error_.clear();
  failing_since_ = 0;
  for (Gauge* gauge : metrics_.build_failing) gauge->Set(0);
}

std::optional<SnapshotBuilder::PublishResult> SnapshotBuilder::NoteStoreVersion(
    const ConfigVersion& version, const std::vector<CorruptRow>& corrupt,
    std::shared_ptr<const BuiltSnapshot>* previous) {
  std::lock_guard<std::mutex> lock(mu_);
  store_version_ = ConfigVersion{version.epoch, version.version, ""};
  corrupt_row_count_ = corrupt.size();
  corrupt_rows_.assign(corrupt.begin(), corrupt.begin() + std::min(corrupt.size(), kMaxCorruptRowsKept));
  metrics_.store_version->Set(static_cast<double>(version.version));
  metrics_.corrupt_rows->Set(static_cast<double>(corrupt.size()));
  // Every write bumps the version in its own transaction: same epoch and version, same content.
  if (latest_ && latest_->version.epoch == version.epoch && latest_->version.version == version.version) {
    // e.g. a read error at a version that is published (a missing payload keeps its failure:
    // the payload thread retries it)
    if (latest_->payload_ready()) ClearFailureLocked();
    return PublishResult::kUnchanged;
  }
  // Only this thread publishes a new version (the payload thread republishes the same one).
  *previous = latest_;
  return std::nullopt;
}

SnapshotBuilder::PublishResult SnapshotBuilder::Fail(uint64_t version, uint64_t published_version, const char* reason,
                                                     const std::string& error) {
  PORTICO_LOG(kError, kLog, "config version ", version, " cannot be published (", reason, "): ", error,
              "; data planes keep ",
              published_version ? absl::StrCat("version ", published_version) : std::string("what they serve"),
              " until it is repaired");
  SetFailure(reason, error);
  return PublishResult::kFailed;
}

std::optional<SnapshotBuilder::PublishResult> SnapshotBuilder::PublishIncremental(
    std::optional<SteadyClock::time_point> change_at, int64_t change_wall) {
  if (!options_.read_changes || !mirror_.valid()) return std::nullopt;
  const ConfigVersion base = mirror_.version();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!latest_ || latest_->version != base) {
      mirror_.Invalidate();
      return std::nullopt;
    }
  }
  const SteadyClock::time_point build_start = SteadyClock::now();
  absl::StatusOr<StoredChanges> changes = options_.read_changes(base.version);
  if (!changes.ok()) {
    // The whole read reports it (and may succeed); the mirror still holds the published version.
    PORTICO_LOG(kWarn, kLog, "cannot read the changes since version ", base.version, ": ",
                changes.status().ToString());
    return std::nullopt;
  }
  if (!changes->covered || changes->version.epoch != base.epoch || !changes->corrupt.empty()) {
    if (!changes->covered) {
      PORTICO_LOG(kInfo, kLog, "the store's change log does not cover version ", base.version,
                  ": reading the whole config");
    }
    mirror_.Invalidate();
    return std::nullopt;
  }
  std::shared_ptr<const BuiltSnapshot> previous;
  if (std::optional<PublishResult> unchanged = NoteStoreVersion(changes->version, {}, &previous)) return unchanged;
  const uint64_t version = changes->version.version;
  const size_t change_count = changes->changes.size();
  absl::StatusOr<ConfigMirror::Next> next = mirror_.Apply(*std::move(changes), clock_);
  if (!next.ok()) {
    PORTICO_LOG(kInfo, kLog, "config version ", version, " is built from the whole config (", change_count,
                " changed row(s): ", next.status().message(), ")");
    return std::nullopt;  // the mirror is invalid now
  }
  std::shared_ptr<const BuiltSnapshot> published;
  PublishResult result = PublishIndexed(previous, std::move(next->indexed), &next->diff, next->validated, build_start,
                                        change_at, change_wall, "incremental", &published);
  if (result == PublishResult::kPublished) {
    mirror_.Commit(std::move(published));
  } else {
    mirror_.Invalidate();
  }
  return result;
}

SnapshotBuilder::PublishResult SnapshotBuilder::Publish(StoredConfig stored,
                                                        std::optional<SteadyClock::time_point> change_at,
                                                        int64_t change_wall) {
  std::shared_ptr<const BuiltSnapshot> previous;
  if (std::optional<PublishResult> unchanged = NoteStoreVersion(stored.version, stored.corrupt, &previous)) {
    return *unchanged;
  }
  const uint64_t published_version = previous ? previous->version.version : 0;
  auto fail = [&](const char* reason, const std::string& error) {
    return Fail(stored.version.version, published_version, reason, error);
  };
  if (!stored.corrupt.empty()) {
    // Publishing the rest would silently drop these entities from every data plane.
    std::string error = absl::StrCat(stored.corrupt.size(),
                                     " corrupt row(s) in the store (repair each with DELETE or PUT through the "
                                     "Admin API):");
    for (size_t i = 0; i < stored.corrupt.size(); ++i) {
      const CorruptRow& row = stored.corrupt[i];
      if (i == 10) {
        absl::StrAppend(&error, " ...");
        break;
      }
      absl::StrAppend(&error, i ? ";" : "", " ", row.kind, " ", absl::CHexEscape(row.id), ": ", row.error);
    }
    return fail("corrupt_rows", error);
  }
  const SteadyClock::time_point build_start = SteadyClock::now();
  // With a change feed the stored entities are kept (the mirror): the export copies them.
  const bool mirrored = static_cast<bool>(options_.read_changes);
  const ConfigSet exported = mirrored ? ExportableConfig(stored.config, stored.version.epoch)
                                      : ExportableConfig(std::move(stored.config), stored.version.epoch);
  // Serialize and hash every resource first: what changed since the published version decides
  // what is validated again and what the deltas carry.
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> indexed = BuildSnapshotIndex(exported, stored.version, clock_);
  if (!indexed.ok()) return fail("build_error", indexed.status().ToString());
  const bool incremental = previous != nullptr && previous->resources != nullptr &&
                           previous->version.epoch == stored.version.epoch;
  ChangeList diff;
  ChangedEntities upserted;
  if (incremental) {
    diff = DiffResources(*previous->resources, *(*indexed)->resources);
    for (const ResourceChange& c : diff) {
      if (c.body != nullptr) upserted.Add(c.kind, c.id);
    }
  }
  // The published version passed the whole check, and an entity with the same bytes passes its
  // own rules again: only the upserted ones are checked again (ids, uniqueness and references
  // always over the whole set).
  absl::Status valid = ValidateConfigSet(exported, incremental ? &upserted : nullptr);
  if (!valid.ok()) return fail("invalid_config", valid.ToString());
  std::shared_ptr<const BuiltSnapshot> published;
  const PublishResult result = PublishIndexed(previous, *std::move(indexed), incremental ? &diff : nullptr,
                                              upserted.size(), build_start, change_at, change_wall, "whole", &published);
  if (mirrored) {
    if (result == PublishResult::kPublished) {
      mirror_.Reset(std::move(stored.config), exported, std::move(published));
    } else {
      mirror_.Invalidate();
    }
  }
  return result;
}

SnapshotBuilder::PublishResult SnapshotBuilder::PublishIndexed(
    const std::shared_ptr<const BuiltSnapshot>& previous, std::shared_ptr<BuiltSnapshot> indexed, ChangeList* diff,
    size_t validated, SteadyClock::time_point build_start, std::optional<SteadyClock::time_point> change_at,
    int64_t change_wall, const char* how, std::shared_ptr<const BuiltSnapshot>* published) {
  const uint64_t published_version = previous ? previous->version.version : 0;
  if (const uint64_t max = SnapshotLimits{}.max_resources; indexed->resources->size() > max) {
    return Fail(indexed->version.version, published_version, "invalid_config",
                absl::StrCat("the config has ", indexed->resources->size(), " entities; data planes accept at most ",
                             max));
  }
  SnapshotBuildOptions build_options;
  build_options.chunk_bytes = options_.chunk_bytes;
  // The deltas to it from the versions the change log covers (docs/sync.md "Delta sync"); built
  // before publication, outside mu_, and shared by every DP on the same base.
  change_log_.Record(previous.get(), *indexed, diff);
  // The small deltas first (DPs a few versions behind, the usual case); the deltas from older
  // bases, up to about a full config's worth, are built with the payload.
  std::vector<ChangeLog::Step> steps = change_log_.StepsTo(*indexed);
  size_t next_step = 0;
  indexed->deltas =
      ChangeLog::BuildDeltasFrom(steps, *indexed, clock_, build_options, 0, options_.quick_delta_bytes, &next_step);
  if (indexed->deltas.empty() && next_step < steps.size()) {  // none small: all of them here
    indexed->deltas = ChangeLog::BuildDeltasFrom(steps, *indexed, clock_, build_options);
    next_step = steps.size();
  }
  const SteadyClock::time_point deltas_ready = SteadyClock::now();
  // Published twice: first without the full payload, so that the deltas leave now; then with
  // it, built on the payload thread, for the DPs that need the whole config (they wait for the
  // second publication). A version without deltas is built whole here and published once.
  std::shared_ptr<const BuiltSnapshot> first = std::move(indexed);
  const double ready_ms = std::chrono::duration<double, std::milli>(deltas_ready - build_start).count();
  const std::string validated_text =
      diff != nullptr ? absl::StrCat(", ", validated, " entities validated again") : std::string();
  if (!first->deltas.empty()) {
    metrics_.build_seconds->Observe(ready_ms / 1000);
    PublishVersion(first, change_at, change_wall);
    {
      std::lock_guard<std::mutex> lock(mu_);
      // A version still waiting for its payload is superseded.
      payload_todo_ = std::make_shared<const PayloadTodo>(
          PayloadTodo{first, next_step < steps.size() ? std::move(steps) : std::vector<ChangeLog::Step>{}, next_step});
      payload_retry_at_.reset();
    }
    payload_cv_.notify_all();
    PORTICO_LOG(kInfo, kLog, "published config version ", first->version.version, " hash ",
                ToHex(first->version.hash).substr(0, 12), " (", how, " build: ", first->service_count,
                " services, ", first->route_count, " routes; ", first->deltas.size(), " delta(s) from ",
                change_log_.size(), " logged version(s), ready after ", static_cast<int64_t>(ready_ms), " ms",
                validated_text, "; full payload to follow)");
    *published = first;
    return PublishResult::kPublished;
  }
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> built = CompleteSnapshotPayload(*first, build_options);
  if (!built.ok()) return Fail(first->version.version, published_version, "build_error", built.status().ToString());
  metrics_.builds->Inc();
  const double build_seconds = std::chrono::duration<double>(SteadyClock::now() - build_start).count();
  metrics_.build_seconds->Observe(build_seconds);
  std::shared_ptr<const BuiltSnapshot> published_snapshot = *std::move(built);
  const BuiltSnapshot& s = *published_snapshot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    payload_todo_.reset();  // an older version's payload is no longer wanted
    payload_retry_at_.reset();
  }
  PublishVersion(published_snapshot, change_at, change_wall);
  PORTICO_LOG(kInfo, kLog, "published config version ", s.version.version, " hash ",
              ToHex(s.version.hash).substr(0, 12), " (", how, " build: ", s.service_count, " services, ",
              s.route_count, " routes, ", s.compressed.size(), " bytes gzip in ", s.chunk_count(),
              " chunks, built in ", static_cast<int64_t>(build_seconds * 1000), " ms; no delta", validated_text, ")");
  *published = std::move(published_snapshot);
  return PublishResult::kPublished;
}

bool SnapshotBuilder::PublishVersion(std::shared_ptr<const BuiltSnapshot> snapshot,
                                     std::optional<SteadyClock::time_point> change_at, int64_t change_wall,
                                     bool payload_of_latest) {
  std::lock_guard<std::mutex> order(publish_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    const bool again = latest_ && latest_->version == snapshot->version;  // now with its payload
    if (payload_of_latest && (!again || latest_->payload_ready())) return false;
    latest_ = snapshot;
    if (snapshot->payload_ready()) ++published_;  // counted once, when complete
    if (!again) {
      Published published;
      published.version = snapshot->version;
      published.first_change = change_at;
      published.first_change_wall = change_at ? change_wall : clock_.NowSeconds();
      published.published_at = SteadyClock::now();
      history_.push_back(std::move(published));
      if (history_.size() > kHistoryDepth) history_.pop_front();
      metrics_.config_version->Set(static_cast<double>(snapshot->version.version));
      ClearFailureLocked();
    }
    if (snapshot->payload_ready()) {
      payload_retry_at_.reset();
      // The payload failure of this version is over (another failure, of a newer store version,
      // stays until that version builds).
      if (again && failure_reason_ == "build_error" && store_version_.version == snapshot->version.version &&
          store_version_.epoch == snapshot->version.epoch) {
        ClearFailureLocked();
      }
      metrics_.bytes_raw->Set(static_cast<double>(snapshot->uncompressed_size));
      metrics_.bytes_gzip->Set(static_cast<double>(snapshot->compressed.size()));
    }
  }
  // Every stream that is idle and behind starts sending it (or queues for a slot).
  on_published_(std::move(snapshot));
  return true;
}

std::shared_ptr<const BuiltSnapshot> SnapshotBuilder::latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_;
}

uint64_t SnapshotBuilder::published_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

ConfigBuildStatus SnapshotBuilder::Status() const {
  std::lock_guard<std::mutex> lock(mu_);
  ConfigBuildStatus status;
  status.known = true;
  status.store_version = store_version_.version;
  status.published = latest_ != nullptr;
  status.published_version = latest_ ? latest_->version.version : 0;
  status.failing = !failure_reason_.empty();
  status.reason = failure_reason_;
  status.error = failure_error_;
  status.failing_since = failing_since_;
  status.corrupt_rows = corrupt_rows_;
  status.corrupt_row_count = corrupt_row_count_;
  return status;
}

SnapshotBuilder::LagView SnapshotBuilder::Lag() const {
  std::lock_guard<std::mutex> lock(mu_);
  LagView view;
  view.current = store_version_;
  if (view.current.empty() && latest_) view.current = latest_->version;
  view.failing = !failure_reason_.empty();
  view.failing_since = failing_since_;
  view.history.assign(history_.begin(), history_.end());
  return view;
}

std::optional<SnapshotBuilder::Published> SnapshotBuilder::FindPublished(const ConfigVersion& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
    if (it->version == version) return *it;
  }
  return std::nullopt;
}

}  // namespace portico::cp
