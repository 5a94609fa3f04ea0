// The hybrid path end to end: real portico-cp (SQLite file) and portico-dp processes on loopback,
// mTLS certificates generated per run, a real upstream, raw HTTP.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// Runs `portico-cp gen-certs DIR --dp-id ID` and waits for it.
void GenerateCerts(const std::string& dir, const std::string& dp_id, const std::string& log) {
  Process gen("gen-certs", {PORTICO_CP_BIN, "gen-certs", dir, "--dp-id", dp_id}, log);
  int status = gen.Stop(0, 30s);  // signal 0: just wait
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << gen.Log();
}

json ParseJson(const HttpResult& r) {
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  return j;
}

class HybridTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = tmp_.path() + "/certs";
    GenerateCerts(certs_, "dp-it", tmp_.File("gen.log"));
    admin_port_ = PickFreePort();
    cluster_port_ = PickFreePort();
    StartCp();
    proxy_port_ = PickFreePort();
    status_port_ = PickFreePort();
    dp_ = StartDp(certs_ + "/dp.crt", certs_ + "/dp.key", certs_ + "/ca.crt", proxy_port_,
                  status_port_, "dp.log");
    ASSERT_TRUE(WaitFor([&] { return Http(status_port_, "GET", "/status").ok; }, 15s))
        << dp_->Log();
  }

  void TearDown() override {
    if (HasFailure()) {
      if (cp_) std::fprintf(stderr, "--- CP log ---\n%s\n", cp_->Log().c_str());
      if (dp_) std::fprintf(stderr, "--- DP log ---\n%s\n", dp_->Log().c_str());
    }
    dp_.reset();
    cp_.reset();
  }

  void StartCp() {
    cp_ = std::make_unique<Process>(
        "cp",
        std::vector<std::string>{PORTICO_CP_BIN, "--db", tmp_.File("portico.db"),
                                 "--admin-listen", absl::StrCat("127.0.0.1:", admin_port_),
                                 "--cluster-listen", absl::StrCat("127.0.0.1:", cluster_port_)},
        tmp_.File("cp.log"),
        std::map<std::string, std::string>{{"PORTICO_CLUSTER_CERT", certs_ + "/cp.crt"},
                                           {"PORTICO_CLUSTER_KEY", certs_ + "/cp.key"},
                                           {"PORTICO_CLUSTER_CA", certs_ + "/ca.crt"}});
    ASSERT_TRUE(WaitFor([&] { return Http(admin_port_, "GET", "/status").status == 200; }, 15s))
        << cp_->Log();
  }

  std::unique_ptr<Process> StartDp(const std::string& cert, const std::string& key,
                                   const std::string& ca, uint16_t proxy_port,
                                   uint16_t status_port, const std::string& log) {
    return std::make_unique<Process>(
        "dp",
        std::vector<std::string>{PORTICO_DP_BIN, "--control-plane",
                                 absl::StrCat("127.0.0.1:", cluster_port_), "--cluster-cert", cert,
                                 "--cluster-key", key, "--cluster-ca", ca, "--proxy-listen",
                                 absl::StrCat("127.0.0.1:", proxy_port), "--status-listen",
                                 absl::StrCat("127.0.0.1:", status_port), "--workers", "2"},
        tmp_.File(log));
  }

  HttpResult Admin(const std::string& method, const std::string& target, const json& body = {}) {
    return Http(admin_port_, method, target, body.is_null() ? "" : body.dump());
  }

  uint64_t CpVersion() {
    HttpResult r = Admin("GET", "/status");
    json j = ParseJson(r);
    if (!r.ok || !j.is_object() || !j.contains("configuration_version")) return 0;
    return j["configuration_version"].get<uint64_t>();
  }

  json DpStatus(uint16_t status_port) { return ParseJson(Http(status_port, "GET", "/status")); }

  // Waits until the DP serves exactly the CP's current version.
  bool WaitDpSynced(uint16_t status_port, std::chrono::milliseconds timeout = 15s) {
    uint64_t want = CpVersion();
    return WaitFor(
        [&] {
          json s = DpStatus(status_port);
          return s.is_object() && s.value("config_version", uint64_t{0}) == want && want > 0;
        },
        timeout);
  }

  void CreateEchoServiceAndRoutes() {
    HttpResult s = Admin("POST", "/services",
                         {{"name", "echo"},
                          {"url", absl::StrCat("http://127.0.0.1:", upstream_.port(), "/base")}});
    ASSERT_EQ(s.status, 201) << s.body;
    HttpResult r1 = Admin("POST", "/services/echo/routes", {{"name", "api"}, {"paths", {"/api"}}});
    ASSERT_EQ(r1.status, 201) << r1.body;
    HttpResult r2 = Admin("POST", "/routes",
                          {{"name", "keep"},
                           {"paths", {"/keep"}},
                           {"strip_path", false},
                           {"preserve_host", true},
                           {"service", {{"name", "echo"}}}});
    ASSERT_EQ(r2.status, 201) << r2.body;
  }

  HttpResult Proxy(const std::string& target, const std::string& host = "client.example") {
    return RawHttp(proxy_port_, absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: ", host,
                                             "\r\nConnection: close\r\n\r\n"));
  }

  TempDir tmp_;
  std::string certs_;
  EchoUpstream upstream_;
  uint16_t admin_port_ = 0, cluster_port_ = 0, proxy_port_ = 0, status_port_ = 0;
  std::unique_ptr<Process> cp_, dp_;
};

