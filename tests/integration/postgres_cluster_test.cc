// Several CPs on one PostgreSQL database (issue 18, docs/operations.md "Several control planes"):
// real portico-cp processes on a fresh database of the test server (the CTest fixture
// `postgres`), real DPs, real HTTP. One test stops PostgreSQL itself, so it runs its own server.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/common/postgres_test_db.h"
#include "tests/integration/cluster.h"
#include "tests/integration/sync_test_util.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using test_support::PostgresTestDb;
using namespace std::chrono_literals;

// A second CP (B) beside the Cluster's own (A), on the same database and certificates.
struct SecondCp {
  uint16_t admin = 0, cluster = 0;
  std::unique_ptr<Process> process;

  bool Start(Cluster& c, const std::string& db) {
    if (admin == 0) {
      admin = PickFreePort();
      cluster = PickFreePort();
    }
    process = std::make_unique<Process>(
        "cp-b",
        std::vector<std::string>{PORTICO_CP_BIN, "--db", db, "--admin-listen", absl::StrCat("127.0.0.1:", admin),
                                 "--cluster-listen", absl::StrCat("127.0.0.1:", cluster)},
        c.tmp().File("cp-b.log"),
        std::map<std::string, std::string>{{"PORTICO_CLUSTER_CERT", c.certs() + "/cp.crt"},
                                           {"PORTICO_CLUSTER_KEY", c.certs() + "/cp.key"},
                                           {"PORTICO_CLUSTER_CA", c.certs() + "/ca.crt"}});
    const uint16_t port = admin;
    return WaitFor([&] { return Http(port, "GET", "/status").status == 200; }, 15s);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", cluster); }
};

std::string AddressOf(Cluster& c) { return absl::StrCat("127.0.0.1:", c.cluster_port()); }

// The DP's served version per its /status (0 when unknown).
uint64_t Serving(Cluster& c, const DataPlane& dp) {
  json s = c.DpStatus(dp);
  return s.is_object() ? s.value("config_version", uint64_t{0}) : 0;
}

uint64_t StoreVersion(uint16_t admin) {
  json s = ParseJson(Http(admin, "GET", "/status"));
  return s.is_object() && s["configuration_version"].is_number() ? s["configuration_version"].get<uint64_t>() : 0;
}

// id -> control_plane_id of GET /clustering/data-planes, only connected rows.
std::map<std::string, std::string> ConnectedDataPlanes(uint16_t admin) {
  std::map<std::string, std::string> out;
  json j = ParseJson(Http(admin, "GET", "/clustering/data-planes"));
  if (!j.is_object() || !j["data"].is_array()) return out;
  for (const json& row : j["data"]) {
    if (!row["id"].is_string() || !row["control_plane_id"].is_string()) continue;
    const std::string state = row.value("state", "");
    if (state.rfind("disconnected", 0) == 0) continue;
    out[row["id"].get<std::string>()] = row["control_plane_id"].get<std::string>();
  }
  return out;
}

class PostgresClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = PostgresTestDb::Create();
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }
  std::string Logs() {
    return absl::StrCat(cluster_.Logs(), "--- CP B log ---\n", b_.process ? b_.process->Log() : "(not started)");
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", Logs().c_str());
    if (b_.process) b_.process->Stop(15, 10s);
  }

  // CP A (the Cluster's) and CP B on the test's database, and a service "echo" to a real upstream.
  void StartTwoCpsWithAnEchoService() {
    ASSERT_TRUE(cluster_.StartCp({"--db", db_->conninfo()})) << Logs();
    ASSERT_TRUE(b_.Start(cluster_, db_->conninfo())) << Logs();
    ASSERT_EQ(cluster_.Admin("POST", "/services", {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream_.port())}})
                  .status,
              201);
  }
  // One DP on each CP: node "dp-it" on A, node "dp-b" (a certificate of its own) on B.
  void StartOneDataPlaneOnEachCp() {
    DataPlaneOptions on_a;
    on_a.extra_args = {"--control-plane", AddressOf(cluster_)};
    on_a.log_name = "dp-a.log";
    dp_a_ = &cluster_.StartDp(on_a);
    std::string gen_log;
    ASSERT_TRUE(GenerateCerts(cluster_.certs(), "dp-b", &gen_log)) << gen_log;
    DataPlaneOptions on_b;
    on_b.cert = cluster_.certs() + "/dp-b.crt";
    on_b.key = cluster_.certs() + "/dp-b.key";
    on_b.extra_args = {"--control-plane", b_.address()};
    on_b.log_name = "dp-b.log";
    dp_b_ = &cluster_.StartDp(on_b);
    ASSERT_TRUE(dp_a_->started && dp_b_->started) << Logs();
  }

  std::unique_ptr<PostgresTestDb> db_;
  Cluster cluster_;
  SecondCp b_;
  EchoUpstream upstream_;
  DataPlane* dp_a_ = nullptr;
  DataPlane* dp_b_ = nullptr;
};

