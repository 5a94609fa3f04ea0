#include "control_plane/store/postgres_store.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "control_plane/store/store_schema.h"
#include "google/protobuf/message.h"

namespace portico::cp {
namespace {

using google::protobuf::Message;

constexpr char kNotifyChannel[] = "portico_config";
// pg_advisory_xact_lock key held while the schema is migrated/created ("portico" in ASCII).
constexpr int64_t kSchemaLockKey = 0x706f727469636f;

// Schema migrations, applied in order at open (one transaction with the table creation, under
// an advisory lock), each recorded in schema_migrations. Append only. Entity tables are created
// from their descriptors (PostgresTableSql) after the migrations; a migration that changes a
// kind's table names it in `table` and is skipped (recorded as applied) when that table does not
// exist yet, since it is then created in its current shape. Ids and names of 1-3 are those of
// the SQLite store; on PostgreSQL, 1 creates only sync_meta (services and routes are created
// from their descriptors) and 2-3 are therefore always skipped on a new database.
using Migration = SchemaMigration;
const Migration kMigrations[] = {
    {1, "create_sync_meta_services_routes", R"sql(
CREATE TABLE sync_meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  epoch BYTEA NOT NULL,
  version BIGINT NOT NULL
);
)sql"},
    {2, "services_client_certificate_fk", R"sql(
ALTER TABLE services ADD COLUMN client_certificate_id TEXT COLLATE "C"
  CONSTRAINT services_client_certificate_id_fkey REFERENCES certificates (id) ON DELETE RESTRICT;
CREATE INDEX IF NOT EXISTS services_client_certificate_id_idx ON services (client_certificate_id);
)sql", "services"},
    {3, "upstreams_client_certificate_fk", R"sql(
ALTER TABLE upstreams ADD COLUMN client_certificate_id TEXT COLLATE "C"
  CONSTRAINT upstreams_client_certificate_id_fkey REFERENCES certificates (id) ON DELETE RESTRICT;
CREATE INDEX IF NOT EXISTS upstreams_client_certificate_id_idx ON upstreams (client_certificate_id);
)sql", "upstreams"},
    {4, "clustering_data_planes", R"sql(
CREATE TABLE clustering_data_planes (
  id TEXT COLLATE "C" PRIMARY KEY,
  hostname TEXT NOT NULL DEFAULT '',
  ip TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  config_hash TEXT NOT NULL DEFAULT '',
  config_version BIGINT NOT NULL DEFAULT 0,
  last_seen BIGINT NOT NULL DEFAULT 0,
  sync_status TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '',
  labels TEXT NOT NULL DEFAULT '{}',
  cert_expiry BIGINT NOT NULL DEFAULT 0,
  connected_since BIGINT NOT NULL DEFAULT 0,
  nack_count BIGINT NOT NULL DEFAULT 0,
  control_plane_id TEXT NOT NULL DEFAULT '',
  control_plane_hostname TEXT NOT NULL DEFAULT '',
  connected BOOLEAN NOT NULL DEFAULT false,
  purge_at BIGINT NOT NULL
);
CREATE INDEX clustering_data_planes_purge_at_idx ON clustering_data_planes (purge_at);
)sql"},
    // The change log of Store::ReadConfigChanges (store_schema.h), filled by the trigger
    // ChangeTriggerSql creates with the entity tables. It covers the versions made from now on.
    {5, "create_config_changes", R"sql(
ALTER TABLE sync_meta ADD COLUMN changes_floor BIGINT NOT NULL DEFAULT 0;
UPDATE sync_meta SET changes_floor = version;
CREATE TABLE config_changes (
  version BIGINT NOT NULL,
  kind TEXT COLLATE "C" NOT NULL,
  id TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (version, kind, id)
);
)sql"},
};

// Logs a row change of the trigger's table in config_changes under the version its transaction
// made (every versioned write bumps the version first).
constexpr char kChangeFunctionSql[] = R"sql(
CREATE OR REPLACE FUNCTION portico_log_config_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO config_changes (version, kind, id)
      SELECT m.version, TG_TABLE_NAME, OLD.id FROM sync_meta m WHERE m.id = 1 ON CONFLICT DO NOTHING;
  ELSE
    INSERT INTO config_changes (version, kind, id)
      SELECT m.version, TG_TABLE_NAME, NEW.id FROM sync_meta m WHERE m.id = 1 ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END
$fn$;
)sql";

// ReplaceConfig's transaction sets it to 'off <its txid>' (local to it): its rows are not logged.
// The txid in the value makes the switch work for that transaction only (a value set for a role,
// a database or a pooled session cannot stop the logging of other writes).
constexpr char kLogChangesSetting[] = "portico.log_changes";

// The trigger of an exported kind's table (kChangeFunctionSql).
std::string ChangeTriggerSql(const EntityDescriptor& kind) {
  return absl::StrCat("CREATE TRIGGER ", ChangeTriggerName(kind), " AFTER INSERT OR UPDATE OR DELETE ON ", kind.name(),
                      " FOR EACH ROW WHEN (current_setting('", kLogChangesSetting,
                      "', true) IS DISTINCT FROM 'off ' || txid_current()::text)"
                      " EXECUTE FUNCTION portico_log_config_change()");
}

// PostgresTableSql's CREATE TABLE (its CREATE INDEX statements: EntityIndexSql).
std::string CreateTableSql(const EntityDescriptor& kind) {
  const std::string& t = kind.name();
  std::string sql = absl::StrCat("CREATE TABLE IF NOT EXISTS ", t, " (\n  id TEXT COLLATE \"C\" PRIMARY KEY,\n");
  for (const FieldSpec* f : kind.unique_fields()) {
    absl::StrAppend(&sql, "  ", ColumnOf(*f), " TEXT CONSTRAINT ", t, "_", ColumnOf(*f), "_key UNIQUE,\n");
  }
  if (kind.has_cache_key()) {
    absl::StrAppend(&sql, "  ", kCacheKeyColumn, " TEXT CONSTRAINT ", t, "_", kCacheKeyColumn, "_key UNIQUE,\n");
  }
  absl::StrAppend(&sql, "  created_at BIGINT NOT NULL,\n  updated_at BIGINT NOT NULL,\n");
  for (const FieldSpec* f : kind.stored_foreign_keys()) {
    absl::StrAppend(&sql, "  ", ColumnOf(*f), " TEXT COLLATE \"C\" CONSTRAINT ", t, "_", ColumnOf(*f), "_fkey REFERENCES ",
                    f->references, " (id) ON DELETE ", f->on_delete == OnDelete::kCascade ? "CASCADE" : "RESTRICT", ",\n");
  }
  absl::StrAppend(&sql, "  tags TEXT NOT NULL DEFAULT '',\n  entity BYTEA NOT NULL\n);\n");
  return sql;
}

// Text PostgreSQL can hold in a TEXT column of a UTF8 database: valid UTF-8 without NUL.
bool StorableText(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    int n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (int k = 1; k < n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n;
  }
  return true;
}

// `text` as a TEXT value: itself, or escaped (\xNN) when PostgreSQL could not hold it (a DP's
// Hello may carry any bytes; the row is still recorded).
std::string StorableOrEscaped(const std::string& text) {
  return StorableText(text) ? text : absl::CHexEscape(text);
}

// Query parameters: text, or bytes sent in binary (BYTEA), or NULL.
class Params {
 public:
  Params& Text(absl::string_view v) {
    values_.emplace_back(std::string(v));
    formats_.push_back(0);
    return *this;
  }
  Params& OptionalText(const std::optional<std::string>& v) {
    values_.push_back(v);
    formats_.push_back(0);
    return *this;
  }
  Params& Int(int64_t v) { return Text(absl::StrCat(v)); }
  Params& Bool(bool v) { return Text(v ? "true" : "false"); }
  Params& Bytes(absl::string_view v) {
    values_.emplace_back(std::string(v));
    formats_.push_back(1);
    return *this;
  }
  int size() const { return static_cast<int>(values_.size()); }
  // Views valid while this object lives and is not changed.
  std::vector<const char*> pointers() const {
    std::vector<const char*> out;
    for (const auto& v : values_) out.push_back(v ? v->data() : nullptr);
    return out;
  }
  std::vector<int> lengths() const {
    std::vector<int> out;
    for (const auto& v : values_) out.push_back(v ? static_cast<int>(v->size()) : 0);
    return out;
  }
  const int* formats() const { return formats_.data(); }

