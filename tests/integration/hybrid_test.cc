// The hybrid path end to end: real portico-cp (SQLite file) and portico-dp processes on loopback,
// mTLS certificates generated per run, a real upstream, raw HTTP.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class HybridTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    dp_ = &cluster_.StartDp();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }

  void CreateEchoServiceAndRoutes() {
    HttpResult s = cluster_.Admin(
        "POST", "/services",
        {{"name", "echo"}, {"url", absl::StrCat("http://127.0.0.1:", upstream_.port(), "/base")}});
    ASSERT_EQ(s.status, 201) << s.body;
    HttpResult r1 =
        cluster_.Admin("POST", "/services/echo/routes", {{"name", "api"}, {"paths", {"/api"}}});
    ASSERT_EQ(r1.status, 201) << r1.body;
    HttpResult r2 = cluster_.Admin("POST", "/routes",
                                   {{"name", "keep"},
                                    {"paths", {"/keep"}},
                                    {"strip_path", false},
                                    {"preserve_host", true},
                                    {"service", {{"name", "echo"}}}});
    ASSERT_EQ(r2.status, 201) << r2.body;
  }

  EchoUpstream upstream_;
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
};

TEST_F(HybridTest, RouteCreatedViaAdminApiIsServedWithKongPathAndHost) {
  EXPECT_EQ(Http(dp_->status_port, "GET", "/status/ready").status, 503);
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoutes());
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  EXPECT_EQ(Http(dp_->status_port, "GET", "/status/ready").status, 200);

  // strip_path=true (default): /api is removed and joined to the service path /base.
  HttpResult a = cluster_.Proxy(*dp_, "/api/items?q=1&b=%2F");
  ASSERT_TRUE(a.ok) << a.error;
  ASSERT_EQ(a.status, 200) << a.body;
  json echo = json::parse(a.body);
  EXPECT_EQ(echo["target"], "/base/items?q=1&b=%2F");
  EXPECT_EQ(echo["headers"]["host"], absl::StrCat("127.0.0.1:", upstream_.port()));
  EXPECT_EQ(echo["headers"]["x-forwarded-host"], "client.example");
  EXPECT_EQ(echo["headers"]["x-forwarded-proto"], "http");
  EXPECT_EQ(echo["headers"]["x-forwarded-for"], "127.0.0.1");
  EXPECT_EQ(echo["headers"]["x-real-ip"], "127.0.0.1");
  EXPECT_EQ(echo["headers"]["x-forwarded-port"], std::to_string(dp_->proxy_port));
  EXPECT_EQ(a.headers["x-upstream"], "echo");
  EXPECT_NE(a.headers["via"].find("portico"), std::string::npos);

  // strip_path=false + preserve_host=true.
  HttpResult k = cluster_.Proxy(*dp_, "/keep/x/");
  ASSERT_EQ(k.status, 200) << k.body;
  json echo2 = json::parse(k.body);
  EXPECT_EQ(echo2["target"], "/base/keep/x/");
  EXPECT_EQ(echo2["headers"]["host"], "client.example");

  HttpResult none = cluster_.Proxy(*dp_, "/nothing");
  EXPECT_EQ(none.status, 404);
  EXPECT_EQ(ParseJson(none)["message"], "no Route matched with those values");

  // The CP knows what the DP runs.
  json dps = ParseJson(cluster_.Admin("GET", "/clustering/data-planes"));
  ASSERT_TRUE(dps.contains("data")) << dps.dump();
  ASSERT_EQ(dps["data"].size(), 1u) << dps.dump();
  json dp = dps["data"][0];
  EXPECT_EQ(dp["id"], "dp-it");
  EXPECT_EQ(dp["ip"], "127.0.0.1");
  EXPECT_EQ(dp["sync_status"], "normal");
  EXPECT_EQ(dp["config_hash"], cluster_.DpStatus(*dp_)["configuration_hash"]);
  EXPECT_EQ(dp["config_version"], cluster_.CpVersion());
}

TEST_F(HybridTest, KillNineOfCpLosesNoProxiedRequestAndLaterChangesArrive) {
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoutes());
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_failure;
  std::thread load([&] {
    while (!stop) {
      HttpResult r = cluster_.Proxy(*dp_, "/api/load");
      if (r.ok && r.status == 200) {
        ++ok;
      } else if (failed++ == 0) {
        first_failure = absl::StrCat(r.status, " ", r.error, " ", r.body);
      }
    }
  });
  ASSERT_TRUE(WaitFor([&] { return ok.load() >= 100; }, 10s));
  cluster_.KillCp(SIGKILL);
  ASSERT_TRUE(WaitFor(
      [&] { return cluster_.DpStatus(*dp_).value("control_plane_connected", true) == false; }, 10s));
  int served_before_restart = ok.load();
  ASSERT_TRUE(WaitFor([&] { return ok.load() >= served_before_restart + 200; }, 10s));

  ASSERT_TRUE(cluster_.StartCp());
  HttpResult r =
      cluster_.Admin("POST", "/services/echo/routes", {{"name", "after"}, {"paths", {"/after"}}});
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_, 45s)) << cluster_.DpStatus(*dp_).dump();
  HttpResult after = cluster_.Proxy(*dp_, "/after/z");
  EXPECT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(json::parse(after.body, nullptr, false)["target"], "/base/z");

  stop = true;
  load.join();
  EXPECT_EQ(failed.load(), 0) << "first failure: " << first_failure;
  EXPECT_GT(ok.load(), 300);
}