TEST_F(HybridTest, RouteCreatedViaAdminApiIsServedWithKongPathAndHost) {
  json ready_before = ParseJson(Http(status_port_, "GET", "/status/ready"));
  EXPECT_EQ(Http(status_port_, "GET", "/status/ready").status, 503);
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoutes());
  ASSERT_TRUE(WaitDpSynced(status_port_)) << DpStatus(status_port_).dump();
  EXPECT_EQ(Http(status_port_, "GET", "/status/ready").status, 200);

  // strip_path=true (default): /api is removed and joined to the service path /base.
  HttpResult a = Proxy("/api/items?q=1&b=%2F");
  ASSERT_TRUE(a.ok) << a.error;
  ASSERT_EQ(a.status, 200) << a.body;
  json echo = json::parse(a.body);
  EXPECT_EQ(echo["target"], "/base/items?q=1&b=%2F");
  EXPECT_EQ(echo["headers"]["host"], absl::StrCat("127.0.0.1:", upstream_.port()));
  EXPECT_EQ(echo["headers"]["x-forwarded-host"], "client.example");
  EXPECT_EQ(echo["headers"]["x-forwarded-proto"], "http");
  EXPECT_EQ(echo["headers"]["x-forwarded-for"], "127.0.0.1");
  EXPECT_EQ(echo["headers"]["x-real-ip"], "127.0.0.1");
  EXPECT_EQ(echo["headers"]["x-forwarded-port"], std::to_string(proxy_port_));
  EXPECT_EQ(a.headers["x-upstream"], "echo");
  EXPECT_NE(a.headers["via"].find("portico"), std::string::npos);

  // strip_path=false + preserve_host=true.
  HttpResult k = Proxy("/keep/x/");
  ASSERT_EQ(k.status, 200) << k.body;
  json echo2 = json::parse(k.body);
  EXPECT_EQ(echo2["target"], "/base/keep/x/");
  EXPECT_EQ(echo2["headers"]["host"], "client.example");

  HttpResult none = Proxy("/nothing");
  EXPECT_EQ(none.status, 404);
  EXPECT_EQ(ParseJson(none)["message"], "no Route matched with those values");

  // The CP knows what the DP runs.
  json dps = ParseJson(Admin("GET", "/clustering/data-planes"));
  ASSERT_TRUE(dps.contains("data")) << dps.dump();
  ASSERT_EQ(dps["data"].size(), 1u) << dps.dump();
  json dp = dps["data"][0];
  EXPECT_EQ(dp["id"], "dp-it");
  EXPECT_EQ(dp["ip"], "127.0.0.1");
  EXPECT_EQ(dp["sync_status"], "normal");
  EXPECT_EQ(dp["config_hash"], DpStatus(status_port_)["configuration_hash"]);
  EXPECT_EQ(dp["config_version"], CpVersion());
}

TEST_F(HybridTest, KillNineOfCpLosesNoProxiedRequestAndLaterChangesArrive) {
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoutes());
  ASSERT_TRUE(WaitDpSynced(status_port_));

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_failure;
  std::thread load([&] {
    while (!stop) {
      HttpResult r = Proxy("/api/load");
      if (r.ok && r.status == 200) {
        ++ok;
      } else {
        if (failed++ == 0) first_failure = absl::StrCat(r.status, " ", r.error, " ", r.body);
      }
    }
  });
  ASSERT_TRUE(WaitFor([&] { return ok.load() >= 100; }, 10s));
  cp_->Stop(SIGKILL, 5s);
  ASSERT_TRUE(WaitFor([&] { return DpStatus(status_port_).value("control_plane_connected", true) == false; }, 10s));
  int served_while_down = ok.load();
  ASSERT_TRUE(WaitFor([&] { return ok.load() >= served_while_down + 200; }, 10s));

  ASSERT_NO_FATAL_FAILURE(StartCp());
  HttpResult r = Admin("POST", "/services/echo/routes", {{"name", "after"}, {"paths", {"/after"}}});
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_TRUE(WaitDpSynced(status_port_, 45s)) << DpStatus(status_port_).dump();
  HttpResult after = Proxy("/after/z");
  EXPECT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(json::parse(after.body)["target"], "/base/z");

  stop = true;
  load.join();
  EXPECT_EQ(failed.load(), 0) << "first failure: " << first_failure;
  EXPECT_GT(ok.load(), 300);
}

