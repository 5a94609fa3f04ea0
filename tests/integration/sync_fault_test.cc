// Fault tests of the CP <-> DP sync (issue 4, SYNC-PROTOCOL.md §5.13), DP side: real portico-cp and
// portico-dp processes on loopback. Each test is bounded in time and stops what it starts.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file.h"
#include "common/tls/tls_files.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"
#include "tests/integration/sync_test_util.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// Resident memory of a process in KiB (VmRSS from /proc), -1 if unreadable.
long VmRssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

class SyncFaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }

  void CreateEchoServiceAndRoute() {
    HttpResult s = cluster_.Admin(
        "POST", "/services",
        {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream_.port(), "/base")}});
    ASSERT_EQ(s.status, 201) << s.body;
    HttpResult r = cluster_.Admin("POST", "/services/echo/routes", {{"name", "api"}, {"paths", {"/api"}}});
    ASSERT_EQ(r.status, 201) << r.body;
  }

  // Adds `count` routes "<prefix>-<i>" on service echo, each with `paths` random paths of `path_len`
  // characters (random text compresses poorly, so the snapshot gets big), from 4 writer threads.
  // Returns the number of writes that did not answer 201.
  int AddRoutes(const std::string& prefix, int count, int paths, int path_len) {
    std::atomic<int> next{0}, failures{0};
    std::vector<std::thread> writers;
    for (int t = 0; t < 4; ++t) {
      writers.emplace_back([&, t] {
        std::mt19937_64 rng(static_cast<uint64_t>(t) * 7919 + static_cast<uint64_t>(count));
        static constexpr char kAlphabet[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        for (int i = next++; i < count; i = next++) {
          json path_list = json::array();
          for (int p = 0; p < paths; ++p) {
            std::string path = absl::StrCat("/", prefix, i, "-", p, "-");
            for (int c = 0; c < path_len; ++c) path += kAlphabet[rng() % 62];
            path_list.push_back(path);
          }
          HttpResult r = cluster_.Admin(
              "POST", "/services/echo/routes",
              {{"name", absl::StrCat(prefix, "-", i)}, {"paths", path_list}});
          if (r.status != 201) ++failures;
        }
      });
    }
    for (auto& w : writers) w.join();
    return failures.load();
  }

  json Sync(const DataPlane& dp) { return cluster_.DpStatus(dp)["sync"]; }
  std::string CpMetrics() { return Http(cluster_.admin_port(), "GET", "/metrics").body; }
  std::string DpMetrics(const DataPlane& dp) { return Http(dp.status_port, "GET", "/metrics").body; }
  json DataPlaneRecord(const std::string& id) {
    json dps = ParseJson(cluster_.Admin("GET", "/clustering/data-planes"));
    if (!dps.is_object() || !dps.contains("data")) {
      ADD_FAILURE() << "GET /clustering/data-planes did not answer a list: " << dps.dump();
      return nullptr;
    }
    for (const json& dp : dps["data"]) {
      if (dp.value("id", "") == id) return dp;
    }
    return nullptr;
  }
  bool WaitConnected(const DataPlane& dp, bool connected, std::chrono::milliseconds timeout) {
    return WaitFor([&] { return cluster_.DpStatus(dp).value("control_plane_connected", !connected) == connected; },
                   timeout);
  }

  EchoUpstream upstream_;
  Cluster cluster_;
};

