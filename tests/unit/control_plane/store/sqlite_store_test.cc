// The SQLite store's schema: tables derived from the descriptors are the tables migration 1 made,
// and a database file written by the CP before descriptors existed opens and works.
#include "control_plane/store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/config/entities.h"
#include "common/config/entity_json.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico::cp {
namespace {

using config::v1::Route;
using config::v1::Service;

// The SQL the CP wrote before entity descriptors (control_plane/store/store.cc at 4694288):
// schema_migrations, migration 1, the epoch row.
constexpr char kOldSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations ( id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
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
INSERT INTO schema_migrations (id, name, applied_at) VALUES (1, 'create_sync_meta_services_routes', 1600000000);
INSERT INTO sync_meta (id, epoch, version) VALUES (1, X'00112233445566778899aabbccddeeff', 0);
)sql";

// Opens `path` with plain SQLite, runs `sql` (statements), closes. "" or SQLite's error.
std::string ExecSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    sqlite3_close(db);
    return "cannot open";
  }
  char* error = nullptr;
  std::string out;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) out = error ? error : "exec failed";
  sqlite3_free(error);
  sqlite3_close(db);
  return out;
}

// Rows of a query as "a|b|c" strings.
std::vector<std::string> QueryRows(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::vector<std::string> rows;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return rows;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK) {
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        const unsigned char* text = sqlite3_column_text(stmt, i);
        absl::StrAppend(&row, i ? "|" : "", text ? reinterpret_cast<const char*>(text) : "NULL");
      }
      rows.push_back(row);
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows;
}

// What SQLite says a table is: columns, foreign keys, indexes (with their columns).
std::vector<std::string> DescribeTable(const std::string& path, const std::string& table) {
  std::vector<std::string> out;
  for (const std::string& row : QueryRows(path, absl::StrCat("PRAGMA table_info(", table, ")"))) out.push_back("col " + row);
  for (const std::string& row : QueryRows(path, absl::StrCat("PRAGMA foreign_key_list(", table, ")"))) {
    out.push_back("fk " + row);
  }
  for (const std::string& row : QueryRows(path, absl::StrCat("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '",
                                                           table, "' ORDER BY name"))) {
    out.push_back("index " + row);
    for (const std::string& column : QueryRows(path, absl::StrCat("PRAGMA index_info(", row, ")"))) {
      out.push_back("  " + column);
    }
  }
  return out;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(tmp_.path().empty()); }

  FakeClock clock_{1700000000};
  test_support::TempDir tmp_;
  const std::string dir_ = tmp_.path();
};

