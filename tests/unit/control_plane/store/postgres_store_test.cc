// What only PostgreSQL shows: several stores (CPs) on one database, the change feed, the data
// plane rows, connections lost and found. The contract tests (store_test.cc) run on it too.
#include "control_plane/store/postgres_store.h"

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/config/entities.h"
#include "common/config/entity_json.h"
#include "gtest/gtest.h"
#include "tests/common/postgres_test_db.h"

namespace portico::cp {
namespace {

using config::v1::Service;

Service NewService(const std::string& name) {
  Service s = DefaultService();
  s.set_host("example.com");
  s.set_name(name);
  return s;
}

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = test_support::PostgresTestDb::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }
  std::unique_ptr<Store> Open() {
    auto store = Store::Open(db_->conninfo(), clock_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  FakeClock clock_{1000};
  std::unique_ptr<test_support::PostgresTestDb> db_;
};

TEST_F(PostgresStoreTest, CpsStartingTogetherOnAnEmptyDatabaseCreateTheSchemaOnce) {
  std::vector<std::unique_ptr<Store>> stores(4);
  std::vector<absl::Status> statuses(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto store = Store::Open(db_->conninfo(), clock_);
      statuses[i] = store.status();
      if (store.ok()) stores[i] = std::move(*store);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i];
  const std::string epoch = stores[0]->Epoch();
  EXPECT_EQ(epoch.size(), 16u);
  for (auto& store : stores) {
    EXPECT_EQ(store->Epoch(), epoch);
    auto migrations = store->AppliedMigrations();
    ASSERT_TRUE(migrations.ok()) << migrations.status();
    EXPECT_EQ(migrations->size(), 5u);
  }
  EXPECT_EQ(stores[0]->CurrentVersion(), 0u);
}

// Two CPs, two writer threads each: every write is kept, and each has a version of its own
// (the NOTIFY payloads are exactly 1..N), the last being N.
TEST_F(PostgresStoreTest, ConcurrentWritesThroughTwoCpsAreSerialisedWithoutLoss) {
  std::unique_ptr<Store> a = Open(), b = Open();
  ASSERT_TRUE(a && b);
  PGconn* listener = PQconnectdb(db_->conninfo().c_str());
  ASSERT_EQ(PQstatus(listener), CONNECTION_OK) << PQerrorMessage(listener);
  PQclear(PQexec(listener, "LISTEN portico_config"));
  constexpr int kPerThread = 25;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    Store* store = t % 2 == 0 ? a.get() : b.get();
    threads.emplace_back([&, store, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!store->Insert(NewService(absl::StrCat("t", t, "-", i))).ok()) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  constexpr int kWrites = 4 * kPerThread;
  EXPECT_EQ(a->CurrentVersion(), static_cast<uint64_t>(kWrites));
  EXPECT_EQ(b->CurrentVersion(), static_cast<uint64_t>(kWrites));
  auto config = b->ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->config.services.size(), static_cast<size_t>(kWrites));
  EXPECT_EQ(config->version.version, static_cast<uint64_t>(kWrites));

  std::vector<uint64_t> versions;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (versions.size() < kWrites && std::chrono::steady_clock::now() < deadline) {
    PQconsumeInput(listener);
    while (PGnotify* n = PQnotifies(listener)) {
      uint64_t v = 0;
      EXPECT_TRUE(absl::SimpleAtoi(n->extra, &v)) << n->extra;
      versions.push_back(v);
      PQfreemem(n);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  PQfinish(listener);
  ASSERT_EQ(versions.size(), static_cast<size_t>(kWrites));
  // Delivered in commit order: strictly increasing, no gap.
  for (int i = 0; i < kWrites; ++i) EXPECT_EQ(versions[i], static_cast<uint64_t>(i + 1)) << i;
}

TEST_F(PostgresStoreTest, AWriteThroughOneCpWakesTheOthersWait) {
  std::unique_ptr<Store> a = Open(), b = Open();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(b->WaitForChange(absl::Milliseconds(50)), ChangeWait::kTimedOut);
  std::atomic<bool> woke{false};
  ChangeWait seen = ChangeWait::kTimedOut;
  std::thread waiter([&] {
    seen = b->WaitForChange(absl::Seconds(10));
    woke = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(woke.load());
  const auto written = std::chrono::steady_clock::now();
  ASSERT_TRUE(a->Insert(NewService("from-a")).ok());
  waiter.join();
  EXPECT_EQ(seen, ChangeWait::kNotified);
  EXPECT_LT(std::chrono::steady_clock::now() - written, std::chrono::seconds(2));
  EXPECT_EQ(b->CurrentVersion(), 1u);
  // Its own writes count too; a refused write sends nothing.
  ASSERT_TRUE(b->Insert(NewService("from-b")).ok());
  EXPECT_EQ(b->WaitForChange(absl::Seconds(5)), ChangeWait::kNotified);
  EXPECT_EQ(b->WaitForChange(absl::Milliseconds(50)), ChangeWait::kTimedOut);
  EXPECT_FALSE(a->Insert(NewService("from-b")).ok());
  EXPECT_FALSE(*a->Delete<Service>("00000000-0000-4000-8000-000000000000"));
  EXPECT_EQ(b->WaitForChange(absl::Milliseconds(200)), ChangeWait::kTimedOut);
  EXPECT_EQ(a->CurrentVersion(), 2u);
}

// The server ends every connection (a restart, an operator's pg_terminate_backend): the store
// reconnects on its next call, and the feed on its next wait (saying kNotified: a change may have
// been missed).
TEST_F(PostgresStoreTest, ConnectionsEndedByTheServerAreReopened) {
  std::unique_ptr<Store> a = Open();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->Insert(NewService("before")).ok());
  ASSERT_EQ(a->WaitForChange(absl::Seconds(5)), ChangeWait::kNotified);
  ASSERT_EQ(db_->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid()"),
            "");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto written = a->Insert(NewService("after"));
  EXPECT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(a->CurrentVersion(), 2u);
  EXPECT_TRUE(a->Ping().ok());
  EXPECT_EQ(a->WaitForChange(absl::Seconds(5)), ChangeWait::kNotified);
  ASSERT_TRUE(a->Insert(NewService("later")).ok());
  EXPECT_EQ(a->WaitForChange(absl::Seconds(5)), ChangeWait::kNotified);
  EXPECT_EQ(a->ReadConfig()->config.services.size(), 3u);
}

TEST_F(PostgresStoreTest, AnUnreachableServerIsUnavailable) {
  // A port nothing listens on (the fixture's port + 1 may be taken; a reserved one is not).
  auto store = Store::Open("host=127.0.0.1 port=1 dbname=x user=postgres connect_timeout=2", clock_);
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::IsUnavailable(store.status())) << store.status();
  EXPECT_EQ(store.status().message().find('\n'), absl::string_view::npos) << "one line: " << store.status();
}

// The database gone under a running store (dropped; the same as a server that refuses it): every
// call says Unavailable, nothing is half-done, and the feed says kNoFeed at once.
TEST_F(PostgresStoreTest, ADatabaseThatCannotBeReachedIsUnavailable) {
  std::unique_ptr<Store> a = Open();
  ASSERT_TRUE(a);
  auto s = a->Insert(NewService("kept"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(a->WaitForChange(absl::Seconds(5)), ChangeWait::kNotified);
  const std::string name = db_->name();
  db_.reset();  // DROP DATABASE ... WITH (FORCE): every connection ends
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto written = a->Insert(NewService("lost"));
  EXPECT_TRUE(absl::IsUnavailable(written.status())) << written.status();
  auto read = a->Get<Service>(s->id());
  EXPECT_TRUE(absl::IsUnavailable(read.status())) << read.status();
  auto config = a->ReadConfig();
  EXPECT_TRUE(absl::IsUnavailable(config.status())) << config.status();
  EXPECT_TRUE(absl::IsUnavailable(a->Ping())) << a->Ping();
  EXPECT_TRUE(absl::IsUnavailable(a->SaveDataPlanes({StoredDataPlane{}})));
  EXPECT_EQ(a->CurrentVersion(), 0u);
  const auto waited = std::chrono::steady_clock::now();
  EXPECT_EQ(a->WaitForChange(absl::Seconds(5)), ChangeWait::kNoFeed);
  EXPECT_LT(std::chrono::steady_clock::now() - waited, std::chrono::seconds(2));
  EXPECT_EQ(a->WaitForChange(absl::Seconds(5)), ChangeWait::kNoFeed);
}

// An outage of the server itself (a server of this test's own: the shared one is never stopped):
// calls fail with Unavailable while it is down, and the store and its feed come back with it.
TEST(PostgresOutageTest, TheStoreAndItsFeedComeBackWithTheServer) {
  char tmpl[] = "/tmp/portico_pg_outage_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string state = tmpl;
  const std::string script = PORTICO_PG_FIXTURE_SCRIPT;
  auto run = [&](const std::string& action) {
    return std::system((script + " " + action + " " + state + " >/dev/null 2>&1").c_str());
  };
  ASSERT_EQ(run("start"), 0);
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{[&] {
    run("stop");
    std::filesystem::remove_all(state);
  }};
  std::ifstream port_file(state + "/port");
  int port = 0;
  ASSERT_TRUE(port_file >> port);
  FakeClock clock(1000);
  auto store = Store::Open(absl::StrCat("host=127.0.0.1 port=", port, " user=postgres dbname=postgres"), clock);
  ASSERT_TRUE(store.ok()) << store.status();
  Store& a = **store;
  ASSERT_TRUE(a.Insert(NewService("before")).ok());
  ASSERT_EQ(a.WaitForChange(absl::Seconds(5)), ChangeWait::kNotified);

  ASSERT_EQ(run("halt"), 0);
  auto written = a.Insert(NewService("during"));
  EXPECT_TRUE(absl::IsUnavailable(written.status())) << written.status();
  EXPECT_TRUE(absl::IsUnavailable(a.ReadConfig().status()));
  EXPECT_EQ(a.WaitForChange(absl::Seconds(5)), ChangeWait::kNoFeed);

  ASSERT_EQ(run("resume"), 0);
  written = a.Insert(NewService("after"));
  EXPECT_TRUE(written.ok()) << written.status();
  // The feed is back: reconnected (kNotified: a change may have been missed), then live.
  EXPECT_EQ(a.WaitForChange(absl::Seconds(5)), ChangeWait::kNotified);
  ASSERT_TRUE(a.Insert(NewService("later")).ok());
  EXPECT_EQ(a.WaitForChange(absl::Seconds(5)), ChangeWait::kNotified);
  auto config = a.ReadConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->config.services.size(), 3u);
  EXPECT_EQ(config->version.version, 3u);
  EXPECT_TRUE(a.Close().ok());
}

StoredDataPlane Row(const std::string& id, const std::string& cp, bool connected, int64_t purge_at) {
  StoredDataPlane row;
  row.status.id = id;
  row.status.hostname = "dp-" + id;
  row.status.ip = "10.0.0.1";
  row.status.version = "1.2.3";
  row.status.config_hash = "abcd";
  row.status.config_version = 7;
  row.status.last_seen = 990;
  row.status.state = connected ? "connected_synced" : "disconnected";
  row.status.labels = {{"region", "eu"}, {"tier", "edge"}};
  row.status.cert_expiry = 5000;
  row.status.connected_since = 900;
  row.status.nack_count = 2;
  row.status.control_plane_id = cp;
  row.status.control_plane_hostname = cp + ".local";
  row.connected = connected;
  row.purge_at = purge_at;
  return row;
}

TEST_F(PostgresStoreTest, DataPlaneRowsKeepTheConnectedCpsRowAndArePurged) {
  std::unique_ptr<Store> a = Open(), b = Open();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->SaveDataPlanes({Row("dp1", "cp-a", true, 2000), Row("dp2", "cp-a", true, 1500)}).ok());
  EXPECT_EQ(a->CurrentVersion(), 0u) << "no version bump";
  auto rows = b->ListDataPlaneRows(1000);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  const StoredDataPlane& first = (*rows)[0];
  EXPECT_EQ(first.status.id, "dp1");
  EXPECT_EQ(first.status.hostname, "dp-dp1");
  EXPECT_EQ(first.status.config_version, 7u);
  EXPECT_EQ(first.status.labels, (std::map<std::string, std::string>{{"region", "eu"}, {"tier", "edge"}}));
  EXPECT_EQ(first.status.nack_count, 2u);
  EXPECT_EQ(first.status.control_plane_hostname, "cp-a.local");
  EXPECT_TRUE(first.connected);
  EXPECT_EQ(first.purge_at, 2000);

  // dp1 moved to B: B's connected row replaces A's; A's late "disconnected" does not replace B's.
  ASSERT_TRUE(b->SaveDataPlanes({Row("dp1", "cp-b", true, 2100)}).ok());
  ASSERT_TRUE(a->SaveDataPlanes({Row("dp1", "cp-a", false, 2200)}).ok());
  rows = a->ListDataPlaneRows(1000);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].status.control_plane_id, "cp-b");
  EXPECT_TRUE((*rows)[0].connected);
  // B's own "disconnected" does replace it; then A may write again.
  ASSERT_TRUE(b->SaveDataPlanes({Row("dp1", "cp-b", false, 2300)}).ok());
  rows = a->ListDataPlaneRows(1000);
  EXPECT_FALSE((*rows)[0].connected);
  EXPECT_EQ((*rows)[0].purge_at, 2300);
  ASSERT_TRUE(a->SaveDataPlanes({Row("dp1", "cp-a", false, 2400)}).ok());
  EXPECT_EQ((*a->ListDataPlaneRows(1000))[0].status.control_plane_id, "cp-a");

  // Past purge_at: not listed, then purged.
  rows = a->ListDataPlaneRows(1500);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].status.id, "dp1");
  auto purged = b->PurgeDataPlanes(1500);
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 1);
  EXPECT_EQ(*b->PurgeDataPlanes(1500), 0);
  EXPECT_EQ(a->ListDataPlaneRows(0)->size(), 1u);

  // Labels as the SQLite store writes them (a JSON object); a Hello's bytes that are not UTF-8
  // do not keep the row from being recorded.
  // (Division by zero, an error, when no row matches.)
  EXPECT_EQ(db_->Exec("SELECT 1 / count(*)::int FROM clustering_data_planes WHERE id = 'dp1' AND labels = "
                      "'{\"region\":\"eu\",\"tier\":\"edge\"}'"),
            "");
  StoredDataPlane odd = Row("dp3", "cp-a", true, 3000);
  odd.status.hostname = "host\xff";
  odd.status.labels = {{"k", "v\xfe"}};
  ASSERT_TRUE(a->SaveDataPlanes({odd}).ok());
  rows = a->ListDataPlaneRows(1000);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[1].status.hostname, "host\\xff");
  EXPECT_EQ((*rows)[1].status.labels.size(), 1u);
}