// kill -9 of the CP under load: no failed proxied request; after the restart the DP is told it
// is up to date (UpToDate) and nothing is resent.
TEST_F(SyncFaultTest, KillNineOfCpUnderLoadThenBackInSyncWithoutResend) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& dp = cluster_.StartDp();
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoute());
  ASSERT_TRUE(cluster_.WaitDpSynced(dp));
  const uint64_t version = cluster_.CpVersion();
  // Let the last in-flight snapshot settle (intermediate versions may still be ACKed).
  ASSERT_TRUE(WaitFor([&] { return Sync(dp)["snapshots_applied"].get<int>() >= 1; }, 5s));
  std::this_thread::sleep_for(300ms);
  const json before = Sync(dp);

  LoadLoop load(&cluster_, &dp, "/api/load");
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= 100; }, 10s));
  cluster_.KillCp(SIGKILL);
  ASSERT_TRUE(WaitConnected(dp, false, 10s));
  const int served = load.ok();
  ASSERT_TRUE(WaitFor([&] { return load.ok() >= served + 200; }, 10s));
  EXPECT_EQ(cluster_.DpStatus(dp)["config_version"], version);

  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  ASSERT_TRUE(WaitConnected(dp, true, 15s)) << cluster_.DpStatus(dp).dump();
  ASSERT_TRUE(WaitFor([&] { return Sync(dp)["up_to_date"].get<int>() > before["up_to_date"].get<int>(); }, 10s))
      << Sync(dp).dump();
  std::this_thread::sleep_for(500ms);
  const json after = Sync(dp);
  EXPECT_EQ(after["snapshots_applied"], before["snapshots_applied"]) << "a snapshot was resent";
  EXPECT_EQ(cluster_.DpStatus(dp)["config_version"], version);
  // The restarted CP's own account: it answered UpToDate and sent no snapshot.
  std::optional<double> cp_up_to_date =
      MetricValue(CpMetrics(), "portico_cp_sync_pushes_total{result=\"up_to_date\"}");
  ASSERT_TRUE(cp_up_to_date.has_value()) << CpMetrics();
  EXPECT_GE(*cp_up_to_date, 1.0);
  std::optional<double> cp_full =
      MetricValue(CpMetrics(), "portico_cp_sync_pushes_total{result=\"sent\"}");
  ASSERT_TRUE(cp_full.has_value()) << CpMetrics();
  EXPECT_EQ(*cp_full, 0.0) << "the restarted CP sent a snapshot";
  json record = DataPlaneRecord("dp-it");
  ASSERT_TRUE(record.is_object());
  EXPECT_EQ(record["state"], "connected_synced") << record.dump();

  load.Stop();
  EXPECT_EQ(load.failed(), 0) << "first failure: " << load.first_failure();
}

// The CP dies in the middle of sending a large snapshot: the DP discards the partial snapshot,
// keeps serving, and converges afterwards. The DP runs with --incremental-sync=off: a
// delta-capable DP would get the one-route change as a one-chunk delta, and nothing would be cut
// (the same crash in the middle of a delta: DeltaSyncTest.CpKilledMidDelta...).
TEST_F(SyncFaultTest, CpKilledMidSnapshotPartialIsDiscardedAndDpConverges) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& dp = cluster_.StartDp({.extra_args = {"--incremental-sync=off"}});
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoute());
  // 4,000 routes x 32 random paths of 160 characters: a snapshot of many 1 MiB chunks.
  ASSERT_EQ(AddRoutes("big", 4000, 32, 160), 0);
  ASSERT_TRUE(cluster_.WaitDpSynced(dp, 60s)) << cluster_.DpStatus(dp).dump();
  const uint64_t served_version = cluster_.CpVersion();

  // Restart the CP with the test fault switch: it dies (SIGKILL) after writing 3 chunks of the
  // next snapshot it sends. The DP already serves the latest, so the reconnect sends nothing.
  cluster_.KillCp(SIGTERM);
  ASSERT_TRUE(cluster_.StartCp({}, {{"PORTICO_TEST_CP_CRASH_AFTER_CHUNKS", "3"}})) << cluster_.Logs();
  ASSERT_TRUE(WaitConnected(dp, true, 30s)) << cluster_.Logs();
  HttpResult r = cluster_.Admin("POST", "/services/echo/routes", {{"name", "late"}, {"paths", {"/late"}}});
  ASSERT_EQ(r.status, 201) << r.body;
  const uint64_t latest = cluster_.CpVersion();
  ASSERT_TRUE(WaitFor([&] { return !cluster_.cp()->Running(); }, 20s)) << "fault switch did not fire";
  ASSERT_NE(cluster_.cp()->Log().find("TEST fault switch: crashing after 3 of"), std::string::npos)
      << cluster_.cp()->Log();

  ASSERT_TRUE(WaitConnected(dp, false, 15s));
  ASSERT_TRUE(WaitFor([&] { return Sync(dp)["partial_discarded"].get<int>() >= 1; }, 10s))
      << Sync(dp).dump();
  EXPECT_EQ(cluster_.DpStatus(dp)["config_version"], served_version) << Sync(dp).dump();
  EXPECT_EQ(cluster_.Proxy(dp, "/late").status, 404);
  {
    LoadLoop load(&cluster_, &dp, "/api/still");
    ASSERT_TRUE(WaitFor([&] { return load.ok() >= 50; }, 10s));
    load.Stop();
    EXPECT_EQ(load.failed(), 0) << load.first_failure();
  }

  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  ASSERT_TRUE(cluster_.WaitDpSynced(dp, 60s)) << cluster_.DpStatus(dp).dump();
  EXPECT_EQ(cluster_.DpStatus(dp)["config_version"], latest);
  EXPECT_EQ(cluster_.Proxy(dp, "/late").status, 200);
  EXPECT_EQ(Sync(dp)["deltas_applied"], 0) << Sync(dp).dump();
}

