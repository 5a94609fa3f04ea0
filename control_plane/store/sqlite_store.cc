#include "control_plane/store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string_view>
#include <mutex>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "control_plane/store/store_schema.h"
#include "google/protobuf/message.h"

namespace portico::cp {
namespace {

using google::protobuf::Message;

// Schema migrations, applied in order, each in its own transaction with its row in
// schema_migrations. Append only; never edit an applied migration. Entity tables are created
// from their descriptors (SqliteTableSql) after the migrations; a migration that changes a
// kind's table names it in `table` and is skipped (recorded as applied) when that table does
// not exist yet, since it is then created in its current shape.
using Migration = SchemaMigration;
const Migration kMigrations[] = {
    // The tables match SqliteTableSql(services/routes) (sqlite_store_test checks it).
    {1, "create_sync_meta_services_routes", R"sql(
CREATE TABLE sync_meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  epoch BLOB NOT NULL,
  version INTEGER NOT NULL
);
CREATE TABLE services (
  id TEXT PRIMARY KEY,
  name TEXT UNIQUE,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  tags TEXT NOT NULL DEFAULT '',
  entity BLOB NOT NULL
);
CREATE INDEX services_created_at_idx ON services (created_at);
CREATE TABLE routes (
  id TEXT PRIMARY KEY,
  name TEXT UNIQUE,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  service_id TEXT REFERENCES services (id) ON DELETE RESTRICT,
  tags TEXT NOT NULL DEFAULT '',
  entity BLOB NOT NULL
);
CREATE INDEX routes_service_id_idx ON routes (service_id);
CREATE INDEX routes_created_at_idx ON routes (created_at);
)sql"},
    // A service's and an upstream's client_certificate became foreign keys to certificates (the
    // table is created after the migrations). Rows written before keep a NULL column: their ids
    // named no stored certificate, and ValidateConfigSet reports any such service or upstream.
    {2, "services_client_certificate_fk", R"sql(
ALTER TABLE services ADD COLUMN client_certificate_id TEXT REFERENCES certificates (id) ON DELETE RESTRICT;
CREATE INDEX IF NOT EXISTS services_client_certificate_id_idx ON services (client_certificate_id);
)sql", "services"},
    {3, "upstreams_client_certificate_fk", R"sql(
ALTER TABLE upstreams ADD COLUMN client_certificate_id TEXT REFERENCES certificates (id) ON DELETE RESTRICT;
CREATE INDEX IF NOT EXISTS upstreams_client_certificate_id_idx ON upstreams (client_certificate_id);
)sql", "upstreams"},
    // Store::SaveDataPlanes rows (Kong's clustering_data_planes); labels: EncodeDataPlaneLabels.
    {4, "create_clustering_data_planes", R"sql(
CREATE TABLE clustering_data_planes (
  id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL DEFAULT '',
  ip TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  config_hash TEXT NOT NULL DEFAULT '',
  config_version INTEGER NOT NULL DEFAULT 0,
  last_seen INTEGER NOT NULL DEFAULT 0,
  sync_status TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '',
  labels TEXT NOT NULL DEFAULT '{}',
  cert_expiry INTEGER NOT NULL DEFAULT 0,
  connected_since INTEGER NOT NULL DEFAULT 0,
  nack_count INTEGER NOT NULL DEFAULT 0,
  control_plane_id TEXT NOT NULL DEFAULT '',
  control_plane_hostname TEXT NOT NULL DEFAULT '',
  connected INTEGER NOT NULL DEFAULT 0,
  purge_at INTEGER NOT NULL
);
CREATE INDEX clustering_data_planes_purge_at_idx ON clustering_data_planes (purge_at);
)sql"},
    // The change log of Store::ReadConfigChanges (store_schema.h), filled by the triggers
    // ChangeTriggerSql creates with the entity tables. It covers the versions made from now on.
    {5, "create_config_changes", R"sql(
ALTER TABLE sync_meta ADD COLUMN changes_floor INTEGER NOT NULL DEFAULT 0;
UPDATE sync_meta SET changes_floor = version;
CREATE TABLE config_changes (
  version INTEGER NOT NULL,
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  PRIMARY KEY (version, kind, id)
) WITHOUT ROWID;
)sql"},
};

// The triggers that log every insert, update and delete of an exported kind's rows in
// config_changes under the version the write's transaction made (every write bumps the version
// first). ReplaceConfig drops them for the length of its transaction (DropChangeTriggersSql).
constexpr const char* kChangeTriggerOps[] = {"INSERT", "UPDATE", "DELETE"};
std::string ChangeTriggerSql(const EntityDescriptor& kind) {
  std::string sql;
  for (const char* op : kChangeTriggerOps) {
    const char* row = std::string_view(op) == "DELETE" ? "OLD" : "NEW";
    absl::StrAppend(&sql, "CREATE TRIGGER IF NOT EXISTS ", ChangeTriggerName(kind), "_", absl::AsciiStrToLower(op),
                    " AFTER ", op, " ON ", kind.name(), " BEGIN ",
                    "INSERT OR IGNORE INTO config_changes (version, kind, id) SELECT version, '", kind.name(), "', ",
                    row, ".id FROM sync_meta WHERE id = 1; END;\n");
  }
  return sql;
}
std::string DropChangeTriggersSql(const EntityDescriptor& kind) {
  std::string sql;
  for (const char* op : kChangeTriggerOps) {
    absl::StrAppend(&sql, "DROP TRIGGER IF EXISTS ", ChangeTriggerName(kind), "_", absl::AsciiStrToLower(op), ";\n");
  }
  return sql;
}

// Columns of clustering_data_planes, in the order SaveDataPlanes binds and ListDataPlaneRows reads.
constexpr char kDataPlaneColumns[] =
    "id, hostname, ip, version, config_hash, config_version, last_seen, sync_status, state, last_error, labels, "
    "cert_expiry, connected_since, nack_count, control_plane_id, control_plane_hostname, connected, purge_at";

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return WithStoreConflict(absl::AlreadyExistsError(message), StoreConflict::kPrimaryKey, "id");
    case SQLITE_CONSTRAINT_UNIQUE: {
      // "UNIQUE constraint failed: <table>.<column>"
      std::string column;
      if (size_t dot = message.rfind('.'); dot != std::string::npos) column = message.substr(dot + 1);
      return WithStoreConflict(absl::AlreadyExistsError(message), StoreConflict::kUniqueName, column);
    }
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return WithStoreConflict(absl::FailedPreconditionError(message), StoreConflict::kForeignKeyMissing);
    case SQLITE_CONSTRAINT_TRIGGER:
    case SQLITE_CONSTRAINT:
      // ON DELETE RESTRICT reports a plain or trigger constraint code with this text.
      if (absl::StrContains(message, "FOREIGN KEY")) {
        return WithStoreConflict(absl::FailedPreconditionError(message), StoreConflict::kForeignKeyMissing);
      }
      return absl::InternalError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

// Prepared statements kept for the life of one connection, by SQL text: the per-row statements
// of a large write (POST /config, config import) are prepared once, not once per row. Used under
// the connection's mutex.
class StatementCache {
 public:
  ~StatementCache() {
    for (auto& [sql, entry] : entries_) sqlite3_finalize(entry.stmt);
  }
  // The cached statement for `sql` (prepared on first use), or null when it is in use already
  // or cannot be prepared (the caller then prepares its own).
  sqlite3_stmt* Take(sqlite3* db, const std::string& sql) {
    Entry& entry = entries_[sql];
    if (entry.in_use) return nullptr;
    if (entry.stmt == nullptr &&
        sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &entry.stmt, nullptr) != SQLITE_OK) {
      sqlite3_finalize(entry.stmt);
      entry.stmt = nullptr;
      return nullptr;
    }
    entry.in_use = true;
    return entry.stmt;
  }
  void Give(const std::string& sql) { entries_[sql].in_use = false; }

