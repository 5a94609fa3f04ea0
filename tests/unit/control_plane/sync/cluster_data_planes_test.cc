// ClusterDataPlanes: two instances with different CP ids on one SQLite file are two CPs on one
// database. Each lists the other's data planes; the moved-DP, stale-connected and purge rules;
// a failing store. Real store, fake clock, Flush() called by the test (no flusher thread) except
// in the thread test.
#include "control_plane/sync/cluster_data_planes.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control_plane/store/store.h"
#include "gtest/gtest.h"
#include "tests/common/delegating_store.h"

namespace portico::cp {
namespace {

// What a SyncServer would list: set by the test.
class FakeLocal : public DataPlaneStatusSource {
 public:
  std::vector<DataPlaneStatus> ListDataPlanes() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<DataPlaneStatus> out;
    for (const auto& [id, dp] : rows_) out.push_back(dp);
    return out;
  }
  ConfigBuildStatus BuildStatus() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return build_;
  }
  void Connect(const std::string& id, int64_t now, uint64_t config_version = 1) {
    std::lock_guard<std::mutex> lock(mu_);
    DataPlaneStatus& dp = rows_[id];
    dp.id = id;
    dp.hostname = id + ".edge";
    dp.state = "connected_synced";
    dp.config_version = config_version;
    dp.last_seen = now;
    dp.connected_since = now;
    dp.control_plane_id = "set-by-the-sync-server-never";  // replaced by the decorator
  }
  void Disconnect(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    rows_[id].state = "disconnected";
    rows_[id].connected_since = 0;
  }
  void Heartbeat(const std::string& id, int64_t now) {
    std::lock_guard<std::mutex> lock(mu_);
    rows_[id].last_seen = now;
  }
  void SetStoreVersion(uint64_t version) {
    std::lock_guard<std::mutex> lock(mu_);
    build_.known = true;
    build_.store_version = version;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, DataPlaneStatus> rows_;
  ConfigBuildStatus build_;
};

// A store whose data-plane calls can be made to fail (the database down); counts saved rows.
class FlakyStore final : public DelegatingStore {
 public:
  explicit FlakyStore(Store& real) : DelegatingStore(real) {}
  std::atomic<bool> down{false};
  std::atomic<int> saved_rows{0};

  absl::Status Close() override { return absl::OkStatus(); }
  absl::Status SaveDataPlanes(const std::vector<StoredDataPlane>& rows) override {
    if (down) return absl::UnavailableError("database down");
    absl::Status s = DelegatingStore::SaveDataPlanes(rows);
    if (s.ok()) saved_rows += static_cast<int>(rows.size());
    return s;
  }
  absl::StatusOr<std::vector<StoredDataPlane>> ListDataPlaneRows(int64_t now) override {
    if (down) return absl::UnavailableError("database down");
    return DelegatingStore::ListDataPlaneRows(now);
  }
  absl::StatusOr<int64_t> PurgeDataPlanes(int64_t now) override {
    if (down) return absl::UnavailableError("database down");
    return DelegatingStore::PurgeDataPlanes(now);
  }
  ChangeWait WaitForChange(absl::Duration) override { return ChangeWait::kNoFeed; }
};

// One CP: its own store connection to the shared file, its table, the decorator.
struct Cp {
  Cp(const std::string& path, const std::string& id, const FakeClock& clock, int64_t purge_delay,
     absl::Duration flush_interval = absl::Milliseconds(20)) {
    auto opened = Store::Open(path, clock);
    EXPECT_TRUE(opened.ok()) << opened.status();
    real = *std::move(opened);
    store = std::make_unique<FlakyStore>(*real);
    ClusterDataPlanesOptions options;
    options.cp_id = id;
    options.cp_hostname = id + ".host";
    options.flush_interval = flush_interval;
    options.purge_delay_seconds = purge_delay;
    cluster = std::make_unique<ClusterDataPlanes>(local, *store, clock, options);
  }
  ~Cp() {
    cluster.reset();
    store.reset();
    if (real) (void)real->Close();
  }
  // id -> row as listed.
  std::map<std::string, DataPlaneStatus> List() const {
    std::map<std::string, DataPlaneStatus> out;
    for (const DataPlaneStatus& dp : cluster->ListDataPlanes()) out[dp.id] = dp;
    return out;
  }

  FakeLocal local;
  std::unique_ptr<Store> real;
  std::unique_ptr<FlakyStore> store;
  std::unique_ptr<ClusterDataPlanes> cluster;
};

class ClusterDataPlanesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico_cluster_dps_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    a_ = std::make_unique<Cp>(dir_ + "/portico.db", "cp-a", clock_, purge_delay_);
    b_ = std::make_unique<Cp>(dir_ + "/portico.db", "cp-b", clock_, purge_delay_);
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
    std::filesystem::remove_all(dir_);
  }
  int64_t now() const { return clock_.NowSeconds(); }

  FakeClock clock_{1700000000};
  const int64_t purge_delay_ = 3600;
  std::string dir_;
  std::unique_ptr<Cp> a_, b_;
};

