#include "control_plane/store/store.h"

#include <sqlite3.h>

#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/uuid.h"

namespace portico {

using config::v1::Route;
using config::v1::Service;

namespace {

constexpr char kConflictPayloadUrl[] = "type.portico.dev/store-conflict";
constexpr char kCorruptRowPayloadUrl[] = "type.portico.dev/corrupt-row-id";
constexpr char kCorruptEntity[] =
    "the stored entity does not parse (a string that is not UTF-8, or damaged bytes)";
constexpr char kTagSeparator = '\x1f';

enum WriteMode { kInsert = 0, kUpdate = 1, kUpsert = 2 };

// Schema migrations, applied in order, each in its own transaction with its row in
// schema_migrations. Append only; never edit an applied migration.
struct Migration {
  int id;
  const char* name;
  const char* sql;
};
const Migration kMigrations[] = {
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
};

absl::Status WithConflict(absl::Status status, StoreConflict conflict) {
  const char* name = "";
  switch (conflict) {
    case StoreConflict::kPrimaryKey: name = "primary_key"; break;
    case StoreConflict::kUniqueName: name = "unique"; break;
    case StoreConflict::kForeignKeyMissing: name = "foreign_key"; break;
    case StoreConflict::kReferenced: name = "referenced"; break;
    case StoreConflict::kNone: return status;
  }
  status.SetPayload(kConflictPayloadUrl, absl::Cord(name));
  return status;
}

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return WithConflict(absl::AlreadyExistsError(message), StoreConflict::kPrimaryKey);
    case SQLITE_CONSTRAINT_UNIQUE:
      return WithConflict(absl::AlreadyExistsError(message), StoreConflict::kUniqueName);
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return WithConflict(absl::FailedPreconditionError(message), StoreConflict::kForeignKeyMissing);
    case SQLITE_CONSTRAINT_TRIGGER:
    case SQLITE_CONSTRAINT:
      // ON DELETE RESTRICT reports a plain or trigger constraint code with this text.
      if (absl::StrContains(message, "FOREIGN KEY")) {
        return WithConflict(absl::FailedPreconditionError(message), StoreConflict::kForeignKeyMissing);
      }
      return absl::InternalError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

// Owns one prepared statement.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status(absl::string_view what) const {
    return rc_ == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, rc_, what);
  }
  void BindText(int i, absl::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void BindOptionalText(int i, bool present, absl::string_view text) {
    if (present) BindText(i, text); else sqlite3_bind_null(stmt_, i);
  }
  void BindBlob(int i, absl::string_view bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  }
  void BindInt64(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  int64_t ColumnInt64(int i) { return sqlite3_column_int64(stmt_, i); }
  std::string ColumnBytes(int i) {
    const void* data = sqlite3_column_blob(stmt_, i);
    int n = sqlite3_column_bytes(stmt_, i);
    return data ? std::string(static_cast<const char*>(data), n) : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &error);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string message = error ? error : sqlite3_errstr(rc);
  sqlite3_free(error);
  return SqliteError(nullptr, rc, absl::StrCat(sql, ": ", message));
}

// Runs a statement that returns no rows.
absl::Status Run(Statement& stmt, sqlite3* db, absl::string_view what) {
  if (absl::Status s = stmt.status(what); !s.ok()) return s;
  int rc = stmt.Step();
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) return absl::OkStatus();
  return SqliteError(db, sqlite3_extended_errcode(db), what);
}

std::string TagsColumn(bool has_tags, const config::v1::StringList& tags) {
  if (!has_tags || tags.values_size() == 0) return "";
  std::string out(1, kTagSeparator);
  for (const auto& t : tags.values()) absl::StrAppend(&out, t, std::string(1, kTagSeparator));
  return out;
}

// Per-kind column access for the generic write path.
template <typename Entity>
struct Kind;
template <>
struct Kind<Service> {
  static constexpr const char* kTable = "services";
  static bool HasServiceId(const Service&) { return false; }
  static std::string ServiceId(const Service&) { return ""; }
};
template <>
struct Kind<Route> {
  static constexpr const char* kTable = "routes";
  static bool HasServiceId(const Route& r) { return r.has_service_id(); }
  static std::string ServiceId(const Route& r) { return r.service_id(); }
};

