#include "control_plane/store/store.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/uuid.h"
#include "common/config/entities.h"
#include "common/config/entity_json.h"
#include "gtest/gtest.h"
#include "absl/strings/escaping.h"
#include "tests/common/postgres_test_db.h"

namespace portico::cp {
namespace {

using config::v1::Route;
using config::v1::Service;

// The contract tests run against both stores: this file is compiled into store_test (SQLite,
// PORTICO_STORE_TEST_SQLITE) and postgres_store_test (PostgreSQL, PORTICO_STORE_TEST_POSTGRES,
// a fresh database per test on the fixture's server).
enum class Backend { kSqlite, kPostgres };

class StoreFixture : public ::testing::Test {
 protected:
  virtual Backend backend() const = 0;
  bool postgres() const { return backend() == Backend::kPostgres; }

  void SetUp() override {
    char tmpl[] = "/tmp/portico_store_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/portico.db";
    if (postgres()) {
      auto db = test_support::PostgresTestDb::Create();
      ASSERT_TRUE(db.ok()) << db.status();
      db_ = std::move(*db);
      location_ = db_->conninfo();
    } else {
      location_ = path_;
    }
    auto store = Store::Open(location_, clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    others_.clear();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  // A store on a datastore of its own (another SQLite file, another PostgreSQL database).
  absl::StatusOr<std::unique_ptr<Store>> OpenFresh() {
    if (!postgres()) return Store::Open(dir_ + "/other.db", clock_);
    auto db = test_support::PostgresTestDb::Create();
    if (!db.ok()) return db.status();
    others_.push_back(std::move(*db));
    return Store::Open(others_.back()->conninfo(), clock_);
  }
  // Runs SQL statements on the datastore behind the store, on a connection of their own; "" or
  // the error.
  std::string ExecSql(const std::string& sql) {
    if (postgres()) return db_->Exec(sql);
    sqlite3* db = nullptr;
    if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK) {
      sqlite3_close(db);
      return "cannot open " + path_;
    }
    sqlite3_busy_timeout(db, 5000);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    std::string message = rc == SQLITE_OK ? "" : (error ? error : "exec failed");
    sqlite3_free(error);
    sqlite3_close(db);
    return message;
  }
  // The name column InsertCorruptRowAt writes for `name` (PostgreSQL cannot hold non-UTF-8 text).
  std::string NameColumn(const std::string& name) const { return postgres() ? absl::CHexEscape(name) : name; }

  Service NewService(const std::string& name) {
    Service s = DefaultService();
    s.set_host("example.com");
    if (!name.empty()) s.set_name(name);
    return s;
  }
  Route NewRoute(const std::string& service_id) {
    Route r = DefaultRoute();
    r.mutable_paths()->add_values("/a");
    if (!service_id.empty()) r.set_service_id(service_id);
    return r;
  }

  FakeClock clock_{1000};
  std::string dir_, path_;
  std::string location_;  // what Store::Open was given
  std::unique_ptr<test_support::PostgresTestDb> db_;
  std::vector<std::unique_ptr<test_support::PostgresTestDb>> others_;
  std::unique_ptr<Store> store_;
};

class StoreTest : public StoreFixture, public ::testing::WithParamInterface<Backend> {
 protected:
  Backend backend() const override { return GetParam(); }
};

// The SQLite file's own behaviour (WAL, checkpoint at close).
class SqliteFileStoreTest : public StoreFixture {
 protected:
  Backend backend() const override { return Backend::kSqlite; }
};

TEST_P(StoreTest, CreatesSchemaMigrationsAndEpochThatSurviveReopen) {
  auto migrations = store_->AppliedMigrations();
  ASSERT_TRUE(migrations.ok());
  ASSERT_GE(migrations->size(), 3u);
  for (size_t i = 0; i < migrations->size(); ++i) EXPECT_EQ((*migrations)[i].first, static_cast<int>(i) + 1);
  EXPECT_EQ(store_->Epoch().size(), 16u);
  EXPECT_EQ(store_->CurrentVersion(), 0u);
  auto s = store_->Insert(NewService("a"));
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string epoch = store_->Epoch();

  store_.reset();
  auto reopened = Store::Open(location_, clock_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ((*reopened)->Epoch(), epoch);
  EXPECT_EQ((*reopened)->CurrentVersion(), 1u);
  EXPECT_EQ((*reopened)->AppliedMigrations()->size(), migrations->size());
  auto again = (*reopened)->GetByEndpointKey<Service>("a");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id(), s->id());
  if (!postgres()) {
    EXPECT_TRUE(std::filesystem::exists(path_ + "-wal") || std::filesystem::exists(path_));
  }

  // A fresh database gets a different epoch.
  auto other = OpenFresh();
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)->Epoch(), epoch);
}

#if PORTICO_STORE_TEST_SQLITE
TEST_F(SqliteFileStoreTest, CloseSaysSoWhenAReaderKeepsTheCheckpointFromFinishing) {
  ASSERT_TRUE(store_->Insert(NewService("before")).ok());
  // Another connection (a config export, say) in a read transaction on the current snapshot.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM services;", nullptr, nullptr, nullptr), SQLITE_OK);
  ASSERT_TRUE(store_->Insert(NewService("after")).ok());  // newer than the reader's snapshot
  const absl::Status closed = store_->Close();
  EXPECT_TRUE(absl::IsUnavailable(closed)) << closed;
  EXPECT_NE(closed.message().find("blocked"), std::string::npos) << closed;
  EXPECT_GT(std::filesystem::file_size(path_ + "-wal"), 0u);  // not truncated
  ASSERT_EQ(sqlite3_exec(reader, "COMMIT;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(reader);
  store_.reset();
  // Nothing committed is lost: the next opener finds both rows.
  auto reopened = Store::Open(path_, clock_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE((*reopened)->GetByEndpointKey<Service>("after").ok());
  EXPECT_TRUE((*reopened)->GetByEndpointKey<Service>("before").ok());
  EXPECT_TRUE((*reopened)->Close().ok());
}

TEST_F(SqliteFileStoreTest, CloseCheckpointsTheWalIntoTheDatabaseFile) {
  auto s = store_->Insert(NewService("kept"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_GT(std::filesystem::file_size(path_ + "-wal"), 0u);  // the write is in the WAL
  // Another process (config import) holding the file open: the WAL stays, but empty.
  auto other = Store::Open(path_, clock_);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(store_->Close().ok());
  EXPECT_EQ(std::filesystem::file_size(path_ + "-wal"), 0u);
  EXPECT_TRUE(store_->Close().ok()) << "idempotent";
  ASSERT_TRUE((*other)->Close().ok());
  EXPECT_FALSE(std::filesystem::exists(path_ + "-wal")) << "the last close removes the WAL";
  store_.reset();
  other->reset();
  auto reopened = Store::Open(path_, clock_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto again = (*reopened)->GetByEndpointKey<Service>("kept");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id(), s->id());
}
#endif  // PORTICO_STORE_TEST_SQLITE

TEST_P(StoreTest, InsertStampsTimesAndUpdateKeepsCreatedAt) {
  auto s = store_->Insert(NewService("svc"));
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(IsUuid(s->id()));
  EXPECT_EQ(s->created_at(), 1000);
  EXPECT_EQ(s->updated_at(), 1000);
  clock_.Advance(5);
  Service changed = *s;
  changed.set_created_at(0);
  changed.set_port(8080);
  auto u = store_->Update(changed);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->created_at(), 1000);
  EXPECT_EQ(u->updated_at(), 1005);
  EXPECT_EQ(store_->Get<Service>(s->id())->port(), 8080);
  EXPECT_EQ(store_->CurrentVersion(), 2u);

  Service missing = NewService("nope");
  missing.set_id(NewUuid());
  EXPECT_TRUE(absl::IsNotFound(store_->Update(missing).status()));
  EXPECT_EQ(store_->CurrentVersion(), 2u);
  // Upsert inserts, then replaces.
  auto up = store_->Upsert(missing);
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(store_->CurrentVersion(), 3u);
  missing.set_port(1);
  ASSERT_TRUE(store_->Upsert(missing).ok());
  EXPECT_EQ(store_->Get<Service>(missing.id())->port(), 1);
  EXPECT_EQ(store_->CurrentVersion(), 4u);
}

TEST_P(StoreTest, UniqueNameAndPrimaryKeyViolationsChangeNothing) {
  auto a = store_->Insert(NewService("dup"));
  ASSERT_TRUE(a.ok());
  const uint64_t version = store_->CurrentVersion();
  auto b = store_->Insert(NewService("dup"));
  EXPECT_EQ(GetStoreConflict(b.status()), StoreConflict::kUniqueName) << b.status();
  Service same_id = NewService("other");
  same_id.set_id(a->id());
  auto c = store_->Insert(same_id);
  EXPECT_EQ(GetStoreConflict(c.status()), StoreConflict::kPrimaryKey) << c.status();
  EXPECT_EQ(store_->CurrentVersion(), version);
  EXPECT_EQ(store_->List<Service>({})->items.size(), 1u);
  // Nameless entities do not collide.
  EXPECT_TRUE(store_->Insert(NewService("")).ok());
  EXPECT_TRUE(store_->Insert(NewService("")).ok());
}

TEST_P(StoreTest, ForeignKeysRestrictAndRejectDanglingRoutes) {
  auto s = store_->Insert(NewService("svc"));
  ASSERT_TRUE(s.ok());
  auto dangling = store_->Insert(NewRoute(NewUuid()));
  EXPECT_EQ(GetStoreConflict(dangling.status()), StoreConflict::kForeignKeyMissing) << dangling.status();
  auto r = store_->Insert(NewRoute(s->id()));
  ASSERT_TRUE(r.ok()) << r.status();
  const uint64_t version = store_->CurrentVersion();
  auto del = store_->Delete<Service>(s->id());
  EXPECT_EQ(GetStoreConflict(del.status()), StoreConflict::kReferenced) << del.status();
  EXPECT_EQ(store_->CurrentVersion(), version);
  EXPECT_TRUE(store_->Get<Service>(s->id()).ok());

  EXPECT_EQ(store_->List<Route>({.parent_field = "service", .parent_id = s->id()})->items.size(), 1u);
  EXPECT_TRUE(*store_->Delete<Route>(r->id()));
  EXPECT_TRUE(*store_->Delete<Service>(s->id()));
  EXPECT_EQ(store_->CurrentVersion(), version + 2);
  // Deleting what is not there succeeds and does not bump the version.
  EXPECT_FALSE(*store_->Delete<Service>(s->id()));
  EXPECT_EQ(store_->CurrentVersion(), version + 2);
}

TEST_P(StoreTest, KeysetPaginationVisitsEveryRowOnceInIdOrder) {
  std::set<std::string> ids;
  for (int i = 0; i < 7; ++i) ids.insert(store_->Insert(NewService("s" + std::to_string(i)))->id());
  ListQuery query;
  query.size = 3;
  std::vector<std::string> seen;
  int pages = 0;
  for (;;) {
    auto page = store_->List<Service>(query);
    ASSERT_TRUE(page.ok());
    ++pages;
    for (const auto& s : page->items) seen.push_back(s.id());
    if (!page->has_more) break;
    query.after_id = page->items.back().id();
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, std::vector<std::string>(ids.begin(), ids.end()));
}

TEST_P(StoreTest, TagFiltersAndOr) {
  auto tagged = [&](std::vector<std::string> tags) {
    Service s = NewService("");
    for (auto& t : tags) s.mutable_tags()->add_values(t);
    return store_->Insert(s)->id();
  };
  std::string ab = tagged({"a", "b"}), a = tagged({"a"}), c = tagged({"c"});
  tagged({"ab"});  // must not match "a" or "b"
  auto names = [&](std::vector<std::string> tags, bool any) {
    ListQuery q;
    q.tags = tags;
    q.tags_any = any;
    std::set<std::string> out;
    auto page = store_->List<Service>(q);
    for (const auto& s : page->items) out.insert(s.id());
    return out;
  };
  EXPECT_EQ(names({"a"}, false), (std::set<std::string>{ab, a}));
  EXPECT_EQ(names({"a", "b"}, false), (std::set<std::string>{ab}));
  EXPECT_EQ(names({"b", "c"}, true), (std::set<std::string>{ab, c}));
}

TEST_P(StoreTest, ReadConfigIsSortedAndCarriesVersion) {
  auto s1 = store_->Insert(NewService("one"));
  auto s2 = store_->Insert(NewService("two"));
  auto r = store_->Insert(NewRoute(s1->id()));
  ASSERT_TRUE(r.ok());
  auto config = store_->ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->version.version, 3u);
  EXPECT_EQ(config->version.epoch, store_->Epoch());
  ASSERT_EQ(config->config.services.size(), 2u);
  EXPECT_LT(config->config.services[0].id(), config->config.services[1].id());
  ASSERT_EQ(config->config.routes.size(), 1u);
  EXPECT_EQ(config->config.routes[0].service_id(), s1->id());
}

// Each insert adds one service and bumps the version by one, so a consistent snapshot always
// has exactly `version` services.
TEST_P(StoreTest, ConcurrentReadsSeeConsistentSnapshots) {
  std::atomic<bool> done{false};
  std::atomic<int> failed_inserts{0};
  std::thread writer([&] {
    for (int i = 0; i < 150; ++i) {
      if (!store_->Insert(NewService("w" + std::to_string(i))).ok()) ++failed_inserts;
    }
    done = true;
  });
  int reads = 0, inconsistent = 0, failed_reads = 0;
  while (!done || reads == 0) {
    auto config = store_->ReadConfig();
    if (!config.ok()) {
      ++failed_reads;
    } else if (config->config.services.size() != config->version.version) {
      ++inconsistent;
    }
    ++reads;
  }
  writer.join();
  EXPECT_EQ(failed_inserts.load(), 0);
  EXPECT_EQ(failed_reads, 0);
  EXPECT_EQ(inconsistent, 0) << "of " << reads << " reads";
  EXPECT_EQ(store_->ReadConfig()->version.version, 150u);
}

// Defence in depth behind the validator: an entity protobuf would serialize but not parse back
// (a proto3 string that is not UTF-8) is never written.
TEST_P(StoreTest, RefusesToWriteARowItCouldNotReadBack) {
  auto good = store_->Insert(NewService("good"));
  ASSERT_TRUE(good.ok());
  const uint64_t version = store_->CurrentVersion();

  auto insert = store_->Insert(NewService("bad\xff\xfe"));
  EXPECT_EQ(insert.status().code(), absl::StatusCode::kInvalidArgument) << insert.status();
  Service update = *good;
  update.set_host("h\xff");
  EXPECT_EQ(store_->Update(update).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Upsert(update).status().code(), absl::StatusCode::kInvalidArgument);
  Route route = NewRoute(good->id());
  (*route.mutable_headers()->mutable_values())["x-a"].add_values("v\xff");
  EXPECT_EQ(store_->Insert(route).status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(store_->CurrentVersion(), version);
  auto config = store_->ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->corrupt.empty());
  ASSERT_EQ(config->config.services.size(), 1u);
  EXPECT_EQ(config->config.services[0].host(), "example.com");
  EXPECT_TRUE(config->config.routes.empty());
}

// A key with a NUL character: SQLite keeps every byte (so "bob\0x" and "bob" are two names);
// PostgreSQL's text cannot hold it, so the write is refused (InvalidArgument, nothing written)
// rather than cut to "bob".
TEST_P(StoreTest, AKeyWithANulCharacterIsKeptWholeOrRefused) {
  const std::string nul_name("bob\0x", 5);
  auto bob = store_->Insert(NewService("bob"));
  ASSERT_TRUE(bob.ok()) << bob.status();
  const uint64_t version = store_->CurrentVersion();
  auto nul = store_->Insert(NewService(nul_name));
  Service tagged = NewService("tagged");
  tagged.mutable_tags()->add_values(std::string("t\0u", 3));
  auto with_tag = store_->Insert(tagged);
  Service nul_id = NewService("nul-id");
  nul_id.set_id(std::string("id\0", 3));
  auto with_id = store_->Insert(nul_id);
  if (postgres()) {
    EXPECT_EQ(nul.status().code(), absl::StatusCode::kInvalidArgument) << nul.status();
    EXPECT_NE(nul.status().message().find("name"), absl::string_view::npos) << nul.status();
    EXPECT_EQ(with_tag.status().code(), absl::StatusCode::kInvalidArgument) << with_tag.status();
    EXPECT_EQ(with_id.status().code(), absl::StatusCode::kInvalidArgument) << with_id.status();
    EXPECT_EQ(store_->CurrentVersion(), version);
    EXPECT_EQ(store_->ReadConfig()->config.services.size(), 1u);
  } else {
    ASSERT_TRUE(nul.ok()) << nul.status();
    auto found = store_->GetEntityByField(ServicesKind(), "name", nul_name);
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(static_cast<const Service&>(**found).id(), nul->id());
  }
  auto found = store_->GetEntityByField(ServicesKind(), "name", "bob");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(static_cast<const Service&>(**found).id(), bob->id());
}

// A row an older CP wrote (or the disk damaged): the store opens, reads and lists around it,
// reports it, and lets it be deleted or replaced by id.
TEST_P(StoreTest, SurvivesACorruptRowAndLetsItBeDeletedOrReplaced) {
  const std::string before = "00000000-0000-4000-8000-000000000001";
  const std::string corrupt = "00000000-0000-4000-8000-000000000002";
  const std::string after = "00000000-0000-4000-8000-000000000003";
  for (const std::string& id : {before, after}) {
    Service s = NewService("s" + id.substr(id.size() - 1));
    s.set_id(id);
    ASSERT_TRUE(store_->Insert(s).ok());
  }
  ASSERT_EQ(test_support::InsertCorruptRowAt(location_, "services", corrupt, "bad\xff\xfe"), "");
  ASSERT_EQ(test_support::InsertCorruptRowAt(location_, "routes", "00000000-0000-4000-8000-000000000009",
                                           "route\xff", corrupt),
            "");
  store_.reset();
  auto reopened = Store::Open(location_, clock_);  // opening never parses entities
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  EXPECT_EQ(store_->CurrentVersion(), 4u);

  // Reads by key: DataLoss naming the row.
  auto by_id = store_->Get<Service>(corrupt);
  EXPECT_EQ(by_id.status().code(), absl::StatusCode::kDataLoss) << by_id.status();
  EXPECT_EQ(CorruptRowId(by_id.status()), corrupt);
  auto by_name = store_->GetByEndpointKey<Service>(NameColumn("bad\xff\xfe"));
  EXPECT_EQ(CorruptRowId(by_name.status()), corrupt) << by_name.status();
  EXPECT_EQ(CorruptRowId(store_->GetByEndpointKey<Service>("nope").status()), std::nullopt);
  EXPECT_EQ(CorruptRowId(store_->Get<Route>("00000000-0000-4000-8000-000000000009").status()),
            "00000000-0000-4000-8000-000000000009");

  // Lists skip it, and pages still hold `size` entities and link to the rest.
  ListQuery query;
  query.size = 1;
  std::vector<std::string> seen;
  for (int pages = 0; pages < 5; ++pages) {
    auto page = store_->List<Service>(query);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_EQ(page->items.size(), 1u);
    seen.push_back(page->items[0].id());
    if (!page->has_more) break;
    query.after_id = page->items.back().id();
  }
  EXPECT_EQ(seen, (std::vector<std::string>{before, after}));
  auto routes = store_->List<Route>({.parent_field = "service", .parent_id = corrupt});
  ASSERT_TRUE(routes.ok()) << routes.status();
  EXPECT_TRUE(routes->items.empty());

  // ReadConfig reports it instead of failing, and leaves it out.
  auto config = store_->ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->version.version, 4u);
  EXPECT_EQ(config->config.services.size(), 2u);
  EXPECT_TRUE(config->config.routes.empty());
  ASSERT_EQ(config->corrupt.size(), 2u);
  EXPECT_EQ(config->corrupt[0].kind, "services");
  EXPECT_EQ(config->corrupt[0].id, corrupt);
  EXPECT_EQ(config->corrupt[1].kind, "routes");
  EXPECT_FALSE(config->corrupt[0].error.empty());

  // Repair: delete the route, replace the service by id (its created_at column is kept).
  clock_.Advance(10);
  EXPECT_TRUE(*store_->Delete<Route>("00000000-0000-4000-8000-000000000009"));
  Service fixed = NewService("fixed");
  fixed.set_id(corrupt);
  auto replaced = store_->Upsert(fixed);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(replaced->created_at(), 1700000000);
  EXPECT_EQ(replaced->updated_at(), 1010);
  config = store_->ReadConfig();
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(config->corrupt.empty());
  EXPECT_EQ(config->config.services.size(), 3u);
  EXPECT_EQ(store_->Get<Service>(corrupt)->name(), "fixed");

  // And a corrupt service can simply be deleted.
  ASSERT_EQ(test_support::InsertCorruptRowAt(location_, "services", "00000000-0000-4000-8000-000000000004", "x\xff"), "");
  EXPECT_TRUE(*store_->Delete<Service>("00000000-0000-4000-8000-000000000004"));
  EXPECT_TRUE(store_->ReadConfig()->corrupt.empty());
}

#if PORTICO_STORE_TEST_SQLITE
TEST(StoreMemoryTest, InMemoryDatabaseWorks) {
  FakeClock clock;
  auto store = Store::Open(":memory:", clock);
  ASSERT_TRUE(store.ok()) << store.status();
  Service s = DefaultService();
  s.set_host("h");
  ASSERT_TRUE((*store)->Insert(s).ok());
  EXPECT_EQ((*store)->ReadConfig()->config.services.size(), 1u);
  EXPECT_TRUE((*store)->Ping().ok());
}
#endif  // PORTICO_STORE_TEST_SQLITE

}  // namespace
}  // namespace portico::cp

namespace portico::cp {
namespace {

TEST_P(StoreTest, ABatchWritesAllOrNothingWithOneVersionBump) {
  const EntityDescriptor& services = *store_->kinds().Find("services");
  const EntityDescriptor& routes = *store_->kinds().Find("routes");
  Service s = NewService("batched");
  s.set_id("b0000000-0000-4000-8000-000000000001");
  Route r = NewRoute(s.id());
  r.set_id("b0000000-0000-4000-8000-000000000002");
  const uint64_t before = store_->CurrentVersion();
  auto written = store_->WriteBatch({{.kind = &services, .entity = &s, .mode = WriteMode::kInsert},
                                     {.kind = &routes, .entity = &r, .mode = WriteMode::kInsert}});
  ASSERT_TRUE(written.ok()) << written.status();
  ASSERT_EQ(written->size(), 2u);
  EXPECT_EQ(services.Id(*(*written)[0]), s.id());
  EXPECT_EQ(store_->CurrentVersion(), before + 1);

  // A refused step (a second service with the same name) undoes the steps before it.
  Route other = NewRoute(s.id());
  other.set_id("b0000000-0000-4000-8000-000000000003");
  Service clash = NewService("batched");
  auto refused = store_->WriteBatch({{.kind = &routes, .entity = nullptr, .delete_id = r.id()},
                                     {.kind = &routes, .entity = &other, .mode = WriteMode::kInsert},
                                     {.kind = &services, .entity = &clash, .mode = WriteMode::kInsert}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(GetStoreConflict(refused.status()), StoreConflict::kUniqueName);
  EXPECT_EQ(StoreConflictSubject(refused.status()), "name");
  EXPECT_EQ(store_->CurrentVersion(), before + 1);
  EXPECT_TRUE(store_->Get<Route>(r.id()).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Get<Route>(other.id()).status()));

  // Deletes and writes together.
  auto swapped = store_->WriteBatch({{.kind = &routes, .entity = nullptr, .delete_id = r.id()},
                                     {.kind = &routes, .entity = &other, .mode = WriteMode::kInsert}});
  ASSERT_TRUE(swapped.ok()) << swapped.status();
  EXPECT_EQ(swapped->size(), 1u);
  EXPECT_EQ(store_->CurrentVersion(), before + 2);
  EXPECT_TRUE(absl::IsNotFound(store_->Get<Route>(r.id()).status()));
  EXPECT_TRUE(store_->Get<Route>(other.id()).ok());
}

// ---- The change log (ReadConfigChanges) ----

// A change as (kind, id, whether the entity is there).
using ChangeRow = std::tuple<std::string, std::string, bool>;
std::vector<ChangeRow> Rows(const StoredChanges& changes) {
  std::vector<ChangeRow> out;
  for (const ConfigChange& c : changes.changes) out.emplace_back(c.kind->name(), c.id, c.entity != nullptr);
  return out;
}

// Sets the change log's retention for one test.
class ScopedRetention {
 public:
  explicit ScopedRetention(ChangeLogRetention r) : saved_(GetChangeLogRetention()) { SetChangeLogRetentionForTest(r); }
  ~ScopedRetention() { SetChangeLogRetentionForTest(saved_); }

 private:
  ChangeLogRetention saved_;
};

TEST_P(StoreTest, ChangesNameEachInsertUpdateAndDeleteWithItsEntityNow) {
  Service s = NewService("feed");
  s.set_id("c0000000-0000-4000-8000-000000000001");
  ASSERT_TRUE(store_->Insert(s).ok());
  auto changes = store_->ReadConfigChanges(0, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(changes->version.version, 1u);
  EXPECT_EQ(changes->version.epoch, store_->Epoch());
  ASSERT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", s.id(), true}}));
  EXPECT_EQ(static_cast<const Service&>(*changes->changes[0].entity).name(), "feed");
  EXPECT_TRUE(changes->corrupt.empty());

  s.set_host("other.example.com");
  ASSERT_TRUE(store_->Update(s).ok());
  changes = store_->ReadConfigChanges(1, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(changes->version.version, 2u);
  ASSERT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", s.id(), true}}));
  EXPECT_EQ(static_cast<const Service&>(*changes->changes[0].entity).host(), "other.example.com");

  // A delete of nothing makes no version and logs nothing.
  EXPECT_FALSE(*store_->Delete<Service>("c0000000-0000-4000-8000-00000000000f"));
  EXPECT_EQ(store_->CurrentVersion(), 2u);
  EXPECT_TRUE(store_->ReadConfigChanges(2, 100)->changes.empty());

  ASSERT_TRUE(*store_->Delete<Service>(s.id()));
  changes = store_->ReadConfigChanges(2, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_EQ(changes->version.version, 3u);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", s.id(), false}}));
  // Over all three versions: the row once, as it is now.
  changes = store_->ReadConfigChanges(0, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", s.id(), false}}));
}

TEST_P(StoreTest, ChangesIncludeRowsDeletedByACascade) {
  config::v1::Certificate cert;
  cert.set_id("c1000000-0000-4000-8000-000000000001");
  cert.set_cert("cert");
  cert.set_key("key");
  ASSERT_TRUE(store_->Insert(cert).ok());
  std::vector<std::string> sni_ids = {"c1000000-0000-4000-8000-000000000003", "c1000000-0000-4000-8000-000000000002"};
  for (const std::string& id : sni_ids) {
    config::v1::Sni sni;
    sni.set_id(id);
    sni.set_name("sni" + id.substr(id.size() - 1) + ".example.com");
    sni.set_certificate_id(cert.id());
    ASSERT_TRUE(store_->Insert(sni).ok());
  }
  const uint64_t before = store_->CurrentVersion();
  ASSERT_TRUE(*store_->Delete<config::v1::Certificate>(cert.id()));
  auto changes = store_->ReadConfigChanges(before, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(changes->version.version, before + 1);
  // Registry order (certificates before snis), ids sorted within a kind.
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"certificates", cert.id(), false},
                                                    {"snis", sni_ids[1], false},
                                                    {"snis", sni_ids[0], false}}));
}

TEST_P(StoreTest, ChangesOfABatchShareItsVersionAndLaterReadsSeeOnlyLaterVersions) {
  const EntityDescriptor& services = *store_->kinds().Find("services");
  const EntityDescriptor& routes = *store_->kinds().Find("routes");
  Service s = NewService("batched");
  s.set_id("c2000000-0000-4000-8000-000000000001");
  Route r1 = NewRoute(s.id());
  r1.set_id("c2000000-0000-4000-8000-000000000009");
  Route r2 = NewRoute(s.id());
  r2.set_id("c2000000-0000-4000-8000-000000000002");
  ASSERT_TRUE(store_->WriteBatch({{.kind = &routes, .entity = nullptr, .delete_id = "absent"},
                                  {.kind = &services, .entity = &s, .mode = WriteMode::kInsert},
                                  {.kind = &routes, .entity = &r1, .mode = WriteMode::kInsert},
                                  {.kind = &routes, .entity = &r2, .mode = WriteMode::kInsert}})
                  .ok());
  ASSERT_EQ(store_->CurrentVersion(), 1u);
  auto changes = store_->ReadConfigChanges(0, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", s.id(), true},
                                                    {"routes", r2.id(), true},
                                                    {"routes", r1.id(), true}}));

  r1.mutable_paths()->add_values("/b");
  ASSERT_TRUE(store_->Update(r1).ok());  // version 2
  ASSERT_TRUE(store_->Delete<Route>(r2.id()).ok());  // version 3
  changes = store_->ReadConfigChanges(1, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_EQ(changes->version.version, 3u);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"routes", r2.id(), false}, {"routes", r1.id(), true}}));
  changes = store_->ReadConfigChanges(2, 100);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"routes", r2.id(), false}}));

  changes = store_->ReadConfigChanges(3, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_TRUE(changes->changes.empty());
  changes = store_->ReadConfigChanges(4, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_FALSE(changes->covered);
  EXPECT_EQ(changes->version.version, 3u);

  // More than max_changes: not covered, nothing listed.
  changes = store_->ReadConfigChanges(0, 2);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_FALSE(changes->covered);
  EXPECT_TRUE(changes->changes.empty());
  EXPECT_EQ(changes->version.version, 3u);
  EXPECT_TRUE(store_->ReadConfigChanges(0, 3)->covered);
}

TEST_P(StoreTest, AReplaceConfigIsNotLoggedAndEndsCoverageOfEarlierVersions) {
  ASSERT_TRUE(store_->Insert(NewService("old")).ok());
  Service s = NewService("replaced");
  s.set_id("c3000000-0000-4000-8000-000000000001");
  const EntityDescriptor& services = *store_->kinds().Find("services");
  // A refused one changes nothing: the log still covers version 0 and goes on logging.
  Service twin = NewService("replaced");
  ASSERT_FALSE(store_->ReplaceConfig({Store::KindRows{.kind = &services, .entities = {&s, &twin}}}).ok());
  ASSERT_EQ(store_->CurrentVersion(), 1u);
  EXPECT_EQ(store_->ReadConfigChanges(0, 100)->changes.size(), 1u);
  Service between = NewService("between");
  between.set_id("c3000000-0000-4000-8000-000000000003");
  ASSERT_TRUE(store_->Insert(between).ok());
  ASSERT_EQ(store_->CurrentVersion(), 2u);
  auto changes = store_->ReadConfigChanges(1, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", between.id(), true}}));

  ASSERT_TRUE(store_->ReplaceConfig({Store::KindRows{.kind = &services, .entities = {&s}}}).ok());
  ASSERT_EQ(store_->CurrentVersion(), 3u);
  for (uint64_t since : {0, 1, 2}) {
    changes = store_->ReadConfigChanges(since, 100);
    ASSERT_TRUE(changes.ok()) << changes.status();
    EXPECT_FALSE(changes->covered) << since;
    EXPECT_TRUE(changes->changes.empty());
    EXPECT_EQ(changes->version.version, 3u);
  }
  changes = store_->ReadConfigChanges(3, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_TRUE(changes->changes.empty());

  // Later writes are logged again.
  Service added = NewService("added");
  added.set_id("c3000000-0000-4000-8000-000000000002");
  ASSERT_TRUE(store_->Insert(added).ok());
  changes = store_->ReadConfigChanges(3, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", added.id(), true}}));
}

TEST_P(StoreTest, PruningTheChangeLogRaisesItsFloor) {
  ScopedRetention retention({.keep_versions = 3, .prune_every = 2});
  std::vector<std::string> ids;
  for (int i = 1; i <= 9; ++i) {
    auto s = store_->Insert(NewService(absl::StrCat("s", i)));
    ASSERT_TRUE(s.ok()) << s.status();
    ids.push_back(s->id());
  }
  // Version 8 pruned up to 5; version 9 did not prune.
  EXPECT_FALSE(store_->ReadConfigChanges(0, 100)->covered);
  EXPECT_FALSE(store_->ReadConfigChanges(4, 100)->covered);
  auto changes = store_->ReadConfigChanges(5, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  std::vector<ChangeRow> want;
  for (int i = 5; i < 9; ++i) want.emplace_back("services", ids[i], true);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(Rows(*changes), want);
  ASSERT_TRUE(store_->Insert(NewService("s10")).ok());  // prunes up to 7
  EXPECT_FALSE(store_->ReadConfigChanges(6, 100)->covered);
  EXPECT_TRUE(store_->ReadConfigChanges(7, 100)->covered);
  // The pruned rows are gone, not only hidden by the floor: with the floor lowered again, only
  // versions 8 to 10 are listed.
  ASSERT_EQ(ExecSql("UPDATE sync_meta SET changes_floor = 0 WHERE id = 1"), "");
  changes = store_->ReadConfigChanges(0, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(changes->changes.size(), 3u);
}

TEST_P(StoreTest, AChangedRowThatDoesNotParseIsListedAsCorrupt) {
  const std::string good = "c4000000-0000-4000-8000-000000000001";
  const std::string corrupt = "c4000000-0000-4000-8000-000000000002";
  Service s = NewService("good");
  s.set_id(good);
  ASSERT_TRUE(store_->Insert(s).ok());
  // The helper bumps the version, then writes the row on a connection of its own (logged by the
  // trigger under the new version, as a store write is).
  ASSERT_EQ(test_support::InsertCorruptRowAt(location_, "services", corrupt, "bad\xff\xfe"), "");
  auto changes = store_->ReadConfigChanges(0, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(changes->version.version, 2u);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", good, true}}));
  EXPECT_EQ(changes->corrupt.size(), 1u);
  changes = store_->ReadConfigChanges(1, 100);  // the corrupt row's version only
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->changes.empty());
  ASSERT_EQ(changes->corrupt.size(), 1u);
  EXPECT_EQ(changes->corrupt[0].id, corrupt);
  ASSERT_EQ(changes->corrupt.size(), 1u);
  EXPECT_EQ(changes->corrupt[0].kind, "services");
  EXPECT_EQ(changes->corrupt[0].id, corrupt);
  EXPECT_FALSE(changes->corrupt[0].error.empty());
}

TEST_P(StoreTest, ADatabaseFromBeforeTheChangeLogIsCoveredFromItsVersionAtUpgrade) {
  ASSERT_TRUE(store_->Insert(NewService("a")).ok());
  store_.reset();
  // Back to the schema of migration 4, then a write of an older CP (no log).
  std::string downgrade;
  if (postgres()) {
    downgrade = "DROP FUNCTION portico_log_config_change() CASCADE; DROP TABLE config_changes; "
                "ALTER TABLE sync_meta DROP COLUMN changes_floor; ";
  } else {
    for (const EntityDescriptor* kind : EntityRegistry::Default().kinds()) {
      for (const char* op : {"insert", "update", "delete"}) {
        absl::StrAppend(&downgrade, "DROP TRIGGER IF EXISTS ", kind->name(), "_config_changes_", op, "; ");
      }
    }
    absl::StrAppend(&downgrade, "DROP TABLE config_changes; ALTER TABLE sync_meta DROP COLUMN changes_floor; ");
  }
  absl::StrAppend(&downgrade, "DELETE FROM schema_migrations WHERE id = 5; ",
                  "UPDATE sync_meta SET version = version + 1 WHERE id = 1;");
  ASSERT_EQ(ExecSql(downgrade), "");

  auto reopened = Store::Open(location_, clock_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  ASSERT_EQ(store_->AppliedMigrations()->size(), 5u);
  EXPECT_EQ(store_->AppliedMigrations()->back().second, "create_config_changes");
  ASSERT_EQ(store_->CurrentVersion(), 2u);
  EXPECT_FALSE(store_->ReadConfigChanges(1, 100)->covered);
  auto changes = store_->ReadConfigChanges(2, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_TRUE(changes->changes.empty());
  auto b = store_->Insert(NewService("b"));
  ASSERT_TRUE(b.ok()) << b.status();
  changes = store_->ReadConfigChanges(2, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  EXPECT_EQ(Rows(*changes), (std::vector<ChangeRow>{{"services", b->id(), true}}));
}

TEST_P(StoreTest, ListTaggedGivesOneRowPerTagInEntityIdOrder) {
  Service a = NewService("a");
  a.set_id("00000000-0000-4000-8000-00000000000a");
  a.mutable_tags()->add_values("prod");
  a.mutable_tags()->add_values("pro");
  ASSERT_TRUE(store_->Insert(a).ok());
  Service b = NewService("b");
  b.set_id("00000000-0000-4000-8000-00000000000b");
  ASSERT_TRUE(store_->Insert(b).ok());  // no tags: no rows
  Route r;
  r.set_id("00000000-0000-4000-8000-000000000001");
  r.add_protocols("http");
  r.mutable_paths()->add_values("/");
  r.mutable_tags()->add_values("prod");
  ASSERT_TRUE(store_->Insert(r).ok());

  TagQuery all;
  absl::StatusOr<ListPage<TaggedEntity>> page = store_->ListTagged(all);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->items.size(), 3u);
  EXPECT_FALSE(page->has_more);
  auto row = [](const TaggedEntity& t) { return absl::StrCat(t.entity_name, "/", t.entity_id.substr(34), "/", t.tag, "/", t.ordinality); };
  EXPECT_EQ(row(page->items[0]), "routes/01/prod/1");
  EXPECT_EQ(row(page->items[1]), "services/0a/prod/1");
  EXPECT_EQ(row(page->items[2]), "services/0a/pro/2");

  // Keyset pages: after (entity, position), within one entity's tags too.
  TagQuery second;
  second.size = 1;
  second.after_entity_id = page->items[1].entity_id;
  second.after_entity_name = "services";
  second.after_ordinality = 1;
  page = store_->ListTagged(second);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(row(page->items[0]), "services/0a/pro/2");
  EXPECT_FALSE(page->has_more);

  // One tag: matched whole (not "pro" inside "prod"), one row per entity.
  TagQuery pro;
  pro.tag = "pro";
  page = store_->ListTagged(pro);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(row(page->items[0]), "services/0a/pro/2");
  TagQuery prod;
  prod.tag = "prod";
  prod.size = 1;
  page = store_->ListTagged(prod);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(row(page->items[0]), "routes/01/prod/1");
  EXPECT_TRUE(page->has_more);
}

TEST_P(StoreTest, ListTaggedPagesOfEverySizeWalkEveryRowOnce) {
  // Services with 0-3 tags and routes with 1-2, ids interleaved; the expected rows computed here.
  std::vector<std::tuple<std::string, std::string, int, std::string>> expected;  // id, kind, position, tag
  for (int i = 0; i < 12; ++i) {
    Service s = NewService(absl::StrCat("s", i));
    s.set_id(absl::StrCat("00000000-0000-4000-8000-0000000000", 10 + 2 * i));
    for (int t = 0; t < i % 4; ++t) {
      s.mutable_tags()->add_values(absl::StrCat("t", t));
      expected.emplace_back(s.id(), "services", t + 1, absl::StrCat("t", t));
    }
    ASSERT_TRUE(store_->Insert(s).ok());
  }
  for (int i = 0; i < 8; ++i) {
    Route r;
    r.set_id(absl::StrCat("00000000-0000-4000-8000-0000000000", 11 + 3 * i));
    r.add_protocols("http");
    r.mutable_paths()->add_values("/");
    for (int t = 0; t < 1 + i % 2; ++t) {
      r.mutable_tags()->add_values(absl::StrCat("r", t));
      expected.emplace_back(r.id(), "routes", t + 1, absl::StrCat("r", t));
    }
    ASSERT_TRUE(store_->Insert(r).ok());
  }
  std::sort(expected.begin(), expected.end());
  for (int size = 1; size <= 7; ++size) {
    SCOPED_TRACE(size);
    std::vector<std::tuple<std::string, std::string, int, std::string>> walked;
    TagQuery query;
    query.size = size;
    for (int pages = 0; pages < 100; ++pages) {
      absl::StatusOr<ListPage<TaggedEntity>> page = store_->ListTagged(query);
      ASSERT_TRUE(page.ok()) << page.status();
      EXPECT_LE(page->items.size(), static_cast<size_t>(size));
      for (const TaggedEntity& row : page->items) walked.emplace_back(row.entity_id, row.entity_name, row.ordinality, row.tag);
      if (!page->has_more) break;
      ASSERT_EQ(page->items.size(), static_cast<size_t>(size));
      query.after_entity_id = page->items.back().entity_id;
      query.after_entity_name = page->items.back().entity_name;
      query.after_ordinality = page->items.back().ordinality;
    }
    EXPECT_EQ(walked, expected);
  }
}

// ---- VersionFence (optimistic concurrency across CPs) ----

TEST_P(StoreTest, AFencedWriteCommitsOnlyFromItsExpectedVersion) {
  ASSERT_TRUE(store_->Insert(NewService("a")).ok());
  const uint64_t v = store_->CurrentVersion();
  {
    VersionFence fence(v);
    ASSERT_TRUE(store_->Insert(NewService("b")).ok());
    EXPECT_EQ(fence.expected(), v + 1);
    // A second write of the same sequence starts from the version the first made.
    ASSERT_TRUE(store_->Insert(NewService("c")).ok());
    EXPECT_EQ(fence.expected(), v + 2);
    EXPECT_EQ(fence.committed_writes(), 2);
    EXPECT_FALSE(fence.stale());
    // A refused write (unique name) rolls back and leaves expected() where it was.
    EXPECT_FALSE(store_->Insert(NewService("c")).ok());
    EXPECT_FALSE(store_->Delete<Service>("00000000-0000-4000-8000-00000000dead").value_or(true));
    EXPECT_EQ(fence.expected(), v + 2);
    EXPECT_FALSE(fence.stale());
  }
  EXPECT_EQ(store_->CurrentVersion(), v + 2);
  {
    VersionFence fence(v);  // another write (b, c) landed since v
    absl::StatusOr<Service> stale = store_->Insert(NewService("d"));
    EXPECT_TRUE(absl::IsAborted(stale.status())) << stale.status();
    EXPECT_TRUE(fence.stale());
    EXPECT_EQ(fence.committed_writes(), 0);
    Service update = *store_->GetByEndpointKey<Service>("a");
    update.set_port(81);
    EXPECT_TRUE(absl::IsAborted(store_->Update(update).status()));
    EXPECT_TRUE(absl::IsAborted(store_->Delete<Service>(update.id()).status()));
  }
  // Nothing of the refused writes is there.
  EXPECT_EQ(store_->CurrentVersion(), v + 2);
  EXPECT_FALSE(store_->GetByEndpointKey<Service>("d").ok());
  EXPECT_EQ(store_->GetByEndpointKey<Service>("a")->port(), 80);
  // Unfenced writes are as before.
  ASSERT_TRUE(store_->Insert(NewService("d")).ok());
  EXPECT_EQ(store_->CurrentVersion(), v + 3);
}

TEST_P(StoreTest, FencedWritesOfTwoStoresOnOneDatabaseNeverBothCommitFromOneVersion) {
  auto other = Store::Open(location_, clock_);
  ASSERT_TRUE(other.ok()) << other.status();
  const uint64_t v = store_->CurrentVersion();
  VersionFence fence_a(v);
  ASSERT_TRUE(store_->Insert(NewService("first")).ok());
  // A second "CP" (its own thread, so its own fence) that read v before that write:
  std::thread([&] {
    VersionFence fence_b(v);
    EXPECT_TRUE(absl::IsAborted((*other)->Insert(NewService("second")).status()));
    EXPECT_TRUE(fence_b.stale());
  }).join();
  EXPECT_FALSE(fence_a.stale());
  EXPECT_EQ(fence_a.expected(), v + 1);
  EXPECT_EQ(store_->CurrentVersion(), v + 1);
  EXPECT_FALSE((*other)->GetByEndpointKey<Service>("second").ok());
}

// ---- Data-plane rows (clustering_data_planes) ----

StoredDataPlane DpRow(const std::string& id, const std::string& cp, bool connected, int64_t last_seen,
                      int64_t purge_at) {
  StoredDataPlane row;
  row.status.id = id;
  row.status.control_plane_id = cp;
  row.status.control_plane_hostname = cp + ".host";
  row.status.state = connected ? "connected_synced" : "disconnected";
  row.status.last_seen = last_seen;
  row.status.connected_since = connected ? last_seen - 5 : 0;
  row.connected = connected;
  row.purge_at = purge_at;
  return row;
}

TEST_P(StoreTest, DataPlaneRowsKeepEveryFieldAndBumpNoVersion) {
  StoredDataPlane row = DpRow("dp-1", "cp-a", true, 1000, 5000);
  DataPlaneStatus& dp = row.status;
  dp.hostname = "edge1";
  dp.ip = "10.0.0.5";
  dp.version = "0.2.0";
  dp.config_hash = "abcdef";
  dp.config_version = 12;
  dp.sync_status = "normal";
  dp.last_error = "E: it's \"odd\"";
  // Separators, quotes and non-ASCII in labels survive the column's encoding.
  dp.labels = {{"region", "eu"}, {"k=v", "a\x1f" "b"}, {"quote\"d", "\xc3\xa9t\xc3\xa9"}, {"", "empty key"}};
  dp.cert_expiry = 1800000000;
  dp.nack_count = 3;
  dp.lag_versions = 7;  // not stored
  dp.lag_seconds = 9;
  ASSERT_TRUE(store_->SaveDataPlanes({row}).ok());
  EXPECT_EQ(store_->CurrentVersion(), 0u);
  absl::StatusOr<std::vector<StoredDataPlane>> rows = store_->ListDataPlaneRows(1000);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  const StoredDataPlane& got = rows->front();
  EXPECT_TRUE(got.connected);
  EXPECT_EQ(got.purge_at, 5000);
  EXPECT_EQ(got.status.id, "dp-1");
  EXPECT_EQ(got.status.hostname, "edge1");
  EXPECT_EQ(got.status.ip, "10.0.0.5");
  EXPECT_EQ(got.status.version, "0.2.0");
  EXPECT_EQ(got.status.config_hash, "abcdef");
  EXPECT_EQ(got.status.config_version, 12u);
  EXPECT_EQ(got.status.last_seen, 1000);
  EXPECT_EQ(got.status.sync_status, "normal");
  EXPECT_EQ(got.status.state, "connected_synced");
  EXPECT_EQ(got.status.last_error, dp.last_error);
  EXPECT_EQ(got.status.labels, dp.labels);
  EXPECT_EQ(got.status.cert_expiry, 1800000000);
  EXPECT_EQ(got.status.connected_since, 995);
  EXPECT_EQ(got.status.nack_count, 3u);
  EXPECT_EQ(got.status.control_plane_id, "cp-a");
  EXPECT_EQ(got.status.control_plane_hostname, "cp-a.host");
  EXPECT_EQ(got.status.lag_versions, 0u);
  EXPECT_EQ(got.status.lag_seconds, 0);
  EXPECT_TRUE(store_->SaveDataPlanes({}).ok());

  // Kept across a reopen.
  store_.reset();
  auto reopened = Store::Open(location_, clock_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  rows = (*reopened)->ListDataPlaneRows(1000);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ(rows->front().status.labels, dp.labels);
  EXPECT_EQ((*reopened)->CurrentVersion(), 0u);
}

TEST_P(StoreTest, ADisconnectedRowNeverReplacesAnotherCpsConnectedRow) {
  auto owner = [&](const std::string& id) -> std::pair<std::string, bool> {
    absl::StatusOr<std::vector<StoredDataPlane>> rows = store_->ListDataPlaneRows(0);
    if (!rows.ok()) return {"error", false};
    for (const StoredDataPlane& row : *rows) {
      if (row.status.id == id) return {row.status.control_plane_id, row.connected};
    }
    return {"", false};
  };
  using Owner = std::pair<std::string, bool>;
  ASSERT_TRUE(store_->SaveDataPlanes({DpRow("dp-1", "cp-a", true, 100, 9000)}).ok());
  EXPECT_EQ(owner("dp-1"), Owner("cp-a", true));
  // The DP moved to B.
  ASSERT_TRUE(store_->SaveDataPlanes({DpRow("dp-1", "cp-b", true, 110, 9000)}).ok());
  EXPECT_EQ(owner("dp-1"), Owner("cp-b", true));
  // A records the end of its old stream late: refused (not an error), B's row stays.
  ASSERT_TRUE(store_->SaveDataPlanes({DpRow("dp-1", "cp-a", false, 105, 9000), DpRow("dp-2", "cp-a", false, 105, 9000)})
                  .ok());
  EXPECT_EQ(owner("dp-1"), Owner("cp-b", true));
  EXPECT_EQ(owner("dp-2"), Owner("cp-a", false)) << "the other rows of the same save are written";
  // B's own end of stream replaces its connected row.
  ASSERT_TRUE(store_->SaveDataPlanes({DpRow("dp-1", "cp-b", false, 120, 9000)}).ok());
  EXPECT_EQ(owner("dp-1"), Owner("cp-b", false));
  // A disconnected row may replace a disconnected row of another CP, and a connected one anything.
  ASSERT_TRUE(store_->SaveDataPlanes({DpRow("dp-1", "cp-a", false, 130, 9000)}).ok());
  EXPECT_EQ(owner("dp-1"), Owner("cp-a", false));
  ASSERT_TRUE(store_->SaveDataPlanes({DpRow("dp-1", "cp-b", true, 140, 9000)}).ok());
  ASSERT_TRUE(store_->SaveDataPlanes({DpRow("dp-1", "cp-a", true, 150, 9000)}).ok());
  EXPECT_EQ(owner("dp-1"), Owner("cp-a", true));
  EXPECT_EQ(store_->CurrentVersion(), 0u);
}

TEST_P(StoreTest, DataPlaneRowsAreListedUntilTheirPurgeTimeAndPurgedFromThen) {
  ASSERT_TRUE(store_
                  ->SaveDataPlanes({DpRow("dp-c", "cp-a", false, 100, 300), DpRow("dp-a", "cp-a", true, 100, 200),
                                    DpRow("dp-b", "cp-b", false, 100, 400)})
                  .ok());
  auto ids = [&](int64_t now) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<StoredDataPlane>> rows = store_->ListDataPlaneRows(now);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (rows.ok()) {
      for (const StoredDataPlane& row : *rows) out.push_back(row.status.id);
    }
    return out;
  };
  EXPECT_EQ(ids(199), (std::vector<std::string>{"dp-a", "dp-b", "dp-c"}));
  EXPECT_EQ(ids(200), (std::vector<std::string>{"dp-b", "dp-c"}));
  EXPECT_EQ(ids(399), (std::vector<std::string>{"dp-b"}));
  EXPECT_EQ(*store_->PurgeDataPlanes(199), 0);
  EXPECT_EQ(*store_->PurgeDataPlanes(300), 2);
  EXPECT_EQ(ids(0), (std::vector<std::string>{"dp-b"}));
  EXPECT_EQ(*store_->PurgeDataPlanes(300), 0);
  // A later save of a purged DP creates its row again.
  ASSERT_TRUE(store_->SaveDataPlanes({DpRow("dp-a", "cp-b", false, 500, 900)}).ok());
  EXPECT_EQ(ids(0), (std::vector<std::string>{"dp-a", "dp-b"}));
  EXPECT_EQ(store_->CurrentVersion(), 0u);
}

TEST(DataPlaneLabelsTest, EncodeIsAJsonObjectAndDecodeSurvivesGarbage) {
  EXPECT_EQ(EncodeDataPlaneLabels({}), "{}");
  EXPECT_EQ(EncodeDataPlaneLabels({{"b", "2"}, {"a", "1"}}), R"({"a":"1","b":"2"})");
  EXPECT_EQ(DecodeDataPlaneLabels(R"({"a":"1","n":5})"), (std::map<std::string, std::string>{{"a", "1"}}));
  EXPECT_TRUE(DecodeDataPlaneLabels("not json").empty());
  EXPECT_TRUE(DecodeDataPlaneLabels("[1,2]").empty());
  EXPECT_TRUE(DecodeDataPlaneLabels("").empty());
}
std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kPostgres ? "Postgres" : "Sqlite";
}
#if PORTICO_STORE_TEST_SQLITE
INSTANTIATE_TEST_SUITE_P(Sqlite, StoreTest, ::testing::Values(Backend::kSqlite), BackendName);
#endif
#if PORTICO_STORE_TEST_POSTGRES
INSTANTIATE_TEST_SUITE_P(Postgres, StoreTest, ::testing::Values(Backend::kPostgres), BackendName);
#endif

}  // namespace
}  // namespace portico::cp