// The conflict payloads name what the SQLite store names (Kong's error bodies are built from them).
TEST_F(PostgresStoreTest, ConflictsNameTheirSubjectAsOnSqlite) {
  std::unique_ptr<Store> a = Open();
  ASSERT_TRUE(a);
  auto s = a->Insert(NewService("dup"));
  ASSERT_TRUE(s.ok()) << s.status();
  auto dup = a->Insert(NewService("dup"));
  EXPECT_EQ(GetStoreConflict(dup.status()), StoreConflict::kUniqueName);
  EXPECT_EQ(StoreConflictSubject(dup.status()), "name");
  EXPECT_TRUE(absl::IsAlreadyExists(dup.status()));
  Service same_id = NewService("other");
  same_id.set_id(s->id());
  auto pk = a->Insert(same_id);
  EXPECT_EQ(GetStoreConflict(pk.status()), StoreConflict::kPrimaryKey);
  EXPECT_EQ(StoreConflictSubject(pk.status()), "id");
  config::v1::Route route = DefaultRoute();
  route.mutable_paths()->add_values("/a");
  route.set_service_id("00000000-0000-4000-8000-0000000000ff");
  auto fk = a->Insert(route);
  EXPECT_EQ(GetStoreConflict(fk.status()), StoreConflict::kForeignKeyMissing);
  EXPECT_EQ(StoreConflictSubject(fk.status()), "service");
  EXPECT_TRUE(absl::IsFailedPrecondition(fk.status()));
  route.set_service_id(s->id());
  ASSERT_TRUE(a->Insert(route).ok());
  auto referenced = a->Delete<Service>(s->id());
  EXPECT_EQ(GetStoreConflict(referenced.status()), StoreConflict::kReferenced);
  EXPECT_EQ(StoreConflictSubject(referenced.status()), "routes");
  EXPECT_TRUE(absl::IsFailedPrecondition(referenced.status()));
  EXPECT_EQ(a->CurrentVersion(), 2u);
}