 private:
  struct Entry {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  std::map<std::string, Entry> entries_;
};

// One prepared statement: its own, or borrowed from a StatementCache (reset when done).
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
  }
  Statement(sqlite3* db, StatementCache& cache, const std::string& sql) : db_(db) {
    if (sqlite3_stmt* cached = cache.Take(db, sql); cached != nullptr) {
      stmt_ = cached;
      cache_ = &cache;
      sql_ = sql;
      rc_ = SQLITE_OK;
    } else {
      rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
    }
  }
  ~Statement() {
    if (cache_ == nullptr) {
      sqlite3_finalize(stmt_);
      return;
    }
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    cache_->Give(sql_);
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status(absl::string_view what) const {
    return rc_ == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, rc_, what);
  }
  void BindText(int i, absl::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void BindOptionalText(int i, const std::optional<std::string>& text) {
    if (text) BindText(i, *text); else sqlite3_bind_null(stmt_, i);
  }
  void BindBlob(int i, absl::string_view bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  }
  void BindInt64(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  int64_t ColumnInt64(int i) { return sqlite3_column_int64(stmt_, i); }
  bool ColumnIsNull(int i) { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  // Valid until the next Step.
  absl::string_view ColumnView(int i) {
    const void* data = sqlite3_column_blob(stmt_, i);
    int n = sqlite3_column_bytes(stmt_, i);
    return data ? absl::string_view(static_cast<const char*>(data), n) : absl::string_view();
  }
  std::string ColumnBytes(int i) { return std::string(ColumnView(i)); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  StatementCache* cache_ = nullptr;  // set when stmt_ is borrowed
  std::string sql_;
};

absl::Status Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string message = error ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  return SqliteError(nullptr, rc, absl::StrCat(sql, ": ", message));
}

// How long Close() lets a checkpoint wait for other connections' readers (the busy handler).
constexpr int kCloseCheckpointWaitMs = 1000;

// PRAGMA wal_checkpoint(TRUNCATE). Its row is (busy, WAL frames, frames copied): busy is 1, not
// an error code, when another connection's read transaction kept it from finishing.
absl::Status CheckpointWal(sqlite3* db) {
  Statement stmt(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  if (absl::Status s = stmt.status("WAL checkpoint"); !s.ok()) return s;
  const int rc = stmt.Step();
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    return absl::UnavailableError("WAL checkpoint: the database is locked by another connection");
  }
  if (rc != SQLITE_ROW) return SqliteError(db, sqlite3_extended_errcode(db), "WAL checkpoint");
  const int64_t busy = stmt.ColumnInt64(0);
  const int64_t frames = stmt.ColumnInt64(1);
  const int64_t copied = stmt.ColumnInt64(2);
  if (busy != 0) {
    return absl::UnavailableError(absl::StrCat(
        "WAL checkpoint blocked by another connection's reader (", copied < 0 ? 0 : copied, " of ",
        frames < 0 ? 0 : frames, " WAL frames copied); the committed data stays in the -wal file"));
  }
  return absl::OkStatus();
}

// Runs a statement that returns no rows.
absl::Status Run(Statement& stmt, sqlite3* db, absl::string_view what) {
  if (absl::Status s = stmt.status(what); !s.ok()) return s;
  int rc = stmt.Step();
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) return absl::OkStatus();
  return SqliteError(db, sqlite3_extended_errcode(db), what);
}

// Whether `sql` (bound with `key`) returns a row.
absl::StatusOr<bool> Exists(sqlite3* db, const std::string& sql, absl::string_view key) {
  Statement stmt(db, sql);
  if (absl::Status s = stmt.status("exists"); !s.ok()) return s;
  stmt.BindText(1, key);
  int rc = stmt.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db, sqlite3_extended_errcode(db), "exists");
}

// "AND instr(tags, ?) > 0 ..." for the query's tags.
std::string TagFilterSql(const ListQuery& query) {
  if (query.tags.empty()) return "";
  std::string sql = " AND (";
  for (size_t i = 0; i < query.tags.size(); ++i) {
    if (i > 0) sql += query.tags_any ? " OR " : " AND ";
    sql += "instr(tags, ?) > 0";
  }
  return sql + ")";
}