// A snapshot the DP cannot apply (test fault switch): NACK recorded with its reason on the CP,
// requests unaffected, sent exactly once, and the next good version applies. With delta sync the
// DP is first sent the version as a delta from the one it serves; the refused delta is not
// parked, the full snapshot of that version follows at once (docs/sync.md "NACK of a delta"),
// and that NACK parks it: so the version goes out exactly twice, once of each kind.
TEST_F(SyncFaultTest, NackedSnapshotIsRecordedSentOnceAndTheNextGoodVersionApplies) {
  ASSERT_TRUE(cluster_.StartCp({"--log-level", "debug"})) << cluster_.Logs();  // logs "sending version N"
  DataPlane& dp = cluster_.StartDp({.env = {{"PORTICO_TEST_FAIL_APPLY_IF_ROUTE_NAMED", "poison"}}});
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoute());
  ASSERT_TRUE(cluster_.WaitDpSynced(dp));
  const uint64_t good = cluster_.CpVersion();
  LoadLoop load(&cluster_, &dp, "/api/x");

  HttpResult p = cluster_.Admin("POST", "/services/echo/routes", {{"name", "poison"}, {"paths", {"/poison"}}});
  ASSERT_EQ(p.status, 201) << p.body;
  const uint64_t poisoned = cluster_.CpVersion();
  ASSERT_TRUE(WaitFor([&] { return DataPlaneRecord("dp-it").value("state", "") == "nacked"; }, 15s))
      << DataPlaneRecord("dp-it").dump();
  json record = DataPlaneRecord("dp-it");
  EXPECT_NE(record.value("last_error", "").find("poison"), std::string::npos) << record.dump();
  EXPECT_NE(record.value("last_error", "").find("BUILD"), std::string::npos) << record.dump();
  EXPECT_EQ(record["config_version"], good) << record.dump();
  EXPECT_EQ(cluster_.DpStatus(dp)["config_version"], good);
  EXPECT_EQ(cluster_.Proxy(dp, "/poison").status, 404);

  // The DP reconstructed the version from the delta (the hash matched) and could not apply it
  // (BUILD): the version is parked at once, the full snapshot (same bytes) is never sent.
  EXPECT_EQ(record["nack_count"], 1) << record.dump();

  // Exactly once, as a delta: no resend over a few heartbeats.
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(Sync(dp)["snapshots_rejected"], 1) << Sync(dp).dump();
  EXPECT_EQ(Sync(dp)["deltas_rejected"], 1) << Sync(dp).dump();
  const std::string sending = absl::StrCat("sending version ", poisoned, " to dp dp-it (nonce ");
  EXPECT_EQ(CountOccurrences(cluster_.cp()->Log(), sending), 1u) << cluster_.cp()->Log();
  EXPECT_EQ(CountOccurrences(cluster_.cp()->Log(), absl::StrCat(", delta from version ", good, ", 1 change(s))")), 1u)
      << cluster_.cp()->Log();
  EXPECT_EQ(MetricValue(CpMetrics(), "portico_cp_sync_pushes_total{result=\"nack\"}"), 1.0) << CpMetrics();

  // The next good version (the poison route removed) applies and clears the error.
  ASSERT_EQ(cluster_.Admin("DELETE", "/routes/poison").status, 204);
  ASSERT_TRUE(cluster_.WaitDpSynced(dp)) << cluster_.DpStatus(dp).dump();
  EXPECT_GT(cluster_.DpStatus(dp)["config_version"].get<uint64_t>(), poisoned);
  ASSERT_TRUE(WaitFor([&] { return DataPlaneRecord("dp-it").value("state", "") == "connected_synced"; }, 10s))
      << DataPlaneRecord("dp-it").dump();
  EXPECT_EQ(Sync(dp)["snapshots_rejected"], 1);
  // The parked version does not stop deltas: the DP still serves `good`, which the change log
  // covers, so the repair comes as a delta from it (with no change: the same routes as `good`).
  EXPECT_TRUE(WaitFor([&] { return Sync(dp)["deltas_applied"] == 1; }, 5s)) << Sync(dp).dump();

  // DP metrics on the status listener.
  const std::string metrics = DpMetrics(dp);
  EXPECT_EQ(MetricValue(metrics, "portico_dp_config_version"),
            static_cast<double>(cluster_.CpVersion())) << metrics;
  EXPECT_EQ(MetricValue(metrics, "portico_dp_cp_connected"), 1.0) << metrics;
  EXPECT_GE(MetricValue(metrics, "portico_dp_config_apply_seconds_count").value_or(0), 2.0) << metrics;
  EXPECT_LT(MetricValue(metrics, "portico_dp_seconds_since_last_sync").value_or(-1), 5.0) << metrics;
  EXPECT_GE(MetricValue(metrics, "portico_dp_seconds_since_last_sync").value_or(-1), 0.0) << metrics;
  EXPECT_GT(MetricValue(metrics, "portico_dp_last_sync_timestamp_seconds").value_or(0), 1.6e9) << metrics;
  EXPECT_GT(MetricValue(metrics, "portico_dp_requests_total").value_or(0), 0.0) << metrics;

  load.Stop();
  EXPECT_GT(load.ok(), 0);
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
}