TEST_F(PostgresClusterTest, AWriteThroughOneCpReachesTheOtherCpsDataPlanesAndBothListEveryDataPlane) {
  ASSERT_NO_FATAL_FAILURE(StartTwoCpsWithAnEchoService());
  ASSERT_EQ(cluster_.Admin("POST", "/services/echo/routes", {{"name", "r0"}, {"paths", {"/r0"}}}).status, 201);
  ASSERT_NO_FATAL_FAILURE(StartOneDataPlaneOnEachCp());
  DataPlane& dp_a = *dp_a_;
  DataPlane& dp_b = *dp_b_;
  ASSERT_TRUE(cluster_.WaitDpSynced(dp_a) && cluster_.WaitDpSynced(dp_b)) << Logs();

  // Writes through A reach the DP on B; propagation is printed, and must stay bounded.
  std::vector<double> took_ms;
  for (int i = 1; i <= 3; ++i) {
    const std::string path = absl::StrCat("/through-a-", i);
    ASSERT_EQ(cluster_.Admin("POST", "/services/echo/routes", {{"paths", {path}}}).status, 201);
    const auto committed = std::chrono::steady_clock::now();
    ASSERT_TRUE(WaitFor([&] { return cluster_.Proxy(dp_b, path).status == 200; }, 10s)) << Logs();
    took_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - committed).count());
    std::fprintf(stderr, "write %d through CP A served by the DP on CP B after %.0f ms\n", i, took_ms.back());
  }
  // The bound is 1 s; the best of three must meet it (the others may meet a loaded CI).
  EXPECT_LT(*std::min_element(took_ms.begin(), took_ms.end()), 1000.0);
  const uint64_t version = cluster_.CpVersion();
  ASSERT_TRUE(WaitFor([&] { return Serving(cluster_, dp_a) == version && Serving(cluster_, dp_b) == version; }, 10s))
      << Logs();

  // Both CPs list both DPs, each with the CP that holds its stream, and agree.
  std::map<std::string, std::string> on_cp_a, on_cp_b;
  ASSERT_TRUE(WaitFor(
      [&] {
        on_cp_a = ConnectedDataPlanes(cluster_.admin_port());
        on_cp_b = ConnectedDataPlanes(b_.admin);
        return on_cp_a.size() == 2 && on_cp_a == on_cp_b;
      },
      10s))
      << json(on_cp_a).dump() << " vs " << json(on_cp_b).dump() << "\n"
      << Http(cluster_.admin_port(), "GET", "/clustering/data-planes").body;
  json a_status = ParseJson(Http(cluster_.admin_port(), "GET", "/"));
  json b_status = ParseJson(Http(b_.admin, "GET", "/"));
  std::set<std::string> cp_ids;
  for (json* s : {&a_status, &b_status}) {
    if (s->is_object() && (*s)["node_id"].is_string()) cp_ids.insert((*s)["node_id"].get<std::string>());
  }
  ASSERT_EQ(cp_ids.size(), 2u);
  ASSERT_EQ(on_cp_a.count("dp-it"), 1u);
  ASSERT_EQ(on_cp_a.count("dp-b"), 1u);
  EXPECT_EQ(on_cp_a["dp-it"], a_status["node_id"].get<std::string>());
  EXPECT_EQ(on_cp_a["dp-b"], b_status["node_id"].get<std::string>());
}