// The change log's off switch names ReplaceConfig's own transaction: an 'off' set for the
// database (or a role, or left in a pooled session) does not stop the logging of other writes.
TEST_F(PostgresStoreTest, ALogSwitchSetOutsideReplaceConfigDoesNotStopTheChangeLog) {
  ASSERT_EQ(db_->Exec(absl::StrCat("ALTER DATABASE ", db_->name(), " SET portico.log_changes = 'off'")), "");
  std::unique_ptr<Store> a = Open();  // its connections start with the setting
  ASSERT_TRUE(a);
  auto s = a->Insert(NewService("logged"));
  ASSERT_TRUE(s.ok()) << s.status();
  auto changes = a->ReadConfigChanges(0, 100);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->covered);
  ASSERT_EQ(changes->changes.size(), 1u);
  EXPECT_EQ(changes->changes[0].id, s->id());
}

TEST_F(PostgresStoreTest, ATableWithoutAColumnItsDescriptorNeedsIsRefusedAtOpen) {
  ASSERT_EQ(db_->Exec("CREATE TABLE routes (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
                      " tags TEXT NOT NULL DEFAULT '', entity BYTEA NOT NULL)"),
            "");
  auto opened = Store::Open(db_->conninfo(), clock_);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(opened.status().message().find("table routes has no column name"), absl::string_view::npos)
      << opened.status();
  // Nothing of the failed open stays (one transaction): no schema_migrations, no sync_meta.
  EXPECT_NE(db_->Exec("SELECT 1 FROM sync_meta"), "");
}

