#pragma once
// The control plane's datastore, as an interface: entities of every registered kind (entity
// descriptors, common/config/entity_descriptor.h) plus the config version counter. Callers (the
// Admin API, main.cc) see only this; the implementations are sqlite_store.{h,cc} and
// postgres_store.{h,cc} (Open() picks by location).
//
// Contract of every implementation:
//  - every successful write runs in one transaction that also bumps the version by one; a
//    refused or failed write changes nothing (no bump either); under a VersionFence the bump
//    takes place only from the fence's expected version;
//  - entities passed in must already be validated (common/config/validate.h): the store enforces
//    only keys (primary, unique fields, foreign keys), and refuses (InvalidArgument, nothing
//    written) an entity whose serialized form does not parse back (e.g. a string that is not
//    UTF-8);
//  - refusals carry a StoreConflict payload (GetStoreConflict, StoreConflictSubject);
//  - corrupt rows (see CorruptRowId) are survived, not fatal;
//  - thread-safe.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "common/config/config_set.h"
#include "common/config/entity_descriptor.h"
#include "control_plane/cluster_status.h"

namespace portico::cp {

using EntityPtr = std::unique_ptr<google::protobuf::Message>;

// Why a write was refused; carried as a payload of the returned (non-OK) status.
enum class StoreConflict {
  kNone,
  kPrimaryKey,         // id already used (code kAlreadyExists)
  kUniqueName,         // a unique field (e.g. name) already has that value (code kAlreadyExists)
  kForeignKeyMissing,  // a foreign key does not reference an existing entity (code kFailedPrecondition)
  kReferenced,         // delete of an entity still referenced with ON DELETE RESTRICT (code kFailedPrecondition)
};
StoreConflict GetStoreConflict(const absl::Status& status);
// What the conflict is about: kUniqueName: the unique field ("name"); kForeignKeyMissing: the
// foreign-key field ("service"); kReferenced: the referencing kind ("routes"). "" when not known.
std::string StoreConflictSubject(const absl::Status& status);
// `status` with the conflict payload set (for implementations).
absl::Status WithStoreConflict(absl::Status status, StoreConflict conflict, absl::string_view subject = "");

// Corrupt rows: a row whose stored entity does not parse (written by an older CP that accepted
// ill-formed UTF-8 in a proto3 string, or damaged on disk). The store never writes one (every
// write is parsed back first) but survives one:
//  - a read by key (Get*) returns DataLoss carrying the row's id: CorruptRowId(status);
//  - lists skip it (logged at error level with its id);
//  - ReadConfig leaves it out of `config` and lists it in StoredConfig::corrupt;
//  - Delete and Update/Upsert by id work on it (they never parse the stored entity).
std::optional<std::string> CorruptRowId(const absl::Status& status);
// Why a corrupt row cannot be read (CorruptRow::error).
inline constexpr char kCorruptEntityReason[] =
    "the stored entity does not parse (a string that is not UTF-8, or damaged bytes)";
// DataLoss naming the corrupt row of `kind`, with its id as the payload (for implementations).
absl::Status CorruptRowError(absl::string_view kind, const std::string& id);

// Optimistic concurrency for a read-check-write sequence (an Admin API handler reads, checks
// references and uniqueness, then writes). While a VersionFence lives on a thread, a versioned
// write made on that thread commits only if the config version is still expected() when its
// transaction takes the version row (the database serialises that step across every CP on it);
// otherwise it changes nothing, returns Aborted and marks the fence stale(), and the caller runs
// the sequence again on fresh reads. A write committed under the fence advances expected() to the
// version it made, so a sequence may write more than once. One fence per thread at a time.
class VersionFence {
 public:
  explicit VersionFence(uint64_t expected);
  ~VersionFence();
  VersionFence(const VersionFence&) = delete;
  VersionFence& operator=(const VersionFence&) = delete;

  uint64_t expected() const { return expected_; }
  bool stale() const { return stale_; }
  int committed_writes() const { return committed_writes_; }

  // ---- For Store implementations, on the writing thread ----
  // The fence of this thread, or null.
  static VersionFence* Active();
  // The write's transaction found the version row at another version than expected(): nothing
  // may be written; returns the Aborted status to fail the transaction with.
  absl::Status Refuse(uint64_t found);
  // The write's transaction moved the version to `version` (it commits or rolls back later).
  void Bumped(uint64_t version) { pending_ = version; }
  // A transaction on this thread ended (committed or rolled back).
  void TransactionEnded(bool committed);