// An expired DP certificate is refused at the TLS handshake: no config, a slow retry (backoff,
// no hot loop), and the refusal is in the CP's log.
TEST_F(SyncFaultTest, ExpiredCertificateIsRefusedWithoutAHotRetryLoop) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& good = cluster_.StartDp();
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoute());
  ASSERT_TRUE(cluster_.WaitDpSynced(good));
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const std::string prefix = cluster_.tmp().path() + "/expired";
  ASSERT_TRUE(IssueDataPlaneCertificate(cluster_.certs(), "dp-expired", prefix,
                                        CertificateValidity{now - 7 * 86400, now - 86400}).ok());
  const size_t cp_log_before = cluster_.cp()->Log().size();
  DataPlane& expired = cluster_.StartDp({.cert = prefix + ".crt", .key = prefix + ".key",
                                         .log_name = "expired.log"});
  std::this_thread::sleep_for(5s);
  json s = cluster_.DpStatus(expired);
  EXPECT_EQ(s["config_loaded"], false) << s.dump();
  EXPECT_EQ(s["control_plane_connected"], false);
  EXPECT_EQ(s["sync"]["sessions"], 0);
  // Backoff 1 s x 1.6 (+-20 %): about 4 attempts in 5 s, never dozens.
  EXPECT_GE(s["sync"]["connect_attempts"].get<int>(), 2) << s.dump();
  EXPECT_LE(s["sync"]["connect_attempts"].get<int>(), 6) << s.dump();
  EXPECT_EQ(cluster_.Proxy(expired, "/api/x").status, 404);
  EXPECT_FALSE(DataPlaneRecord("dp-expired").is_object()) << "never admitted";
  const std::string cp_log = cluster_.cp()->Log().substr(cp_log_before);
  // gRPC logs the refused handshake at error level (the reason stays inside OpenSSL).
  EXPECT_NE(cp_log.find("certificate verify failed"), std::string::npos) << cp_log;
  EXPECT_TRUE(expired.process->Running());
  EXPECT_EQ(cluster_.Proxy(good, "/api/x").status, 200);
}