// DescribeTable without column positions (a column added by ALTER TABLE comes last), sorted.
std::vector<std::string> TableShape(const std::string& path, const std::string& table) {
  std::vector<std::string> out;
  for (std::string row : DescribeTable(path, table)) {
    if (row.rfind("col ", 0) == 0) row = "col " + row.substr(row.find('|') + 1);
    if (row.rfind("  ", 0) == 0) {  // an index column: seqno|cid|name
      const size_t first = row.find('|'), second = row.find('|', first + 1);
      row = row.substr(0, first) + row.substr(second);
    }
    out.push_back(row);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(SqliteStoreTest, TablesDerivedFromTheDescriptorsAreTheTablesTheMigrationsMade) {
  const std::string old_db = dir_ + "/old.db", new_db = dir_ + "/new.db";
  ASSERT_EQ(ExecSql(old_db, kOldSchema), "");
  ASSERT_EQ(ExecSql(new_db, SqliteTableSql(RoutesKind())), "");
  EXPECT_EQ(DescribeTable(new_db, "routes"), DescribeTable(old_db, "routes"));
  // Migration 2 gives services their client_certificate key; the store then creates the rest.
  ASSERT_TRUE(Store::Open(old_db, clock_).ok());
  ASSERT_EQ(ExecSql(new_db, SqliteTableSql(CertificatesKind()) + SqliteTableSql(ServicesKind())), "");
  const std::vector<std::string> migrated = TableShape(old_db, "services");
  ASSERT_FALSE(migrated.empty());
  EXPECT_EQ(TableShape(new_db, "services"), migrated);
}

TEST_F(SqliteStoreTest, DatabaseWrittenByTheOldSqlOpensAndWorks) {
  const std::string path = dir_ + "/portico.db";
  Service s;
  s.set_id("00000000-0000-4000-8000-000000000001");
  s.set_name("legacy");
  s.set_host("10.0.0.1");
  s.set_protocol("http");
  s.set_port(8080);
  s.set_retries(5);
  s.set_connect_timeout(60000);
  s.set_write_timeout(60000);
  s.set_read_timeout(60000);
  s.set_enabled(true);
  s.set_created_at(1600000000);
  s.set_updated_at(1600000000);
  s.mutable_tags()->add_values("old");
  Route r = DefaultRoute();
  r.set_id("00000000-0000-4000-8000-000000000002");
  r.set_name("legacy-route");
  r.mutable_paths()->add_values("/legacy");
  r.set_service_id(s.id());
  r.set_created_at(1600000001);
  r.set_updated_at(1600000001);
  auto hex = [](const std::string& bytes) {
    std::string out;
    for (unsigned char c : bytes) absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2));
    return out;
  };
  // The rows as the old store wrote them (its INSERT column lists), and the version they made.
  ASSERT_EQ(ExecSql(path, absl::StrCat(kOldSchema,
                                       "INSERT INTO services (name, created_at, updated_at, tags, entity, id) VALUES "
                                       "('legacy', 1600000000, 1600000000, char(31) || 'old' || char(31), X'",
                                       hex(s.SerializeAsString()), "', '", s.id(), "');",
                                       "INSERT INTO routes (name, created_at, updated_at, tags, entity, id, service_id) "
                                       "VALUES ('legacy-route', 1600000001, 1600000001, '', X'",
                                       hex(r.SerializeAsString()), "', '", r.id(), "', '", s.id(), "');",
                                       "UPDATE sync_meta SET version = 2 WHERE id = 1;")),
            "");

  auto opened = Store::Open(path, clock_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Store& store = **opened;
  EXPECT_EQ(store.Epoch(), std::string("\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff", 16));
  EXPECT_EQ(store.CurrentVersion(), 2u);
  ASSERT_EQ(store.AppliedMigrations()->size(), 5u);
  EXPECT_EQ(store.Get<Service>(s.id())->port(), 8080);
  EXPECT_EQ(store.GetByEndpointKey<Route>("legacy-route")->id(), r.id());
  ListQuery tagged;
  tagged.tags = {"old"};
  EXPECT_EQ(store.List<Service>(tagged)->items.size(), 1u);
  EXPECT_EQ(store.List<Route>({.parent_field = "service", .parent_id = s.id()})->items.size(), 1u);
  auto config = store.ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->version.version, 2u);
  EXPECT_EQ(config->config.services.size(), 1u);
  EXPECT_EQ(config->config.routes.size(), 1u);
  EXPECT_TRUE(config->corrupt.empty());

  // Writes keep the old keys: the restrict, the unique name, the stored created_at.
  EXPECT_EQ(GetStoreConflict(store.Delete<Service>(s.id()).status()), StoreConflict::kReferenced);
  Service dup = s;
  dup.set_id("");
  EXPECT_EQ(GetStoreConflict(store.Insert(dup).status()), StoreConflict::kUniqueName);
  r.mutable_paths()->add_values("/more");
  auto updated = store.Update(r);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->created_at(), 1600000001);
  EXPECT_EQ(updated->updated_at(), 1700000000);
  EXPECT_TRUE(*store.Delete<Route>(r.id()));
  EXPECT_TRUE(*store.Delete<Service>(s.id()));
  EXPECT_EQ(store.CurrentVersion(), 5u);
  // Only the tables of kinds added since were created, from their descriptors, and migrations 4's and 5's.
  EXPECT_EQ(QueryRows(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"),
            (std::vector<std::string>{"acls", "basicauth_credentials", "ca_certificates", "certificates",
                                      "clustering_data_planes", "config_changes", "consumers",
                                      "jwt_secrets", "keyauth_credentials", "plugins", "routes", "schema_migrations",
                                      "services", "snis", "sync_meta", "targets", "upstreams"}));
}

TEST_F(SqliteStoreTest, ATableWithoutAColumnItsDescriptorNeedsIsRefusedAtOpen) {
  const std::string path = dir_ + "/portico.db";
  std::string schema = kOldSchema;
  const std::string routes_name = "CREATE TABLE routes (\n  id TEXT PRIMARY KEY,\n  name TEXT UNIQUE,\n";
  ASSERT_NE(schema.find(routes_name), std::string::npos);
  schema.replace(schema.find(routes_name), routes_name.size(), "CREATE TABLE routes (\n  id TEXT PRIMARY KEY,\n");
  ASSERT_EQ(ExecSql(path, schema), "");
  auto opened = Store::Open(path, clock_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(opened.status().message().find("table routes has no column name"), absl::string_view::npos)
      << opened.status();
}

TEST(SqliteStoreSqlTest, ForeignKeysBecomeIndexedReferencesWithTheirDeleteRule) {
  const std::string sql = SqliteTableSql(RoutesKind());
  EXPECT_NE(sql.find("service_id TEXT REFERENCES services (id) ON DELETE RESTRICT"), std::string::npos) << sql;
  EXPECT_NE(sql.find("CREATE INDEX IF NOT EXISTS routes_service_id_idx ON routes (service_id)"), std::string::npos);
  EXPECT_NE(sql.find("name TEXT UNIQUE"), std::string::npos);
  // A service's certificate: deleting a certificate in use is refused.
  EXPECT_NE(SqliteTableSql(ServicesKind()).find("client_certificate_id TEXT REFERENCES certificates (id) ON DELETE RESTRICT"),
            std::string::npos);
  EXPECT_NE(SqliteTableSql(SnisKind()).find("certificate_id TEXT REFERENCES certificates (id) ON DELETE CASCADE"),
            std::string::npos);
}

}  // namespace
}  // namespace portico::cp
