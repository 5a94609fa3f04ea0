#pragma once
// What the SQL stores (sqlite_store.cc, postgres_store.cc) share: the columns and write SQL
// derived from an entity kind's descriptor, the tags and cache-key columns, and the checks and
// steps of a read or write that do not depend on the database. For those two files only; no
// database headers here.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/entity_descriptor.h"
#include "control_plane/store/store.h"

namespace portico::cp {

// Between the tags of the tags column, and before and after each.
inline constexpr char kTagSeparator = '\x1f';
// The column holding EntityDescriptor::CacheKey for kinds that have one (UNIQUE).
inline constexpr char kCacheKeyColumn[] = "cache_key";

// The column of a unique field or a foreign key.
std::string ColumnOf(const FieldSpec& field);
// The tags column: "" for none, else every tag between kTagSeparators.
std::string TagsColumn(const std::vector<std::string>& tags);
// What a tags column contains when the entity has `tag`.
std::string TagNeedle(absl::string_view tag);

// A schema migration of a store's list: applied once, in id order, and recorded in
// schema_migrations. With `table`, it changes that kind's table and is skipped (recorded as
// applied) when the table does not exist yet.
struct SchemaMigration {
  int id;
  const char* name;
  const char* sql;
  const char* table = nullptr;
};

// A kind's table and the SQL derived from its descriptor.
struct EntityTable {
  const EntityDescriptor* kind = nullptr;
  std::vector<const FieldSpec*> keys;  // unique fields, then stored foreign keys: the key columns
  // Parameters: 1 id, 2 created_at, 3 updated_at, 4 tags, 5 entity, 6... the key columns, then
  // the cache key (kinds that have one). update_sql sets all but id, WHERE id = the first.
  std::string insert_sql, update_sql;
  std::vector<EntityRegistry::Reference> restricted_by;  // ON DELETE RESTRICT references to it
};
using EntityTables = std::map<const EntityDescriptor*, EntityTable>;

// The table of every kind of `kinds`; parameters written `placeholder` then the number ("?" for
// SQLite, "$" for PostgreSQL).
EntityTables DeriveEntityTables(const EntityRegistry& kinds, absl::string_view placeholder);
// `kind`'s table, or InvalidArgument when the store has none.
absl::StatusOr<const EntityTable*> FindEntityTable(const EntityTables& tables, const EntityDescriptor& kind);
// FailedPrecondition naming the first column `table` needs that `have` lacks (a change of a
// kind's keys needs a schema migration in `store_file`); OK when none is missing.
absl::Status CheckEntityColumns(const EntityTable& table, const std::set<std::string>& have,
                                absl::string_view store_file);
// The CREATE INDEX statements of `kind`'s table: its foreign keys and created_at.
std::string EntityIndexSql(const EntityDescriptor& kind);

// The column of a lookup by `field` ("id", kCacheKeyColumn, or a unique field), or
// InvalidArgument.
absl::StatusOr<std::string> LookupColumn(const EntityDescriptor& kind, absl::string_view field);
// The foreign key of query.parent_field (null when there is none), or InvalidArgument when it is
// not a foreign key of `kind`.
absl::StatusOr<const FieldSpec*> ParentForeignKey(const EntityDescriptor& kind, const ListQuery& query);
// Appends the entity of a stored row to `out`; one that does not parse fails (CorruptRowError)
// unless `corrupt` is given: then it is appended there and skipped.
absl::Status AppendEntityRow(const EntityDescriptor& kind, absl::string_view id, absl::string_view bytes,
                             std::vector<CorruptRow>* corrupt, std::vector<EntityPtr>* out);
// Logs each row a list skipped, at error level, with how to repair it.
void LogSkippedRows(const std::vector<CorruptRow>& skipped);
// The first `size` items, has_more when there were more.
template <typename T>
ListPage<T> PageOf(std::vector<T> items, size_t size) {
  ListPage<T> page;
  page.has_more = items.size() > size;
  if (page.has_more) items.resize(size);
  page.items = std::move(items);
  return page;
}

// Whether `kind` has a tags field (a set or an array): a kind ListTagged reads.
bool HasTagList(const EntityDescriptor& kind);
// Appends the tag rows of one (id, kind, tags column) row of a ListTagged read, in (id, kind)
// order, that come after the query's cursor and match its tag, until `rows` has size + 1.
void AppendTagRows(const TagQuery& query, const std::string& id, const std::string& kind, absl::string_view tags,
                   size_t size, std::vector<TaggedEntity>* rows);

// ---- The change log (Store::ReadConfigChanges) ----
// The config_changes table holds (version, kind, id) rows written by triggers on the table of every
// exported kind; sync_meta.changes_floor: the changes of every version > floor are in the table.
// The triggers' name prefix on a kind's table ("<kind>_config_changes").
std::string ChangeTriggerName(const EntityDescriptor& kind);
// The prune a versioned write making `version` does (ChangeLogRetention): the versions <= the
// returned one are dropped and the floor raised to it; nullopt when this write prunes nothing.
std::optional<uint64_t> ChangeLogPruneUpTo(uint64_t version);
// The exported kinds of `names` (kind names read from config_changes), in registry order.
std::vector<const EntityDescriptor*> ChangedKinds(const EntityRegistry& kinds, const std::set<std::string>& names);
// Appends a changed row of `kind` to `out`: `entity` null when the row is gone; bytes that do not
// parse go to out->corrupt instead.
void AppendChange(const EntityDescriptor& kind, absl::string_view id, const absl::string_view* entity,
                  StoredChanges* out);

// A copy of `input` to write: a new id when it has none; InvalidArgument when its serialized form
// does not parse back.
absl::StatusOr<EntityPtr> PrepareEntityWrite(const EntityDescriptor& kind, const google::protobuf::Message& input);
// Sets `entity`'s created_at (kept from the stored row `existing_created_at`, else given, else
// `now`) and updated_at (`now`); with `keep_timestamps`, any given non-zero value is kept.
struct EntityTimes {
  int64_t created_at = 0;
  int64_t updated_at = 0;
};
EntityTimes StampTimes(const EntityDescriptor& kind, google::protobuf::Message* entity,
                       std::optional<int64_t> existing_created_at, bool keep_timestamps, int64_t now);

// A store's preparation of an entity to write (PrepareEntityWrite and its own checks).
using PrepareFn =
    absl::FunctionRef<absl::StatusOr<EntityPtr>(const EntityDescriptor&, const google::protobuf::Message&)>;
// The steps of a WriteBatch, prepared before its transaction: each step's table and entity (null
// for a delete).
struct PreparedBatch {
  std::vector<const EntityTable*> tables;
  std::vector<EntityPtr> entities;
};
// The first error of a step (a kind not in `tables`, or `prepare` refusing) fails it all.
absl::StatusOr<PreparedBatch> PrepareBatch(const EntityTables& tables, const std::vector<Store::BatchStep>& steps,
                                           PrepareFn prepare);
// The rows of a ReplaceConfig, prepared before its transaction, in the caller's order.
using PreparedRows = std::vector<std::pair<const EntityTable*, std::vector<EntityPtr>>>;
absl::StatusOr<PreparedRows> PrepareConfigRows(const EntityTables& tables, const std::vector<Store::KindRows>& kinds,
                                               PrepareFn prepare);
// The entities written, in order (a batch's deletes left out), moved out of `batch` or `rows`.
std::vector<EntityPtr> TakeWritten(PreparedBatch& batch);
std::vector<EntityPtr> TakeWritten(PreparedRows& rows);

}  // namespace portico::cp