TEST_F(ClusterDataPlanesTest, EachCpListsTheOthersDataPlanesWithTheirCp) {
  a_->local.Connect("dp-1", now());
  b_->local.Connect("dp-2", now());
  // Before any flush each CP knows only its own.
  EXPECT_EQ(a_->List().size(), 1u);
  ASSERT_TRUE(a_->cluster->Flush().ok());
  ASSERT_TRUE(b_->cluster->Flush().ok());
  for (Cp* cp : {a_.get(), b_.get()}) {
    std::map<std::string, DataPlaneStatus> rows = cp->List();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows["dp-1"].control_plane_id, "cp-a");
    EXPECT_EQ(rows["dp-1"].control_plane_hostname, "cp-a.host");
    EXPECT_EQ(rows["dp-1"].hostname, "dp-1.edge");
    EXPECT_EQ(rows["dp-1"].state, "connected_synced");
    EXPECT_EQ(rows["dp-2"].control_plane_id, "cp-b");
    EXPECT_EQ(rows["dp-2"].control_plane_hostname, "cp-b.host");
    EXPECT_NE(rows["dp-2"].connected_since, 0);
  }
  // A's disconnect reaches B at A's next flush.
  a_->local.Disconnect("dp-1");
  EXPECT_EQ(b_->List()["dp-1"].state, "connected_synced");
  EXPECT_EQ(a_->List()["dp-1"].state, "disconnected") << "the CP's own table is authoritative for its rows";
  ASSERT_TRUE(a_->cluster->Flush().ok());
  EXPECT_EQ(b_->List()["dp-1"].state, "disconnected");
  EXPECT_EQ(b_->List()["dp-1"].control_plane_id, "cp-a");
}

TEST_F(ClusterDataPlanesTest, AMovedDataPlaneIsShownOnItsNewCpEvenWhenTheOldOneRecordsItsEndLate) {
  a_->local.Connect("dp-1", now());
  ASSERT_TRUE(a_->cluster->Flush().ok());
  clock_.Advance(2);
  b_->local.Connect("dp-1", now(), 4);
  ASSERT_TRUE(b_->cluster->Flush().ok());
  clock_.Advance(1);
  a_->local.Disconnect("dp-1");  // A notices the old stream's end after B took it
  ASSERT_TRUE(a_->cluster->Flush().ok());
  for (Cp* cp : {a_.get(), b_.get()}) {
    std::map<std::string, DataPlaneStatus> rows = cp->List();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows["dp-1"].control_plane_id, "cp-b");
    EXPECT_EQ(rows["dp-1"].state, "connected_synced");
    EXPECT_EQ(rows["dp-1"].config_version, 4u);
  }
  // Back to A: a live stream here wins over the stored row at once, before any flush.
  a_->local.Connect("dp-1", now(), 5);
  EXPECT_EQ(a_->List()["dp-1"].control_plane_id, "cp-a");
  EXPECT_EQ(b_->List()["dp-1"].control_plane_id, "cp-b") << "B's stream is still live there";
  b_->local.Disconnect("dp-1");
  ASSERT_TRUE(a_->cluster->Flush().ok());
  ASSERT_TRUE(b_->cluster->Flush().ok());  // refused: A's row is connected
  EXPECT_EQ(b_->List()["dp-1"].control_plane_id, "cp-a");
  EXPECT_EQ(b_->List()["dp-1"].config_version, 5u);
}

TEST_F(ClusterDataPlanesTest, AConnectedRowThatItsCpStoppedRefreshingIsShownDisconnected) {
  a_->local.Connect("dp-1", now());
  ASSERT_TRUE(a_->cluster->Flush().ok());
  // A keeps running: it refreshes the connected row every 10 s although the DP's last message
  // (heartbeats) is older.
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(10);
    ASSERT_TRUE(a_->cluster->Flush().ok());
    EXPECT_EQ(b_->List()["dp-1"].state, "connected_synced") << "after " << (i + 1) * 10 << " s";
  }
  // A crashes: no more refreshes. Still connected within 3 refresh periods, disconnected after.
  clock_.Advance(30);
  EXPECT_EQ(b_->List()["dp-1"].state, "connected_synced");
  clock_.Advance(1);
  std::map<std::string, DataPlaneStatus> rows = b_->List();
  EXPECT_EQ(rows["dp-1"].state, "disconnected");
  EXPECT_EQ(rows["dp-1"].connected_since, 0);
  EXPECT_EQ(rows["dp-1"].control_plane_id, "cp-a");
  // A CP restarted on the same database (a new node id) sees the same.
  Cp restarted(dir_ + "/portico.db", "cp-a2", clock_, purge_delay_);
  EXPECT_EQ(restarted.List()["dp-1"].state, "disconnected");
}