// "AND instr(tags, ?) > 0 ..." for the query's tags, starting at bind index `first`.
std::string TagFilterSql(const ListQuery& query) {
  if (query.tags.empty()) return "";
  std::string sql = " AND (";
  for (size_t i = 0; i < query.tags.size(); ++i) {
    if (i > 0) sql += query.tags_any ? " OR " : " AND ";
    sql += "instr(tags, ?) > 0";
  }
  return sql + ")";
}

}  // namespace

std::optional<std::string> CorruptRowId(const absl::Status& status) {
  if (!absl::IsDataLoss(status)) return std::nullopt;
  auto payload = status.GetPayload(kCorruptRowPayloadUrl);
  if (!payload) return std::nullopt;
  return std::string(*payload);
}

StoreConflict GetStoreConflict(const absl::Status& status) {
  auto payload = status.GetPayload(kConflictPayloadUrl);
  if (!payload) return StoreConflict::kNone;
  std::string name(*payload);
  if (name == "primary_key") return StoreConflict::kPrimaryKey;
  if (name == "unique") return StoreConflict::kUniqueName;
  if (name == "foreign_key") return StoreConflict::kForeignKeyMissing;
  if (name == "referenced") return StoreConflict::kReferenced;
  return StoreConflict::kNone;
}

struct Store::Connection {
  std::mutex mu;
  sqlite3* db = nullptr;
  ~Connection() {
    if (db) sqlite3_close_v2(db);
  }
};

