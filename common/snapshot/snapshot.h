#pragma once
// The snapshot codec (SYNC-PROTOCOL.md §5.3, §5.5, §5.6): the CP builds one immutable snapshot per
// config version (serialize, hash, gzip and chunk once; shared by every stream), and the DP
// reassembles the chunks, decompresses under a cap, verifies the hash and parses the entities.
//
// Hash: resource_hash = SHA-256(body); config_hash = SHA-256 over the resources sorted by (kind, id)
// of kind || 0x00 || id || 0x00 || resource_hash. Bodies are serialized once by the CP and hashed
// as sent; the DP never re-serializes to check them.
//
// Errors (absl code -> Nack code): kInvalidArgument -> DECODE, kDataLoss -> HASH_MISMATCH,
// kResourceExhausted -> TOO_LARGE. See NackCodeFor().
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/config/config_set.h"
#include "common/config/validate.h"

namespace portico::sync::v1 {
class SnapshotChunk;
class VersionRef;
}  // namespace portico::sync::v1

namespace portico {

// ConfigVersion <-> the wire's VersionRef (epoch, version, hash), used by both stream ends.
void ToVersionRef(const ConfigVersion& version, sync::v1::VersionRef* ref);
ConfigVersion FromVersionRef(const sync::v1::VersionRef& ref);

inline constexpr size_t kDefaultSnapshotChunkBytes = size_t{1} << 20;        // 1 MiB
inline constexpr uint64_t kDefaultMaxSnapshotBytes = uint64_t{512} << 20;    // 512 MiB raw

struct SnapshotBuildOptions {
  size_t chunk_bytes = kDefaultSnapshotChunkBytes;  // > 0
  int gzip_level = 6;
  // A delta whose serialized ConfigDelta is at most this long is sent uncompressed (encoding
  // NONE, which every DP accepts): setting up an inflater costs a DP more than reading a few KiB
  // more, on every DP it goes to. Full snapshots are always gzipped.
  size_t max_plain_delta_bytes = 8192;
};

// One resource of a config version as sent: (kind, id), its body bytes and SHA-256(body).
struct ResourceEntry {
  std::string kind;
  std::string id;
  std::string hash;                         // 32 raw bytes
  std::shared_ptr<const std::string> body;  // never null
};
// Every resource of one config version, sorted by (kind, id), unique. What the CP diffs
// consecutive versions with, and what a DP applies a delta to.
using ResourceIndex = std::vector<ResourceEntry>;

// The config hash of `resources` (from the cached resource hashes; no body is hashed).
std::string ConfigHashOf(const ResourceIndex& resources);

// One change of one resource between two versions: an upsert (body set) or a delete (body null).
struct ResourceChange {
  std::string kind;
  std::string id;
  std::shared_ptr<const std::string> body;  // null: deleted
  std::string hash;                         // SHA-256(*body); empty when deleted
  // Whether the resource existed in the older version of the pair (so that composing "created"
  // then "deleted" cancels out instead of sending a delete of something the DP never had).
  bool existed_before = false;
  // SHA-256 of its body in the older version (empty when !existed_before), so that composing
  // changes that restore that body (deleted then re-created, A -> B -> A) cancels out as well.
  std::string hash_before;
};
// Changes sorted by (kind, id), unique.
using ChangeList = std::vector<ResourceChange>;

// What changed from `from` to `to`.
ChangeList DiffResources(const ResourceIndex& from, const ResourceIndex& to);
// The changes of `older` followed by those of `newer` (newer wins; created-then-deleted drops,
// and so does a change back to the older body): what DiffResources of the outer pair gives.
ChangeList ComposeChanges(const ChangeList& older, const ChangeList& newer);
// Bytes of the bodies a change list carries (to decide between a delta and a full snapshot).
uint64_t ChangeBytes(const ChangeList& changes);
// `base` with `changes` (sorted by (kind, id), unique) merged in: an upsert replaces or adds its
// resource, a delete removes one (InvalidArgument when `base` has none of that kind and id).
absl::StatusOr<std::shared_ptr<ResourceIndex>> MergeChanges(const ResourceIndex& base, const ChangeList& changes);

// One built config version, or a delta to it. Immutable once published; share as
// shared_ptr<const>.
struct BuiltSnapshot {
  ConfigVersion version;            // epoch, version from the store; hash computed here
  // Set: this is a delta from `base` to `version` (payload ConfigDelta; docs/sync.md "Delta
  // sync"). Empty: a full snapshot (payload ConfigPayload).
  ConfigVersion base;
  std::string compressed;           // the serialized payload as sent: gzipped, or as is (!gzip)
  bool gzip = true;                 // `compressed` is gzipped (chunk encoding GZIP, else NONE)
  uint64_t uncompressed_size = 0;   // size of the serialized ConfigPayload
  std::vector<std::pair<size_t, size_t>> chunks;  // (offset, length) into `compressed`; >= 1
  size_t service_count = 0;         // exported entities (disabled services excluded)
  size_t route_count = 0;
  // The names of the plugins it configures (sorted, unique): a DP must be able to run each.
  std::vector<std::string> plugin_names;
  int64_t built_at = 0;             // seconds since epoch
  // Full snapshots: every resource as sent (the CP diffs the next version against it).
  std::shared_ptr<const ResourceIndex> resources;
  size_t change_count = 0;          // deltas: resources changed
  // Full snapshots on the CP: the deltas to this version from recent versions (the CP's change
  // log), each built once and shared by every DP on that base. Set before publication.
  std::vector<std::shared_ptr<const BuiltSnapshot>> deltas;
  // The delta from `from` (epoch, version and hash equal), or null.
  const std::shared_ptr<const BuiltSnapshot>* DeltaFrom(const ConfigVersion& from) const {
    for (const auto& d : deltas) {
      if (d->base == from) return &d;
    }
    return nullptr;
  }