 private:
  std::vector<std::optional<std::string>> values_;
  std::vector<int> formats_;
};

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// Columns of a binary-format result.
absl::string_view Bytes(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return {};
  return absl::string_view(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
}
int64_t Int(const PGresult* r, int row, int col) {
  absl::string_view b = Bytes(r, row, col);
  uint64_t v = 0;
  for (unsigned char c : b) v = (v << 8) | c;
  // Sign-extend 2- and 4-byte integers.
  if (b.size() == 4) return static_cast<int32_t>(static_cast<uint32_t>(v));
  if (b.size() == 2) return static_cast<int16_t>(static_cast<uint16_t>(v));
  return static_cast<int64_t>(v);
}
bool Boolean(const PGresult* r, int row, int col) {
  absl::string_view b = Bytes(r, row, col);
  return !b.empty() && b[0] != 0;
}

bool IsConnectionError(absl::string_view sqlstate) {
  return absl::StartsWith(sqlstate, "08") || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03";
}

// One libpq connection behind a mutex; reset on the next use once found broken.
struct Connection {
  std::mutex mu;
  PGconn* conn = nullptr;  // guarded by mu
  bool broken = false;     // guarded by mu: reset before the next use
  int64_t txid = 0;        // guarded by mu: the open versioned write's txid_current(), 0 if none
  int64_t backend_pid = 0; // guarded by mu: the server process of that write (pg_backend_pid())
  ~Connection() {
    if (conn != nullptr) PQfinish(conn);
  }
};

// Opens `conninfo` with a 5 s connect timeout, TCP keepalives and a 10 s TCP user timeout (a
// server gone without a word is noticed in about 25 s, not at the kernel's default of hours) and
// the session timeouts of PostgresSessionOptions, unless it sets its own. Never null.
PGconn* Connect(const std::string& conninfo) {
  const std::string options = PostgresSessionOptions(conninfo);
  // The conninfo is expanded after these, so its own values win; `options` (defaults followed by
  // the conninfo's own) comes after it.
  const char* keywords[] = {"connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
                            "keepalives_count", "tcp_user_timeout", "application_name", "dbname",
                            "options",          nullptr};
  const char* values[] = {"5",  "1", "10", "5", "3", "10000", "portico-cp", conninfo.c_str(), options.c_str(),
                          nullptr};
  return PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
}

// libpq's multi-line messages on one line (they end up in logs and Admin API answers).
std::string OneLine(std::string m) {
  absl::StripTrailingAsciiWhitespace(&m);
  std::string out;
  bool space = false;
  for (char c : m) {
    if (c == '\n' || c == '\t' || c == '\r') {
      space = true;
      continue;
    }
    if (space && !out.empty() && out.back() != ' ') out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string ConnectionMessage(PGconn* conn) { return OneLine(conn ? PQerrorMessage(conn) : "out of memory"); }

// Ready to use: connected (opened or reset when needed), or Unavailable. REQUIRES c.mu.
absl::Status Ready(Connection& c, const std::string& conninfo) {
  if (c.conn == nullptr) {
    c.conn = Connect(conninfo);
  } else if (c.broken || PQstatus(c.conn) != CONNECTION_OK || PQconsumeInput(c.conn) == 0 ||
             PQstatus(c.conn) != CONNECTION_OK) {
    // PQconsumeInput reads what the server sent an idle connection without blocking: a server
    // that closed it (restart, pg_terminate_backend) is noticed here, before a statement fails.
    PQreset(c.conn);
  }
  if (PQstatus(c.conn) != CONNECTION_OK) {
    c.broken = true;
    return absl::UnavailableError(absl::StrCat("cannot reach PostgreSQL: ", ConnectionMessage(c.conn)));
  }
  // Notices ("... already exists, skipping", the server's goodbye) are not for stderr.
  PQsetNoticeProcessor(c.conn, [](void*, const char*) {}, nullptr);
  c.broken = false;
  return absl::OkStatus();
}

// The status of a failed statement (`r` may be null). Conflicts carry their StoreConflict
// payload: a unique violation names the column (the subject), a foreign-key violation the
// referencing table's column (subject "table.column", resolved by the caller).
absl::Status PgError(Connection& c, const PGresult* r, absl::string_view what) {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string sqlstate = state ? state : "";
  std::string message = r ? PQresultErrorMessage(r) : ConnectionMessage(c.conn);
  if (message.empty()) message = ConnectionMessage(c.conn);
  message = absl::StrCat(what, ": ", OneLine(message));
  if (PQstatus(c.conn) != CONNECTION_OK || IsConnectionError(sqlstate) || (r == nullptr) ||
      (sqlstate.empty() && PQresultStatus(r) == PGRES_FATAL_ERROR)) {
    c.broken = true;
    return absl::UnavailableError(absl::StrCat("PostgreSQL unreachable: ", message));
  }
  auto field = [&](int code) -> std::string {
    const char* v = PQresultErrorField(r, code);
    return v ? v : "";
  };
  if (sqlstate == "23505") {
    const std::string table = field(PG_DIAG_TABLE_NAME);
    const std::string constraint = field(PG_DIAG_CONSTRAINT_NAME);
    if (absl::EndsWith(constraint, "_pkey")) {
      return WithStoreConflict(absl::AlreadyExistsError(message), StoreConflict::kPrimaryKey, "id");
    }
    // "<table>_<column>_key" (named so by PostgresTableSql).
    absl::string_view column = constraint;
    absl::ConsumePrefix(&column, absl::StrCat(table, "_"));
    absl::ConsumeSuffix(&column, "_key");
    return WithStoreConflict(absl::AlreadyExistsError(message), StoreConflict::kUniqueName, column);
  }
  if (sqlstate == "23503") {
    const std::string table = field(PG_DIAG_TABLE_NAME);
    const std::string constraint = field(PG_DIAG_CONSTRAINT_NAME);
    absl::string_view column = constraint;
    absl::ConsumePrefix(&column, absl::StrCat(table, "_"));
    absl::ConsumeSuffix(&column, "_fkey");
    return WithStoreConflict(absl::FailedPreconditionError(message), StoreConflict::kForeignKeyMissing,
                             absl::StrCat(table, ".", column));
  }
  if (absl::StartsWith(sqlstate, "22")) return absl::InvalidArgumentError(message);
  // Serialization failures and deadlocks (40xxx), no more connections (53300), shutdown/admin
  // and statement_timeout (57xxx), lock_timeout (55P03), idle_in_transaction_session_timeout
  // (25P03): retryable, nothing was written.
  if (absl::StartsWith(sqlstate, "40") || absl::StartsWith(sqlstate, "53") || absl::StartsWith(sqlstate, "57") ||
      sqlstate == "55P03" || sqlstate == "25P03") {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

// Runs `sql` with `params`, results in binary. REQUIRES c.mu and Ready(c).
absl::StatusOr<Result> Exec(Connection& c, const std::string& sql, const Params& params = Params(),
                            absl::string_view what = "") {
  std::vector<const char*> values = params.pointers();
  std::vector<int> lengths = params.lengths();
  Result r(PQexecParams(c.conn, sql.c_str(), params.size(), nullptr, values.data(), lengths.data(), params.formats(),
                        /*resultFormat=*/1));
  const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
  return PgError(c, r.get(), what.empty() ? absl::string_view(sql).substr(0, 60) : what);
}

// Several statements without parameters (DDL). REQUIRES c.mu and Ready(c).
absl::Status ExecScript(Connection& c, const std::string& sql) {
  Result r(PQexec(c.conn, sql.c_str()));
  const ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return absl::OkStatus();
  return PgError(c, r.get(), absl::string_view(sql).substr(0, 80));
}

// The transaction `txid`'s fate after its COMMIT went unanswered: txid_status() on a new
// connection ("committed", "aborted", "in progress"), or why it cannot be known. REQUIRES c.mu.
absl::StatusOr<std::string> TxidStatus(Connection& c, const std::string& conninfo, int64_t txid) {
  if (absl::Status s = Ready(c, conninfo); !s.ok()) return s;
  absl::StatusOr<Result> r = Exec(c, "SELECT txid_status($1)", Params().Int(txid), "txid_status");
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) != 1 || PQgetisnull(r->get(), 0, 0)) return absl::NotFoundError("txid too old");
  return std::string(Bytes(r->get(), 0, 0));
}

// Runs `body` in the transaction just begun: COMMIT when it succeeds, ROLLBACK otherwise. A
// versioned write (c.txid set) whose connection was lost during COMMIT is looked up on a new
// connection: committed is success. A VersionFence on this thread learns how the
// transaction ended. REQUIRES c.mu.
template <typename Body>
absl::Status InOpenTransaction(Connection& c, const std::string& conninfo, Body body) {
  absl::Status s = body();
  if (s.ok()) {
    s = ExecScript(c, "COMMIT");
    if (!s.ok() && c.broken && c.txid != 0) {
      const int64_t txid = c.txid;
      absl::StatusOr<std::string> fate = TxidStatus(c, conninfo, txid);
      if (fate.ok() && *fate == "in progress" && c.backend_pid != 0) {
        // The COMMIT did not reach the server (its process still waits, holding the version
        // row): end that process (waiting up to 5 s for it to exit), so the write is known
        // aborted now rather than left to commit or not later.
        absl::StatusOr<Result> ended =
            Exec(c, "SELECT pg_terminate_backend($1::integer, 5000)", Params().Int(c.backend_pid), "terminate");
        if (!ended.ok()) {
          PORTICO_LOG(kWarn, "store", "ending the server process ", c.backend_pid, " of transaction ", txid,
                      " whose COMMIT was lost: ", ended.status().message());
        }
        fate = TxidStatus(c, conninfo, txid);
      }
      if (!fate.ok()) {
        PORTICO_LOG(kWarn, "store", "the connection was lost during COMMIT and whether transaction ", txid,
                    " committed is unknown: ", fate.status().message());
      }
      s = PostgresCommitOutcome(s, fate);
    }
  }
  if (!s.ok() && !c.broken) (void)ExecScript(c, "ROLLBACK");
  if (VersionFence* fence = VersionFence::Active(); fence != nullptr) fence->TransactionEnded(s.ok());
  c.txid = 0;
  c.backend_pid = 0;
  return s;
}

// Runs `body` in a transaction opened with `begin`: COMMIT when it succeeds, ROLLBACK otherwise.
// A connection found closed by the server at BEGIN (nothing sent yet) is reset and BEGIN tried
// once more. REQUIRES c.mu.
template <typename Body>
absl::Status InTransaction(Connection& c, const std::string& conninfo, const char* begin, Body body) {
  c.txid = 0;
  absl::Status s = ExecScript(c, begin);
  if (!s.ok() && c.broken) {
    if (s = Ready(c, conninfo); s.ok()) s = ExecScript(c, begin);
  }
  if (!s.ok()) return s;
  return InOpenTransaction(c, conninfo, body);
}

// A read of one statement; a connection found closed by the server is reset and the read tried
// once more. REQUIRES c.mu and Ready(c).
absl::StatusOr<Result> Read(Connection& c, const std::string& conninfo, const std::string& sql,
                            const Params& params = Params(), absl::string_view what = "") {
  absl::StatusOr<Result> r = Exec(c, sql, params, what);
  if (r.ok() || !c.broken) return r;
  if (absl::Status s = Ready(c, conninfo); !s.ok()) return s;
  return Exec(c, sql, params, what);
}

// The first statement of every versioned write: bumps the version, locking sync_meta's row for
// the rest of the transaction (writers of every CP queue here), and has NOTIFY sent on commit.
// The change log's trigger reads the version it made. Prunes the change log every
// ChangeLogRetention::prune_every versions.
absl::Status BumpVersion(Connection& c) {
  absl::StatusOr<Result> r =
      Exec(c, "UPDATE sync_meta SET version = version + 1 WHERE id = 1 RETURNING version, txid_current(), pg_backend_pid()",
           Params(), "bump version");
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) != 1) return absl::DataLossError("sync_meta row missing");
  const int64_t version = Int(r->get(), 0, 0);
  // Under a VersionFence only from its expected version: the row lock taken just now makes the
  // check hold until COMMIT (a concurrent writer of any CP waits here, then sees its bump).
  if (VersionFence* fence = VersionFence::Active(); fence != nullptr) {
    if (static_cast<uint64_t>(version) != fence->expected() + 1) {
      return fence->Refuse(static_cast<uint64_t>(version) - 1);  // rolled back by the caller
    }
    fence->Bumped(static_cast<uint64_t>(version));
  }
  c.txid = Int(r->get(), 0, 1);  // for a COMMIT that goes unanswered
  c.backend_pid = Int(r->get(), 0, 2);
  if (std::optional<uint64_t> up_to = ChangeLogPruneUpTo(static_cast<uint64_t>(version))) {
    const Params p = Params().Int(static_cast<int64_t>(*up_to));
    if (absl::StatusOr<Result> d = Exec(c, "DELETE FROM config_changes WHERE version <= $1", p, "prune config_changes");
        !d.ok()) {
      return d.status();
    }
    if (absl::StatusOr<Result> f = Exec(c, "UPDATE sync_meta SET changes_floor = GREATEST(changes_floor, $1) WHERE id = 1",
                                        p, "raise changes_floor");
        !f.ok()) {
      return f.status();
    }
  }
  absl::StatusOr<Result> n =
      Exec(c, "SELECT pg_notify($1, $2)", Params().Text(kNotifyChannel).Int(version), "notify");
  return n.status();
}

using Table = EntityTable;

class PostgresStore final : public Store {
 public:
  PostgresStore(const Clock& clock, const EntityRegistry& kinds, std::string conninfo)
      : clock_(clock), kinds_(kinds), conninfo_(std::move(conninfo)) {}

  absl::Status Open();

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
  absl::Status SaveDataPlanes(const std::vector<StoredDataPlane>& rows) override;
  absl::StatusOr<std::vector<StoredDataPlane>> ListDataPlaneRows(int64_t now) override;
  absl::StatusOr<int64_t> PurgeDataPlanes(int64_t now) override;
  ChangeWait WaitForChange(absl::Duration timeout) override;
  absl::StatusOr<ListPage<TaggedEntity>> ListTagged(const TagQuery& query) override;

 private:
  absl::Status Migrate();
  absl::Status CreateEntityTables();
  absl::StatusOr<const Table*> TableOf(const EntityDescriptor& kind) const { return FindEntityTable(tables_, kind); }
  // Rows of `SELECT id, entity ...`; a row that does not parse fails (CorruptRowError) unless
  // `corrupt` is given: then it is listed there and skipped. At most `limit` entities (0 = all).
  absl::StatusOr<std::vector<EntityPtr>> ParseRows(const PGresult* r, const EntityDescriptor& kind,
                                                   std::vector<CorruptRow>* corrupt, size_t limit);
  absl::StatusOr<EntityPtr> PrepareWrite(const EntityDescriptor& kind, const Message& input) const;
  absl::Status WriteInTransaction(Connection& c, const Table& table, Message* entity, WriteMode mode,
                                  bool keep_timestamps = false);
  absl::StatusOr<bool> DeleteInTransaction(Connection& c, const Table& table, absl::string_view id);
  // A kForeignKeyMissing status of PgError ("table.column" subject) with the field name as subject.
  absl::Status ForeignKeyField(const absl::Status& s) const;
  // Listening on kNotifyChannel, or false. REQUIRES listener_.mu.
  bool Listening();

  const Clock& clock_;
  const EntityRegistry& kinds_;
  const std::string conninfo_;
  EntityTables tables_;
  Connection writer_, reader_, listener_;
  std::string epoch_;
};

absl::Status PostgresStore::Open() {
  std::lock_guard<std::mutex> lock(writer_.mu);
  if (absl::Status s = Ready(writer_, conninfo_); !s.ok()) return s;
  absl::Status s = InTransaction(writer_, conninfo_, "BEGIN", [&]() -> absl::Status {
    // CPs starting together on an empty database: one creates the schema, the others wait here
    // and then find it done.
    if (absl::StatusOr<Result> r = Exec(writer_, "SELECT pg_advisory_xact_lock($1)", Params().Int(kSchemaLockKey));
        !r.ok()) {
      return r.status();
    }
    if (absl::Status st = Migrate(); !st.ok()) return st;
    return CreateEntityTables();
  });
  if (!s.ok()) return s;
  absl::StatusOr<Result> r = Exec(writer_, "SELECT epoch FROM sync_meta WHERE id = 1");
  if (!r.ok()) return r.status();
  if (PQntuples(r->get()) != 1) return absl::DataLossError("sync_meta row missing");
  epoch_ = std::string(Bytes(r->get(), 0, 0));
  std::lock_guard<std::mutex> listen_lock(listener_.mu);
  if (!Listening()) PORTICO_LOG(kWarn, "store", "cannot LISTEN for changes yet (polling until it can)");
  return absl::OkStatus();
}

absl::Status PostgresStore::Migrate() {
  if (absl::Status s = ExecScript(writer_,
                                  "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                  " id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)");
      !s.ok()) {
    return s;
  }
  absl::StatusOr<Result> max = Exec(writer_, "SELECT COALESCE(MAX(id), 0) FROM schema_migrations");
  if (!max.ok()) return max.status();
  const int64_t applied = Int(max->get(), 0, 0);
  for (const Migration& m : kMigrations) {
    if (m.id <= applied) continue;
    bool run = true;
    if (m.table != nullptr) {
      absl::StatusOr<Result> exists = Exec(writer_, "SELECT to_regclass($1) IS NOT NULL", Params().Text(m.table));
      if (!exists.ok()) return exists.status();
      run = Boolean(exists->get(), 0, 0);
    }
    absl::Status s = run ? ExecScript(writer_, m.sql) : absl::OkStatus();
    if (s.ok()) {
      s = Exec(writer_, "INSERT INTO schema_migrations (id, name, applied_at) VALUES ($1, $2, $3)",
               Params().Int(m.id).Text(m.name).Int(clock_.NowSeconds()))
              .status();
    }
    if (s.ok() && m.id == 1) {
      // The epoch is born with the database.
      s = Exec(writer_, "INSERT INTO sync_meta (id, epoch, version) VALUES (1, $1, 0)", Params().Bytes(RandomBytes(16)))
              .status();
    }
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("migration ", m.id, " (", m.name, "): ", s.message()));
    PORTICO_LOG(kInfo, "store", "applied migration ", m.id, " ", m.name);
  }
  return absl::OkStatus();
}