TEST_F(HybridTest, DpWithCertificateFromAnotherCaNeverGetsConfig) {
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoutes());
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  std::string rogue = cluster_.tmp().path() + "/rogue";
  std::string gen_log;
  ASSERT_TRUE(GenerateCerts(rogue, "rogue-dp", &gen_log)) << gen_log;
  // Client certificate from another CA; it trusts the real cluster CA for the CP.
  DataPlane& rogue_dp = cluster_.StartDp({.cert = rogue + "/dp.crt",
                                          .key = rogue + "/dp.key",
                                          .log_name = "rogue.log"});
  std::this_thread::sleep_for(3s);
  json s = cluster_.DpStatus(rogue_dp);
  EXPECT_EQ(s["config_loaded"], false) << s.dump();
  EXPECT_EQ(s["control_plane_connected"], false);
  EXPECT_EQ(Http(rogue_dp.status_port, "GET", "/status/ready").status, 503);
  HttpResult p = cluster_.Proxy(rogue_dp, "/api/x");
  EXPECT_EQ(p.status, 404);
  json dps = ParseJson(cluster_.Admin("GET", "/clustering/data-planes"));
  ASSERT_TRUE(dps.is_object() && dps.contains("data")) << dps.dump();
  ASSERT_EQ(dps["data"].size(), 1u) << "only the real DP: " << dps.dump();
  for (const json& dp : dps["data"]) EXPECT_NE(dp["id"], "rogue-dp") << dps.dump();
  EXPECT_TRUE(rogue_dp.process->Running()) << "the DP must keep running and retrying";
}

TEST_F(HybridTest, BadAdminInputGetsKongErrorsAndWritesNothing) {
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoutes());
  uint64_t before = cluster_.CpVersion();
  ASSERT_GT(before, 0u);

  HttpResult missing_host = cluster_.Admin("POST", "/services", {{"name", "x"}});
  EXPECT_EQ(missing_host.status, 400);
  json e = ParseJson(missing_host);
  EXPECT_EQ(e["code"], 2);
  EXPECT_EQ(e["name"], "schema violation");
  EXPECT_EQ(e["fields"]["host"], "required field missing") << e.dump();

  HttpResult bad_json = Http(cluster_.admin_port(), "POST", "/services", "{\"name\":");
  EXPECT_EQ(bad_json.status, 400);
  EXPECT_EQ(ParseJson(bad_json)["message"], "Cannot parse JSON body");

  HttpResult bad_type = Http(cluster_.admin_port(), "POST", "/services", "name=x", "text/plain");
  EXPECT_EQ(bad_type.status, 415);

  HttpResult dup = cluster_.Admin("POST", "/services", {{"name", "echo"}, {"host", "example.com"}});
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(ParseJson(dup)["code"], 5);

  HttpResult fk = cluster_.Admin(
      "POST", "/routes",
      {{"paths", {"/x"}}, {"service", {{"id", "6d3f1f4e-3a8e-4d7c-9d2b-0a0b0c0d0e0f"}}}});
  EXPECT_EQ(fk.status, 400);
  EXPECT_EQ(ParseJson(fk)["code"], 4);

  HttpResult restrict = cluster_.Admin("DELETE", "/services/echo");
  EXPECT_EQ(restrict.status, 400);
  EXPECT_EQ(ParseJson(restrict)["code"], 4);

  HttpResult bad_route = cluster_.Admin("POST", "/routes", {{"paths", {"no-slash"}}});
  EXPECT_EQ(bad_route.status, 400);
  EXPECT_EQ(ParseJson(bad_route)["code"], 2);

  EXPECT_EQ(cluster_.CpVersion(), before) << "a rejected write must not bump the version";
  EXPECT_EQ(ParseJson(cluster_.Admin("GET", "/services"))["data"].size(), 1u);
  EXPECT_EQ(ParseJson(cluster_.Admin("GET", "/routes"))["data"].size(), 2u);
  EXPECT_EQ(cluster_.Admin("GET", "/services/echo").status, 200);
}

std::string CommandOutput(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

bool FileContains(const std::string& path, const std::string& needle) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str().find(needle) != std::string::npos;
}

TEST(BinaryTest, DataPlaneDoesNotLinkSqliteButControlPlaneDoes) {
  std::string dp_libs = CommandOutput(absl::StrCat("ldd ", PORTICO_DP_BIN));
  std::string cp_libs = CommandOutput(absl::StrCat("ldd ", PORTICO_CP_BIN));
  ASSERT_NE(cp_libs.find("libc.so"), std::string::npos) << "ldd did not run: " << cp_libs;
  EXPECT_NE(cp_libs.find("libsqlite3"), std::string::npos);
  EXPECT_EQ(dp_libs.find("libsqlite3"), std::string::npos) << dp_libs;
  EXPECT_TRUE(FileContains(PORTICO_CP_BIN, "sqlite3_prepare"));
  EXPECT_FALSE(FileContains(PORTICO_DP_BIN, "sqlite3_"));
  // The PostgreSQL store's libpq: the CP's only.
  EXPECT_NE(cp_libs.find("libpq.so"), std::string::npos) << cp_libs;
  EXPECT_EQ(dp_libs.find("libpq"), std::string::npos) << dp_libs;
  EXPECT_FALSE(FileContains(PORTICO_DP_BIN, "PQexecParams"));
}

}  // namespace
}  // namespace portico::testing