// A CP that dies holding the version row lock (here: a connection left in its transaction)
// blocks the other CPs' writers for lock_timeout, then they fail with Unavailable; a conninfo's
// own lock_timeout wins over the default of 10 s.
TEST_F(PostgresStoreTest, AWriterBlockedOnTheVersionRowLockGivesUpWithUnavailable) {
  std::unique_ptr<Store> a = Open();
  ASSERT_TRUE(a);
  auto store = Store::Open(absl::StrCat(db_->conninfo(), "?options=-c%20lock_timeout%3D1s"), clock_);
  ASSERT_TRUE(store.ok()) << store.status();
  PGconn* holder = PQconnectdb(db_->conninfo().c_str());
  ASSERT_EQ(PQstatus(holder), CONNECTION_OK) << PQerrorMessage(holder);
  for (const char* sql : {"BEGIN", "UPDATE sync_meta SET version = version + 1 WHERE id = 1"}) {
    PGresult* r = PQexec(holder, sql);
    EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQerrorMessage(holder);
    PQclear(r);
  }
  const auto start = std::chrono::steady_clock::now();
  auto written = (*store)->Insert(NewService("blocked"));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(absl::IsUnavailable(written.status())) << written.status();
  EXPECT_GE(waited, std::chrono::milliseconds(900));
  EXPECT_LT(waited, std::chrono::seconds(5));
  PGresult* r = PQexec(holder, "ROLLBACK");
  PQclear(r);
  PQfinish(holder);
  // The lock gone, both write again (the failed write left nothing behind).
  auto later = (*store)->Insert(NewService("later"));
  EXPECT_TRUE(later.ok()) << later.status();
  EXPECT_TRUE(a->Insert(NewService("again")).ok());
  EXPECT_EQ(a->ReadConfig()->config.services.size(), 2u);
}