// Hello names another node than the certificate: refused (PERMISSION_DENIED), recorded under the
// certificate identity on the CP, and retried only slowly.
TEST_F(SyncFaultTest, NodeIdNotMatchingCertificateIsRefusedAndVisibleOnTheCp) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  ASSERT_TRUE(IssueDataPlaneCertificate(cluster_.certs(), "dp-real", cluster_.tmp().path() + "/real").ok());
  DataPlane& dp = cluster_.StartDp({.cert = cluster_.tmp().path() + "/real.crt",
                                    .key = cluster_.tmp().path() + "/real.key",
                                    .env = {{"PORTICO_TEST_HELLO_NODE_ID", "dp-impostor"}},
                                    .log_name = "impostor.log"});
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoute());
  ASSERT_TRUE(WaitFor([&] { return DataPlaneRecord("dp-real").is_object(); }, 10s));
  json record = DataPlaneRecord("dp-real");
  EXPECT_EQ(record["state"], "refused") << record.dump();
  EXPECT_NE(record.value("last_error", "").find("does not match"), std::string::npos) << record.dump();
  EXPECT_FALSE(DataPlaneRecord("dp-impostor").is_object());
  std::this_thread::sleep_for(4s);
  json s = cluster_.DpStatus(dp);
  EXPECT_EQ(s["config_loaded"], false) << s.dump();
  EXPECT_EQ(s["sync"]["connect_attempts"], 1) << "refusals must wait refused_retry: " << s.dump();
  EXPECT_EQ(s["sync"]["refusals"], 1) << s.dump();
  EXPECT_NE(dp.process->Log().find("refused this data plane"), std::string::npos);
}