TEST_F(PostgresClusterTest, KillingTheDataPlanesCpUnderLoadMovesItToTheOtherWithoutAResendOrAFailedRequest) {
  ASSERT_NO_FATAL_FAILURE(StartTwoCpsWithAnEchoService());
  ASSERT_EQ(cluster_.Admin("POST", "/services/echo/routes", {{"name", "api"}, {"paths", {"/api"}}}).status, 201);

  DataPlaneOptions options;
  options.extra_args = {"--control-plane", absl::StrCat(AddressOf(cluster_), ",", b_.address())};
  DataPlane& dp = cluster_.StartDp(options);
  ASSERT_TRUE(dp.started) << Logs();
  ASSERT_TRUE(cluster_.WaitDpSynced(dp)) << Logs();
  json status = cluster_.DpStatus(dp);
  ASSERT_TRUE(status["control_plane"].is_object()) << status.dump();
  const std::string first = status["control_plane"]["address"].get<std::string>();
  const bool on_a = first == AddressOf(cluster_);
  const std::string second = on_a ? b_.address() : AddressOf(cluster_);
  const uint16_t survivor_admin = on_a ? b_.admin : cluster_.admin_port();
  const uint64_t applied_before = status["sync"]["snapshots_applied"].get<uint64_t>();
  const uint64_t up_to_date_before = status["sync"]["up_to_date"].get<uint64_t>();
  const std::string hash = status["configuration_hash"].get<std::string>();

  LoadLoop load(&cluster_, &dp, "/api/x");
  std::this_thread::sleep_for(500ms);
  if (on_a) {
    cluster_.KillCp(9);
  } else {
    b_.process->Stop(9, 5s);
  }
  const bool moved = WaitFor(
      [&] {
        json s = cluster_.DpStatus(dp);
        return s.is_object() && s["control_plane"].is_object() && s["control_plane"]["address"] == second;
      },
      15s);
  std::this_thread::sleep_for(500ms);
  load.Stop();
  ASSERT_TRUE(moved) << Logs();
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
  EXPECT_GT(load.ok(), 50);
  status = cluster_.DpStatus(dp);
  EXPECT_EQ(status["sync"]["snapshots_applied"].get<uint64_t>(), applied_before) << status.dump();
  EXPECT_EQ(status["sync"]["up_to_date"].get<uint64_t>(), up_to_date_before + 1) << status.dump();
  EXPECT_EQ(status["configuration_hash"], hash);

  // The survivor takes writes, and they reach the DP.
  ASSERT_EQ(Http(survivor_admin, "POST", "/services/echo/routes", json({{"name", "after"}, {"paths", {"/after"}}}).dump())
                .status,
            201);
  EXPECT_TRUE(WaitFor([&] { return cluster_.Proxy(dp, "/after").status == 200; }, 10s)) << Logs();
}

TEST_F(PostgresClusterTest, ConcurrentWritesThroughBothCpsAreAllKeptAndEveryDataPlaneEndsOnTheLast) {
  ASSERT_NO_FATAL_FAILURE(StartTwoCpsWithAnEchoService());
  ASSERT_NO_FATAL_FAILURE(StartOneDataPlaneOnEachCp());
  DataPlane& dp_a = *dp_a_;
  DataPlane& dp_b = *dp_b_;

  const uint64_t start = cluster_.CpVersion();
  // Versions seen by each writer, in the order its writes returned (each CP's /status reads the
  // store's version right after the write).
  constexpr int kWritersPerCp = 3, kWritesPerWriter = 40;
  std::atomic<int> created{0}, failed{0};
  std::vector<std::thread> writers;
  std::vector<std::vector<uint64_t>> seen(2 * kWritersPerCp);
  for (int w = 0; w < 2 * kWritersPerCp; ++w) {
    writers.emplace_back([&, w] {
      const uint16_t admin = w % 2 == 0 ? cluster_.admin_port() : b_.admin;
      for (int i = 0; i < kWritesPerWriter; ++i) {
        HttpResult r = Http(admin, "POST", "/services/echo/routes",
                            json({{"name", absl::StrCat("w", w, "-", i)}, {"paths", {absl::StrCat("/w", w, "-", i)}}}).dump());
        if (r.status == 201) {
          ++created;
        } else {
          ++failed;
        }
        seen[w].push_back(StoreVersion(admin));
      }
    });
  }
  for (std::thread& t : writers) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(created.load(), 2 * kWritersPerCp * kWritesPerWriter);
  // None lost: one version per write, and every route is there.
  const uint64_t last = cluster_.CpVersion();
  EXPECT_EQ(last, start + static_cast<uint64_t>(created.load()));
  EXPECT_EQ(StoreVersion(b_.admin), last);
  json routes = ParseJson(Http(b_.admin, "GET", "/routes?size=1000"));
  ASSERT_TRUE(routes["data"].is_array());
  EXPECT_EQ(routes["data"].size(), static_cast<size_t>(created.load()));
  // Each writer saw the version strictly increase from one of its writes to the next.
  for (const std::vector<uint64_t>& versions : seen) {
    EXPECT_TRUE(std::adjacent_find(versions.begin(), versions.end(), [](uint64_t a, uint64_t b) { return b <= a; }) ==
                versions.end())
        << json(versions).dump();
  }
  // Every DP ends on the last version and serves the last routes.
  EXPECT_TRUE(WaitFor([&] { return Serving(cluster_, dp_a) == last && Serving(cluster_, dp_b) == last; }, 15s))
      << Serving(cluster_, dp_a) << " / " << Serving(cluster_, dp_b) << " want " << last << "\n"
      << Logs();
  EXPECT_EQ(cluster_.Proxy(dp_a, absl::StrCat("/w1-", kWritesPerWriter - 1)).status, 200);
  EXPECT_EQ(cluster_.Proxy(dp_b, absl::StrCat("/w0-", kWritesPerWriter - 1)).status, 200);
  // The two CPs publish the same hash for the last version (deterministic snapshots).
  EXPECT_EQ(cluster_.DpStatus(dp_a)["configuration_hash"], cluster_.DpStatus(dp_b)["configuration_hash"]);
}