 private:
  uint64_t expected_;
  uint64_t pending_ = 0;
  bool stale_ = false;
  int committed_writes_ = 0;
  VersionFence* outer_;
};

// Keyset pagination ordered by id, plus tag and parent filtering.
struct ListQuery {
  int size = 100;                 // rows per page, > 0
  std::string after_id;           // only ids > after_id ("" = from the start)
  std::vector<std::string> tags;  // empty = no tag filter
  bool tags_any = false;          // false: entity has ALL tags (a,b); true: ANY of them (a/b)
  // Only entities whose foreign key `parent_field` (a stored kForeignKey, e.g. "service")
  // references `parent_id`; "" = no such filter.
  std::string parent_field;
  std::string parent_id;
};

// GET /tags and /tags/{tag}: one row per (entity, tag), across every kind with a `tags` field.
struct TaggedEntity {
  std::string tag;
  std::string entity_name;  // the kind's name ("services")
  std::string entity_id;
  int ordinality = 0;  // 1-based position of the tag in the entity's tags
};

// Keyset pagination of tag rows, ordered by (entity_id, entity_name, ordinality) as Kong orders
// its tags table (entity_id, then the tag's position). `after_*` is the last row of the previous
// page ("" entity id = from the start).
struct TagQuery {
  std::string tag;  // "" = every tag; otherwise only rows of this tag (one per entity)
  int size = 100;   // rows per page, > 0
  std::string after_entity_id;
  std::string after_entity_name;
  int after_ordinality = 0;
};

template <typename T>
struct ListPage {
  std::vector<T> items;
  bool has_more = false;  // true: another page follows items.back()'s id
};

// A data plane as a CP last recorded it in the datastore (Kong's clustering_data_planes): every CP
// on one database writes the DPs whose streams it holds, and lists every row, so any CP shows
// every DP. Not versioned: these writes bump no version and are not in snapshots.
struct StoredDataPlane {
  // As the writing CP saw it; status.control_plane_id names that CP. lag_versions and
  // lag_seconds are not stored (derived when listed).
  DataPlaneStatus status;
  bool connected = false;  // the writing CP held a live stream of it when it wrote the row
  int64_t purge_at = 0;    // Clock seconds; the row is gone (listed no more, purged) from then on
};

// The `labels` column of a stored data plane: a JSON object of strings ({} when none), the same
// text in every store. Decode gives {} for text that is not such an object.
std::string EncodeDataPlaneLabels(const std::map<std::string, std::string>& labels);
std::map<std::string, std::string> DecodeDataPlaneLabels(absl::string_view text);

// What Store::WaitForChange saw.
enum class ChangeWait {
  kNotified,  // a versioned write may have been committed (read CurrentVersion)
  kTimedOut,  // the feed is up and nothing came within the timeout
  kNoFeed,    // no feed (SQLite), or it is down: returned at once; the caller polls
};

// How long the change log (ReadConfigChanges) keeps its rows: every versioned write whose new
// version is a multiple of `prune_every` deletes the rows of versions <= version - keep_versions
// and raises the log's floor to there, so at least the last keep_versions versions stay covered.
struct ChangeLogRetention {
  uint64_t keep_versions = 1000;
  uint64_t prune_every = 100;
};
ChangeLogRetention GetChangeLogRetention();
// Process-wide; for tests (both > 0).
void SetChangeLogRetentionForTest(ChangeLogRetention retention);

enum class WriteMode {
  kInsert,  // fails on an existing id (kPrimaryKey)
  kUpdate,  // fails with NotFound when the id is absent
  kUpsert,  // inserts or replaces
};

class Store {
 public:
  // Opens the datastore named by `location` for the kinds of `kinds` (which must outlive it): a
  // PostgreSQL database for a postgres:// or postgresql:// URI or a libpq key=value conninfo
  // (postgres_store.h), else a SQLite file path (created with its schema on first start) or
  // ":memory:". `clock`
  // must outlive the store; it stamps created_at/updated_at.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& location, const Clock& clock,
                                                     const EntityRegistry& kinds = EntityRegistry::Default());
  virtual ~Store() = default;

  virtual const EntityRegistry& kinds() const = 0;