TEST_F(HybridTest, DpWithCertificateFromAnotherCaNeverGetsConfig) {
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoutes());
  ASSERT_TRUE(WaitDpSynced(status_port_));
  std::string rogue = tmp_.path() + "/rogue";
  GenerateCerts(rogue, "rogue-dp", tmp_.File("gen2.log"));
  uint16_t proxy2 = PickFreePort(), status2 = PickFreePort();
  // Client certificate from another CA; it trusts the real cluster CA for the CP.
  auto rogue_dp = StartDp(rogue + "/dp.crt", rogue + "/dp.key", certs_ + "/ca.crt", proxy2,
                          status2, "rogue.log");
  ASSERT_TRUE(WaitFor([&] { return Http(status2, "GET", "/status").ok; }, 15s)) << rogue_dp->Log();
  std::this_thread::sleep_for(3s);
  json s = DpStatus(status2);
  EXPECT_EQ(s["config_loaded"], false) << s.dump();
  EXPECT_EQ(s["control_plane_connected"], false);
  EXPECT_EQ(Http(status2, "GET", "/status/ready").status, 503);
  HttpResult p = RawHttp(proxy2, "GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(p.status, 404);
  json dps = ParseJson(Admin("GET", "/clustering/data-planes"));
  for (const json& dp : dps["data"]) EXPECT_NE(dp["id"], "rogue-dp") << dps.dump();
  EXPECT_TRUE(rogue_dp->Running()) << "the DP must keep running and retrying";
  rogue_dp->Stop();
}

TEST_F(HybridTest, BadAdminInputGetsKongErrorsAndWritesNothing) {
  ASSERT_NO_FATAL_FAILURE(CreateEchoServiceAndRoutes());
  uint64_t before = CpVersion();
  ASSERT_GT(before, 0u);

  HttpResult missing_host = Admin("POST", "/services", {{"name", "x"}});
  EXPECT_EQ(missing_host.status, 400);
  json e = ParseJson(missing_host);
  EXPECT_EQ(e["code"], 2);
  EXPECT_EQ(e["name"], "schema violation");
  EXPECT_EQ(e["fields"]["host"], "required field missing") << e.dump();

  HttpResult bad_json = Http(admin_port_, "POST", "/services", "{\"name\":");
  EXPECT_EQ(bad_json.status, 400);
  EXPECT_EQ(ParseJson(bad_json)["message"], "Cannot parse JSON body");

  HttpResult bad_type = Http(admin_port_, "POST", "/services", "name=x", "text/plain");
  EXPECT_EQ(bad_type.status, 415);

  HttpResult dup = Admin("POST", "/services", {{"name", "echo"}, {"host", "example.com"}});
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(ParseJson(dup)["code"], 5);

  HttpResult fk = Admin("POST", "/routes",
                        {{"paths", {"/x"}},
                         {"service", {{"id", "6d3f1f4e-3a8e-4d7c-9d2b-0a0b0c0d0e0f"}}}});
  EXPECT_EQ(fk.status, 400);
  EXPECT_EQ(ParseJson(fk)["code"], 4);

  HttpResult restrict = Admin("DELETE", "/services/echo");
  EXPECT_EQ(restrict.status, 400);
  EXPECT_EQ(ParseJson(restrict)["code"], 4);

  HttpResult bad_route = Admin("POST", "/routes", {{"paths", {"no-slash"}}});
  EXPECT_EQ(bad_route.status, 400);
  EXPECT_EQ(ParseJson(bad_route)["code"], 2);

  EXPECT_EQ(CpVersion(), before) << "a rejected write must not bump the version";
  json services = ParseJson(Admin("GET", "/services"));
  EXPECT_EQ(services["data"].size(), 1u);
  json routes = ParseJson(Admin("GET", "/routes"));
  EXPECT_EQ(routes["data"].size(), 2u);
  EXPECT_EQ(Admin("GET", "/services/echo").status, 200);
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
}

}  // namespace
}  // namespace portico::testing