// Its own PostgreSQL server (the test stops it), started with the fixture's script.
class OwnPostgres {
 public:
  OwnPostgres() : state_(tmp_.path()) {}
  ~OwnPostgres() { Run("stop"); }
  bool Start() {
    if (!Run("start")) return false;
    std::ifstream in(state_ + "/port");
    in >> port_;
    return port_ > 0;
  }
  bool Stop() { return Run("halt"); }
  bool Restart() { return Run("resume"); }
  int port() const { return port_; }

 private:
  bool Run(const std::string& action) {
    const std::string cmd = absl::StrCat("sh ", PORTICO_PG_FIXTURE, " ", action, " ", state_, " >>", state_, "/fixture.log 2>&1");
    return std::system(cmd.c_str()) == 0;
  }
  TempDir tmp_;
  std::string state_;
  int port_ = 0;
};

TEST(PostgresDownTest, WritesGet503AndNothingHalfWrittenDataPlanesKeepServingAndAWriteAfterTheReturnPropagates) {
  OwnPostgres pg;
  ASSERT_TRUE(pg.Start());
  const std::string db = absl::StrCat("postgresql://postgres@127.0.0.1:", pg.port(), "/postgres");
  Cluster cluster;
  ASSERT_TRUE(cluster.StartCp({"--db", db})) << cluster.Logs();
  EchoUpstream upstream;
  ASSERT_EQ(cluster.Admin("POST", "/services", {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream.port())}})
                .status,
            201);
  ASSERT_EQ(cluster.Admin("POST", "/services/echo/routes", {{"name", "api"}, {"paths", {"/api"}}}).status, 201);
  DataPlane& dp = cluster.StartDp();
  ASSERT_TRUE(dp.started) << cluster.Logs();
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << cluster.Logs();
  const uint64_t before = cluster.CpVersion();

  ASSERT_TRUE(pg.Stop());
  HttpResult write = cluster.Admin("POST", "/services/echo/routes", {{"name", "lost"}, {"paths", {"/lost"}}});
  EXPECT_EQ(write.status, 503) << write.body;
  EXPECT_NE(write.body.find("datastore"), std::string::npos) << write.body;
  HttpResult batch = cluster.Admin("POST", "/services", {{"name", "svc2"}, {"url", "http://127.0.0.1:9"}});
  EXPECT_EQ(batch.status, 503) << batch.body;
  // The DP keeps serving its last snapshot.
  for (int i = 0; i < 20; ++i) ASSERT_EQ(cluster.Proxy(dp, "/api").status, 200);

  ASSERT_TRUE(pg.Restart());
  // The CP reconnects on its next call; nothing of the refused writes is there.
  ASSERT_TRUE(WaitFor([&] { return cluster.Admin("GET", "/routes/lost").status == 404; }, 15s)) << cluster.Logs();
  EXPECT_EQ(cluster.CpVersion(), before);
  EXPECT_EQ(cluster.Admin("GET", "/services/svc2").status, 404);
  ASSERT_EQ(cluster.Admin("POST", "/services/echo/routes", {{"name", "back"}, {"paths", {"/back"}}}).status, 201)
      << cluster.Logs();
  EXPECT_TRUE(WaitFor([&] { return cluster.Proxy(dp, "/back").status == 200; }, 10s)) << cluster.Logs();
  EXPECT_EQ(cluster.Proxy(dp, "/lost").status, 404);
}

}  // namespace
}  // namespace portico::testing