  // Reads of one kind. NotFound when absent. Ids are compared as given (the Admin API
  // lowercases UUIDs).
  virtual absl::StatusOr<EntityPtr> GetEntity(const EntityDescriptor& kind, absl::string_view id) = 0;
  // By a unique field of the kind (its endpoint key, e.g. "name"), or by "cache_key" for a kind
  // with one (`value` is EntityDescriptor::CacheKey of the entity sought).
  virtual absl::StatusOr<EntityPtr> GetEntityByField(const EntityDescriptor& kind, absl::string_view field,
                                                     absl::string_view value) = 0;
  virtual absl::StatusOr<ListPage<EntityPtr>> ListEntities(const EntityDescriptor& kind, const ListQuery& query) = 0;

  // Writes; each returns the stored entity. An empty id gets a new UUID. Insert stamps
  // created_at (unless set) and updated_at; Update/Upsert keep the stored created_at and stamp
  // updated_at.
  virtual absl::StatusOr<EntityPtr> WriteEntity(const EntityDescriptor& kind, const google::protobuf::Message& entity,
                                                WriteMode mode) = 0;
  // Returns false when there was nothing to delete (then no version bump). Entities that
  // reference it with ON DELETE CASCADE go in the same transaction.
  virtual absl::StatusOr<bool> DeleteEntity(const EntityDescriptor& kind, absl::string_view id) = 0;

  // Several writes and deletes in one transaction with one version bump: all of them or none
  // (Kong's certificate with its snis). A write step returns its stored entity, in order; a
  // refusal carries the conflict payload of the step that failed.
  struct BatchStep {
    const EntityDescriptor* kind = nullptr;
    const google::protobuf::Message* entity = nullptr;  // null: delete `delete_id`
    WriteMode mode = WriteMode::kUpsert;
    std::string delete_id;
    // Keep the entity's created_at/updated_at when set (non-zero) instead of stamping them (an
    // import of exported entities).
    bool keep_timestamps = false;
  };
  virtual absl::StatusOr<std::vector<EntityPtr>> WriteBatch(const std::vector<BatchStep>& steps) = 0;

  // Replaces the whole configuration (Kong's POST /config): every row of every kind is deleted and
  // `kinds` (each kind at most once, any order) inserted, in one transaction with one version
  // bump. An entity's created_at/updated_at are kept when set (non-zero), else stamped now.
  // Refusals as for writes (keys; the StoreConflict payload of the entity at fault); nothing
  // changes then. Returns the stored entities (timestamps set), in the order of `kinds` and their
  // entities.
  struct KindRows {
    const EntityDescriptor* kind = nullptr;
    std::vector<const google::protobuf::Message*> entities;
  };
  virtual absl::StatusOr<std::vector<EntityPtr>> ReplaceConfig(const std::vector<KindRows>& kinds) = 0;

  // Every entity of the exported kinds (EntityDescriptor::exported; sorted by id, disabled
  // services included) and the version, read in one read transaction, so the set is exactly the
  // one `version` names. `version.hash` is empty. Corrupt rows do not fail the read: they are
  // listed in `corrupt` (kinds in registry order, each by id), and the caller must not publish
  // the result.
  virtual absl::StatusOr<StoredConfig> ReadConfig() = 0;

  // The rows of exported kinds changed since version `since` (StoredChanges, config_set.h), read
  // in one read transaction. Writes log the (kind, id) of every row they insert, update or delete
  // (database triggers, so FK cascades count); ReplaceConfig logs nothing and moves the log's
  // floor to its version, so a reader from before it is not covered. Not covered either when the
  // log does not reach back to `since` or more than `max_changes` rows changed.
  virtual absl::StatusOr<StoredChanges> ReadConfigChanges(uint64_t since, size_t max_changes) = 0;

  virtual uint64_t CurrentVersion() = 0;  // 0 if it cannot be read
  virtual std::string Epoch() const = 0;  // 16 raw bytes, fixed for the life of the datastore
  virtual absl::Status Ping() = 0;        // a trivial query on the read path
  // Migrations applied, in order: (id, name).
  virtual absl::StatusOr<std::vector<std::pair<int, std::string>>> AppliedMigrations() = 0;
  // Closes the datastore for a clean stop (SQLite: the WAL checkpointed into the database file,
  // then the connections closed, which removes the -wal file). The connections are closed
  // whatever it returns. Unavailable: closed, but another connection's reader kept the
  // checkpoint from finishing (waited for up to 1 s): the committed data is safe in the -wal
  // file, which SQLite reads at the next open. Idempotent. REQUIRES: nothing calls the store
  // afterwards (only its destructor).
  virtual absl::Status Close() = 0;

