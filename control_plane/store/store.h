#pragma once
// The control plane's datastore: services and routes in SQLite, plus the config version counter.
//
// Storage (see docs/admin-api.md "Storage"): one table per entity kind with indexed columns
// (id PRIMARY KEY, name UNIQUE, created_at, routes.service_id REFERENCES services ON DELETE
// RESTRICT, tags as "\x1f"-delimited text) and the entity itself as the serialized proto BLOB.
// `sync_meta` holds one row (epoch = 16 random bytes made with the DB, version).
//
// Every successful write runs in one BEGIN IMMEDIATE transaction that also bumps
// sync_meta.version; a failed write rolls back and changes nothing (no bump either).
// Entities passed in must already be validated (common/config/validate.h): the store enforces
// only keys (primary, unique name, foreign key), and refuses (InvalidArgument, nothing written) an
// entity whose serialized form does not parse back, e.g. a string that is not UTF-8.
//
// Thread-safe: one writer connection behind a mutex, one read connection (WAL allows reads
// concurrent with the writer) behind another.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/clock.h"
#include "common/config/config_set.h"

namespace portico {

// Why a write was refused; carried as a payload of the returned (non-OK) status.
enum class StoreConflict {
  kNone,
  kPrimaryKey,         // id already used (code kAlreadyExists)
  kUniqueName,         // name already used by another entity (code kAlreadyExists)
  kForeignKeyMissing,  // route.service_id does not reference a service (code kFailedPrecondition)
  kReferenced,         // delete of a service still referenced by routes (code kFailedPrecondition)
};
StoreConflict GetStoreConflict(const absl::Status& status);

// Corrupt rows: a row whose entity BLOB does not parse (written by an older CP that accepted
// ill-formed UTF-8 in a proto3 string, or damaged on disk). The store never writes one (every
// write is parsed back first) but survives one:
//  - a read by key (Get*) returns DataLoss carrying the row's id: CorruptRowId(status);
//  - lists skip it (logged at error level with its id);
//  - ReadConfig leaves it out of `config` and lists it in StoredConfig::corrupt;
//  - DeleteService/DeleteRoute and Update/Upsert by id work on it (they never parse the BLOB).
std::optional<std::string> CorruptRowId(const absl::Status& status);

// Keyset pagination ordered by id, plus tag filtering.
struct ListQuery {
  int size = 100;                 // rows per page, > 0
  std::string after_id;           // only ids > after_id ("" = from the start)
  std::vector<std::string> tags;  // empty = no tag filter
  bool tags_any = false;          // false: entity has ALL tags (a,b); true: ANY of them (a/b)
};

template <typename T>
struct ListPage {
  std::vector<T> items;
  bool has_more = false;  // true: another page follows items.back().id()
};

class Store {
 public:
  // Opens (creating the file, schema and epoch on first start) and applies pending migrations.
  // `path` may be ":memory:" (then reads share the writer connection). `clock` must outlive
  // the store; it stamps created_at/updated_at.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path, const Clock& clock);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Reads. NotFound when absent. Ids are compared as given (the Admin API lowercases UUIDs).
  absl::StatusOr<config::v1::Service> GetService(absl::string_view id);
  absl::StatusOr<config::v1::Service> GetServiceByName(absl::string_view name);
  absl::StatusOr<ListPage<config::v1::Service>> ListServices(const ListQuery& query);
  absl::StatusOr<config::v1::Route> GetRoute(absl::string_view id);
  absl::StatusOr<config::v1::Route> GetRouteByName(absl::string_view name);
  absl::StatusOr<ListPage<config::v1::Route>> ListRoutes(const ListQuery& query);
  absl::StatusOr<ListPage<config::v1::Route>> ListRoutesOfService(absl::string_view service_id,
                                                                  const ListQuery& query);

  // Writes; each returns the stored entity. An empty id gets a new UUID. Insert stamps
  // created_at (unless set) and updated_at; Update/Upsert keep the stored created_at and stamp
  // updated_at. Update fails with NotFound when the id is absent; Upsert inserts then.
  absl::StatusOr<config::v1::Service> InsertService(config::v1::Service service);
  absl::StatusOr<config::v1::Service> UpdateService(config::v1::Service service);
  absl::StatusOr<config::v1::Service> UpsertService(config::v1::Service service);
  // Returns false when there was nothing to delete (then no version bump).
  absl::StatusOr<bool> DeleteService(absl::string_view id);

  absl::StatusOr<config::v1::Route> InsertRoute(config::v1::Route route);
  absl::StatusOr<config::v1::Route> UpdateRoute(config::v1::Route route);
  absl::StatusOr<config::v1::Route> UpsertRoute(config::v1::Route route);
  absl::StatusOr<bool> DeleteRoute(absl::string_view id);

  // Every service and route (sorted by id, disabled services included) and the version, read in
  // one read transaction, so the set is exactly the one `version` names. `version.hash` is empty.
  // Corrupt rows do not fail the read: they are listed in `corrupt` (and the caller must not
  // publish the result).
  absl::StatusOr<StoredConfig> ReadConfig();

  uint64_t CurrentVersion();          // 0 if it cannot be read
  std::string Epoch() const;          // 16 raw bytes, fixed for the life of the DB file
  absl::Status Ping();                // a trivial query on the read connection
  // Migrations applied, in order: (id, name).
  absl::StatusOr<std::vector<std::pair<int, std::string>>> AppliedMigrations();

 private:
  struct Connection;
  explicit Store(const Clock& clock);

  template <typename Entity>
  absl::StatusOr<Entity> WriteEntity(Entity entity, int mode);
  absl::StatusOr<bool> DeleteById(absl::string_view table, absl::string_view id);

  const Clock& clock_;
  std::unique_ptr<Connection> writer_;
  std::unique_ptr<Connection> reader_;  // null for ":memory:"
  std::string epoch_;

  Connection& ReadConnection();
};

}  // namespace portico