absl::Status PostgresStore::CreateEntityTables() {
  tables_ = DeriveEntityTables(kinds_, "$");
  // Parents first (the registry's order), so every REFERENCES names an existing table.
  for (const EntityDescriptor* kind : kinds_.kinds()) {
    if (absl::Status s = ExecScript(writer_, CreateTableSql(*kind)); !s.ok()) return s;
  }
  // An existing table must have what the descriptor needs (keys added later need a migration).
  for (const EntityDescriptor* kind : kinds_.kinds()) {
    absl::StatusOr<Result> info = Exec(writer_,
                                       "SELECT column_name::text FROM information_schema.columns"
                                       " WHERE table_schema = current_schema() AND table_name = $1",
                                       Params().Text(kind->name()));
    if (!info.ok()) return info.status();
    std::set<std::string> have;
    for (int i = 0; i < PQntuples(info->get()); ++i) have.insert(std::string(Bytes(info->get(), i, 0)));
    if (absl::Status s = CheckEntityColumns(tables_[kind], have, "control_plane/store/postgres_store.cc"); !s.ok()) {
      return s;
    }
  }
  for (const EntityDescriptor* kind : kinds_.kinds()) {
    if (absl::Status s = ExecScript(writer_, EntityIndexSql(*kind)); !s.ok()) return s;
  }
  // The change log's triggers: created when missing (a CREATE TRIGGER locks its table against
  // writes; a CP start normally finds them all).
  absl::StatusOr<Result> function = Exec(writer_,
                                         "SELECT 1 FROM pg_proc WHERE proname = 'portico_log_config_change'"
                                         " AND pronamespace = current_schema()::regnamespace");
  if (!function.ok()) return function.status();
  if (PQntuples(function->get()) == 0) {  // CREATE OR REPLACE would need to own it
    if (absl::Status s = ExecScript(writer_, kChangeFunctionSql); !s.ok()) return s;
  }
  absl::StatusOr<Result> triggers = Exec(writer_,
                                         "SELECT t.tgname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                                         " WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal");
  if (!triggers.ok()) return triggers.status();
  std::set<std::string> have;
  for (int i = 0; i < PQntuples(triggers->get()); ++i) have.insert(std::string(Bytes(triggers->get(), i, 0)));
  for (const EntityDescriptor* kind : kinds_.kinds()) {
    if (!kind->exported() || have.count(ChangeTriggerName(*kind)) > 0) continue;
    if (absl::Status s = ExecScript(writer_, ChangeTriggerSql(*kind)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

uint64_t PostgresStore::CurrentVersion() {
  std::lock_guard<std::mutex> lock(reader_.mu);
  if (!Ready(reader_, conninfo_).ok()) return 0;
  absl::StatusOr<Result> r = Read(reader_, conninfo_, "SELECT version FROM sync_meta WHERE id = 1");
  if (!r.ok() || PQntuples(r->get()) != 1) return 0;
  return static_cast<uint64_t>(Int(r->get(), 0, 0));
}

absl::Status PostgresStore::Ping() {
  std::lock_guard<std::mutex> lock(reader_.mu);
  if (absl::Status s = Ready(reader_, conninfo_); !s.ok()) return s;
  return Read(reader_, conninfo_, "SELECT 1", Params(), "ping").status();
}

absl::Status PostgresStore::Close() {
  for (Connection* c : {&listener_, &reader_, &writer_}) {
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->conn != nullptr) PQfinish(c->conn);
    c->conn = nullptr;
    c->broken = false;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<int, std::string>>> PostgresStore::AppliedMigrations() {
  std::lock_guard<std::mutex> lock(reader_.mu);
  if (absl::Status s = Ready(reader_, conninfo_); !s.ok()) return s;
  absl::StatusOr<Result> r = Read(reader_, conninfo_, "SELECT id, name FROM schema_migrations ORDER BY id");
  if (!r.ok()) return r.status();
  std::vector<std::pair<int, std::string>> out;
  for (int i = 0; i < PQntuples(r->get()); ++i) {
    out.emplace_back(static_cast<int>(Int(r->get(), i, 0)), std::string(Bytes(r->get(), i, 1)));
  }
  return out;
}

absl::StatusOr<std::vector<EntityPtr>> PostgresStore::ParseRows(const PGresult* r, const EntityDescriptor& kind,
                                                                std::vector<CorruptRow>* corrupt, size_t limit) {
  std::vector<EntityPtr> out;
  for (int i = 0; i < PQntuples(r) && (limit == 0 || out.size() < limit); ++i) {
    if (absl::Status s = AppendEntityRow(kind, Bytes(r, i, 0), Bytes(r, i, 1), corrupt, &out); !s.ok()) return s;
  }
  return out;
}

absl::StatusOr<EntityPtr> PostgresStore::GetEntityByField(const EntityDescriptor& kind, absl::string_view field,
                                                          absl::string_view value) {
  absl::StatusOr<const Table*> table = TableOf(kind);
  if (!table.ok()) return table.status();
  absl::StatusOr<std::string> column = LookupColumn(kind, field);
  if (!column.ok()) return column.status();
  auto not_found = [&] {
    return absl::NotFoundError(absl::StrCat("no ", kind.name(), " entity with ", field, " '", value, "'"));
  };
  if (!StorableText(value)) return not_found();  // no stored row can have it
  std::lock_guard<std::mutex> lock(reader_.mu);
  if (absl::Status s = Ready(reader_, conninfo_); !s.ok()) return s;
  absl::StatusOr<Result> r =
      Read(reader_, conninfo_, absl::StrCat("SELECT id, entity FROM ", kind.name(), " WHERE ", *column, " = $1"), Params().Text(value),
           "select");
  if (!r.ok()) return r.status();
  absl::StatusOr<std::vector<EntityPtr>> rows = ParseRows(r->get(), kind, nullptr, 1);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return not_found();
  return std::move(rows->front());
}

absl::StatusOr<ListPage<EntityPtr>> PostgresStore::ListEntities(const EntityDescriptor& kind, const ListQuery& query) {
  absl::StatusOr<const Table*> table = TableOf(kind);
  if (!table.ok()) return table.status();
  ListPage<EntityPtr> page;
  absl::StatusOr<const FieldSpec*> parent_key = ParentForeignKey(kind, query);
  if (!parent_key.ok()) return parent_key.status();
  const FieldSpec* fk = *parent_key;
  if (fk != nullptr && !StorableText(query.parent_id)) return page;  // no stored row references it
  if (!StorableText(query.after_id)) return page;  // no stored id is like it: a cursor of no list
  // Tags that no stored row can hold match nothing: ALL of them then matches nothing, ANY of
  // them only through the others.
  std::vector<std::string> tags;
  for (const auto& tag : query.tags) {
    if (StorableText(tag)) {
      tags.push_back(TagNeedle(tag));
    } else if (!query.tags_any) {
      return page;
    }
  }
  if (!query.tags.empty() && tags.empty()) return page;
  // Corrupt rows are skipped, so rows are fetched in chunks (keyset on id) until the page has
  // size + 1 entities or the rows run out.
  const int size = query.size > 0 ? query.size : 100;
  const int chunk = size + 1;
  std::string sql = absl::StrCat("SELECT id, entity FROM ", kind.name(), " WHERE id > $1");
  int index = 2;
  if (fk != nullptr) absl::StrAppend(&sql, " AND ", ColumnOf(*fk), " = $", index++);
  if (!tags.empty()) {
    std::vector<std::string> terms;
    for (size_t i = 0; i < tags.size(); ++i) terms.push_back(absl::StrCat("strpos(tags, $", index++, ") > 0"));
    absl::StrAppend(&sql, " AND (", absl::StrJoin(terms, query.tags_any ? " OR " : " AND "), ")");
  }
  absl::StrAppend(&sql, " ORDER BY id LIMIT $", index);
  auto params_after = [&](const std::string& after) {
    Params p;
    p.Text(after);
    if (fk != nullptr) p.Text(query.parent_id);
    for (const std::string& tag : tags) p.Text(tag);
    p.Int(chunk);
    return p;
  };
  std::vector<CorruptRow> skipped;
  std::vector<EntityPtr> entities;
  {
    std::lock_guard<std::mutex> lock(reader_.mu);
    if (absl::Status s = Ready(reader_, conninfo_); !s.ok()) return s;
    std::string after = query.after_id;
    while (true) {
      absl::StatusOr<Result> r = Read(reader_, conninfo_, sql, params_after(after), "list");
      if (!r.ok()) return r.status();
      const int n = PQntuples(r->get());
      absl::StatusOr<std::vector<EntityPtr>> rows =
          ParseRows(r->get(), kind, &skipped, static_cast<size_t>(size) + 1 - entities.size());
      if (!rows.ok()) return rows.status();
      for (EntityPtr& e : *rows) entities.push_back(std::move(e));
      if (entities.size() > static_cast<size_t>(size) || n < chunk) break;
      after = std::string(Bytes(r->get(), n - 1, 0));
    }
  }
  LogSkippedRows(skipped);
  return PageOf(std::move(entities), static_cast<size_t>(size));
}

absl::StatusOr<EntityPtr> PostgresStore::PrepareWrite(const EntityDescriptor& kind, const Message& input) const {
  absl::StatusOr<EntityPtr> prepared = PrepareEntityWrite(kind, input);
  if (!prepared.ok()) return prepared.status();
  EntityPtr entity = *std::move(prepared);
  // Text parameters reach PostgreSQL NUL-terminated: a column value with a NUL would be cut short
  // (another row's key, a wrong lookup). The entity BYTEA keeps any byte; its columns cannot.
  auto has_nul = [](absl::string_view v) { return v.find('\0') != absl::string_view::npos; };
  std::string bad_field;
  if (has_nul(kind.Id(*entity))) bad_field = "id";
  for (const FieldSpec* f : kind.unique_fields()) {
    if (std::optional<std::string> v = kind.Text(*entity, *f); bad_field.empty() && v && has_nul(*v)) bad_field = f->name;
  }
  for (const FieldSpec* f : kind.stored_foreign_keys()) {
    if (std::optional<std::string> v = kind.Text(*entity, *f); bad_field.empty() && v && has_nul(*v)) bad_field = f->name;
  }
  if (bad_field.empty()) {
    for (const std::string& tag : kind.Tags(*entity)) {
      if (has_nul(tag)) bad_field = "tags";
    }
  }
  if (bad_field.empty() && kind.has_cache_key() && has_nul(kind.CacheKey(*entity))) bad_field = kCacheKeyColumn;
  if (!bad_field.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("refusing to write ", kind.name(), " entity ",
                                                   absl::CHexEscape(kind.Id(*entity)), ": its ", bad_field,
                                                   " contains a NUL character, which PostgreSQL text cannot hold"));
  }
  return entity;
}

absl::Status PostgresStore::ForeignKeyField(const absl::Status& s) const {
  // Subject "table.column" from PgError: the field of that table's kind whose column it is.
  const std::string subject = StoreConflictSubject(s);
  std::pair<std::string, std::string> parts = absl::StrSplit(subject, absl::MaxSplits('.', 1));
  std::string name;
  if (const EntityDescriptor* kind = kinds_.Find(parts.first); kind != nullptr) {
    for (const FieldSpec* f : kind->stored_foreign_keys()) {
      if (ColumnOf(*f) == parts.second) name = f->name;
    }
  }
  return WithStoreConflict(s, StoreConflict::kForeignKeyMissing, name);
}

absl::Status PostgresStore::WriteInTransaction(Connection& c, const Table& table, Message* entity, WriteMode mode,
                                               bool keep_timestamps) {
  const EntityDescriptor& kind = *table.kind;
  const std::string id = kind.Id(*entity);
  std::optional<int64_t> existing_created_at;
  if (mode != WriteMode::kInsert) {
    absl::StatusOr<Result> find =
        Exec(c, absl::StrCat("SELECT created_at FROM ", kind.name(), " WHERE id = $1"), Params().Text(id), "find");
    if (!find.ok()) return find.status();
    if (PQntuples(find->get()) > 0) existing_created_at = Int(find->get(), 0, 0);
  }
  if (mode == WriteMode::kUpdate && !existing_created_at) {
    return absl::NotFoundError(absl::StrCat("no ", kind.name(), " entity with id '", id, "'"));
  }
  const EntityTimes times = StampTimes(kind, entity, existing_created_at, keep_timestamps, clock_.NowSeconds());

  Params params;
  params.Text(id).Int(times.created_at).Int(times.updated_at).Text(TagsColumn(kind.Tags(*entity))).Bytes(entity->SerializeAsString());
  for (const FieldSpec* key : table.keys) params.OptionalText(kind.Text(*entity, *key));
  if (kind.has_cache_key()) params.Text(kind.CacheKey(*entity));
  absl::StatusOr<Result> r =
      Exec(c, existing_created_at ? table.update_sql : table.insert_sql, params, absl::StrCat("write ", kind.name()));
  if (!r.ok()) {
    if (GetStoreConflict(r.status()) == StoreConflict::kForeignKeyMissing) return ForeignKeyField(r.status());
    return r.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PostgresStore::DeleteInTransaction(Connection& c, const Table& table, absl::string_view id) {
  const EntityDescriptor& kind = *table.kind;
  absl::StatusOr<Result> r = Exec(c, absl::StrCat("DELETE FROM ", kind.name(), " WHERE id = $1"), Params().Text(id),
                                  absl::StrCat("delete from ", kind.name()));
  if (!r.ok()) {
    if (GetStoreConflict(r.status()) == StoreConflict::kForeignKeyMissing) {
      // The violated key belongs to the referencing table: that kind is the subject.
      const std::string subject = StoreConflictSubject(r.status());
      return WithStoreConflict(absl::FailedPreconditionError(r.status().message()), StoreConflict::kReferenced,
                               subject.substr(0, subject.find('.')));
    }
    return r.status();
  }
  const char* tuples = PQcmdTuples(r->get());
  int64_t n = 0;
  return absl::SimpleAtoi(tuples ? tuples : "0", &n) && n > 0;
}

absl::StatusOr<EntityPtr> PostgresStore::WriteEntity(const EntityDescriptor& kind, const Message& input, WriteMode mode) {
  absl::StatusOr<const Table*> found = TableOf(kind);
  if (!found.ok()) return found.status();
  absl::StatusOr<EntityPtr> entity = PrepareWrite(kind, input);
  if (!entity.ok()) return entity.status();
  std::lock_guard<std::mutex> lock(writer_.mu);
  if (absl::Status s = Ready(writer_, conninfo_); !s.ok()) return s;
  absl::Status written = InTransaction(writer_, conninfo_, "BEGIN", [&]() -> absl::Status {
    if (absl::Status s = BumpVersion(writer_); !s.ok()) return s;
    return WriteInTransaction(writer_, **found, entity->get(), mode);
  });
  if (!written.ok()) return written;
  return *std::move(entity);
}

absl::StatusOr<bool> PostgresStore::DeleteEntity(const EntityDescriptor& kind, absl::string_view id) {
  absl::StatusOr<const Table*> found = TableOf(kind);
  if (!found.ok()) return found.status();
  if (!StorableText(id)) return false;
  std::lock_guard<std::mutex> lock(writer_.mu);
  if (absl::Status s = Ready(writer_, conninfo_); !s.ok()) return s;
  bool deleted = false;
  // Nothing deleted: rolled back, so the version bump goes too.
  const absl::Status nothing = absl::CancelledError("nothing deleted");
  absl::Status status = InTransaction(writer_, conninfo_, "BEGIN", [&]() -> absl::Status {
    if (absl::Status s = BumpVersion(writer_); !s.ok()) return s;
    absl::StatusOr<bool> removed = DeleteInTransaction(writer_, **found, id);
    if (!removed.ok()) return removed.status();
    deleted = *removed;
    return deleted ? absl::OkStatus() : nothing;
  });
  if (status == nothing) return false;
  if (!status.ok()) return status;
  return deleted;
}

absl::StatusOr<std::vector<EntityPtr>> PostgresStore::WriteBatch(const std::vector<BatchStep>& steps) {
  absl::StatusOr<PreparedBatch> batch = PrepareBatch(
      tables_, steps, [&](const EntityDescriptor& kind, const Message& input) { return PrepareWrite(kind, input); });
  if (!batch.ok()) return batch.status();
  const std::vector<const Table*>& tables = batch->tables;
  std::vector<EntityPtr>& entities = batch->entities;  // null for a delete
  std::lock_guard<std::mutex> lock(writer_.mu);
  if (absl::Status s = Ready(writer_, conninfo_); !s.ok()) return s;
  absl::Status status = InTransaction(writer_, conninfo_, "BEGIN", [&]() -> absl::Status {
    if (absl::Status s = BumpVersion(writer_); !s.ok()) return s;
    for (size_t i = 0; i < steps.size(); ++i) {
      if (entities[i] == nullptr) {
        if (!StorableText(steps[i].delete_id)) continue;
        absl::StatusOr<bool> removed = DeleteInTransaction(writer_, *tables[i], steps[i].delete_id);
        if (!removed.ok()) return removed.status();
      } else if (absl::Status s = WriteInTransaction(writer_, *tables[i], entities[i].get(), steps[i].mode,
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

absl::StatusOr<std::vector<EntityPtr>> PostgresStore::ReplaceConfig(const std::vector<KindRows>& kinds) {
  absl::StatusOr<PreparedRows> rows = PrepareConfigRows(  // in the caller's order
      tables_, kinds, [&](const EntityDescriptor& kind, const Message& input) { return PrepareWrite(kind, input); });
  if (!rows.ok()) return rows.status();
  std::lock_guard<std::mutex> lock(writer_.mu);
  if (absl::Status s = Ready(writer_, conninfo_); !s.ok()) return s;
  absl::Status status = InTransaction(writer_, conninfo_, "BEGIN", [&]() -> absl::Status {
    if (absl::Status s = BumpVersion(writer_); !s.ok()) return s;
    // Not logged row by row: the log restarts at this version (readers from before it are not covered).
    if (absl::Status s = ExecScript(writer_, absl::StrCat("SELECT set_config('", kLogChangesSetting,
                                                          "', 'off ' || txid_current()::text, true)"));
        !s.ok()) {
      return s;
    }
    // Children before parents (the registry lists parents first), so no key is left dangling.
    for (auto kind = kinds_.kinds().rbegin(); kind != kinds_.kinds().rend(); ++kind) {
      if (absl::Status s = ExecScript(writer_, absl::StrCat("DELETE FROM ", (*kind)->name())); !s.ok()) return s;
    }
    for (const EntityDescriptor* kind : kinds_.kinds()) {
      for (auto& [table, entities] : *rows) {
        if (table->kind != kind) continue;
        for (EntityPtr& entity : entities) {
          if (absl::Status s = WriteInTransaction(writer_, *table, entity.get(), WriteMode::kInsert, /*keep_timestamps=*/true);
              !s.ok()) {
            return s;
          }
        }
      }
    }
    // The log starts again at this version (its off switch ends with the transaction).
    return ExecScript(writer_, "UPDATE sync_meta SET changes_floor = version WHERE id = 1; DELETE FROM config_changes");
  });
  if (!status.ok()) return status;
  return TakeWritten(*rows);
}

absl::StatusOr<StoredConfig> PostgresStore::ReadConfig() {
  std::lock_guard<std::mutex> lock(reader_.mu);
  if (absl::Status s = Ready(reader_, conninfo_); !s.ok()) return s;
  StoredConfig out;
  // One snapshot for the version and every table.
  absl::Status s = InTransaction(reader_, conninfo_, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", [&]() -> absl::Status {
    absl::StatusOr<Result> meta = Exec(reader_, "SELECT epoch, version FROM sync_meta WHERE id = 1");
    if (!meta.ok()) return meta.status();
    if (PQntuples(meta->get()) != 1) return absl::DataLossError("sync_meta row missing");
    out.version.epoch = std::string(Bytes(meta->get(), 0, 0));
    out.version.version = static_cast<uint64_t>(Int(meta->get(), 0, 1));
    for (const EntityDescriptor* kind : kinds_.kinds()) {
      if (!kind->exported()) continue;
      absl::StatusOr<Result> r = Exec(reader_, absl::StrCat("SELECT id, entity FROM ", kind->name(), " ORDER BY id"));
      if (!r.ok()) return r.status();
      for (int i = 0; i < PQntuples(r->get()); ++i) {
        if (!kind->AppendToConfig(&out.config, Bytes(r->get(), i, 1))) {
          out.corrupt.push_back(CorruptRow{kind->name(), std::string(Bytes(r->get(), i, 0)), kCorruptEntityReason});
        }
      }
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<StoredChanges> PostgresStore::ReadConfigChanges(uint64_t since, size_t max_changes) {
  std::lock_guard<std::mutex> lock(reader_.mu);
  if (absl::Status s = Ready(reader_, conninfo_); !s.ok()) return s;
  StoredChanges out;
  const int64_t limit = static_cast<int64_t>(std::min<size_t>(max_changes, INT64_MAX - 1)) + 1;
  // One snapshot for the version and the log, as ReadConfig.
  absl::Status s = InTransaction(reader_, conninfo_, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", [&]() -> absl::Status {
    absl::StatusOr<Result> meta = Exec(reader_, "SELECT epoch, version, changes_floor FROM sync_meta WHERE id = 1");
    if (!meta.ok()) return meta.status();
    if (PQntuples(meta->get()) != 1) return absl::DataLossError("sync_meta row missing");
    out.version.epoch = std::string(Bytes(meta->get(), 0, 0));
    out.version.version = static_cast<uint64_t>(Int(meta->get(), 0, 1));
    const uint64_t floor = static_cast<uint64_t>(Int(meta->get(), 0, 2));
    if (since < floor || since > out.version.version) return absl::OkStatus();
    const int64_t current = static_cast<int64_t>(out.version.version);
    absl::StatusOr<Result> rows = Exec(reader_,
                                       "SELECT DISTINCT kind, id FROM config_changes WHERE version > $1 AND version <= $2"
                                       " LIMIT $3",
                                       Params().Int(static_cast<int64_t>(since)).Int(current).Int(limit),
                                       "read config_changes");
    if (!rows.ok()) return rows.status();
    if (PQntuples(rows->get()) >= limit) return absl::OkStatus();  // more than max_changes
    std::set<std::string> kind_names;
    for (int i = 0; i < PQntuples(rows->get()); ++i) kind_names.insert(std::string(Bytes(rows->get(), i, 0)));
    for (const EntityDescriptor* kind : ChangedKinds(kinds_, kind_names)) {
      absl::StatusOr<Result> r =
          Exec(reader_,
               absl::StrCat("SELECT c.id, k.entity FROM (SELECT DISTINCT id FROM config_changes WHERE kind = $1"
                            " AND version > $2 AND version <= $3) AS c LEFT JOIN ",
                            kind->name(), " AS k ON k.id = c.id ORDER BY c.id"),  // bytewise ("C")
               Params().Text(kind->name()).Int(static_cast<int64_t>(since)).Int(current), "read changed rows");
      if (!r.ok()) return r.status();
      for (int i = 0; i < PQntuples(r->get()); ++i) {
        const absl::string_view entity = Bytes(r->get(), i, 1);
        AppendChange(*kind, Bytes(r->get(), i, 0), PQgetisnull(r->get(), i, 1) ? nullptr : &entity, &out);
      }
    }
    out.covered = true;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<ListPage<TaggedEntity>> PostgresStore::ListTagged(const TagQuery& query) {
  // As the SQLite store: one SELECT per kind with tags, merged in (id, kind) order; the tags
  // column is split here; each kind's first size + 2 tagged entities from the cursor on suffice.
  std::vector<std::string> selects;
  for (const EntityDescriptor* kind : kinds_.kinds()) {
    if (!HasTagList(*kind)) continue;
    selects.push_back(absl::StrCat("(SELECT id, '", kind->name(), "'::text COLLATE \"C\" AS kind, tags FROM ",
                                   kind->name(), " WHERE tags <> '' AND id >= $1",
                                   query.tag.empty() ? "" : " AND strpos(tags, $3) > 0", " ORDER BY id LIMIT $2)"));
  }
  ListPage<TaggedEntity> page;
  if (selects.empty()) return page;
  if (!StorableText(query.after_entity_id) || !StorableText(query.tag)) return page;
  const size_t size = query.size > 0 ? static_cast<size_t>(query.size) : 100;
  Params params;
  params.Text(query.after_entity_id).Int(static_cast<int64_t>(size) + 2);
  if (!query.tag.empty()) params.Text(TagNeedle(query.tag));
  std::lock_guard<std::mutex> lock(reader_.mu);
  if (absl::Status s = Ready(reader_, conninfo_); !s.ok()) return s;
  absl::StatusOr<Result> r =
      Read(reader_, conninfo_, absl::StrCat(absl::StrJoin(selects, " UNION ALL "), " ORDER BY id, kind"), params, "list tags");
  if (!r.ok()) return r.status();
  std::vector<TaggedEntity> rows;
  for (int i = 0; i < PQntuples(r->get()) && rows.size() <= size; ++i) {
    AppendTagRows(query, std::string(Bytes(r->get(), i, 0)), std::string(Bytes(r->get(), i, 1)), Bytes(r->get(), i, 2),
                  size, &rows);
  }
  return PageOf(std::move(rows), size);
}

absl::Status PostgresStore::SaveDataPlanes(const std::vector<StoredDataPlane>& rows) {
  if (rows.empty()) return absl::OkStatus();
  static const std::string kSql = R"sql(
INSERT INTO clustering_data_planes (id, hostname, ip, version, config_hash, config_version, last_seen,
  sync_status, state, last_error, labels, cert_expiry, connected_since, nack_count, control_plane_id,
  control_plane_hostname, connected, purge_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, ip = excluded.ip, version = excluded.version,
  config_hash = excluded.config_hash, config_version = excluded.config_version, last_seen = excluded.last_seen,
  sync_status = excluded.sync_status, state = excluded.state, last_error = excluded.last_error,
  labels = excluded.labels, cert_expiry = excluded.cert_expiry, connected_since = excluded.connected_since,
  nack_count = excluded.nack_count, control_plane_id = excluded.control_plane_id,
  control_plane_hostname = excluded.control_plane_hostname, connected = excluded.connected,
  purge_at = excluded.purge_at
WHERE NOT (clustering_data_planes.connected AND clustering_data_planes.control_plane_id <> excluded.control_plane_id
           AND NOT excluded.connected))sql";
  // In node id order: CPs saving overlapping sets lock the rows in the same order (no deadlock).
  std::vector<const StoredDataPlane*> sorted;
  for (const StoredDataPlane& row : rows) sorted.push_back(&row);
  std::sort(sorted.begin(), sorted.end(),
            [](const StoredDataPlane* a, const StoredDataPlane* b) { return a->status.id < b->status.id; });
  std::lock_guard<std::mutex> lock(writer_.mu);
  if (absl::Status s = Ready(writer_, conninfo_); !s.ok()) return s;
  return InTransaction(writer_, conninfo_, "BEGIN", [&]() -> absl::Status {
    for (const StoredDataPlane* sorted_row : sorted) {
      const StoredDataPlane& row = *sorted_row;
      const DataPlaneStatus& d = row.status;
      auto text = StorableOrEscaped;
      Params p;
      p.Text(text(d.id)).Text(text(d.hostname)).Text(text(d.ip)).Text(text(d.version)).Text(text(d.config_hash));
      p.Int(static_cast<int64_t>(d.config_version)).Int(d.last_seen).Text(text(d.sync_status)).Text(text(d.state));
      p.Text(text(d.last_error)).Text(EncodeDataPlaneLabels(d.labels)).Int(d.cert_expiry).Int(d.connected_since);
      p.Int(static_cast<int64_t>(d.nack_count)).Text(text(d.control_plane_id)).Text(text(d.control_plane_hostname));
      p.Bool(row.connected).Int(row.purge_at);
      if (absl::StatusOr<Result> r = Exec(writer_, kSql, p, "save data plane"); !r.ok()) return r.status();
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<StoredDataPlane>> PostgresStore::ListDataPlaneRows(int64_t now) {
  std::lock_guard<std::mutex> lock(reader_.mu);
  if (absl::Status s = Ready(reader_, conninfo_); !s.ok()) return s;
  absl::StatusOr<Result> r = Exec(reader_,
                                  "SELECT id, hostname, ip, version, config_hash, config_version, last_seen, sync_status,"
                                  " state, last_error, labels, cert_expiry, connected_since, nack_count, control_plane_id,"
                                  " control_plane_hostname, connected, purge_at FROM clustering_data_planes"
                                  " WHERE purge_at > $1 ORDER BY id",
                                  Params().Int(now), "list data planes");
  if (!r.ok()) return r.status();
  const PGresult* res = r->get();
  std::vector<StoredDataPlane> out;
  for (int i = 0; i < PQntuples(res); ++i) {
    StoredDataPlane row;
    DataPlaneStatus& d = row.status;
    d.id = std::string(Bytes(res, i, 0));
    d.hostname = std::string(Bytes(res, i, 1));
    d.ip = std::string(Bytes(res, i, 2));
    d.version = std::string(Bytes(res, i, 3));
    d.config_hash = std::string(Bytes(res, i, 4));
    d.config_version = static_cast<uint64_t>(Int(res, i, 5));
    d.last_seen = Int(res, i, 6);
    d.sync_status = std::string(Bytes(res, i, 7));
    d.state = std::string(Bytes(res, i, 8));
    d.last_error = std::string(Bytes(res, i, 9));
    d.labels = DecodeDataPlaneLabels(Bytes(res, i, 10));
    d.cert_expiry = Int(res, i, 11);
    d.connected_since = Int(res, i, 12);
    d.nack_count = static_cast<uint64_t>(Int(res, i, 13));
    d.control_plane_id = std::string(Bytes(res, i, 14));
    d.control_plane_hostname = std::string(Bytes(res, i, 15));
    row.connected = Boolean(res, i, 16);
    row.purge_at = Int(res, i, 17);
    out.push_back(std::move(row));
  }
  return out;
}

absl::StatusOr<int64_t> PostgresStore::PurgeDataPlanes(int64_t now) {
  std::lock_guard<std::mutex> lock(writer_.mu);
  if (absl::Status s = Ready(writer_, conninfo_); !s.ok()) return s;
  absl::StatusOr<Result> r =
      Exec(writer_, "DELETE FROM clustering_data_planes WHERE purge_at <= $1", Params().Int(now), "purge data planes");
  if (!r.ok()) return r.status();
  int64_t n = 0;
  const char* tuples = PQcmdTuples(r->get());
  if (!absl::SimpleAtoi(tuples ? tuples : "0", &n)) n = 0;
  return n;
}

bool PostgresStore::Listening() {
  if (listener_.conn != nullptr && !listener_.broken && PQstatus(listener_.conn) == CONNECTION_OK) return true;
  if (!Ready(listener_, conninfo_).ok()) return false;
  if (!ExecScript(listener_, absl::StrCat("LISTEN ", kNotifyChannel)).ok()) {
    listener_.broken = true;
    return false;
  }
  return true;
}

ChangeWait PostgresStore::WaitForChange(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(listener_.mu);
  const bool was_listening =
      listener_.conn != nullptr && !listener_.broken && PQstatus(listener_.conn) == CONNECTION_OK;
  if (!Listening()) return ChangeWait::kNoFeed;
  auto drain = [&] {
    bool any = false;
    while (PGnotify* n = PQnotifies(listener_.conn)) {
      any = true;
      PQfreemem(n);
    }
    return any;
  };
  // A feed (re)connected just now may have missed notifications: the caller reads the version.
  if (!was_listening) {
    drain();
    return ChangeWait::kNotified;
  }
  if (drain()) return ChangeWait::kNotified;
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return ChangeWait::kTimedOut;
    pollfd pfd{PQsocket(listener_.conn), POLLIN, 0};
    const int rc = poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) {
      listener_.broken = true;
      return ChangeWait::kNoFeed;
    }
    if (rc == 0) return ChangeWait::kTimedOut;
    if (PQconsumeInput(listener_.conn) == 0 || PQstatus(listener_.conn) != CONNECTION_OK) {
      listener_.broken = true;
      // Down: one reconnect now (a notification missed meanwhile is covered by kNotified).
      return Listening() ? ChangeWait::kNotified : ChangeWait::kNoFeed;
    }
    if (drain()) return ChangeWait::kNotified;
  }
}

}  // namespace

namespace {

bool IsUri(absl::string_view location) {
  return absl::StartsWith(location, "postgres://") || absl::StartsWith(location, "postgresql://");
}

// PQconninfoParse's options for a key=value conninfo (null for anything else); free with
// PQconninfoFree.
PQconninfoOption* ParseKeyValue(const std::string& location) {
  // An empty string (or one without '=') parses as a conninfo setting nothing: not one.
  if (location.find('=') == std::string::npos || IsUri(location)) return nullptr;
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(location.c_str(), &error);
  if (error != nullptr) PQfreemem(error);
  return parsed;
}

// `value` as a conninfo value: bare when it can be, else quoted.
std::string QuotedValue(absl::string_view value) {
  if (!value.empty() && value.find_first_of(" \t\n\r\f\v'\\") == absl::string_view::npos) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecoded(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexDigit(s[i + 1]) >= 0 && HexDigit(s[i + 2]) >= 0) {
      out += static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool IsPasswordKey(absl::string_view key) {
  return absl::EqualsIgnoreCase(key, "password") || absl::EqualsIgnoreCase(key, "sslpassword");
}

// Every `password=VALUE` / `sslpassword=VALUE` of `text` masked, whatever surrounds it (for a
// conninfo libpq refuses: it is still logged and shown, never with its secrets). A value ends at
// whitespace or '&', or is a quoted '...' string.
std::string MaskPasswordValues(std::string text) {
  const std::string lower = absl::AsciiStrToLower(text);
  std::string out;
  size_t copied = 0, from = 0;
  while (true) {
    const size_t at = lower.find("password", from);
    if (at == std::string::npos) break;
    size_t i = at + 8;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (i >= text.size() || text[i] != '=') {
      from = at + 8;
      continue;
    }
    ++i;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    size_t end = i;
    if (end < text.size() && text[end] == '\'') {
      for (++end; end < text.size() && text[end] != '\''; ++end) {
        if (text[end] == '\\') ++end;
      }
      if (end < text.size()) ++end;
    } else {
      while (end < text.size() && !absl::ascii_isspace(static_cast<unsigned char>(text[end])) && text[end] != '&') ++end;
    }
    absl::StrAppend(&out, text.substr(copied, i - copied), "****");
    copied = end;
    from = end;
  }
  absl::StrAppend(&out, text.substr(copied));
  return out;
}

// A postgres:// URI with the password of its userinfo and of its query parameters masked.
std::string RedactedUri(const std::string& uri) {
  std::string out = uri;
  const size_t start = out.find("://") + 3;
  // The userinfo ends at an '@' before the first '/' (libpq takes the first; masking to the last
  // also covers a password with an unencoded '@', which libpq refuses anyway).
  const size_t slash = out.find('/', start);
  const size_t at = out.rfind('@', slash == std::string::npos ? std::string::npos : slash);
  size_t query_from = start;
  if (at != std::string::npos && at >= start) {
    const size_t colon = out.find(':', start);
    if (colon != std::string::npos && colon < at) {
      out.replace(colon + 1, at - colon - 1, "****");
      query_from = colon + 6;
    } else {
      query_from = at + 1;
    }
  }
  const size_t question = out.find('?', query_from);
  if (question == std::string::npos) return MaskPasswordValues(out);
  std::vector<std::string> params = absl::StrSplit(out.substr(question + 1), '&');
  for (std::string& param : params) {
    const size_t eq = param.find('=');
    if (eq == std::string::npos) continue;
    const std::string key(absl::StripAsciiWhitespace(PercentDecoded(param.substr(0, eq))));
    if (IsPasswordKey(key)) param = absl::StrCat(param.substr(0, eq + 1), "****");
  }
  return MaskPasswordValues(absl::StrCat(out.substr(0, question + 1), absl::StrJoin(params, "&")));
}

}  // namespace

bool IsPostgresLocation(const std::string& location) {
  if (IsUri(location)) return true;
  // key=value: its first word is `keyword=...` with a keyword of lowercase letters and '_' (a
  // path such as "/var/lib/a=b.db" or "./a=b.db" is not). A misspelt keyword is still
  // PostgreSQL: libpq then refuses it at open, rather than a SQLite file of that name being
  // created (and the CP starting on an empty config).
  const absl::string_view text = absl::StripLeadingAsciiWhitespace(location);
  const absl::string_view first = text.substr(0, text.find_first_of(" \t\n\r"));
  const size_t eq = first.find('=');
  if (eq != absl::string_view::npos) {
    absl::string_view key = absl::StripTrailingAsciiWhitespace(first.substr(0, eq));
    if (!key.empty() && std::all_of(key.begin(), key.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; })) {
      return true;
    }
  }
  return false;
}

std::string RedactedLocation(const std::string& location) {
  if (IsUri(location)) return RedactedUri(location);
  PQconninfoOption* parsed = ParseKeyValue(location);
  if (parsed == nullptr) return MaskPasswordValues(location);  // not one libpq takes: masked as text
  // Rebuilt from what libpq parsed (in its keyword order), the passwords masked.
  std::vector<std::string> pairs;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const absl::string_view keyword(o->keyword);
    pairs.push_back(absl::StrCat(keyword, "=", IsPasswordKey(keyword) ? "****" : QuotedValue(o->val)));
  }
  PQconninfoFree(parsed);
  return absl::StrJoin(pairs, " ");
}

absl::Status PostgresCommitOutcome(const absl::Status& commit, const absl::StatusOr<std::string>& txid_status) {
  if (commit.ok() || !absl::IsUnavailable(commit)) return commit;
  if (txid_status.ok() && *txid_status == "committed") return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      commit.message(), txid_status.ok() ? absl::StrCat(" (the transaction is ", *txid_status, ")")
                                         : " (whether it committed is unknown)"));
}

std::string PostgresSessionOptions(const std::string& conninfo) {
  std::string out = "-c lock_timeout=10s -c statement_timeout=60s -c idle_in_transaction_session_timeout=30s";
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &error);
  if (error != nullptr) PQfreemem(error);
  bool own = false;
  for (PQconninfoOption* o = parsed; parsed != nullptr && o->keyword != nullptr; ++o) {
    if (absl::string_view(o->keyword) == "options" && o->val != nullptr && o->val[0] != '\0') {
      absl::StrAppend(&out, " ", o->val);
      own = true;
    }
  }
  if (parsed != nullptr) PQconninfoFree(parsed);
  // PGOPTIONS applies when the conninfo has no options (as libpq does).
  if (const char* env = std::getenv("PGOPTIONS"); !own && env != nullptr && env[0] != '\0') {
    absl::StrAppend(&out, " ", env);
  }
  return out;
}

std::string PostgresTableSql(const EntityDescriptor& kind) {
  return absl::StrCat(CreateTableSql(kind), EntityIndexSql(kind));
}

absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const std::string& conninfo, const Clock& clock,
                                                         const EntityRegistry& kinds) {
  auto store = std::make_unique<PostgresStore>(clock, kinds, conninfo);
  if (absl::Status s = store->Open(); !s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace portico::cp