// DP restart while the CP is down: with --snapshot-cache it serves its last config at once; a
// corrupted cur falls back to prev; with both corrupted it starts empty (and says why).
TEST_F(SyncFaultTest, DpRestartWhileCpDownServesFromSnapshotCacheAndRefusesCorruptFiles) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  const std::string cache = cluster_.tmp().path() + "/cache";
  DataPlane& first = cluster_.StartDp({.extra_args = {"--snapshot-cache", cache}, .log_name = "dp1.log"});
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoute());
  ASSERT_TRUE(cluster_.WaitDpSynced(first));
  // A second version so that snapshot.prev exists.
  ASSERT_EQ(cluster_.Admin("POST", "/services/echo/routes", {{"name", "two"}, {"paths", {"/two"}}}).status, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(first));
  const uint64_t last = cluster_.CpVersion();
  // The DP persists after it swaps and before it ACKs, so wait for the CP to record the ACK of
  // the last version (its status page can show the version before the file is written).
  ASSERT_TRUE(WaitFor(
      [&] {
        json record = DataPlaneRecord("dp-it");
        return record.is_object() && record.value("config_version", uint64_t{0}) == last &&
               record.value("state", "") == "connected_synced";
      },
      5s))
      << Sync(first).dump();
  ASSERT_TRUE(std::filesystem::exists(cache + "/snapshot.cur"));
  ASSERT_TRUE(std::filesystem::exists(cache + "/snapshot.prev"));

  first.process->Stop();
  cluster_.KillCp(SIGKILL);

  DataPlane& second = cluster_.StartDp({.extra_args = {"--snapshot-cache", cache}, .log_name = "dp2.log"});
  ASSERT_TRUE(WaitFor([&] { return Http(second.status_port, "GET", "/status/ready").status == 200; }, 5s))
      << second.process->Log();
  json s = cluster_.DpStatus(second);
  EXPECT_EQ(s["config_version"], last);
  EXPECT_EQ(s["control_plane_connected"], false);
  EXPECT_EQ(s["sync"]["loaded_from_cache"], true);
  EXPECT_EQ(cluster_.Proxy(second, "/two/a").status, 200);
  EXPECT_EQ(cluster_.Proxy(second, "/api/a").status, 200);
  EXPECT_EQ(MetricValue(DpMetrics(second), "portico_dp_cp_connected"), 0.0);

  // The CP comes back: the cached version is the latest, so it answers UpToDate, sends nothing.
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  ASSERT_TRUE(WaitFor([&] { return Sync(second)["up_to_date"].get<int>() >= 1; }, 15s)) << Sync(second).dump();
  EXPECT_EQ(Sync(second)["snapshots_applied"], 0);
  second.process->Stop();
  cluster_.KillCp(SIGKILL);

  // Corrupt cur: detected, logged, prev (one version older) is served.
  absl::StatusOr<std::string> read_cur = ReadFileToString(cache + "/snapshot.cur");
  ASSERT_TRUE(read_cur.ok()) << read_cur.status();
  std::string cur = *std::move(read_cur);
  ASSERT_GT(cur.size(), 100u);
  cur[cur.size() / 2] = static_cast<char>(cur[cur.size() / 2] ^ 0xff);
  ASSERT_TRUE(WriteFileAtomically(cache + "/snapshot.cur", cur, 0600).ok());
  DataPlane& third = cluster_.StartDp({.extra_args = {"--snapshot-cache", cache}, .log_name = "dp3.log"});
  ASSERT_TRUE(WaitFor([&] { return Http(third.status_port, "GET", "/status/ready").status == 200; }, 5s))
      << third.process->Log();
  EXPECT_LT(cluster_.DpStatus(third)["config_version"].get<uint64_t>(), last);
  EXPECT_NE(third.process->Log().find("snapshot.cur is not usable"), std::string::npos) << third.process->Log();
  EXPECT_EQ(cluster_.Proxy(third, "/two/a").status, 404);
  EXPECT_EQ(cluster_.Proxy(third, "/api/a").status, 200);
  third.process->Stop();

  // Both corrupted: nothing is used.
  absl::StatusOr<std::string> read_prev = ReadFileToString(cache + "/snapshot.prev");
  ASSERT_TRUE(read_prev.ok()) << read_prev.status();
  std::string prev = *std::move(read_prev);
  prev[prev.size() - 12] = static_cast<char>(prev[prev.size() - 12] ^ 0xff);
  ASSERT_TRUE(WriteFileAtomically(cache + "/snapshot.prev", prev, 0600).ok());
  DataPlane& fourth = cluster_.StartDp({.extra_args = {"--snapshot-cache", cache}, .log_name = "dp4.log"});
  ASSERT_TRUE(WaitFor([&] { return fourth.process->Log().find("snapshot.prev is not usable") != std::string::npos; }, 5s))
      << fourth.process->Log();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(cluster_.DpStatus(fourth)["config_loaded"], false);
  EXPECT_EQ(Http(fourth.status_port, "GET", "/status/ready").status, 503);
  EXPECT_EQ(cluster_.Proxy(fourth, "/api/a").status, 404);
}

// A burst of 1,000 Admin API writes: every DP ends on the final version, and the debounce builds
// far fewer snapshots than there were writes.
TEST_F(SyncFaultTest, BurstOfAThousandWritesBuildsFewSnapshotsAndEveryDpConverges) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& a = cluster_.StartDp({.log_name = "dpa.log"});
  ASSERT_TRUE(IssueDataPlaneCertificate(cluster_.certs(), "dp-b", cluster_.tmp().path() + "/b").ok());
  DataPlane& b = cluster_.StartDp({.cert = cluster_.tmp().path() + "/b.crt",
                                   .key = cluster_.tmp().path() + "/b.key", .log_name = "dpb.log"});
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoute());
  ASSERT_TRUE(cluster_.WaitDpSynced(a));
  const std::string published = "published config version ";
  const size_t builds_before = CountOccurrences(cluster_.cp()->Log(), published);
  const uint64_t version_before = cluster_.CpVersion();
  const int applied_before = Sync(a)["snapshots_applied"].get<int>();

  ASSERT_EQ(AddRoutes("burst", 1000, 1, 8), 0);
  const uint64_t final_version = cluster_.CpVersion();
  EXPECT_EQ(final_version, version_before + 1000);
  ASSERT_TRUE(cluster_.WaitDpSynced(a, 30s)) << cluster_.DpStatus(a).dump();
  ASSERT_TRUE(cluster_.WaitDpSynced(b, 30s)) << cluster_.DpStatus(b).dump();
  EXPECT_EQ(cluster_.DpStatus(a)["routes"], 1001);
  EXPECT_EQ(cluster_.DpStatus(b)["routes"], 1001);
  // A version with deltas reaches the DPs before its full payload is built and logged.
  ASSERT_TRUE(WaitFor([&] { return cluster_.cp()->Log().find(absl::StrCat(published, final_version, " ")) != std::string::npos; },
                      10s));
  const size_t builds = CountOccurrences(cluster_.cp()->Log(), published) - builds_before;
  std::fprintf(stderr, "1000 writes -> %zu snapshots built\n", builds);
  EXPECT_GE(builds, 1u);
  EXPECT_LE(builds, 100u) << "debounce should coalesce the burst";
  // Each DP applied far fewer snapshots than versions (only the latest is ever sent).
  EXPECT_LE(Sync(a)["snapshots_applied"].get<int>() - applied_before, static_cast<int>(builds));
  std::optional<double> cp_builds = MetricValue(CpMetrics(), "portico_cp_snapshot_builds_total");
  ASSERT_TRUE(cp_builds.has_value()) << CpMetrics();
  EXPECT_LE(*cp_builds, 110.0);
}