  // ---- Data planes (StoredDataPlane; no version bump) ----
  // Upserts `rows` by node id (status.id), in one transaction. A row that is not `connected`
  // never replaces a connected row written by another CP (a DP that moved from CP A to CP B stays
  // shown on B when A records the end of its old stream late).
  virtual absl::Status SaveDataPlanes(const std::vector<StoredDataPlane>& rows) = 0;
  // Every row with purge_at > now, sorted by node id.
  virtual absl::StatusOr<std::vector<StoredDataPlane>> ListDataPlaneRows(int64_t now) = 0;
  // Deletes the rows with purge_at <= now; returns how many.
  virtual absl::StatusOr<int64_t> PurgeDataPlanes(int64_t now) = 0;

  // ---- Change feed ----
  // Waits up to `timeout` for a versioned write committed through any connection to the
  // datastore (PostgreSQL: LISTEN/NOTIFY, sent by each write's transaction on commit; writes of
  // this store count too). kNoFeed returns at once (SQLite has no feed; a PostgreSQL feed whose
  // connection dropped tries to reconnect first). One thread calls it at a time.
  virtual ChangeWait WaitForChange(absl::Duration timeout) = 0;

  // ---- Tags (Kong's /tags endpoints) ----
  // The (tag, entity) rows of every kind with a `tags` field, read from the stored tags (corrupt
  // rows included: their tags column is readable), one page in TagQuery's order. Each entity's
  // tags count once each, in their stored order.
  virtual absl::StatusOr<ListPage<TaggedEntity>> ListTagged(const TagQuery& query) = 0;

  // Typed forms of the above for a registered message type (e.g. Get<config::v1::Service>(id)).
  template <typename Entity>
  absl::StatusOr<Entity> Get(absl::string_view id) {
    return Typed<Entity>([&](const EntityDescriptor& kind) { return GetEntity(kind, id); });
  }
  // By the kind's endpoint key (services: name).
  template <typename Entity>
  absl::StatusOr<Entity> GetByEndpointKey(absl::string_view key) {
    return Typed<Entity>([&](const EntityDescriptor& kind) { return GetEntityByField(kind, kind.endpoint_key(), key); });
  }
  template <typename Entity>
  absl::StatusOr<ListPage<Entity>> List(const ListQuery& query) {
    const EntityDescriptor* kind = KindOf<Entity>();
    if (kind == nullptr) return UnknownKind<Entity>();
    absl::StatusOr<ListPage<EntityPtr>> page = ListEntities(*kind, query);
    if (!page.ok()) return page.status();
    ListPage<Entity> out;
    out.has_more = page->has_more;
    for (EntityPtr& e : page->items) out.items.push_back(std::move(static_cast<Entity&>(*e)));
    return out;
  }
  template <typename Entity>
  absl::StatusOr<Entity> Insert(const Entity& entity) {
    return Typed<Entity>([&](const EntityDescriptor& kind) { return WriteEntity(kind, entity, WriteMode::kInsert); });
  }
  template <typename Entity>
  absl::StatusOr<Entity> Update(const Entity& entity) {
    return Typed<Entity>([&](const EntityDescriptor& kind) { return WriteEntity(kind, entity, WriteMode::kUpdate); });
  }
  template <typename Entity>
  absl::StatusOr<Entity> Upsert(const Entity& entity) {
    return Typed<Entity>([&](const EntityDescriptor& kind) { return WriteEntity(kind, entity, WriteMode::kUpsert); });
  }
  template <typename Entity>
  absl::StatusOr<bool> Delete(absl::string_view id) {
    const EntityDescriptor* kind = KindOf<Entity>();
    if (kind == nullptr) return UnknownKind<Entity>();
    return DeleteEntity(*kind, id);
  }

 private:
  template <typename Entity>
  const EntityDescriptor* KindOf() const {
    return kinds().Find(Entity::descriptor());
  }
  template <typename Entity>
  static absl::Status UnknownKind() {
    return absl::InvalidArgumentError(absl::StrCat("no entity kind registered for ", Entity::descriptor()->full_name()));
  }
  template <typename Entity, typename Call>
  absl::StatusOr<Entity> Typed(Call call) {
    const EntityDescriptor* kind = KindOf<Entity>();
    if (kind == nullptr) return UnknownKind<Entity>();
    absl::StatusOr<EntityPtr> entity = call(*kind);
    if (!entity.ok()) return entity.status();
    return std::move(static_cast<Entity&>(**entity));
  }
};

}  // namespace portico::cp