  bool is_delta() const { return !base.empty(); }
  // The payload is there (chunks can be sent). A full snapshot built by BuildSnapshotIndex is
  // published first without it (so that deltas leave at once), then again with it.
  bool payload_ready() const { return !chunks.empty(); }
  size_t chunk_count() const { return chunks.size(); }
  absl::string_view chunk_data(size_t index) const {
    return absl::string_view(compressed).substr(chunks[index].first, chunks[index].second);
  }
};

// What the CP exports to DPs: like Kong, services with enabled=false and the routes that
// reference them are left out, and so are disabled plugins and plugins of what was left out.
// Key-auth credentials leave as digests (KeyAuthDigest: SHA-256 of a salt derived from `epoch`
// and the key), never with their keys. Keeps the input order.
ConfigSet ExportableConfig(const ConfigSet& config, absl::string_view epoch = "");
// The same, moving the kept entities out of `config` (no copy of a config the caller discards).
ConfigSet ExportableConfig(ConfigSet&& config, absl::string_view epoch = "");

// The key-auth salt of a config epoch (16 bytes), and SHA-256(salt || key) (32 bytes): what a DP
// compares a presented key with.
std::string KeyAuthSalt(absl::string_view epoch);
std::string KeyAuthKeyDigest(absl::string_view salt, absl::string_view key);

// Builds the snapshot of `stored` (exporting only ExportableConfig). Thread-safe. The result is
// mutable until published (the CP attaches its deltas).
absl::StatusOr<std::shared_ptr<BuiltSnapshot>> BuildSnapshot(
    const StoredConfig& stored, const Clock& clock, const SnapshotBuildOptions& options = {});

// Same, for a config already filtered by ExportableConfig (saves a copy of the whole config when
// the caller needs the exported set anyway, e.g. to validate it first).
absl::StatusOr<std::shared_ptr<BuiltSnapshot>> BuildSnapshotOfExported(
    const ConfigSet& exported, const ConfigVersion& version, const Clock& clock,
    const SnapshotBuildOptions& options = {});

// The first half of BuildSnapshotOfExported: serializes and hashes every resource (version.hash,
// resources, counts, plugin names) without building the payload (payload_ready() is false).
absl::StatusOr<std::shared_ptr<BuiltSnapshot>> BuildSnapshotIndex(const ConfigSet& exported, const ConfigVersion& version,
                                                                  const Clock& clock);
// The second half: a copy of `indexed` (its deltas included) with the full payload serialized
// from its resources, gzipped and chunked.
absl::StatusOr<std::shared_ptr<BuiltSnapshot>> CompleteSnapshotPayload(const BuiltSnapshot& indexed,
                                                                       const SnapshotBuildOptions& options = {});
// Bytes of kind, id and body of every resource (the units of ChangeBytes).
uint64_t ResourceBytes(const ResourceIndex& resources);

// The config hash of a config set as BuildSnapshot would compute it (after export filtering;
// `epoch` as in ExportableConfig).
std::string ComputeConfigHash(const ConfigSet& config, absl::string_view epoch = "");

// The delta from `base` to `target` (a full snapshot built by BuildSnapshot*) made of `changes`
// (DiffResources/ComposeChanges of the versions in between). Copies target's version, counts
// and plugin names.
absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> BuildDeltaSnapshot(const BuiltSnapshot& target,
                                                                        const ConfigVersion& base,
                                                                        const ChangeList& changes, const Clock& clock,
                                                                        const SnapshotBuildOptions& options = {});

// The serialized (uncompressed) ConfigPayload of `resources` at `version`: what a DP that
// reconstructed a version from a delta persists in its snapshot cache. Empty when it cannot be
// serialized (a payload always carries its version, so a good one is never empty).
std::string SerializeFullPayload(const ConfigVersion& version, const ResourceIndex& resources);

// Fills `out` with chunk `index` of `snapshot` (encoding GZIP, or NONE when !snapshot.gzip),
// tagged with `nonce`.
// REQUIRES: index < snapshot.chunk_count().
void FillSnapshotChunk(const BuiltSnapshot& snapshot, size_t index, uint64_t nonce,
                       sync::v1::SnapshotChunk* out);

struct SnapshotLimits {
  uint64_t max_snapshot_bytes = kDefaultMaxSnapshotBytes;  // decompressed cap (and compressed cap)
  uint64_t max_ratio = 100;           // uncompressed <= max_ratio * compressed + ratio_slack_bytes
  uint64_t ratio_slack_bytes = uint64_t{1} << 20;
  uint32_t max_chunks = 4096;
  // Resources of a full snapshot, or changes of a delta, counted before parsing (each costs a few
  // hundred bytes parsed, however small its body): 4 million, about 40 times a 100,000-route config.
  uint64_t max_resources = 4'000'000;
};

struct DecodedSnapshot {
  ConfigVersion version;                    // the verified target (hash recomputed)
  std::shared_ptr<const ConfigSet> config;  // every known kind, each sorted by id
  std::shared_ptr<const ResourceIndex> resources;  // every resource as received (kinds unknown here too)
  // Set by DecodeDelta: the resources it upserted (what a validator must check again; the rest
  // is unchanged from the base), and how many changes it carried (upserts and deletes).
  std::shared_ptr<const ChangedEntities> upserted;
  size_t change_count = 0;
  // Set by DecodeDelta: the changes it applied (bodies shared), so that the version before can
  // later be brought forward to this one in place (RecycledBase).
  std::shared_ptr<const ChangeList> changes;
};

// A version the DP no longer serves, kept so that the next delta is applied to it in place
// instead of to a copy of the served config (the copy, and later freeing it, cost about 50 and
// 70 ms at 100,000 routes): DecodeDelta replays `to_held` (the changes from it to the held
// version), then the delta's own changes. Usable only while nothing else holds its config and
// index (the runtime that served it has been released) and the changes are few.
struct RecycledBase {
  DecodedSnapshot snapshot;
  std::shared_ptr<const ChangeList> to_held;
  // Set when DecodeDelta failed after it had modified `snapshot`: release it, do not reuse it.
  bool spoiled = false;
};

// Decodes a complete compressed payload. `declared_uncompressed_size` is the sender's claim; the
// output is capped by it, by limits.max_snapshot_bytes and by the ratio cap. `target` is the
// VersionRef the chunks announced; its hash must equal the recomputed one.
absl::StatusOr<DecodedSnapshot> DecodeSnapshot(absl::string_view compressed, bool gzip,
                                               uint64_t declared_uncompressed_size,
                                               const ConfigVersion& target,
                                               const SnapshotLimits& limits = {});

// Decodes a complete delta payload (ConfigDelta) from `base` to `target` and applies it to
// `held`, the version the DP serves. Only the changed entities are parsed; the result's hash is
// computed from the cached resource hashes and must equal target.hash (DataLoss otherwise, and
// the DP asks for a full snapshot). FailedPrecondition when `held` is not `base`; a delete of a
// resource `held` lacks, or changes out of order, is InvalidArgument.
// `recycle` (optional): the version before `held`. When it can be used (RecycledBase), the result
// is built in its config and index, which it then no longer holds; otherwise it is left as it
// was, or marked spoiled when an error came after it was modified.
absl::StatusOr<DecodedSnapshot> DecodeDelta(absl::string_view compressed, bool gzip,
                                            uint64_t declared_uncompressed_size, const ConfigVersion& base,
                                            const ConfigVersion& target, const DecodedSnapshot& held,
                                            const SnapshotLimits& limits = {}, RecycledBase* recycle = nullptr);
// Most changes (replayed and new) applied in place; beyond it, the copy is cheaper than moving
// the sorted lists' tails once per change.
inline constexpr size_t kMaxChangesInPlace = 32;

// Reassembles the chunks of one snapshot (DP side). Not thread-safe; owned by the stream.
class SnapshotAssembler {
 public:
  explicit SnapshotAssembler(SnapshotLimits limits = {});
  ~SnapshotAssembler();

