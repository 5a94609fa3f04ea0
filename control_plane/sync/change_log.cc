#include "control_plane/sync/change_log.h"

#include <utility>

#include "common/base/log.h"

namespace portico::cp {
namespace {

constexpr char kLog[] = "cp-sync";

}  // namespace

void ChangeLog::Clear() {
  entries_.clear();
  bytes_ = 0;
}

uint64_t ChangeLog::EntryBytes(const ChangeList& changes) {
  uint64_t bytes = ChangeBytes(changes);
  for (const ResourceChange& c : changes) bytes += sizeof(ResourceChange) + c.hash.size() + c.hash_before.size();
  return bytes;
}

void ChangeLog::Record(const BuiltSnapshot* previous_full, const BuiltSnapshot& next_full, ChangeList* diff) {
  if (previous_full == nullptr || previous_full->resources == nullptr || next_full.resources == nullptr ||
      previous_full->version.epoch != next_full.version.epoch || previous_full->version == next_full.version) {
    Clear();
    return;
  }
  // The same step again (its payload failed after it was recorded, and it is being rebuilt).
  if (!entries_.empty() && entries_.back().from == previous_full->version && entries_.back().to == next_full.version) {
    return;
  }
  if (!entries_.empty() && !(entries_.back().to == previous_full->version)) Clear();  // a gap
  Entry entry;
  entry.from = previous_full->version;
  entry.to = next_full.version;
  entry.changes = std::make_shared<const ChangeList>(
      diff != nullptr ? std::move(*diff) : DiffResources(*previous_full->resources, *next_full.resources));
  entry.bytes = EntryBytes(*entry.changes);
  bytes_ += entry.bytes;
  entries_.push_back(std::move(entry));
  while (!entries_.empty() && (entries_.size() > options_.max_versions || bytes_ > options_.max_bytes)) {
    bytes_ -= entries_.front().bytes;
    entries_.pop_front();
  }
}

std::vector<std::shared_ptr<const BuiltSnapshot>> ChangeLog::BuildDeltas(const BuiltSnapshot& latest,
                                                                         const Clock& clock,
                                                                         const SnapshotBuildOptions& options) const {
  return BuildDeltasFrom(StepsTo(latest), latest, clock, options);
}

std::vector<ChangeLog::Step> ChangeLog::StepsTo(const BuiltSnapshot& latest) const {
  std::vector<Step> steps;
  if (entries_.empty() || !(entries_.back().to == latest.version)) return steps;
  steps.reserve(entries_.size());
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) steps.push_back(Step{it->from, it->changes});
  return steps;
}

std::vector<std::shared_ptr<const BuiltSnapshot>> ChangeLog::BuildDeltasFrom(
    const std::vector<Step>& steps, const BuiltSnapshot& latest, const Clock& clock,
    const SnapshotBuildOptions& options, size_t first, uint64_t stop_bytes, size_t* next) {
  std::vector<std::shared_ptr<const BuiltSnapshot>> deltas;
  size_t done = 0;
  auto finish = [&] {
    if (next != nullptr) *next = done;
    return deltas;
  };
  if (steps.empty()) return finish();
  // The size of the full config, in ChangeBytes' units (the payload may not be built yet).
  const uint64_t full_bytes = latest.resources != nullptr ? ResourceBytes(*latest.resources) : latest.uncompressed_size;
  const uint64_t per_delta_budget = full_bytes / 2;
  uint64_t built_bytes = 0;
  ChangeList acc;
  for (; done < steps.size(); ++done) {
    acc = ComposeChanges(*steps[done].changes, acc);
    const uint64_t bytes = ChangeBytes(acc);
    if (bytes > per_delta_budget || built_bytes + bytes > full_bytes) {
      done = steps.size();  // the budgets end the walk for good
      break;
    }
    if (bytes > stop_bytes) break;
    built_bytes += bytes;
    if (done < first) continue;  // built by an earlier call
    absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> delta =
        BuildDeltaSnapshot(latest, steps[done].from, acc, clock, options);
    if (!delta.ok()) {
      PORTICO_LOG(kError, kLog, "cannot build the delta from version ", steps[done].from.version, " to ",
                  latest.version.version, ": ", delta.status().ToString(), "; older versions get the full snapshot");
      done = steps.size();
      break;
    }
    deltas.push_back(*std::move(delta));
  }
  return finish();
}

}  // namespace portico::cp
