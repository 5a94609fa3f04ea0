// Hostile input against the control plane (issue 9), with the real binaries: a corrupt entity
// row in the SQLite file must not brick the CP, and an idle TCP connection to the cluster port
// must not be held for gRPC's default 120 s handshake timeout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/corrupt_rows.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class CpHostileInputTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }

  // The row of the only DP in GET /clustering/data-planes (null if none).
  json DataPlaneRow() {
    json dps = ParseJson(cluster_.Admin("GET", "/clustering/data-planes"));
    if (!dps.is_object() || !dps.contains("data") || dps["data"].size() != 1) return nullptr;
    return dps["data"][0];
  }

  EchoUpstream upstream_;
  Cluster cluster_;
};

// An older CP stored an entity whose name is not UTF-8 (protobuf writes such a proto3 string but
// cannot parse it back). A restarted CP used to refuse to start; now it starts, reports the row
// (/status, /metrics, log), keeps the DP on its last snapshot and shows it not converged, and
// publishes again once the row is deleted through the Admin API.
TEST_F(CpHostileInputTest, CorruptRowIsReportedAndDeletedWithoutLosingTheDataPlane) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  DataPlane& dp = cluster_.StartDp();
  ASSERT_TRUE(dp.started);
  HttpResult s = cluster_.Admin("POST", "/services",
                                {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream_.port())}});
  ASSERT_EQ(s.status, 201) << s.body;
  ASSERT_EQ(cluster_.Admin("POST", "/services/echo/routes", {{"name", "old"}, {"paths", {"/old"}}}).status, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(dp)) << cluster_.DpStatus(dp).dump();
  ASSERT_EQ(cluster_.Proxy(dp, "/old").status, 200);

  // Today's CP refuses such a write on every path (here the form body of the original report).
  HttpResult form = Http(cluster_.admin_port(), "POST", "/services", "name=bad%ff%fe&host=1.2.3.4",
                         "application/x-www-form-urlencoded");
  EXPECT_EQ(form.status, 400) << form.body;
  const uint64_t before = cluster_.CpVersion();

  // An old CP's write, done behind the stopped CP's back.
  cluster_.KillCp(SIGTERM);
  const std::string corrupt_id = "00000000-0000-4000-8000-0000000000ff";
  ASSERT_EQ(test_support::InsertCorruptRow(cluster_.tmp().File("portico.db"), "services", corrupt_id,
                                           "bad\xff\xfe"),
            "");

  ASSERT_TRUE(cluster_.StartCp()) << "the CP must start on a store with a corrupt row\n" << cluster_.Logs();
  EXPECT_EQ(cluster_.CpVersion(), before + 1);
  json status = ParseJson(cluster_.Admin("GET", "/status"));
  ASSERT_TRUE(status.contains("config_build")) << status.dump();
  json build = status["config_build"];
  EXPECT_EQ(build["ok"], false) << build.dump();
  EXPECT_EQ(build["reason"], "corrupt_rows") << build.dump();
  EXPECT_EQ(build["store_version"], before + 1) << build.dump();
  EXPECT_EQ(build["corrupt_row_count"], 1) << build.dump();
  ASSERT_EQ(build["corrupt_rows"].size(), 1u) << build.dump();
  EXPECT_EQ(build["corrupt_rows"][0]["entity"], "services");
  EXPECT_EQ(build["corrupt_rows"][0]["id"], corrupt_id);
  std::string metrics = cluster_.Admin("GET", "/metrics").body;
  EXPECT_NE(metrics.find("portico_cp_store_corrupt_rows 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("portico_cp_config_build_failing{reason=\"corrupt_rows\"} 1\n"), std::string::npos)
      << metrics;
  EXPECT_NE(cluster_.cp()->Log().find(corrupt_id), std::string::npos) << "the row is logged";

  // The DP reconnects, keeps serving the old snapshot, and is shown behind.
  ASSERT_TRUE(WaitFor(
      [&] {
        json row = DataPlaneRow();
        return row.is_object() && row["state"] == "outdated";
      },
      30s))
      << DataPlaneRow().dump();
  json row = DataPlaneRow();
  EXPECT_EQ(row["lag_versions"], 1) << row.dump();
  EXPECT_EQ(row["config_version"], before) << row.dump();
  EXPECT_EQ(cluster_.Proxy(dp, "/old").status, 200);
  EXPECT_EQ(cluster_.DpStatus(dp)["config_version"], before);

  // The Admin API works around the row and explains it.
  json list = ParseJson(cluster_.Admin("GET", "/services"));
  EXPECT_EQ(list["data"].size(), 1u) << list.dump();
  HttpResult get = cluster_.Admin("GET", "/services/" + corrupt_id);
  EXPECT_EQ(get.status, 500);
  EXPECT_NE(get.body.find("DELETE /services/" + corrupt_id), std::string::npos) << get.body;

  // Repair: DELETE by id; the next build publishes and the DP converges.
  EXPECT_EQ(cluster_.Admin("DELETE", "/services/" + corrupt_id).status, 204);
  ASSERT_TRUE(cluster_.WaitDpSynced(dp)) << cluster_.DpStatus(dp).dump();
  ASSERT_TRUE(WaitFor(
      [&] {
        json r = DataPlaneRow();
        return r.is_object() && r["state"] == "connected_synced" && r["lag_versions"] == 0;
      },
      15s))
      << DataPlaneRow().dump();
  build = ParseJson(cluster_.Admin("GET", "/status"))["config_build"];
  EXPECT_EQ(build["ok"], true) << build.dump();
  EXPECT_EQ(build["corrupt_row_count"], 0) << build.dump();
  EXPECT_EQ(build["published_version"], before + 2) << build.dump();
  metrics = cluster_.Admin("GET", "/metrics").body;
  EXPECT_NE(metrics.find("portico_cp_store_corrupt_rows 0\n"), std::string::npos) << metrics;
  EXPECT_EQ(cluster_.Proxy(dp, "/old").status, 200);
}

// A TCP connection to the cluster port that never starts TLS is closed after
// --cluster-handshake-timeout (here 1 s), not after gRPC's default 120 s.
TEST_F(CpHostileInputTest, IdleClusterConnectionIsClosedAfterTheHandshakeTimeout) {
  ASSERT_TRUE(cluster_.StartCp({"--cluster-handshake-timeout", "1"})) << cluster_.Logs();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(cluster_.cluster_port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << errno;
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const auto start = std::chrono::steady_clock::now();
  char byte = 0;
  const ssize_t n = read(fd, &byte, 1);
  const int error = errno;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  close(fd);
  EXPECT_TRUE(n == 0 || (n < 0 && error == ECONNRESET)) << "read returned " << n << ", errno " << error;
  EXPECT_LT(seconds, 20.0);
  EXPECT_GT(seconds, 0.5);

  // A bad value is refused at start.
  Process bad("cp-bad", {PORTICO_CP_BIN, "--cluster-handshake-timeout", "0", "--cluster-cert", "x",
                         "--cluster-key", "x", "--cluster-ca", "x"},
              cluster_.tmp().File("cp-bad.log"));
  const int wait_status = bad.Stop(0, 10s);
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 1) << bad.Log();
  EXPECT_NE(bad.Log().find("cluster-handshake-timeout"), std::string::npos) << bad.Log();
}

}  // namespace
}  // namespace portico::testing