  // Accepts the next chunk. A chunk with index 0 starts a new snapshot (dropping any partial
  // one). On error (gap, nonce or header change, size over limits) the partial snapshot is dropped
  // and the status says why (DECODE or TOO_LARGE codes as above); nonce()/target() still
  // describe the rejected snapshot so the caller can NACK it.
  absl::Status Add(const sync::v1::SnapshotChunk& chunk);
  // True when the last chunk of the current snapshot has been added.
  bool complete() const;
  uint64_t nonce() const { return nonce_; }
  const ConfigVersion& target() const { return target_; }
  // The chunks carry a delta from base() (SnapshotChunk.base set).
  bool delta() const { return !base_.empty(); }
  const ConfigVersion& base() const { return base_; }
  // Decodes and verifies the completed full snapshot, then resets. REQUIRES: complete(), !delta().
  absl::StatusOr<DecodedSnapshot> Finish();
  // Decodes the completed delta and applies it to `held` (DecodeDelta), then resets.
  // REQUIRES: complete(), delta().
  absl::StatusOr<DecodedSnapshot> FinishDelta(const DecodedSnapshot& held, RecycledBase* recycle = nullptr);
  void Reset();

 private:
  SnapshotLimits limits_;
  bool active_ = false;
  uint64_t nonce_ = 0;
  ConfigVersion target_;
  ConfigVersion base_;
  int encoding_ = 0;
  uint64_t compressed_size_ = 0;
  uint64_t uncompressed_size_ = 0;
  uint32_t count_ = 0;
  uint32_t next_index_ = 0;
  std::string buffer_;
};

// Maps a decode/verify status to the numeric sync.v1.Nack.Code (DECODE, HASH_MISMATCH, TOO_LARGE;
// anything else -> INTERNAL).
int NackCodeFor(const absl::Status& status);

}  // namespace portico