namespace {

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

// DataLoss naming the corrupt row, with its id as a payload (CorruptRowId).
absl::Status CorruptRowError(absl::string_view table, const std::string& id) {
  absl::Status status = absl::DataLossError(
      absl::StrCat("corrupt ", table, " row ", absl::CHexEscape(id), ": ", kCorruptEntity));
  status.SetPayload(kCorruptRowPayloadUrl, absl::Cord(id));
  return status;
}

// Rows of `SELECT id, entity FROM <table> ...`, in order, until `limit` entities (0 = all).
// A row whose entity does not parse fails the read (DataLoss, CorruptRowError) unless
// `corrupt` is given: then it is appended there and skipped.
template <typename Entity>
absl::StatusOr<std::vector<Entity>> ReadEntities(sqlite3* db, Statement& stmt, const char* table,
                                                 std::vector<CorruptRow>* corrupt, size_t limit = 0) {
  if (absl::Status s = stmt.status("select"); !s.ok()) return s;
  std::vector<Entity> out;
  while (limit == 0 || out.size() < limit) {
    int rc = stmt.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqliteError(db, sqlite3_extended_errcode(db), "select");
    Entity entity;
    if (!entity.ParseFromString(stmt.ColumnBytes(1))) {
      std::string id = stmt.ColumnBytes(0);
      if (corrupt == nullptr) return CorruptRowError(table, id);
      corrupt->push_back(CorruptRow{table, std::move(id), kCorruptEntity});
      continue;
    }
    out.push_back(std::move(entity));
  }
  return out;
}

template <typename Entity>
absl::StatusOr<Entity> GetOne(sqlite3* db, const char* table, const char* key_column, absl::string_view key) {
  Statement stmt(db, absl::StrCat("SELECT id, entity FROM ", table, " WHERE ", key_column, " = ?").c_str());
  stmt.BindText(1, key);
  auto rows = ReadEntities<Entity>(db, stmt, table, nullptr);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return absl::NotFoundError(absl::StrCat("no entity with key '", key, "'"));
  return std::move(rows->front());
}

void LogSkippedRows(const std::vector<CorruptRow>& skipped) {
  for (const CorruptRow& row : skipped) {
    const std::string id = absl::CHexEscape(row.id);
    PORTICO_LOG(kError, "store", "list: skipped corrupt ", row.kind, " row ", id, " (", row.error,
                "); repair it with DELETE or PUT /", row.kind, "/", id);
  }
}

template <typename Entity>
absl::StatusOr<ListPage<Entity>> ListPageOf(sqlite3* db, const char* table, const ListQuery& query,
                                            const std::string* service_id) {
  // No LIMIT: corrupt rows are skipped, so the page reads rows until it has size + 1 entities
  // (the rows come in id order from the primary key; stepping stops there).
  std::string sql = absl::StrCat("SELECT id, entity FROM ", table, " WHERE id > ?",
                                 service_id ? " AND service_id = ?" : "", TagFilterSql(query),
                                 " ORDER BY id");
  Statement stmt(db, sql.c_str());
  int index = 1;
  stmt.BindText(index++, query.after_id);
  if (service_id) stmt.BindText(index++, *service_id);
  for (const auto& tag : query.tags) {
    stmt.BindText(index++, absl::StrCat(std::string(1, kTagSeparator), tag, std::string(1, kTagSeparator)));
  }
  const int size = query.size > 0 ? query.size : 100;
  std::vector<CorruptRow> skipped;
  auto rows = ReadEntities<Entity>(db, stmt, table, &skipped, static_cast<size_t>(size) + 1);
  if (!rows.ok()) return rows.status();
  LogSkippedRows(skipped);
  ListPage<Entity> page;
  page.has_more = rows->size() > static_cast<size_t>(size);
  if (page.has_more) rows->resize(size);
  page.items = std::move(*rows);
  return page;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path, const Clock& clock) {
  std::unique_ptr<Store> store(new Store(clock));
  const bool in_memory = path == ":memory:" || path.empty();
  store->writer_ = std::make_unique<Connection>();
  if (absl::Status s = OpenConnection(in_memory ? ":memory:" : path, !in_memory, &store->writer_->db);
      !s.ok()) {
    return s;
  }
  sqlite3* db = store->writer_->db;

  // Migrations: one transaction each, recorded in schema_migrations.
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
    if (absl::Status s = Exec(db, "BEGIN IMMEDIATE"); !s.ok()) return s;
    absl::Status s = Exec(db, m.sql);
    if (s.ok()) {
      Statement record(db, "INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, ?)");
      record.BindInt64(1, m.id);
      record.BindText(2, m.name);
      record.BindInt64(3, clock.NowSeconds());
      s = Run(record, db, "record migration");
    }
    if (s.ok() && m.id == 1) {
      // The epoch is born with the database.
      Statement meta(db, "INSERT INTO sync_meta (id, epoch, version) VALUES (1, ?, 0)");
      meta.BindBlob(1, RandomBytes(16));
      s = Run(meta, db, "create sync_meta");
    }
    if (s.ok()) s = Exec(db, "COMMIT");
    if (!s.ok()) {
      (void)Exec(db, "ROLLBACK");
      return absl::Status(s.code(), absl::StrCat("migration ", m.id, " (", m.name, "): ", s.message()));
    }
    PORTICO_LOG(kInfo, "store", "applied migration ", m.id, " ", m.name);
  }
  {
    Statement stmt(db, "SELECT epoch FROM sync_meta WHERE id = 1");
    if (absl::Status s = stmt.status("read epoch"); !s.ok()) return s;
    if (stmt.Step() != SQLITE_ROW) return absl::DataLossError("sync_meta row missing");
    store->epoch_ = stmt.ColumnBytes(0);
  }
  if (!in_memory) {
    store->reader_ = std::make_unique<Connection>();
    if (absl::Status s = OpenConnection(path, false, &store->reader_->db); !s.ok()) return s;
  }
  return store;
}

Store::Store(const Clock& clock) : clock_(clock) {}
Store::~Store() = default;

Store::Connection& Store::ReadConnection() { return reader_ ? *reader_ : *writer_; }

std::string Store::Epoch() const { return epoch_; }

uint64_t Store::CurrentVersion() {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, "SELECT version FROM sync_meta WHERE id = 1");
  if (!stmt.status("version").ok() || stmt.Step() != SQLITE_ROW) return 0;
  return static_cast<uint64_t>(stmt.ColumnInt64(0));
}

absl::Status Store::Ping() {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  Statement stmt(c.db, "SELECT 1");
  if (absl::Status s = stmt.status("ping"); !s.ok()) return s;
  int rc = stmt.Step();
  return rc == SQLITE_ROW ? absl::OkStatus() : SqliteError(c.db, rc, "ping");
}

absl::StatusOr<std::vector<std::pair<int, std::string>>> Store::AppliedMigrations() {
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

absl::StatusOr<Service> Store::GetService(absl::string_view id) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  return GetOne<Service>(c.db, "services", "id", id);
}

