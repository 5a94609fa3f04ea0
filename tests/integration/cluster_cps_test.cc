// Two real portico-cp processes on ONE SQLite file (WAL across processes) and one DP connected to
// CP A: GET /clustering/data-planes on CP B lists that DP with A's node id, and a CP restarted on
// the same database lists the DPs from before as disconnected. Loopback, ephemeral ports, every
// process stopped by PID.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// The row of `id` in GET /clustering/data-planes on `admin_port` (null if absent).
json DataPlaneRow(uint16_t admin_port, const std::string& id) {
  json list = ParseJson(Http(admin_port, "GET", "/clustering/data-planes"));
  if (!list.is_object() || !list["data"].is_array()) return nullptr;
  for (const json& row : list["data"]) {
    if (row.value("id", "") == id) return row;
  }
  return nullptr;
}

std::string NodeId(uint16_t admin_port) {
  json root = ParseJson(Http(admin_port, "GET", "/"));
  return root.is_object() ? root.value("node_id", "") : "";
}

class ClusterCpsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) {
      std::fprintf(stderr, "%s", cluster_.Logs().c_str());
      if (cp_b_) std::fprintf(stderr, "--- CP B log ---\n%s\n", cp_b_->Log().c_str());
    }
    if (cp_b_) cp_b_->Stop(SIGTERM, 10s);
  }

  // A second CP on the cluster's database file, with its own ports.
  bool StartCpB() {
    admin_b_ = PickFreePort();
    const uint16_t cluster_b = PickFreePort();
    const std::string certs = cluster_.certs();
    cp_b_ = std::make_unique<Process>(
        "cp-b",
        std::vector<std::string>{PORTICO_CP_BIN, "--db", cluster_.tmp().File("portico.db"), "--admin-listen",
                                 absl::StrCat("127.0.0.1:", admin_b_), "--cluster-listen",
                                 absl::StrCat("127.0.0.1:", cluster_b)},
        cluster_.tmp().File("cp-b.log"),
        std::map<std::string, std::string>{{"PORTICO_CLUSTER_CERT", certs + "/cp.crt"},
                                           {"PORTICO_CLUSTER_KEY", certs + "/cp.key"},
                                           {"PORTICO_CLUSTER_CA", certs + "/ca.crt"}});
    return WaitFor([&] { return Http(admin_b_, "GET", "/status").status == 200; }, 15s);
  }

  // Polls CP `admin_port`'s row of the cluster's DP ("dp-it") until its state is `state`; the last
  // row read is left in `*row`.
  bool WaitForRowState(uint16_t admin_port, const std::string& state, json* row,
                       std::chrono::milliseconds timeout = 15s) {
    return WaitFor(
        [&] {
          *row = DataPlaneRow(admin_port, "dp-it");
          return row->is_object() && row->value("state", "") == state;
        },
        timeout);
  }
  // CP A with the cluster's DP connected to it, then CP B, which lists that DP as A's. Sets cp_a_.
  void StartADataPlaneOnAThenB() {
    ASSERT_TRUE(cluster_.StartCp());
    cp_a_ = NodeId(cluster_.admin_port());
    ASSERT_FALSE(cp_a_.empty());
    DataPlane& dp = cluster_.StartDp();
    ASSERT_TRUE(dp.started);
    ASSERT_TRUE(StartCpB());
    json row;
    ASSERT_TRUE(WaitForRowState(admin_b_, "connected_synced", &row)) << row.dump();
  }

  Cluster cluster_;
  std::unique_ptr<Process> cp_b_;
  uint16_t admin_b_ = 0;
  std::string cp_a_;
};