absl::Status OpenConnection(const std::string& path, bool wal, sqlite3** out) {
  int rc = sqlite3_open_v2(path.c_str(), out,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return SqliteError(*out, rc, absl::StrCat("open ", path));
  sqlite3_extended_result_codes(*out, 1);
  sqlite3_busy_timeout(*out, 5000);
  if (absl::Status s = Exec(*out, "PRAGMA foreign_keys = ON"); !s.ok()) return s;
  if (wal) {
    if (absl::Status s = Exec(*out, "PRAGMA journal_mode = WAL"); !s.ok()) return s;
    if (absl::Status s = Exec(*out, "PRAGMA synchronous = NORMAL"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// Runs `body` in a transaction opened with `begin`: COMMIT when it succeeds, ROLLBACK otherwise.
// A VersionFence on this thread learns how the transaction ended.
template <typename Body>
absl::Status InTransaction(sqlite3* db, const char* begin, Body body) {
  if (absl::Status s = Exec(db, begin); !s.ok()) return s;
  absl::Status s = body();
  if (s.ok()) s = Exec(db, "COMMIT");
  if (!s.ok()) (void)Exec(db, "ROLLBACK");
  if (VersionFence* fence = VersionFence::Active(); fence != nullptr) fence->TransactionEnded(s.ok());
  return s;
}

// First in a versioned write's transaction (BEGIN IMMEDIATE holds the write lock, so the version
// cannot move until COMMIT): a VersionFence whose expected version is not the stored one refuses
// the write before any row is touched (a stale attempt is run again, never failed on a key its
// stale checks missed).
absl::Status CheckFence(sqlite3* db) {
  VersionFence* fence = VersionFence::Active();
  if (fence == nullptr) return absl::OkStatus();
  Statement read(db, "SELECT version FROM sync_meta WHERE id = 1");
  if (absl::Status s = read.status("read version"); !s.ok()) return s;
  if (read.Step() != SQLITE_ROW) return SqliteError(db, sqlite3_extended_errcode(db), "read version");
  const uint64_t version = static_cast<uint64_t>(read.ColumnInt64(0));
  return version == fence->expected() ? absl::OkStatus() : fence->Refuse(version);
}

// The first statement of a versioned write after CheckFence: the change log's triggers read the
// version it makes. Under a VersionFence only from its expected version (else Aborted, nothing
// written). Prunes the change log every ChangeLogRetention::prune_every versions.
absl::Status BumpVersion(sqlite3* db) {
  Statement bump(db, "UPDATE sync_meta SET version = version + 1 WHERE id = 1 RETURNING version");
  if (absl::Status s = bump.status("bump version"); !s.ok()) return s;
  const int rc = bump.Step();
  if (rc != SQLITE_ROW) return SqliteError(db, sqlite3_extended_errcode(db), "bump version");
  const uint64_t version = static_cast<uint64_t>(bump.ColumnInt64(0));
  if (VersionFence* fence = VersionFence::Active(); fence != nullptr) {
    if (version != fence->expected() + 1) return fence->Refuse(version - 1);  // rolled back by the caller
    fence->Bumped(version);
  }
  if (std::optional<uint64_t> up_to = ChangeLogPruneUpTo(version)) {
    Statement prune(db, "DELETE FROM config_changes WHERE version <= ?");
    prune.BindInt64(1, static_cast<int64_t>(*up_to));
    if (absl::Status s = Run(prune, db, "prune config_changes"); !s.ok()) return s;
    Statement floor(db, "UPDATE sync_meta SET changes_floor = MAX(changes_floor, ?) WHERE id = 1");
    floor.BindInt64(1, static_cast<int64_t>(*up_to));
    if (absl::Status s = Run(floor, db, "raise changes_floor"); !s.ok()) return s;
  }
  return absl::OkStatus();
}

using Table = EntityTable;

class SqliteStore final : public Store {
 public:
  SqliteStore(const Clock& clock, const EntityRegistry& kinds) : clock_(clock), kinds_(kinds) {}

  absl::Status Open(const std::string& path);

  const EntityRegistry& kinds() const override { return kinds_; }
  absl::StatusOr<EntityPtr> GetEntity(const EntityDescriptor& kind, absl::string_view id) override {
    return GetEntityByField(kind, "id", id);
  }
  absl::StatusOr<EntityPtr> GetEntityByField(const EntityDescriptor& kind, absl::string_view field,
                                             absl::string_view value) override;
  absl::StatusOr<ListPage<EntityPtr>> ListEntities(const EntityDescriptor& kind, const ListQuery& query) override;
  absl::StatusOr<EntityPtr> WriteEntity(const EntityDescriptor& kind, const Message& entity, WriteMode mode) override;
  absl::StatusOr<bool> DeleteEntity(const EntityDescriptor& kind, absl::string_view id) override;
  absl::StatusOr<std::vector<EntityPtr>> WriteBatch(const std::vector<BatchStep>& steps) override;
  absl::StatusOr<std::vector<EntityPtr>> ReplaceConfig(const std::vector<KindRows>& kinds) override;
  absl::StatusOr<StoredConfig> ReadConfig() override;
  absl::StatusOr<StoredChanges> ReadConfigChanges(uint64_t since, size_t max_changes) override;
  uint64_t CurrentVersion() override;
  std::string Epoch() const override { return epoch_; }
  absl::Status Ping() override;
  absl::StatusOr<std::vector<std::pair<int, std::string>>> AppliedMigrations() override;
  absl::Status Close() override;
  absl::StatusOr<ListPage<TaggedEntity>> ListTagged(const TagQuery& query) override;
  absl::Status SaveDataPlanes(const std::vector<StoredDataPlane>& rows) override;
  absl::StatusOr<std::vector<StoredDataPlane>> ListDataPlaneRows(int64_t now) override;
  absl::StatusOr<int64_t> PurgeDataPlanes(int64_t now) override;
  // One file, one process's writes at a time: no feed (VersionWatcher polls).
  ChangeWait WaitForChange(absl::Duration) override { return ChangeWait::kNoFeed; }

 private:
  struct Connection {
    std::mutex mu;
    sqlite3* db = nullptr;
    std::unique_ptr<StatementCache> statements = std::make_unique<StatementCache>();  // under mu
    ~Connection() {
      statements.reset();  // finalized before the connection closes
      if (db) sqlite3_close_v2(db);
    }
  };

  absl::Status Migrate(sqlite3* db);
  absl::Status CreateEntityTables(sqlite3* db);
  absl::StatusOr<const Table*> TableOf(const EntityDescriptor& kind) const { return FindEntityTable(tables_, kind); }
  Connection& ReadConnection() { return reader_ ? *reader_ : *writer_; }
  // Rows of `SELECT id, entity ...`, in order, until `limit` entities (0 = all). A row whose
  // entity does not parse fails the read (CorruptRowError) unless `corrupt` is given: then it
  // is appended there and skipped.
  absl::StatusOr<std::vector<EntityPtr>> ReadRows(sqlite3* db, Statement& stmt, const EntityDescriptor& kind,
                                                  std::vector<CorruptRow>* corrupt, size_t limit);
  absl::StatusOr<EntityPtr> PrepareWrite(const EntityDescriptor& kind, const Message& input) const {
    return PrepareEntityWrite(kind, input);
  }
  // One write or delete inside the caller's write transaction (no version bump). The write
  // stamps the entity's timestamps (`keep_timestamps`: only those that are zero).
  absl::Status WriteInTransaction(sqlite3* db, const Table& table, Message* entity, WriteMode mode,
                                  bool keep_timestamps = false);
  absl::StatusOr<bool> DeleteInTransaction(sqlite3* db, const Table& table, absl::string_view id);
  // After SQLite refused a write for a foreign key: the first key that references nothing.
  std::string MissingForeignKey(sqlite3* db, const Table& table, const Message& entity);
  // After SQLite refused a delete for a foreign key: the first kind that still references `id`.
  std::string ReferencingKind(sqlite3* db, const Table& table, absl::string_view id);

  const Clock& clock_;
  const EntityRegistry& kinds_;
  EntityTables tables_;
  std::unique_ptr<Connection> writer_;
  std::unique_ptr<Connection> reader_;  // null for ":memory:"
  std::string epoch_;
};

absl::Status SqliteStore::Open(const std::string& path) {
  const bool in_memory = path == ":memory:" || path.empty();
  writer_ = std::make_unique<Connection>();
  if (absl::Status s = OpenConnection(in_memory ? ":memory:" : path, !in_memory, &writer_->db); !s.ok()) return s;
  sqlite3* db = writer_->db;
  if (absl::Status s = Migrate(db); !s.ok()) return s;
  if (absl::Status s = CreateEntityTables(db); !s.ok()) return s;
  {
    Statement stmt(db, "SELECT epoch FROM sync_meta WHERE id = 1");
    if (absl::Status s = stmt.status("read epoch"); !s.ok()) return s;
    if (stmt.Step() != SQLITE_ROW) return absl::DataLossError("sync_meta row missing");
    epoch_ = stmt.ColumnBytes(0);
  }
  if (!in_memory) {
    reader_ = std::make_unique<Connection>();
    if (absl::Status s = OpenConnection(path, false, &reader_->db); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Migrate(sqlite3* db) {
  if (absl::Status s = Exec(db,
                            "CREATE TABLE IF NOT EXISTS schema_migrations ("
                            " id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)");
      !s.ok()) {
    return s;
  }
  int64_t applied = 0;
  {
    Statement stmt(db, "SELECT COALESCE(MAX(id), 0) FROM schema_migrations");
    if (absl::Status s = stmt.status("read migrations"); !s.ok()) return s;
    if (stmt.Step() == SQLITE_ROW) applied = stmt.ColumnInt64(0);
  }
  for (const Migration& m : kMigrations) {
    if (m.id <= applied) continue;
    absl::Status s = InTransaction(db, "BEGIN IMMEDIATE", [&]() -> absl::Status {
      bool run = true;
      if (m.table != nullptr) {
        absl::StatusOr<bool> exists = Exists(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", m.table);
        if (!exists.ok()) return exists.status();
        run = *exists;
      }
      if (run) {
        if (absl::Status st = Exec(db, m.sql); !st.ok()) return st;
      }
      Statement record(db, "INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, ?)");
      record.BindInt64(1, m.id);
      record.BindText(2, m.name);
      record.BindInt64(3, clock_.NowSeconds());
      if (absl::Status st = Run(record, db, "record migration"); !st.ok()) return st;
      if (m.id == 1) {
        // The epoch is born with the database.
        Statement meta(db, "INSERT INTO sync_meta (id, epoch, version) VALUES (1, ?, 0)");
        meta.BindBlob(1, RandomBytes(16));
        return Run(meta, db, "create sync_meta");
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("migration ", m.id, " (", m.name, "): ", s.message()));
    PORTICO_LOG(kInfo, "store", "applied migration ", m.id, " ", m.name);
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::CreateEntityTables(sqlite3* db) {
  tables_ = DeriveEntityTables(kinds_, "?");
  absl::Status created = InTransaction(db, "BEGIN IMMEDIATE", [&]() -> absl::Status {
    for (const EntityDescriptor* kind : kinds_.kinds()) {
      if (absl::Status s = Exec(db, SqliteTableSql(*kind)); !s.ok()) return s;
      if (kind->exported()) {
        if (absl::Status s = Exec(db, ChangeTriggerSql(*kind)); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  });
  if (!created.ok()) return created;
  // An existing table must have what the descriptor needs (keys added later need a migration).
  for (const EntityDescriptor* kind : kinds_.kinds()) {
    Statement info(db, absl::StrCat("PRAGMA table_info(", kind->name(), ")"));
    if (absl::Status s = info.status("table info"); !s.ok()) return s;
    std::set<std::string> have;
    while (info.Step() == SQLITE_ROW) have.insert(info.ColumnBytes(1));
    if (absl::Status s = CheckEntityColumns(tables_[kind], have, "control_plane/store/sqlite_store.cc"); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

uint64_t SqliteStore::CurrentVersion() {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, "SELECT version FROM sync_meta WHERE id = 1");
  if (!stmt.status("version").ok() || stmt.Step() != SQLITE_ROW) return 0;
  return static_cast<uint64_t>(stmt.ColumnInt64(0));
}

absl::Status SqliteStore::Ping() {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, "SELECT 1");
  if (absl::Status s = stmt.status("ping"); !s.ok()) return s;
  int rc = stmt.Step();
  return rc == SQLITE_ROW ? absl::OkStatus() : SqliteError(c.db, rc, "ping");
}

absl::Status SqliteStore::Close() {
  absl::Status result;
  absl::Status checkpoint;
  // The reader first: the writer's close is then the last one, which checkpoints and removes
  // the WAL file.
  for (Connection* c : {reader_.get(), writer_.get()}) {
    if (c == nullptr) continue;
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->db == nullptr) continue;
    if (c == writer_.get() && reader_ != nullptr) {
      // Everything committed goes into the database file and the WAL is emptied, even if another
      // process (config import) keeps the file open and the close cannot remove it.
      sqlite3_busy_timeout(c->db, kCloseCheckpointWaitMs);
      checkpoint = CheckpointWal(c->db);
    }
    c->statements.reset();  // finalized before the connection closes
    const int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK) {
      if (result.ok()) result = SqliteError(c->db, rc, "close");
      sqlite3_close_v2(c->db);  // closes once the last statement is gone
    }
    c->db = nullptr;
  }
  return result.ok() ? checkpoint : result;
}

absl::StatusOr<std::vector<std::pair<int, std::string>>> SqliteStore::AppliedMigrations() {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, "SELECT id, name FROM schema_migrations ORDER BY id");
  if (absl::Status s = stmt.status("migrations"); !s.ok()) return s;
  std::vector<std::pair<int, std::string>> out;
  while (stmt.Step() == SQLITE_ROW) {
    out.emplace_back(static_cast<int>(stmt.ColumnInt64(0)), stmt.ColumnBytes(1));
  }
  return out;
}

absl::StatusOr<ListPage<TaggedEntity>> SqliteStore::ListTagged(const TagQuery& query) {
  // One SELECT per kind with tags, merged in (id, kind) order; the tags column is split here.
  // Rows are stepped until the page has size + 1 tag rows. Every entity gives at least one row
  // but the cursor's (and one of equal id in an earlier kind), so each kind's first size + 2
  // tagged entities from the cursor on are enough: that bounds what the merge sorts.
  std::vector<std::string> selects;
  for (const EntityDescriptor* kind : kinds_.kinds()) {
    if (!HasTagList(*kind)) continue;
    selects.push_back(absl::StrCat("SELECT * FROM (SELECT id, '", kind->name(), "' AS kind, tags FROM ", kind->name(),
                                   " WHERE tags != '' AND id >= ?1",
                                   query.tag.empty() ? "" : " AND instr(tags, ?2) > 0", " ORDER BY id LIMIT ?3)"));
  }
  ListPage<TaggedEntity> page;
  if (selects.empty()) return page;
  const size_t size = query.size > 0 ? static_cast<size_t>(query.size) : 100;
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, absl::StrCat(absl::StrJoin(selects, " UNION ALL "), " ORDER BY id, kind"));
  if (absl::Status s = stmt.status("list tags"); !s.ok()) return s;
  stmt.BindText(1, query.after_entity_id);
  if (!query.tag.empty()) stmt.BindText(2, TagNeedle(query.tag));
  stmt.BindInt64(3, static_cast<int64_t>(size) + 2);
  std::vector<TaggedEntity> rows;
  while (rows.size() <= size) {
    const int rc = stmt.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqliteError(c.db, sqlite3_extended_errcode(c.db), "list tags");
    AppendTagRows(query, stmt.ColumnBytes(0), stmt.ColumnBytes(1), stmt.ColumnView(2), size, &rows);
  }
  return PageOf(std::move(rows), size);
}

absl::StatusOr<std::vector<EntityPtr>> SqliteStore::ReadRows(sqlite3* db, Statement& stmt, const EntityDescriptor& kind,
                                                             std::vector<CorruptRow>* corrupt, size_t limit) {
  if (absl::Status s = stmt.status("select"); !s.ok()) return s;
  std::vector<EntityPtr> out;
  while (limit == 0 || out.size() < limit) {
    int rc = stmt.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqliteError(db, sqlite3_extended_errcode(db), "select");
    if (absl::Status s = AppendEntityRow(kind, stmt.ColumnView(0), stmt.ColumnView(1), corrupt, &out); !s.ok()) {
      return s;
    }
  }
  return out;
}

absl::StatusOr<EntityPtr> SqliteStore::GetEntityByField(const EntityDescriptor& kind, absl::string_view field,
                                                        absl::string_view value) {
  absl::StatusOr<const Table*> table = TableOf(kind);
  if (!table.ok()) return table.status();
  absl::StatusOr<std::string> column = LookupColumn(kind, field);
  if (!column.ok()) return column.status();
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, absl::StrCat("SELECT id, entity FROM ", kind.name(), " WHERE ", *column, " = ?"));
  stmt.BindText(1, value);
  absl::StatusOr<std::vector<EntityPtr>> rows = ReadRows(c.db, stmt, kind, nullptr, 1);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return absl::NotFoundError(absl::StrCat("no ", kind.name(), " entity with ", field, " '", value, "'"));
  return std::move(rows->front());
}

absl::StatusOr<ListPage<EntityPtr>> SqliteStore::ListEntities(const EntityDescriptor& kind, const ListQuery& query) {
  absl::StatusOr<const Table*> table = TableOf(kind);
  if (!table.ok()) return table.status();
  absl::StatusOr<const FieldSpec*> fk = ParentForeignKey(kind, query);
  if (!fk.ok()) return fk.status();
  const std::string parent_filter = *fk != nullptr ? absl::StrCat(" AND ", ColumnOf(**fk), " = ?") : "";
  // No LIMIT: corrupt rows are skipped, so the page reads rows until it has size + 1 entities
  // (the rows come in id order from the primary key; stepping stops there).
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, absl::StrCat("SELECT id, entity FROM ", kind.name(), " WHERE id > ?", parent_filter,
                                    TagFilterSql(query), " ORDER BY id"));
  int index = 1;
  stmt.BindText(index++, query.after_id);
  if (!parent_filter.empty()) stmt.BindText(index++, query.parent_id);
  for (const auto& tag : query.tags) {
    stmt.BindText(index++, TagNeedle(tag));
  }
  const int size = query.size > 0 ? query.size : 100;
  std::vector<CorruptRow> skipped;
  absl::StatusOr<std::vector<EntityPtr>> rows = ReadRows(c.db, stmt, kind, &skipped, static_cast<size_t>(size) + 1);
  if (!rows.ok()) return rows.status();
  LogSkippedRows(skipped);
  return PageOf(*std::move(rows), static_cast<size_t>(size));
}

std::string SqliteStore::MissingForeignKey(sqlite3* db, const Table& table, const Message& entity) {
  for (const FieldSpec* key : table.keys) {
    if (key->type != FieldType::kForeignKey) continue;
    std::optional<std::string> id = table.kind->Text(entity, *key);
    if (!id) continue;
    absl::StatusOr<bool> exists = Exists(db, absl::StrCat("SELECT 1 FROM ", key->references, " WHERE id = ?"), *id);
    if (exists.ok() && !*exists) return key->name;
  }
  return "";
}

std::string SqliteStore::ReferencingKind(sqlite3* db, const Table& table, absl::string_view id) {
  for (const EntityRegistry::Reference& ref : table.restricted_by) {
    absl::StatusOr<bool> exists =
        Exists(db, absl::StrCat("SELECT 1 FROM ", ref.kind->name(), " WHERE ", ColumnOf(*ref.field), " = ? LIMIT 1"), id);
    if (exists.ok() && *exists) return ref.kind->name();
  }
  return "";
}

absl::Status SqliteStore::WriteInTransaction(sqlite3* db, const Table& table, Message* entity, WriteMode mode,
                                             bool keep_timestamps) {
  const EntityDescriptor& kind = *table.kind;
  const std::string id = kind.Id(*entity);
  std::optional<int64_t> existing_created_at;
  if (mode != WriteMode::kInsert) {
    Statement find(db, *writer_->statements, absl::StrCat("SELECT created_at FROM ", kind.name(), " WHERE id = ?"));
    if (absl::Status s = find.status("find"); !s.ok()) return s;
    find.BindText(1, id);
    int rc = find.Step();
    if (rc == SQLITE_ROW) {
      existing_created_at = find.ColumnInt64(0);
    } else if (rc != SQLITE_DONE) {
      return SqliteError(db, sqlite3_extended_errcode(db), "find");
    }
  }
  if (mode == WriteMode::kUpdate && !existing_created_at) {
    return absl::NotFoundError(absl::StrCat("no ", kind.name(), " entity with id '", id, "'"));
  }
  const EntityTimes times = StampTimes(kind, entity, existing_created_at, keep_timestamps, clock_.NowSeconds());

  Statement write(db, *writer_->statements, existing_created_at ? table.update_sql : table.insert_sql);
  write.BindText(1, id);
  write.BindInt64(2, times.created_at);
  write.BindInt64(3, times.updated_at);
  write.BindText(4, TagsColumn(kind.Tags(*entity)));
  write.BindBlob(5, entity->SerializeAsString());
  for (size_t i = 0; i < table.keys.size(); ++i) {
    write.BindOptionalText(static_cast<int>(i) + 6, kind.Text(*entity, *table.keys[i]));
  }
  if (kind.has_cache_key()) write.BindText(static_cast<int>(table.keys.size()) + 6, kind.CacheKey(*entity));
  if (absl::Status s = Run(write, db, absl::StrCat("write ", kind.name())); !s.ok()) {
    if (GetStoreConflict(s) == StoreConflict::kForeignKeyMissing) {
      return WithStoreConflict(s, StoreConflict::kForeignKeyMissing, MissingForeignKey(db, table, *entity));
    }
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> SqliteStore::DeleteInTransaction(sqlite3* db, const Table& table, absl::string_view id) {
  const EntityDescriptor& kind = *table.kind;
  Statement del(db, absl::StrCat("DELETE FROM ", kind.name(), " WHERE id = ?"));
  del.BindText(1, id);
  if (absl::Status s = Run(del, db, absl::StrCat("delete from ", kind.name())); !s.ok()) {
    if (GetStoreConflict(s) == StoreConflict::kForeignKeyMissing) {
      return WithStoreConflict(absl::FailedPreconditionError(s.message()), StoreConflict::kReferenced,
                               ReferencingKind(db, table, id));
    }
    return s;
  }
  return sqlite3_changes(db) > 0;
}

absl::StatusOr<EntityPtr> SqliteStore::WriteEntity(const EntityDescriptor& kind, const Message& input, WriteMode mode) {
  absl::StatusOr<const Table*> found = TableOf(kind);
  if (!found.ok()) return found.status();
  absl::StatusOr<EntityPtr> entity = PrepareWrite(kind, input);
  if (!entity.ok()) return entity.status();
  std::lock_guard<std::mutex> lock(writer_->mu);
  sqlite3* db = writer_->db;
  absl::Status written = InTransaction(db, "BEGIN IMMEDIATE", [&]() -> absl::Status {
    if (absl::Status s = CheckFence(db); !s.ok()) return s;
    if (absl::Status s = BumpVersion(db); !s.ok()) return s;
    return WriteInTransaction(db, **found, entity->get(), mode);
  });
  if (!written.ok()) return written;
  return *std::move(entity);
}

absl::StatusOr<bool> SqliteStore::DeleteEntity(const EntityDescriptor& kind, absl::string_view id) {
  absl::StatusOr<const Table*> found = TableOf(kind);
  if (!found.ok()) return found.status();
  std::lock_guard<std::mutex> lock(writer_->mu);
  sqlite3* db = writer_->db;
  bool deleted = false;
  // Nothing deleted: rolled back, so the version bump goes too.
  const absl::Status nothing = absl::CancelledError("nothing deleted");
  absl::Status status = InTransaction(db, "BEGIN IMMEDIATE", [&]() -> absl::Status {
    if (absl::Status s = CheckFence(db); !s.ok()) return s;
    if (absl::Status s = BumpVersion(db); !s.ok()) return s;
    absl::StatusOr<bool> removed = DeleteInTransaction(db, **found, id);
    if (!removed.ok()) return removed.status();
    deleted = *removed;
    return deleted ? absl::OkStatus() : nothing;
  });
  if (status == nothing) return false;
  if (!status.ok()) return status;
  return deleted;
}

absl::StatusOr<std::vector<EntityPtr>> SqliteStore::WriteBatch(const std::vector<BatchStep>& steps) {
  absl::StatusOr<PreparedBatch> batch = PrepareBatch(
      tables_, steps, [&](const EntityDescriptor& kind, const Message& input) { return PrepareWrite(kind, input); });
  if (!batch.ok()) return batch.status();
  const std::vector<const Table*>& tables = batch->tables;
  std::vector<EntityPtr>& entities = batch->entities;  // null for a delete
  std::lock_guard<std::mutex> lock(writer_->mu);
  sqlite3* db = writer_->db;
  absl::Status status = InTransaction(db, "BEGIN IMMEDIATE", [&]() -> absl::Status {
    if (absl::Status s = CheckFence(db); !s.ok()) return s;
    if (absl::Status s = BumpVersion(db); !s.ok()) return s;
    for (size_t i = 0; i < steps.size(); ++i) {
      if (entities[i] == nullptr) {
        absl::StatusOr<bool> removed = DeleteInTransaction(db, *tables[i], steps[i].delete_id);
        if (!removed.ok()) return removed.status();
      } else if (absl::Status s = WriteInTransaction(db, *tables[i], entities[i].get(), steps[i].mode,
                                                     steps[i].keep_timestamps);
                 !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return TakeWritten(*batch);
}

absl::StatusOr<std::vector<EntityPtr>> SqliteStore::ReplaceConfig(const std::vector<KindRows>& kinds) {
  absl::StatusOr<PreparedRows> rows = PrepareConfigRows(  // in the caller's order
      tables_, kinds, [&](const EntityDescriptor& kind, const Message& input) { return PrepareWrite(kind, input); });
  if (!rows.ok()) return rows.status();
  std::lock_guard<std::mutex> lock(writer_->mu);
  sqlite3* db = writer_->db;
  absl::Status status = InTransaction(db, "BEGIN IMMEDIATE", [&]() -> absl::Status {
    if (absl::Status s = CheckFence(db); !s.ok()) return s;
    if (absl::Status s = BumpVersion(db); !s.ok()) return s;
    // Not logged row by row: the log restarts at this version (readers from before it are not
    // covered). The triggers are dropped until the end of the transaction (a WHEN clause reading a
    // flag would still cost every row a subquery).
    for (const EntityDescriptor* kind : kinds_.kinds()) {
      if (!kind->exported()) continue;
      if (absl::Status s = Exec(db, DropChangeTriggersSql(*kind)); !s.ok()) return s;
    }
    // Children before parents (the registry lists parents first), so no key is left dangling.
    for (auto kind = kinds_.kinds().rbegin(); kind != kinds_.kinds().rend(); ++kind) {
      if (absl::Status s = Exec(db, absl::StrCat("DELETE FROM ", (*kind)->name())); !s.ok()) return s;
    }
    // Parents before children.
    for (const EntityDescriptor* kind : kinds_.kinds()) {
      for (auto& [table, entities] : *rows) {
        if (table->kind != kind) continue;
        for (EntityPtr& entity : entities) {
          if (absl::Status s = WriteInTransaction(db, *table, entity.get(), WriteMode::kInsert, /*keep_timestamps=*/true);
              !s.ok()) {
            return s;
          }
        }
      }
    }
    for (const EntityDescriptor* kind : kinds_.kinds()) {
      if (!kind->exported()) continue;
      if (absl::Status s = Exec(db, ChangeTriggerSql(*kind)); !s.ok()) return s;
    }
    return Exec(db, "UPDATE sync_meta SET changes_floor = version WHERE id = 1; DELETE FROM config_changes");
  });
  if (!status.ok()) return status;
  return TakeWritten(*rows);
}

absl::StatusOr<StoredConfig> SqliteStore::ReadConfig() {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  sqlite3* db = c.db;
  StoredConfig out;
  // One read transaction: the WAL snapshot is fixed at the first SELECT and kept until COMMIT.
  absl::Status s = InTransaction(db, "BEGIN", [&]() -> absl::Status {
    Statement meta(db, "SELECT epoch, version FROM sync_meta WHERE id = 1");
    if (absl::Status st = meta.status("read sync_meta"); !st.ok()) return st;
    if (meta.Step() != SQLITE_ROW) return absl::DataLossError("sync_meta row missing");
    out.version.epoch = meta.ColumnBytes(0);
    out.version.version = static_cast<uint64_t>(meta.ColumnInt64(1));
    for (const EntityDescriptor* kind : kinds_.kinds()) {
      if (!kind->exported()) continue;
      Statement rows(db, absl::StrCat("SELECT id, entity FROM ", kind->name(), " ORDER BY id"));
      if (absl::Status st = rows.status("select"); !st.ok()) return st;
      while (true) {
        int rc = rows.Step();
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) return SqliteError(db, sqlite3_extended_errcode(db), "select");
        if (!kind->AppendToConfig(&out.config, rows.ColumnView(1))) {
          out.corrupt.push_back(CorruptRow{kind->name(), rows.ColumnBytes(0), kCorruptEntityReason});
        }
      }
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<StoredChanges> SqliteStore::ReadConfigChanges(uint64_t since, size_t max_changes) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  sqlite3* db = c.db;
  StoredChanges out;
  const int64_t limit = static_cast<int64_t>(std::min<size_t>(max_changes, INT64_MAX - 1)) + 1;
  // One read transaction, as ReadConfig: the version and the log from one WAL snapshot.
  absl::Status s = InTransaction(db, "BEGIN", [&]() -> absl::Status {
    Statement meta(db, *c.statements, "SELECT epoch, version, changes_floor FROM sync_meta WHERE id = 1");
    if (absl::Status st = meta.status("read sync_meta"); !st.ok()) return st;
    if (meta.Step() != SQLITE_ROW) return absl::DataLossError("sync_meta row missing");
    out.version.epoch = meta.ColumnBytes(0);
    out.version.version = static_cast<uint64_t>(meta.ColumnInt64(1));
    const uint64_t floor = static_cast<uint64_t>(meta.ColumnInt64(2));
    if (since < floor || since > out.version.version) return absl::OkStatus();
    const int64_t current = static_cast<int64_t>(out.version.version);
    std::set<std::string> kind_names;
    {
      Statement rows(db, *c.statements,
                     "SELECT DISTINCT kind, id FROM config_changes WHERE version > ?1 AND version <= ?2 LIMIT ?3");
      if (absl::Status st = rows.status("read config_changes"); !st.ok()) return st;
      rows.BindInt64(1, static_cast<int64_t>(since));
      rows.BindInt64(2, current);
      rows.BindInt64(3, limit);
      int64_t n = 0;
      while (true) {
        const int rc = rows.Step();
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) return SqliteError(db, sqlite3_extended_errcode(db), "read config_changes");
        ++n;
        kind_names.insert(rows.ColumnBytes(0));
      }
      if (n >= limit) return absl::OkStatus();  // more than max_changes
    }
    for (const EntityDescriptor* kind : ChangedKinds(kinds_, kind_names)) {
      Statement rows(db, *c.statements,
                     absl::StrCat("SELECT c.id, k.entity FROM (SELECT DISTINCT id FROM config_changes WHERE kind = ?1 "
                                  "AND version > ?2 AND version <= ?3) AS c LEFT JOIN ",
                                  kind->name(), " AS k ON k.id = c.id ORDER BY c.id"));  // bytewise (BINARY)
      if (absl::Status st = rows.status("read changed rows"); !st.ok()) return st;
      rows.BindText(1, kind->name());
      rows.BindInt64(2, static_cast<int64_t>(since));
      rows.BindInt64(3, current);
      while (true) {
        const int rc = rows.Step();
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) return SqliteError(db, sqlite3_extended_errcode(db), "read changed rows");
        const absl::string_view entity = rows.ColumnView(1);
        AppendChange(*kind, rows.ColumnView(0), rows.ColumnIsNull(1) ? nullptr : &entity, &out);
      }
    }
    out.covered = true;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status SqliteStore::SaveDataPlanes(const std::vector<StoredDataPlane>& rows) {
  if (rows.empty()) return absl::OkStatus();
  // A row that is not connected never replaces a connected row of another CP (store.h).
  static const std::string sql = absl::StrCat(
      "INSERT INTO clustering_data_planes (", kDataPlaneColumns,
      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) "
      "ON CONFLICT(id) DO UPDATE SET hostname = excluded.hostname, ip = excluded.ip, version = excluded.version, "
      "config_hash = excluded.config_hash, config_version = excluded.config_version, last_seen = excluded.last_seen, "
      "sync_status = excluded.sync_status, state = excluded.state, last_error = excluded.last_error, "
      "labels = excluded.labels, cert_expiry = excluded.cert_expiry, connected_since = excluded.connected_since, "
      "nack_count = excluded.nack_count, control_plane_id = excluded.control_plane_id, "
      "control_plane_hostname = excluded.control_plane_hostname, connected = excluded.connected, "
      "purge_at = excluded.purge_at "
      "WHERE NOT (clustering_data_planes.connected AND "
      "clustering_data_planes.control_plane_id <> excluded.control_plane_id AND NOT excluded.connected)");
  std::lock_guard<std::mutex> lock(writer_->mu);
  sqlite3* db = writer_->db;
  return InTransaction(db, "BEGIN IMMEDIATE", [&]() -> absl::Status {
    for (const StoredDataPlane& row : rows) {
      const DataPlaneStatus& dp = row.status;
      Statement stmt(db, *writer_->statements, sql);
      stmt.BindText(1, dp.id);
      stmt.BindText(2, dp.hostname);
      stmt.BindText(3, dp.ip);
      stmt.BindText(4, dp.version);
      stmt.BindText(5, dp.config_hash);
      stmt.BindInt64(6, static_cast<int64_t>(dp.config_version));
      stmt.BindInt64(7, dp.last_seen);
      stmt.BindText(8, dp.sync_status);
      stmt.BindText(9, dp.state);
      stmt.BindText(10, dp.last_error);
      stmt.BindText(11, EncodeDataPlaneLabels(dp.labels));
      stmt.BindInt64(12, dp.cert_expiry);
      stmt.BindInt64(13, dp.connected_since);
      stmt.BindInt64(14, static_cast<int64_t>(dp.nack_count));
      stmt.BindText(15, dp.control_plane_id);
      stmt.BindText(16, dp.control_plane_hostname);
      stmt.BindInt64(17, row.connected ? 1 : 0);
      stmt.BindInt64(18, row.purge_at);
      if (absl::Status s = Run(stmt, db, "save data plane"); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<StoredDataPlane>> SqliteStore::ListDataPlaneRows(int64_t now) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, absl::StrCat("SELECT ", kDataPlaneColumns,
                                    " FROM clustering_data_planes WHERE purge_at > ? ORDER BY id"));
  if (absl::Status s = stmt.status("list data planes"); !s.ok()) return s;
  stmt.BindInt64(1, now);
  std::vector<StoredDataPlane> out;
  while (true) {
    const int rc = stmt.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqliteError(c.db, sqlite3_extended_errcode(c.db), "list data planes");
    StoredDataPlane& row = out.emplace_back();
    DataPlaneStatus& dp = row.status;
    dp.id = stmt.ColumnBytes(0);
    dp.hostname = stmt.ColumnBytes(1);
    dp.ip = stmt.ColumnBytes(2);
    dp.version = stmt.ColumnBytes(3);
    dp.config_hash = stmt.ColumnBytes(4);
    dp.config_version = static_cast<uint64_t>(stmt.ColumnInt64(5));
    dp.last_seen = stmt.ColumnInt64(6);
    dp.sync_status = stmt.ColumnBytes(7);
    dp.state = stmt.ColumnBytes(8);
    dp.last_error = stmt.ColumnBytes(9);
    dp.labels = DecodeDataPlaneLabels(stmt.ColumnView(10));
    dp.cert_expiry = stmt.ColumnInt64(11);
    dp.connected_since = stmt.ColumnInt64(12);
    dp.nack_count = static_cast<uint64_t>(stmt.ColumnInt64(13));
    dp.control_plane_id = stmt.ColumnBytes(14);
    dp.control_plane_hostname = stmt.ColumnBytes(15);
    row.connected = stmt.ColumnInt64(16) != 0;
    row.purge_at = stmt.ColumnInt64(17);
  }
  return out;
}

absl::StatusOr<int64_t> SqliteStore::PurgeDataPlanes(int64_t now) {
  std::lock_guard<std::mutex> lock(writer_->mu);
  sqlite3* db = writer_->db;
  Statement stmt(db, "DELETE FROM clustering_data_planes WHERE purge_at <= ?");
  stmt.BindInt64(1, now);
  if (absl::Status s = Run(stmt, db, "purge data planes"); !s.ok()) return s;
  return static_cast<int64_t>(sqlite3_changes(db));
}

}  // namespace

std::string SqliteTableSql(const EntityDescriptor& kind) {
  const std::string& t = kind.name();
  std::string sql = absl::StrCat("CREATE TABLE IF NOT EXISTS ", t, " (\n  id TEXT PRIMARY KEY,\n");
  for (const FieldSpec* f : kind.unique_fields()) absl::StrAppend(&sql, "  ", ColumnOf(*f), " TEXT UNIQUE,\n");
  if (kind.has_cache_key()) absl::StrAppend(&sql, "  ", kCacheKeyColumn, " TEXT UNIQUE,\n");
  absl::StrAppend(&sql, "  created_at INTEGER NOT NULL,\n  updated_at INTEGER NOT NULL,\n");
  for (const FieldSpec* f : kind.stored_foreign_keys()) {
    absl::StrAppend(&sql, "  ", ColumnOf(*f), " TEXT REFERENCES ", f->references, " (id) ON DELETE ",
                    f->on_delete == OnDelete::kCascade ? "CASCADE" : "RESTRICT", ",\n");
  }
  absl::StrAppend(&sql, "  tags TEXT NOT NULL DEFAULT '',\n  entity BLOB NOT NULL\n);\n", EntityIndexSql(kind));
  return sql;
}

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, const Clock& clock,
                                                       const EntityRegistry& kinds) {
  auto store = std::make_unique<SqliteStore>(clock, kinds);
  if (absl::Status s = store->Open(path); !s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace portico::cp