// A frozen DP (SIGSTOP) does not make the CP keep one snapshot per version; after SIGCONT it
// converges to the latest.
TEST_F(SyncFaultTest, FrozenDpDoesNotGrowCpMemoryAndConvergesAfterSigcont) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& frozen = cluster_.StartDp({.log_name = "frozen.log"});
  ASSERT_TRUE(IssueDataPlaneCertificate(cluster_.certs(), "dp-live", cluster_.tmp().path() + "/live").ok());
  DataPlane& live = cluster_.StartDp({.cert = cluster_.tmp().path() + "/live.crt",
                                      .key = cluster_.tmp().path() + "/live.key", .log_name = "live.log"});
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoute());
  // 2,000 routes x 8 random paths of 160 characters: a snapshot of about 2 MB compressed.
  ASSERT_EQ(AddRoutes("mem", 2000, 8, 160), 0);
  ASSERT_TRUE(cluster_.WaitDpSynced(frozen, 60s));
  ASSERT_TRUE(cluster_.WaitDpSynced(live, 60s));

  frozen.process->Signal(SIGSTOP);
  auto push = [&](const std::string& name) {
    HttpResult r = cluster_.Admin("POST", "/services/echo/routes", {{"name", name}, {"paths", {"/" + name}}});
    ASSERT_EQ(r.status, 201) << r.body;
    ASSERT_TRUE(cluster_.WaitDpSynced(live, 30s));
    // The live DP may have its delta before the CP built the version's full payload: measure
    // after the build (its buffers are freed when it ends), not in the middle of it.
    const std::string built = absl::StrCat("config version ", cluster_.CpVersion(), ": full payload of ");
    ASSERT_TRUE(WaitFor([&] { return cluster_.cp()->Log().find(built) != std::string::npos; }, 30s));
    std::this_thread::sleep_for(100ms);
  };
  for (int i = 0; i < 3; ++i) ASSERT_NO_FATAL_FAILURE(push(absl::StrCat("warm", i)));
  const long rss_before = VmRssKb(cluster_.cp()->pid());
  for (int i = 0; i < 10; ++i) ASSERT_NO_FATAL_FAILURE(push(absl::StrCat("more", i)));
  const long rss_after = VmRssKb(cluster_.cp()->pid());
  std::fprintf(stderr, "CP VmRSS %ld KiB -> %ld KiB over 10 pushes with a frozen DP\n", rss_before, rss_after);
  ASSERT_GT(rss_before, 0);
  // Keeping one ~2 MB snapshot per version for the frozen DP would add >= 20 MB.
  EXPECT_LT(rss_after - rss_before, 12 * 1024) << "CP memory grew per version";

  frozen.process->Signal(SIGCONT);
  ASSERT_TRUE(cluster_.WaitDpSynced(frozen, 60s)) << cluster_.DpStatus(frozen).dump();
  EXPECT_EQ(cluster_.Proxy(frozen, "/more9").status, 200);
}

}  // namespace
}  // namespace portico::testing
