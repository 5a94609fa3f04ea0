// The Admin API endpoints Kong tooling calls, through the real portico-cp binary as it runs by
// default: GET / (Kong's version), OPTIONS and CORS, --admin-gui-origin, and Kong's 10 MiB body
// limit (413) without any --max-body-bytes flag. The shapes are unit-tested in
// tests/unit/control_plane/admin/admin_surface_test.cc.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;

constexpr size_t kTenMiB = 10 * 1024 * 1024;

class AdminSurfaceIntegrationTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }
  Cluster cluster_;
};

TEST_F(AdminSurfaceIntegrationTest, DefaultCpSpeaksKongsVersionCorsAndBodyLimit) {
  ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
  json root = ParseJson(cluster_.Admin("GET", "/"));
  EXPECT_EQ(root["version"], "3.9.0") << root.dump();
  EXPECT_EQ(root["tagline"], "Welcome to kong");
  EXPECT_TRUE(root["portico_version"].is_string());
  EXPECT_EQ(root["configuration"]["nginx_admin_client_max_body_size"], "10m");

  HttpResult preflight = Http(cluster_.admin_port(), "OPTIONS", "/services/anything", "", "",
                              {{"Origin", "http://ui.example"}, {"Access-Control-Request-Method", "PATCH"}});
  ASSERT_TRUE(preflight.ok) << preflight.error;
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(preflight.headers["allow"], "DELETE, GET, HEAD, OPTIONS, PATCH, PUT");
  EXPECT_EQ(preflight.headers["access-control-allow-origin"], "http://ui.example");
  EXPECT_EQ(preflight.headers["access-control-allow-credentials"], "true");
  EXPECT_EQ(preflight.body, "");

  // One byte over 10 MiB: 413 before the body is read, and the connection closes.
  HttpResult too_big = RawHttp(cluster_.admin_port(),
                               absl::StrCat("POST /services HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\n"
                                            "Content-Length: ", kTenMiB + 1, "\r\n\r\n"));
  ASSERT_TRUE(too_big.ok) << too_big.error;
  EXPECT_EQ(too_big.status, 413);
  EXPECT_EQ(ParseJson(too_big), json::parse(R"j({"message":"Payload too large"})j"));
  EXPECT_TRUE(too_big.closed);
  EXPECT_EQ(cluster_.CpVersion(), 0u);

  // Exactly 10 MiB is read and served.
  std::string body = R"j({"name":"big","host":"a.example"})j";
  body.append(kTenMiB - body.size(), ' ');
  HttpResult at_limit = Http(cluster_.admin_port(), "POST", "/services", body);
  ASSERT_TRUE(at_limit.ok) << at_limit.error;
  EXPECT_EQ(at_limit.status, 201) << at_limit.body;
  EXPECT_EQ(cluster_.CpVersion(), 1u);
}

TEST_F(AdminSurfaceIntegrationTest, AdminGuiOriginDecidesTheAllowedOrigin) {
  ASSERT_TRUE(cluster_.StartCp({"--admin-gui-origin", "https://gui.example:8002,https://two.example"}))
      << cluster_.Logs();
  HttpResult listed = Http(cluster_.admin_port(), "GET", "/services", "", "", {{"Origin", "https://two.example"}});
  EXPECT_EQ(listed.status, 200);
  EXPECT_EQ(listed.headers["access-control-allow-origin"], "https://two.example");
  HttpResult other = Http(cluster_.admin_port(), "GET", "/services", "", "", {{"Origin", "http://evil.example"}});
  EXPECT_EQ(other.headers["access-control-allow-origin"], "https://gui.example:8002");
  EXPECT_EQ(ParseJson(cluster_.Admin("GET", "/"))["configuration"]["admin_gui_origin"],
            json::array({"https://gui.example:8002", "https://two.example"}));

}

TEST_F(AdminSurfaceIntegrationTest, ABadAdminGuiOriginStopsTheCpWithTheReason) {
  const std::string certs = cluster_.certs();
  Process cp("bad-origin",
             {PORTICO_CP_BIN, "--db", cluster_.tmp().File("bad.db"), "--admin-listen", "127.0.0.1:0",
              "--cluster-listen", "127.0.0.1:0", "--cluster-cert", certs + "/cp.crt", "--cluster-key",
              certs + "/cp.key", "--cluster-ca", certs + "/ca.crt", "--admin-gui-origin",
              "https://gui.example, bad origin"},
             cluster_.tmp().File("bad-origin.log"));
  const int status = cp.Stop(0, std::chrono::seconds(30));  // signal 0: only wait for it to exit
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(cp.Log().find("--admin-gui-origin: each origin must be scheme://host[:port]"), std::string::npos)
      << cp.Log();
  EXPECT_FALSE(std::filesystem::exists(cluster_.tmp().File("bad.db")));  // refused before anything is made
}

}  // namespace
}  // namespace portico::testing