absl::StatusOr<Service> Store::GetServiceByName(absl::string_view name) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  return GetOne<Service>(c.db, "services", "name", name);
}

absl::StatusOr<Route> Store::GetRoute(absl::string_view id) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  return GetOne<Route>(c.db, "routes", "id", id);
}

absl::StatusOr<Route> Store::GetRouteByName(absl::string_view name) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  return GetOne<Route>(c.db, "routes", "name", name);
}

absl::StatusOr<ListPage<Service>> Store::ListServices(const ListQuery& query) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  return ListPageOf<Service>(c.db, "services", query, nullptr);
}

absl::StatusOr<ListPage<Route>> Store::ListRoutes(const ListQuery& query) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  return ListPageOf<Route>(c.db, "routes", query, nullptr);
}

absl::StatusOr<ListPage<Route>> Store::ListRoutesOfService(absl::string_view service_id,
                                                           const ListQuery& query) {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  std::string id(service_id);
  return ListPageOf<Route>(c.db, "routes", query, &id);
}

template <typename Entity>
absl::StatusOr<Entity> Store::WriteEntity(Entity entity, int mode) {
  using K = Kind<Entity>;
  if (entity.id().empty()) entity.set_id(NewUuid());
  // Never write a row that cannot be read back: protobuf serializes a proto3 string that is not
  // UTF-8 but refuses to parse it (the validator reports such strings first; this is the
  // last line). The timestamps set below cannot make a parsable entity unparsable.
  if (Entity check; !check.ParseFromString(entity.SerializeAsString())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing to write ", K::kTable, " entity ", absl::CHexEscape(entity.id()),
        ": its serialized form does not parse back (a string field is not valid UTF-8)"));
  }
  std::lock_guard<std::mutex> lock(writer_->mu);
  sqlite3* db = writer_->db;
  if (absl::Status s = Exec(db, "BEGIN IMMEDIATE"); !s.ok()) return s;

  auto body = [&]() -> absl::Status {
    std::optional<int64_t> existing_created_at;
    if (mode != kInsert) {
      Statement find(db, absl::StrCat("SELECT created_at FROM ", K::kTable, " WHERE id = ?").c_str());
      if (absl::Status s = find.status("find"); !s.ok()) return s;
      find.BindText(1, entity.id());
      int rc = find.Step();
      if (rc == SQLITE_ROW) {
        existing_created_at = find.ColumnInt64(0);
      } else if (rc != SQLITE_DONE) {
        return SqliteError(db, sqlite3_extended_errcode(db), "find");
      }
    }
    if (mode == kUpdate && !existing_created_at) {
      return absl::NotFoundError(absl::StrCat("no ", K::kTable, " entity with id '", entity.id(), "'"));
    }
    const int64_t now = clock_.NowSeconds();
    if (existing_created_at) {
      entity.set_created_at(*existing_created_at);
    } else if (entity.created_at() == 0) {
      entity.set_created_at(now);
    }
    entity.set_updated_at(now);

    const bool is_route = std::is_same_v<Entity, Route>;
    std::string sql;
    if (existing_created_at) {
      sql = absl::StrCat("UPDATE ", K::kTable,
                         " SET name = ?1, created_at = ?2, updated_at = ?3, tags = ?4, entity = ?5",
                         is_route ? ", service_id = ?7" : "", " WHERE id = ?6");
    } else {
      sql = absl::StrCat("INSERT INTO ", K::kTable, " (name, created_at, updated_at, tags, entity, id",
                         is_route ? ", service_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                                  : ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    }
    Statement write(db, sql.c_str());
    write.BindOptionalText(1, entity.has_name(), entity.name());
    write.BindInt64(2, entity.created_at());
    write.BindInt64(3, entity.updated_at());
    write.BindText(4, TagsColumn(entity.has_tags(), entity.tags()));
    write.BindBlob(5, entity.SerializeAsString());
    write.BindText(6, entity.id());
    if (is_route) write.BindOptionalText(7, K::HasServiceId(entity), K::ServiceId(entity));
    if (absl::Status s = Run(write, db, absl::StrCat("write ", K::kTable)); !s.ok()) return s;

    Statement bump(db, "UPDATE sync_meta SET version = version + 1 WHERE id = 1");
    if (absl::Status s = Run(bump, db, "bump version"); !s.ok()) return s;
    return Exec(db, "COMMIT");
  };
  if (absl::Status s = body(); !s.ok()) {
    (void)Exec(db, "ROLLBACK");
    return s;
  }
  return entity;
}

absl::StatusOr<bool> Store::DeleteById(absl::string_view table, absl::string_view id) {
  std::lock_guard<std::mutex> lock(writer_->mu);
  sqlite3* db = writer_->db;
  if (absl::Status s = Exec(db, "BEGIN IMMEDIATE"); !s.ok()) return s;
  bool deleted = false;
  auto body = [&]() -> absl::Status {
    Statement del(db, absl::StrCat("DELETE FROM ", table, " WHERE id = ?").c_str());
    del.BindText(1, id);
    if (absl::Status s = Run(del, db, absl::StrCat("delete from ", table)); !s.ok()) {
      if (GetStoreConflict(s) == StoreConflict::kForeignKeyMissing) {
        return WithConflict(absl::FailedPreconditionError(s.message()), StoreConflict::kReferenced);
      }
      return s;
    }
    deleted = sqlite3_changes(db) > 0;
    if (deleted) {
      Statement bump(db, "UPDATE sync_meta SET version = version + 1 WHERE id = 1");
      if (absl::Status s = Run(bump, db, "bump version"); !s.ok()) return s;
    }
    return Exec(db, "COMMIT");
  };
  if (absl::Status s = body(); !s.ok()) {
    (void)Exec(db, "ROLLBACK");
    return s;
  }
  return deleted;
}

absl::StatusOr<Service> Store::InsertService(Service s) { return WriteEntity(std::move(s), kInsert); }
absl::StatusOr<Service> Store::UpdateService(Service s) { return WriteEntity(std::move(s), kUpdate); }
absl::StatusOr<Service> Store::UpsertService(Service s) { return WriteEntity(std::move(s), kUpsert); }
absl::StatusOr<bool> Store::DeleteService(absl::string_view id) { return DeleteById("services", id); }
absl::StatusOr<Route> Store::InsertRoute(Route r) { return WriteEntity(std::move(r), kInsert); }
absl::StatusOr<Route> Store::UpdateRoute(Route r) { return WriteEntity(std::move(r), kUpdate); }
absl::StatusOr<Route> Store::UpsertRoute(Route r) { return WriteEntity(std::move(r), kUpsert); }
absl::StatusOr<bool> Store::DeleteRoute(absl::string_view id) { return DeleteById("routes", id); }

absl::StatusOr<StoredConfig> Store::ReadConfig() {
  Connection& c = ReadConnection();
  std::lock_guard<std::mutex> lock(c.mu);
  sqlite3* db = c.db;
  // One read transaction: the WAL snapshot is fixed at the first SELECT and kept until COMMIT.
  if (absl::Status s = Exec(db, "BEGIN"); !s.ok()) return s;
  StoredConfig out;
  auto body = [&]() -> absl::Status {
    Statement meta(db, "SELECT epoch, version FROM sync_meta WHERE id = 1");
    if (absl::Status s = meta.status("read sync_meta"); !s.ok()) return s;
    if (meta.Step() != SQLITE_ROW) return absl::DataLossError("sync_meta row missing");
    out.version.epoch = meta.ColumnBytes(0);
    out.version.version = static_cast<uint64_t>(meta.ColumnInt64(1));
    Statement services(db, "SELECT id, entity FROM services ORDER BY id");
    auto s_rows = ReadEntities<Service>(db, services, "services", &out.corrupt);
    if (!s_rows.ok()) return s_rows.status();
    out.config.services = std::move(*s_rows);
    Statement routes(db, "SELECT id, entity FROM routes ORDER BY id");
    auto r_rows = ReadEntities<Route>(db, routes, "routes", &out.corrupt);
    if (!r_rows.ok()) return r_rows.status();
    out.config.routes = std::move(*r_rows);
    return absl::OkStatus();
  };
  absl::Status s = body();
  (void)Exec(db, s.ok() ? "COMMIT" : "ROLLBACK");
  if (!s.ok()) return s;
  return out;
}

}  // namespace portico
