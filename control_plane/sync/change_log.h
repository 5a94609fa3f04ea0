#pragma once
// The CP's change log (docs/sync.md "Delta sync"): what changed between consecutive published
// versions of one epoch, so that a DP serving a recent version gets a delta to the latest
// instead of the full snapshot. Bounded by a number of versions and by the bytes of the bodies
// it keeps (the bodies are shared with the full snapshots' resource indexes, not copied).
//
// Not thread-safe: the snapshot builder owns it and uses it on its build path only.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "common/base/clock.h"
#include "common/config/config_set.h"
#include "common/snapshot/snapshot.h"

namespace portico::cp {

class ChangeLog {
 public:
  struct Options {
    size_t max_versions = 100;              // entries (version steps) kept
    uint64_t max_bytes = uint64_t{64} << 20;  // EntryBytes of every entry kept, summed
  };

  ChangeLog() : ChangeLog(Options{}) {}
  explicit ChangeLog(Options options) : options_(options) {}

  // `next_full` is published after `previous_full` (null: nothing was published before). Same
  // epoch: appends the step previous -> next (DiffResources of their resource indexes), after
  // clearing the log if its newest step does not end at `previous_full`. Another epoch, no
  // previous, or a snapshot without a resource index: clears the log. Then evicts the oldest
  // steps beyond the limits (a step larger than max_bytes alone is not kept). `diff`, when given,
  // is DiffResources(previous, next) already computed by the caller (moved from).
  void Record(const BuiltSnapshot* previous_full, const BuiltSnapshot& next_full, ChangeList* diff = nullptr);

  // The deltas to `latest` (a full snapshot whose version the newest step ends at; otherwise
  // none), newest base first: one per step's `from`, composing the steps from the newest back.
  // Stops at the first base whose composed changes carry more than half of the full config
  // (ResourceBytes of latest; that base and older ones get the full snapshot), and once the
  // deltas built so far carry more than the full config in all (bounds the build cost
  // to about one more full snapshot). A delta that fails to build ends the walk (logged).
  std::vector<std::shared_ptr<const BuiltSnapshot>> BuildDeltas(const BuiltSnapshot& latest, const Clock& clock,
                                                                const SnapshotBuildOptions& options) const;

  // One step of the log, detached from it (the change list is shared, not copied): what
  // BuildDeltasFrom needs on another thread.
  struct Step {
    ConfigVersion from;
    std::shared_ptr<const ChangeList> changes;
  };
  // The steps ending at `latest`, newest first (empty when the newest step does not end there).
  std::vector<Step> StepsTo(const BuiltSnapshot& latest) const;
  // BuildDeltas over `steps` (StepsTo's), building the deltas of steps[first..] only (the
  // composition always starts at the newest), and stopping before a base whose composed changes
  // carry more than `stop_bytes` (after the budgets above). `*next` (optional): the index of the
  // first step whose delta was not built. Thread-safe.
  static std::vector<std::shared_ptr<const BuiltSnapshot>> BuildDeltasFrom(
      const std::vector<Step>& steps, const BuiltSnapshot& latest, const Clock& clock,
      const SnapshotBuildOptions& options, size_t first = 0, uint64_t stop_bytes = UINT64_MAX, size_t* next = nullptr);

  // What one step with `changes` counts against max_bytes: the bodies (shared with the resource
  // index while that version is alive), plus each change's own struct and hashes.
  static uint64_t EntryBytes(const ChangeList& changes);

  void Clear();
  size_t size() const { return entries_.size(); }
  uint64_t bytes() const { return bytes_; }
  // The oldest version a delta may start from (the oldest step's `from`); empty when the log is.
  ConfigVersion oldest() const { return entries_.empty() ? ConfigVersion{} : entries_.front().from; }

 private:
  struct Entry {
    ConfigVersion from, to;
    std::shared_ptr<const ChangeList> changes;  // never null
    uint64_t bytes = 0;  // EntryBytes(*changes)
  };

  const Options options_;
  std::deque<Entry> entries_;  // oldest first; entries_[i].to == entries_[i + 1].from
  uint64_t bytes_ = 0;
};

}  // namespace portico::cp
