#pragma once
// The SQLite implementation of Store (store.h). Storage (docs/admin-api.md "Storage"): one table
// per entity kind, derived from its descriptor: id TEXT PRIMARY KEY, one UNIQUE column per unique
// field, created_at, updated_at, one `<field>_id` column per foreign key (REFERENCES the parent
// table ON DELETE RESTRICT/CASCADE, indexed), tags as "\x1f"-delimited text, and the entity
// itself as the serialized proto BLOB (the source of truth). `sync_meta` holds one row
// (epoch = 16 random bytes made with the file, version). WAL mode: one writer connection behind
// a mutex, one read connection behind another.
//
// Schema: numbered migrations (schema_migrations) run first; then the table of every
// registered kind that does not exist yet is created from its descriptor, and every table is
// checked to have the columns its descriptor needs (a change of a kind's keys needs a
// migration).
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/base/clock.h"
#include "common/config/entity_descriptor.h"
#include "control_plane/store/store.h"

namespace portico::cp {

// `path` may be ":memory:" (then reads share the writer connection).
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, const Clock& clock,
                                                       const EntityRegistry& kinds);

// The CREATE TABLE and CREATE INDEX statements of `kind`'s table (IF NOT EXISTS).
std::string SqliteTableSql(const EntityDescriptor& kind);

}  // namespace portico::cp