TEST(PostgresSessionOptionsTest, DefaultsComeFirstSoTheConninfosOwnWin) {
  const std::string defaults = "-c lock_timeout=10s -c statement_timeout=60s -c idle_in_transaction_session_timeout=30s";
  EXPECT_EQ(PostgresSessionOptions("postgresql://u@h/db"), defaults);
  EXPECT_EQ(PostgresSessionOptions("host=h options='-c lock_timeout=1s'"), defaults + " -c lock_timeout=1s");
  EXPECT_EQ(PostgresSessionOptions("postgresql://u@h/db?options=-c%20statement_timeout%3D5s"),
            defaults + " -c statement_timeout=5s");
  setenv("PGOPTIONS", "-c lock_timeout=2s", 1);
  EXPECT_EQ(PostgresSessionOptions("host=h"), defaults + " -c lock_timeout=2s");
  EXPECT_EQ(PostgresSessionOptions("host=h options='-c lock_timeout=1s'"), defaults + " -c lock_timeout=1s");
  unsetenv("PGOPTIONS");
}

// A loopback TCP proxy to the fixture's server that, once armed, forwards the next COMMIT to the
// server, lets it commit, and then drops that connection without forwarding the answer.
class CommitCuttingProxy {
 public:
  explicit CommitCuttingProxy(int server_port) : server_port_(server_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~CommitCuttingProxy() {
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    acceptor_.join();
    for (std::thread& t : pumps_) t.join();
    for (int fd : held_) close(fd);
  }
  int port() const { return port_; }
  // The next COMMIT is forwarded, and the client's connection cut 300 ms later.
  void Arm() { armed_ = true; }
  // The next COMMIT is not forwarded: the client's connection is cut at once while the server's
  // stays open (its process waits in the transaction, as behind a network that broke).
  void ArmSwallow() {
    swallow_ = true;
    armed_ = true;
  }
  bool cut() const { return cut_; }

 private:
  void Accept() {
    while (true) {
      const int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) return;
      const int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(server_port_));
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(server);
        continue;
      }
      pumps_.emplace_back([this, client, server] { Pump(client, server); });
    }
  }
  void Pump(int client, int server) {
    const std::string commit("COMMIT\0", 7);
    char buf[65536];
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    bool open = true;
    while (open && poll(fds, 2, -1) > 0) {
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          open = false;
          break;
        }
        const int to = i == 0 ? server : client;
        if (i == 0 && armed_ && swallow_ && std::string(buf, static_cast<size_t>(n)).find(commit) != std::string::npos) {
          armed_ = false;
          cut_ = true;
          close(client);
          std::lock_guard<std::mutex> lock(held_mu_);
          held_.push_back(server);  // closed by the destructor
          return;
        }
        if (write(to, buf, static_cast<size_t>(n)) != n) open = false;
        if (i == 0 && armed_ && std::string(buf, static_cast<size_t>(n)).find(commit) != std::string::npos) {
          armed_ = false;
          std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the server commits
          cut_ = true;
          open = false;
        }
      }
    }
    close(client);
    close(server);
  }

  int server_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> armed_{false}, cut_{false}, swallow_{false};
  std::mutex held_mu_;
  std::vector<int> held_;  // server connections kept open after a swallowed COMMIT
  std::thread acceptor_;
  std::vector<std::thread> pumps_;  // the acceptor's until it is joined
};

