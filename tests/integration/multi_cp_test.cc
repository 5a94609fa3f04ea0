// Several CPs on one database, a DP given all of them (docs/operations.md "Several control
// planes"): two real portico-cp processes on one SQLite file (WAL across processes; each CP's
// VersionWatcher sees the other's writes within ~1 s), a DP with --control-plane A,B, a load loop
// through the DP, and kill -9 of the CP the DP streams from.
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "tests/integration/sync_test_util.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

uint64_t PublishedVersion(uint16_t admin_port) {
  json j = ParseJson(Http(admin_port, "GET", "/status"));
  if (!j.is_object() || !j.contains("config_build") || !j["config_build"]["published_version"].is_number()) return 0;
  return j["config_build"]["published_version"].get<uint64_t>();
}

TEST(MultiCpTest, ADataPlaneMovesToTheOtherCpWithoutAFailedRequestOrAResend) {
  Cluster cluster;  // CP A: the cluster's own ports
  ASSERT_TRUE(cluster.StartCp());
  // CP B: same database file and certificates, its own ports.
  const uint16_t admin_b = PickFreePort(), cluster_b = PickFreePort();
  auto cp_b = std::make_unique<Process>(
      "cp-b",
      std::vector<std::string>{PORTICO_CP_BIN, "--db", cluster.tmp().File("portico.db"), "--admin-listen",
                               absl::StrCat("127.0.0.1:", admin_b), "--cluster-listen",
                               absl::StrCat("127.0.0.1:", cluster_b)},
      cluster.tmp().File("cp-b.log"),
      std::map<std::string, std::string>{{"PORTICO_CLUSTER_CERT", cluster.certs() + "/cp.crt"},
                                         {"PORTICO_CLUSTER_KEY", cluster.certs() + "/cp.key"},
                                         {"PORTICO_CLUSTER_CA", cluster.certs() + "/ca.crt"}});
  ASSERT_TRUE(WaitFor([&] { return Http(admin_b, "GET", "/status").status == 200; }, 15s)) << cp_b->Log();
  auto logs = [&] { return absl::StrCat(cluster.Logs(), "--- CP B log ---\n", cp_b->Log()); };

  EchoUpstream upstream;
  ASSERT_EQ(cluster.Admin("POST", "/services", {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream.port())}})
                .status,
            201);
  ASSERT_EQ(cluster.Admin("POST", "/services/echo/routes", {{"name", "api"}, {"paths", {"/api"}}}).status, 201);
  // A route with a header map: its body must serialize the same on both CPs (map order).
  json headers = json::object();
  for (int i = 0; i < 12; ++i) headers[absl::StrCat("x-h", i)] = {absl::StrCat("v", i)};
  ASSERT_EQ(cluster.Admin("POST", "/services/echo/routes", {{"name", "hdr"}, {"paths", {"/hdr"}}, {"headers", headers}})
                .status,
            201);
  const uint64_t version = cluster.CpVersion();
  ASSERT_GT(version, 0u);
  // Both CPs publish that version (B through its watcher of the shared file).
  ASSERT_TRUE(WaitFor([&] { return PublishedVersion(cluster.admin_port()) == version && PublishedVersion(admin_b) == version; },
                      10s))
      << logs();

  const std::string at_a = absl::StrCat("127.0.0.1:", cluster.cluster_port()), at_b = absl::StrCat("127.0.0.1:", cluster_b);
  DataPlaneOptions options;
  options.extra_args = {"--control-plane", absl::StrCat(at_a, ",", at_b)};
  DataPlane& dp = cluster.StartDp(options);
  ASSERT_TRUE(dp.started) << logs();
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << logs();
  json status = cluster.DpStatus(dp);
  ASSERT_TRUE(status["control_plane"].is_object()) << status.dump();
  const std::string first = status["control_plane"]["address"].get<std::string>();
  ASSERT_TRUE(first == at_a || first == at_b) << status.dump();
  const std::string second = first == at_a ? at_b : at_a;
  const uint16_t survivor_admin = first == at_a ? admin_b : cluster.admin_port();
  EXPECT_EQ(status["control_plane"]["entry"], first);
  EXPECT_FALSE(status["control_plane"]["cp_id"].get<std::string>().empty());
  const std::string first_cp_id = status["control_plane"]["cp_id"].get<std::string>();
  std::fprintf(stderr, "the DP streams from %s first; killing that CP\n", first.c_str());
  const std::string hash = status["configuration_hash"].get<std::string>();
  const uint64_t applied_before = status["sync"]["snapshots_applied"].get<uint64_t>();
  const uint64_t up_to_date_before = status["sync"]["up_to_date"].get<uint64_t>();

  // Load through the DP for the whole move.
  LoadLoop load(&cluster, &dp, "/api/x");
  std::this_thread::sleep_for(500ms);
  if (first == at_a) {
    cluster.KillCp(9);
  } else {
    cp_b->Stop(9, 5s);
  }
  const bool moved = WaitFor(
      [&] {
        json s = cluster.DpStatus(dp);
        return s.is_object() && s["control_plane"].is_object() && s["control_plane"]["address"] == second;
      },
      15s);
  std::this_thread::sleep_for(500ms);
  load.Stop();
  ASSERT_TRUE(moved) << logs();
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
  EXPECT_GT(load.ok(), 50);

  // Told it is up to date: nothing applied again, the same hash served.
  status = cluster.DpStatus(dp);
  EXPECT_NE(status["control_plane"]["cp_id"].get<std::string>(), first_cp_id);
  EXPECT_EQ(status["sync"]["snapshots_applied"].get<uint64_t>(), applied_before) << status.dump();
  EXPECT_EQ(status["sync"]["up_to_date"].get<uint64_t>(), up_to_date_before + 1) << status.dump();
  EXPECT_EQ(status["configuration_hash"], hash);
  EXPECT_GE(status["sync"]["control_plane_moves"].get<uint64_t>(), 1u);
  EXPECT_NE(dp.process->Log().find(absl::StrCat("moving to control plane ", second)), std::string::npos)
      << dp.process->Log();

  // A write through the surviving CP reaches the DP.
  ASSERT_EQ(Http(survivor_admin, "POST", "/services/echo/routes",
                 json({{"name", "after"}, {"paths", {"/after"}}}).dump())
                .status,
            201);
  EXPECT_TRUE(WaitFor([&] { return cluster.Proxy(dp, "/after").status == 200; }, 10s)) << logs();
  if (HasFailure()) std::fprintf(stderr, "%s", logs().c_str());
  cp_b->Stop(15, 10s);
}

TEST(MultiCpTest, EveryEntryOfTheListIsCheckedAtStart) {
  TempDir tmp;
  Process dp("dp",
             {PORTICO_DP_BIN, "--control-plane", "127.0.0.1:8005,cp-b", "--cluster-cert", "/nonexistent.crt",
              "--cluster-key", "/nonexistent.key", "--cluster-ca", "/nonexistent.ca"},
             tmp.File("dp.log"));
  const int status = dp.Stop(0, 10s);  // signal 0: only wait
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  EXPECT_NE(dp.Log().find("--control-plane: invalid address 'cp-b': want host:port"), std::string::npos) << dp.Log();
}

}  // namespace
}  // namespace portico::testing
