#include "tests/common/postgres_test_db.h"

#include <libpq-fe.h>
#include <stdlib.h>

#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/base/uuid.h"
#include "portico/config/v1/config.pb.h"
#include "tests/common/corrupt_rows.h"

namespace portico::test_support {
namespace {

std::string AdminConninfo(int port) {
  return absl::StrCat("host=127.0.0.1 port=", port, " user=postgres dbname=postgres connect_timeout=10");
}

// Runs `sql` on a new connection to `conninfo`; "" or the error.
std::string RunOn(const std::string& conninfo, const std::string& sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string error = PQerrorMessage(conn);
    PQfinish(conn);
    return error.empty() ? "cannot connect" : error;
  }
  PGresult* r = PQexec(conn, sql.c_str());
  std::string error;
  const ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) error = PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(conn);
  return error;
}

bool IsPostgres(const std::string& location) {
  return absl::StartsWith(location, "postgres://") || absl::StartsWith(location, "postgresql://") ||
         absl::StrContains(location, '=');
}

}  // namespace

bool TestStoreIsPostgres() {
  const char* store = getenv("PORTICO_TEST_STORE");
  return store != nullptr && std::string(store) == "postgres";
}

absl::StatusOr<std::string> TestStoreLocation(const std::string& sqlite_path, std::unique_ptr<PostgresTestDb>* db) {
  if (!TestStoreIsPostgres()) return sqlite_path;
  absl::StatusOr<std::unique_ptr<PostgresTestDb>> created = PostgresTestDb::Create();
  if (!created.ok()) return created.status();
  *db = std::move(*created);
  return (*db)->conninfo();
}

absl::StatusOr<int> PostgresTestPort() {
  const char* state = getenv("PORTICO_TEST_PG_STATE");
  if (state == nullptr || *state == '\0') {
    return absl::FailedPreconditionError(
        "PORTICO_TEST_PG_STATE is not set: this test needs the PostgreSQL server of the CTest fixture `postgres` "
        "(run it through ctest, or start one with tests/postgres_fixture.sh start DIR and set "
        "PORTICO_TEST_PG_STATE=DIR)");
  }
  std::ifstream in(absl::StrCat(state, "/port"));
  std::string text;
  int port = 0;
  if (!in || !std::getline(in, text) || !absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no PostgreSQL test server: ", state, "/port is missing or unreadable (did the fixture postgres_start fail? "
        "see tests/postgres_fixture.sh)"));
  }
  return port;
}

absl::StatusOr<std::unique_ptr<PostgresTestDb>> PostgresTestDb::Create() {
  absl::StatusOr<int> port = PostgresTestPort();
  if (!port.ok()) return port.status();
  std::string name = absl::StrCat("t_", absl::BytesToHexString(RandomBytes(8)));
  std::string error =
      RunOn(AdminConninfo(*port), absl::StrCat("CREATE DATABASE ", name, " TEMPLATE template0 ENCODING 'UTF8'"));
  if (!error.empty()) return absl::UnavailableError(absl::StrCat("CREATE DATABASE ", name, ": ", error));
  return std::unique_ptr<PostgresTestDb>(new PostgresTestDb(*port, std::move(name)));
}

PostgresTestDb::PostgresTestDb(int port, std::string name)
    : port_(port),
      name_(std::move(name)),
      conninfo_(absl::StrCat("postgresql://postgres@127.0.0.1:", port_, "/", name_)) {}

PostgresTestDb::~PostgresTestDb() {
  (void)RunOn(AdminConninfo(port_), absl::StrCat("DROP DATABASE IF EXISTS ", name_, " WITH (FORCE)"));
}

std::string PostgresTestDb::Exec(const std::string& sql) const { return RunOn(conninfo_, sql); }

std::string InsertCorruptRowAt(const std::string& location, const std::string& table, const std::string& id,
                               const std::string& name, const std::string& service_id, const std::string& blob_name,
                               int64_t created_at) {
  if (!IsPostgres(location)) {
    return InsertCorruptRow(location, table, id, name, service_id, blob_name, created_at);
  }
  const std::string blob = CorruptRowEntity(table, id, blob_name.empty() ? name : blob_name, service_id);
  // Test data only: the ids and names here are the tests' own.
  auto literal = [](const std::string& text) {
    std::string out = "'";
    for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  };
  std::string column_name = name;
  for (unsigned char c : name) {
    if (c >= 0x80) {
      column_name = absl::CHexEscape(name);
      break;
    }
  }
  const std::string entity = absl::StrCat("'\\x", absl::BytesToHexString(blob), "'::bytea");
  std::string insert =
      table == "services"
          ? absl::StrCat("INSERT INTO services (id, name, created_at, updated_at, tags, entity) VALUES (", literal(id),
                         ", ", literal(column_name), ", ", created_at, ", ", created_at, ", '', ", entity, ")")
          : absl::StrCat("INSERT INTO routes (id, name, created_at, updated_at, tags, entity, service_id) VALUES (",
                         literal(id), ", ", literal(column_name), ", ", created_at, ", ", created_at, ", '', ", entity,
                         ", ", service_id.empty() ? "NULL" : literal(service_id), ")");
  // The version first, as the store's writes do: the change log's trigger records the row under it.
  return RunOn(location, absl::StrCat("BEGIN; UPDATE sync_meta SET version = version + 1 WHERE id = 1; ", insert, "; COMMIT"));
}

}  // namespace portico::test_support