// A store on the test's database reached through `proxy`.
absl::StatusOr<std::unique_ptr<Store>> OpenThroughProxy(const CommitCuttingProxy& proxy, const std::string& db,
                                                        const Clock& clock) {
  return Store::Open(absl::StrCat("postgresql://postgres@127.0.0.1:", proxy.port(), "/", db, "?sslmode=disable"), clock);
}

// The COMMIT lost before the server saw it, the server's process still waiting in the
// transaction: the store ends that process and reports the write as not done (503, nothing
// written); the version row is free at once for the next write (not after the 30 s idle timeout).
TEST_F(PostgresStoreTest, ACommitThatNeverReachedTheServerEndsItsTransactionAndIsAFailure) {
  auto port = test_support::PostgresTestPort();
  ASSERT_TRUE(port.ok()) << port.status();
  CommitCuttingProxy proxy(*port);
  {
    auto store = OpenThroughProxy(proxy, db_->name(), clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    proxy.ArmSwallow();
    auto written = (*store)->Insert(NewService("lost"));
    EXPECT_TRUE(proxy.cut());
    EXPECT_TRUE(absl::IsUnavailable(written.status())) << written.status();
    EXPECT_NE(written.status().message().find("aborted"), std::string::npos) << written.status();
    EXPECT_EQ((*store)->CurrentVersion(), 0u);
    EXPECT_FALSE((*store)->GetByEndpointKey<Service>("lost").ok());
    // Another CP's write does not wait for the abandoned transaction: its process is gone.
    auto other = Store::Open(db_->conninfo() + "?options=-c%20lock_timeout%3D2s", clock_);
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_TRUE((*other)->Insert(NewService("next")).ok());
    EXPECT_TRUE((*store)->Insert(NewService("after")).ok());
    EXPECT_EQ((*store)->CurrentVersion(), 2u);
  }
}

// The connection lost after the server committed but before its answer arrived: the store asks
// a new connection for the transaction's fate, and the committed write is a success, not a 503.
TEST_F(PostgresStoreTest, ACommitWhoseAnswerIsLostIsASuccessWhenItCommitted) {
  auto port = test_support::PostgresTestPort();
  ASSERT_TRUE(port.ok()) << port.status();
  CommitCuttingProxy proxy(*port);
  {
    auto store = OpenThroughProxy(proxy, db_->name(), clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    proxy.Arm();
    auto written = (*store)->Insert(NewService("cut"));
    EXPECT_TRUE(proxy.cut());
    EXPECT_TRUE(written.ok()) << written.status();
    EXPECT_EQ((*store)->CurrentVersion(), 1u);
    auto config = (*store)->ReadConfig();
    ASSERT_TRUE(config.ok()) << config.status();
    ASSERT_EQ(config->config.services.size(), 1u);
    EXPECT_EQ(config->config.services[0].name(), "cut");
    // The store goes on writing on its new connection.
    EXPECT_TRUE((*store)->Insert(NewService("after")).ok());
  }
}

TEST(PostgresCommitOutcomeTest, OnlyACommittedTransactionTurnsALostCommitIntoSuccess) {
  const absl::Status lost = absl::UnavailableError("PostgreSQL unreachable: COMMIT: server closed the connection");
  EXPECT_TRUE(PostgresCommitOutcome(lost, std::string("committed")).ok());
  for (const char* fate : {"aborted", "in progress"}) {
    const absl::Status s = PostgresCommitOutcome(lost, std::string(fate));
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    EXPECT_NE(s.message().find(fate), absl::string_view::npos) << s;
  }
  EXPECT_TRUE(absl::IsUnavailable(PostgresCommitOutcome(lost, absl::UnavailableError("cannot reach PostgreSQL"))));
  EXPECT_TRUE(absl::IsUnavailable(PostgresCommitOutcome(lost, absl::NotFoundError("txid too old"))));
  // Not a lost connection (a constraint checked at commit): as it is.
  const absl::Status refused = absl::AlreadyExistsError("duplicate key");
  EXPECT_EQ(PostgresCommitOutcome(refused, std::string("committed")), refused);
  EXPECT_TRUE(PostgresCommitOutcome(absl::OkStatus(), absl::NotFoundError("x")).ok());
}

TEST(PostgresStoreSqlTest, KeysBecomeNamedConstraintsWithTheirDeleteRule) {
  const std::string sql = PostgresTableSql(RoutesKind());
  EXPECT_NE(sql.find("id TEXT COLLATE \"C\" PRIMARY KEY"), std::string::npos) << sql;
  EXPECT_NE(sql.find("service_id TEXT COLLATE \"C\" CONSTRAINT routes_service_id_fkey REFERENCES services (id) ON DELETE "
                     "RESTRICT"),
            std::string::npos)
      << sql;
  EXPECT_NE(sql.find("name TEXT CONSTRAINT routes_name_key UNIQUE"), std::string::npos) << sql;
  EXPECT_NE(sql.find("entity BYTEA NOT NULL"), std::string::npos) << sql;
  EXPECT_NE(sql.find("CREATE INDEX IF NOT EXISTS routes_service_id_idx ON routes (service_id)"), std::string::npos);
  EXPECT_NE(PostgresTableSql(SnisKind()).find("REFERENCES certificates (id) ON DELETE CASCADE"), std::string::npos);
}

TEST(PostgresLocationTest, UrisAndKeyValueConninfoArePostgresAndPasswordsAreMasked) {
  EXPECT_TRUE(IsPostgresLocation("postgres://u@h:5432/db"));
  EXPECT_TRUE(IsPostgresLocation("postgresql://h/db"));
  EXPECT_TRUE(IsPostgresLocation("host=127.0.0.1 port=5432 dbname=x"));
  EXPECT_FALSE(IsPostgresLocation("/var/lib/portico/portico.db"));
  EXPECT_FALSE(IsPostgresLocation(":memory:"));
  EXPECT_EQ(RedactedLocation("postgres://u:secret@h:5432/db"), "postgres://u:****@h:5432/db");
  EXPECT_EQ(RedactedLocation("postgres://u@h/db?sslmode=require&password=secret"),
            "postgres://u@h/db?sslmode=require&password=****");
  // key=value: rebuilt from libpq's parse (its keyword order).
  EXPECT_EQ(RedactedLocation("host=h password=secret dbname=x"), "password=**** dbname=x host=h");
  EXPECT_EQ(RedactedLocation("host=h password = 'se cret' dbname=x"), "password=**** dbname=x host=h");
  EXPECT_EQ(RedactedLocation("host=h options='-c a=b' password=s\\'x"), "password=**** host=h options='-c a=b'");
  EXPECT_FALSE(IsPostgresLocation("/tmp/a=b.db"));
  EXPECT_FALSE(IsPostgresLocation("./a=b.db"));
  EXPECT_FALSE(IsPostgresLocation("/tmp/password=x.db"));
}

// What libpq accepts is recognised and masked as libpq reads it.
TEST(PostgresLocationTest, PasswordsLibpqAcceptsAreMaskedWhereverTheyAre) {
  // The userinfo runs to the '@' before the first '/', whatever it holds ('?', '#').
  EXPECT_EQ(RedactedLocation("postgres://u:pa?ss@db/x"), "postgres://u:****@db/x");
  EXPECT_EQ(RedactedLocation("postgresql://u:p#w@db:5/x?sslmode=require"), "postgresql://u:****@db:5/x?sslmode=require");
  EXPECT_EQ(RedactedLocation("postgres://u:pa?password=q@db/x?password=z"), "postgres://u:****@db/x?password=****");
  // Query keys are percent-decoded, as libpq does.
  EXPECT_EQ(RedactedLocation("postgres://u@db/x?pass%77ord=secret&sslmode=disable"),
            "postgres://u@db/x?pass%77ord=****&sslmode=disable");
  EXPECT_EQ(RedactedLocation("postgres://db/x?%70assword=secret"), "postgres://db/x?%70assword=****");
  // Any libpq keyword opens a key=value conninfo, not only the common ones.
  EXPECT_TRUE(IsPostgresLocation("gssencmode=disable host=h password=secret"));
  EXPECT_TRUE(IsPostgresLocation("client_encoding=UTF8 host=h"));
  EXPECT_EQ(RedactedLocation("gssencmode=disable host=h password=secret"), "password=**** host=h gssencmode=disable");
  EXPECT_FALSE(IsPostgresLocation(""));
  EXPECT_FALSE(IsPostgresLocation("portico.db"));
}

// A conninfo libpq refuses (a misspelt keyword) is still PostgreSQL, so that the CP stops with
// libpq's error instead of creating a SQLite file named after it; its passwords are masked as text.
TEST(PostgresLocationTest, AConninfoLibpqRefusesIsNeverASqlitePathAndKeepsItsSecrets) {
  const std::string typo = "host=db username=portico database=portico password=s3cret";
  EXPECT_TRUE(IsPostgresLocation(typo));
  EXPECT_EQ(RedactedLocation(typo), "host=db username=portico database=portico password=****");
  EXPECT_TRUE(IsPostgresLocation("nokeyword=x"));
  EXPECT_TRUE(IsPostgresLocation("a=b.db"));  // write ./a=b.db for such a SQLite file
  EXPECT_EQ(RedactedLocation("host=h usr=u password = 'se cret x' sslpassword=k"),
            "host=h usr=u password = **** sslpassword=****");
  FakeClock clock(1700000000);
  auto opened = Store::Open(typo, clock);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().message().find("s3cret"), std::string::npos) << opened.status();
  EXPECT_FALSE(std::filesystem::exists(typo));
  // sslpassword (the client key's passphrase) is masked like password.
  EXPECT_EQ(RedactedLocation("host=h sslpassword=k"), "host=h sslpassword=****");  // libpq keyword order
  EXPECT_EQ(RedactedLocation("postgres://u@h/db?sslpassword=k"), "postgres://u@h/db?sslpassword=****");
}

}  // namespace
}  // namespace portico::cp