TEST_F(ClusterCpsTest, EveryCpOnOneDatabaseListsTheDataPlanesOfTheOthers) {
  ASSERT_TRUE(cluster_.StartCp());
  const std::string cp_a = NodeId(cluster_.admin_port());
  ASSERT_FALSE(cp_a.empty());
  DataPlane& dp = cluster_.StartDp();
  ASSERT_TRUE(dp.started);
  json row;
  ASSERT_TRUE(WaitForRowState(cluster_.admin_port(), "connected_synced", &row)) << row.dump();
  ASSERT_TRUE(StartCpB());
  const std::string cp_b = NodeId(admin_b_);
  ASSERT_FALSE(cp_b.empty());
  ASSERT_NE(cp_a, cp_b);

  // B lists the DP connected to A, naming A (A saves its rows every second).
  ASSERT_TRUE(WaitForRowState(admin_b_, "connected_synced", &row, 10s)) << row.dump();
  EXPECT_EQ(row["control_plane_id"], cp_a);
  EXPECT_TRUE(row["control_plane_hostname"].is_string()) << row.dump();
  EXPECT_NE(row["connected_since"], nullptr);
  EXPECT_EQ(row["lag_versions"], 0);
  const json on_a = DataPlaneRow(cluster_.admin_port(), "dp-it");
  EXPECT_EQ(on_a["control_plane_id"], cp_a);
  EXPECT_EQ(on_a["hostname"], row["hostname"]);
  EXPECT_EQ(on_a["config_hash"], row["config_hash"]);
  EXPECT_EQ(ParseJson(Http(admin_b_, "GET", "/status"))["data_planes"], 1) << "GET /status counts every CP's DPs";

  // A write through B reaches the DP through A; B's view follows A's saves.
  ASSERT_EQ(Http(admin_b_, "POST", "/services", json{{"name", "s1"}, {"host", "example.com"}}.dump()).status, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(dp)) << cluster_.DpStatus(dp).dump();
  ASSERT_TRUE(WaitFor(
      [&] {
        row = DataPlaneRow(admin_b_, "dp-it");
        return row.is_object() && row.value("config_version", 0) == 1 && row.value("lag_versions", 99) == 0;
      },
      10s))
      << row.dump();

  // The DP stops: both CPs show it disconnected, still A's.
  ASSERT_EQ(dp.process->Stop(SIGTERM, 15s) & 0x7f, 0);
  ASSERT_TRUE(WaitForRowState(admin_b_, "disconnected", &row, 10s)) << row.dump();
  EXPECT_EQ(row["control_plane_id"], cp_a);
  EXPECT_EQ(row["connected_since"], nullptr);

  // A restarts on the same database (a new node id): the DP from before is listed, disconnected,
  // with the CP that last held it.
  const int a_status = cluster_.cp()->Stop(SIGTERM, 15s);
  EXPECT_TRUE(WIFEXITED(a_status) && WEXITSTATUS(a_status) == 0) << a_status;
  ASSERT_TRUE(cluster_.StartCp());
  const std::string cp_a2 = NodeId(cluster_.admin_port());
  ASSERT_FALSE(cp_a2.empty());
  EXPECT_NE(cp_a2, cp_a);
  row = DataPlaneRow(cluster_.admin_port(), "dp-it");
  ASSERT_TRUE(row.is_object()) << ParseJson(Http(cluster_.admin_port(), "GET", "/clustering/data-planes")).dump();
  EXPECT_EQ(row["state"], "disconnected");
  EXPECT_EQ(row["control_plane_id"], cp_a);
  EXPECT_EQ(row["config_version"], 1);
}

TEST_F(ClusterCpsTest, AStoppedCpsConnectedDataPlanesAreRecordedDisconnected) {
  ASSERT_NO_FATAL_FAILURE(StartADataPlaneOnAThenB());
  const std::string& cp_a = cp_a_;
  json row;
  // A stops cleanly while the DP is still connected: its last save records the stream's end, so
  // B shows the DP disconnected at once (not only after the stale-row delay).
  const int a_status = cluster_.cp()->Stop(SIGTERM, 15s);
  EXPECT_TRUE(WIFEXITED(a_status) && WEXITSTATUS(a_status) == 0) << a_status;
  row = DataPlaneRow(admin_b_, "dp-it");
  EXPECT_EQ(row["state"], "disconnected") << row.dump();
  EXPECT_EQ(row["control_plane_id"], cp_a);
}

TEST_F(ClusterCpsTest, TheDataPlanesOfACrashedCpAreShownDisconnectedOnceItsRowsGoStale) {
  ASSERT_NO_FATAL_FAILURE(StartADataPlaneOnAThenB());
  const std::string& cp_a = cp_a_;
  json row;
  // kill -9: A saves nothing more. Its connected row is shown as it was until it is 3 refresh
  // periods (30 s) old, then disconnected; the DP keeps retrying A's address meanwhile.
  const auto killed = std::chrono::steady_clock::now();
  cluster_.KillCp(SIGKILL);
  EXPECT_EQ(DataPlaneRow(admin_b_, "dp-it")["state"], "connected_synced");
  ASSERT_TRUE(WaitForRowState(admin_b_, "disconnected", &row, 60s)) << row.dump();
  EXPECT_GE(std::chrono::steady_clock::now() - killed, 15s) << "shown disconnected before its row went stale";
  EXPECT_EQ(row["control_plane_id"], cp_a);
  EXPECT_EQ(row["connected_since"], nullptr);
}

TEST_F(ClusterCpsTest, APurgeDelayBelowKongsMinimumIsRefusedAtStart) {
  for (const char* value : {"59", "-1", "soon"}) {
    Process bad("cp-bad", {PORTICO_CP_BIN, "--cluster-data-plane-purge-delay", value, "--cluster-cert", "x",
                           "--cluster-key", "x", "--cluster-ca", "x"},
                cluster_.tmp().File("cp-bad.log"));
    const int wait_status = bad.Stop(0, 10s);
    EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 1) << value << "\n" << bad.Log();
    EXPECT_NE(bad.Log().find("--cluster-data-plane-purge-delay must be an integer >= 60"), std::string::npos)
        << bad.Log();
  }
}

}  // namespace
}  // namespace portico::testing
