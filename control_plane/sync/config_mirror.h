#pragma once
// The CP's copy of the stored config at the version it last published, kept between builds so
// that a commit costs the rows it changed, not the whole config (docs/sync.md "Incremental
// build"). The snapshot builder applies the store's changes (StoredChanges, from its change feed)
// and gets the next version's resource index, config hash and diff, as a full build would give
// them: export rules, validation and serialization run on the changed entities with the entities
// they reference (the same ExportableConfig, ValidateConfigSet and BuildSnapshotIndex as a full
// build, on a small set), and the unchanged resources are reused.
//
// What the small set cannot see is checked here or left to the store:
//  - a deleted entity still referenced by one that stays (any reference field of any kind, from
//    the entity descriptors) -> fallback;
//  - a change that alters whether other entities are exported (a service's `enabled` flipped, a
//    route moved between an enabled and a disabled service) -> fallback;
//  - uniqueness (names, keys, cache keys): every uniqueness rule of ValidateConfigSet is a UNIQUE
//    column of the store, which refuses the write; a full build checks it again.
// A fallback, or any change it cannot apply, leaves the mirror invalid: the builder then reads
// and builds the whole config (which reports any error with the full set's message) and resets
// the mirror from it.
//
// Not thread-safe: owned by the builder's thread.
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/config/config_set.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"

namespace portico::cp {

class ConfigMirror {
 public:
  ConfigMirror() = default;
  ConfigMirror(const ConfigMirror&) = delete;
  ConfigMirror& operator=(const ConfigMirror&) = delete;

  // Holds `stored` (the store's config at built.version, as read) as the state `built` (its
  // full build, with `exported` = ExportableConfig of it) was made from.
  void Reset(ConfigSet stored, const ConfigSet& exported, std::shared_ptr<const BuiltSnapshot> built);
  void Invalidate();
  bool valid() const { return built_ != nullptr; }
  // The version the mirror holds (REQUIRES: valid()).
  const ConfigVersion& version() const { return built_->version; }
  const std::shared_ptr<const BuiltSnapshot>& built() const { return built_; }

  struct Next {
    // Like BuildSnapshotIndex's result for the new version: resources, hash, counts, plugin names
    // (no payload, no deltas).
    std::shared_ptr<BuiltSnapshot> indexed;
    ChangeList diff;          // from version() to the new version (DiffResources of the two)
    size_t validated = 0;     // entities whose own rules ran again
  };
  // Applies `changes` (covered, same epoch, from version()) and returns the next version. On any
  // error (FailedPrecondition: a fallback case above; InvalidArgument: the changed entities do
  // not validate; others) the mirror is left invalid. On success the mirror holds the new version
  // only after Commit(next.indexed) (call it once the version is published; Invalidate() if not).
  absl::StatusOr<Next> Apply(StoredChanges changes, const Clock& clock);
  void Commit(std::shared_ptr<const BuiltSnapshot> published);

 private:
  absl::StatusOr<Next> ApplyChanges(StoredChanges changes, const Clock& clock);  // Apply, without the cleanup
  using Entities = absl::flat_hash_map<std::string, std::unique_ptr<const google::protobuf::Message>>;
  const google::protobuf::Message* Find(absl::string_view kind, absl::string_view id) const;

  absl::flat_hash_map<std::string, Entities> stored_;  // by kind, then id
  // Names of the exported plugins (by id) and how many exported plugins have each name: the
  // snapshot's plugin_names without scanning every plugin.
  absl::flat_hash_map<std::string, std::string> plugin_name_by_id_;
  absl::flat_hash_map<std::string, int> plugin_name_count_;
  std::shared_ptr<const BuiltSnapshot> built_;    // the version held; null: invalid
  std::shared_ptr<const BuiltSnapshot> pending_;  // Apply's result, until Commit
};

}  // namespace portico::cp
