#pragma once
// Test helper: a fresh PostgreSQL database per test on the test server of the CTest fixture
// `postgres` (tests/postgres_fixture.sh; tests say they need it with portico_cc_test(...
// POSTGRES) or portico_needs_postgres()). The server's port is read from
// $PORTICO_TEST_PG_STATE/port. Link portico_test_postgres.
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace portico::test_support {

class PostgresTestDb {
 public:
  // CREATE DATABASE t_<random> (UTF8) on the fixture's server, as the superuser. Fails with a
  // message naming the fixture when PORTICO_TEST_PG_STATE or its port file is missing (a test
  // that needs PostgreSQL must fail, not skip, without it).
  static absl::StatusOr<std::unique_ptr<PostgresTestDb>> Create();
  ~PostgresTestDb();  // DROP DATABASE ... WITH (FORCE)
  PostgresTestDb(const PostgresTestDb&) = delete;
  PostgresTestDb& operator=(const PostgresTestDb&) = delete;

  // postgresql://postgres@127.0.0.1:<port>/<name>
  const std::string& conninfo() const { return conninfo_; }
  const std::string& name() const { return name_; }
  int port() const { return port_; }

  // Runs `sql` (no parameters) on this database; "" on success, else the error.
  std::string Exec(const std::string& sql) const;

 private:
  PostgresTestDb(int port, std::string name);
  int port_;
  std::string name_;
  std::string conninfo_;
};

// Whether PORTICO_TEST_STORE=postgres: tests registered with portico_cc_test(... ALSO_ON_POSTGRES)
// run their second round on PostgreSQL.
bool TestStoreIsPostgres();

// The store location for a test: `sqlite_path`, or with TestStoreIsPostgres() a fresh database
// (kept in `*db`, dropped when it goes) and its conninfo.
absl::StatusOr<std::string> TestStoreLocation(const std::string& sqlite_path, std::unique_ptr<PostgresTestDb>* db);

// The fixture server's port, or an error naming what is missing.
absl::StatusOr<int> PostgresTestPort();

// tests/common/corrupt_rows.h's InsertCorruptRow for a store at `location`: a SQLite path or a
// PostgreSQL conninfo. On PostgreSQL, a name that is not UTF-8 cannot be a TEXT column: the name
// column then holds absl::CHexEscape(name) (the entity keeps the raw bytes).
std::string InsertCorruptRowAt(const std::string& location, const std::string& table, const std::string& id,
                               const std::string& name, const std::string& service_id = "",
                               const std::string& blob_name = "", int64_t created_at = 1700000000);

}  // namespace portico::test_support