TEST_F(ClusterDataPlanesTest, OnlyChangedRowsAreSavedAndConnectedOnesAreRefreshed) {
  a_->local.Connect("dp-1", now());
  a_->local.Connect("dp-2", now());
  a_->local.Disconnect("dp-2");
  ASSERT_TRUE(a_->cluster->Flush().ok());
  EXPECT_EQ(a_->store->saved_rows, 2);
  clock_.Advance(5);
  a_->local.Heartbeat("dp-1", now());  // last_seen alone is no change
  ASSERT_TRUE(a_->cluster->Flush().ok());
  EXPECT_EQ(a_->store->saved_rows, 2);
  clock_.Advance(5);
  ASSERT_TRUE(a_->cluster->Flush().ok());
  EXPECT_EQ(a_->store->saved_rows, 3) << "the connected row is refreshed after 10 s, the disconnected one is not";
  a_->local.Connect("dp-2", now());
  ASSERT_TRUE(a_->cluster->Flush().ok());
  EXPECT_EQ(a_->store->saved_rows, 4);
}

TEST_F(ClusterDataPlanesTest, RowsArePurgedAfterThePurgeDelay) {
  a_->local.Connect("dp-1", now());
  a_->local.Disconnect("dp-1");
  const int64_t last_seen = now();
  ASSERT_TRUE(a_->cluster->Flush().ok());
  auto stored = [&]() {
    absl::StatusOr<std::vector<StoredDataPlane>> rows = b_->real->ListDataPlaneRows(0);
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? rows->size() : 0u;
  };
  ASSERT_EQ(stored(), 1u);
  EXPECT_EQ(b_->store->ListDataPlaneRows(0)->front().purge_at, last_seen + purge_delay_);
  clock_.Set(last_seen + purge_delay_ - 1);
  EXPECT_EQ(b_->List().count("dp-1"), 1u);
  EXPECT_EQ(a_->List().count("dp-1"), 1u);
  clock_.Set(last_seen + purge_delay_);
  EXPECT_EQ(b_->List().count("dp-1"), 0u) << "listed no more from its purge time";
  EXPECT_EQ(a_->List().count("dp-1"), 0u) << "nor by its own CP, which still has it in memory";
  EXPECT_EQ(stored(), 1u);
  ASSERT_TRUE(b_->cluster->Flush().ok());  // any CP purges
  EXPECT_EQ(stored(), 0u);
  // A connected row is refreshed, so it never reaches its purge time while its CP runs.
  a_->local.Connect("dp-3", now());
  ASSERT_TRUE(a_->cluster->Flush().ok());
  clock_.Advance(purge_delay_ - 5);
  ASSERT_TRUE(a_->cluster->Flush().ok());
  clock_.Advance(10);
  ASSERT_TRUE(b_->cluster->Flush().ok());
  EXPECT_EQ(b_->List().count("dp-3"), 1u);
}

TEST_F(ClusterDataPlanesTest, OtherCpsRowsGetLagAgainstThisCpsBuilderView) {
  b_->local.Connect("dp-2", now(), 7);
  ASSERT_TRUE(b_->cluster->Flush().ok());
  a_->local.SetStoreVersion(10);
  EXPECT_EQ(a_->List()["dp-2"].lag_versions, 3u);
  a_->local.SetStoreVersion(7);
  EXPECT_EQ(a_->List()["dp-2"].lag_versions, 0u);
}

TEST_F(ClusterDataPlanesTest, ADatabaseOutageKeepsTheLocalViewAndTheRowsAreSavedWhenItIsBack) {
  a_->local.Connect("dp-1", now());
  a_->store->down = true;
  EXPECT_FALSE(a_->cluster->Flush().ok());
  EXPECT_FALSE(a_->cluster->Flush().ok());
  std::map<std::string, DataPlaneStatus> rows = a_->List();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows["dp-1"].control_plane_id, "cp-a");
  EXPECT_EQ(b_->List().size(), 0u);
  a_->store->down = false;
  ASSERT_TRUE(a_->cluster->Flush().ok());
  EXPECT_EQ(b_->List()["dp-1"].control_plane_id, "cp-a");
}

TEST_F(ClusterDataPlanesTest, TheFlusherThreadSavesAndStopSavesTheLastChanges) {
  a_->cluster->Start();
  a_->local.Connect("dp-1", now());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (b_->List().count("dp-1") == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(b_->List()["dp-1"].state, "connected_synced");
  a_->store->down = true;  // an outage does not stop or block the thread
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  a_->store->down = false;
  a_->local.Disconnect("dp-1");
  a_->cluster->Stop();
  EXPECT_EQ(b_->List()["dp-1"].state, "disconnected");
  a_->cluster->Stop();  // idempotent
}

TEST_F(ClusterDataPlanesTest, APokeFlushesBeforeTheInterval) {
  Cp slow(dir_ + "/portico.db", "cp-slow", clock_, purge_delay_, absl::Hours(1));
  slow.cluster->Start();
  std::function<void()> poke = slow.cluster->Poker();
  slow.local.Connect("dp-9", now());
  poke();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (b_->List().count("dp-9") == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(b_->List()["dp-9"].control_plane_id, "cp-slow");
  slow.cluster.reset();
  poke();  // outlives the object: harmless
}

}  // namespace
}  // namespace portico::cp
