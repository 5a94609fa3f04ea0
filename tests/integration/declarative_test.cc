// Declarative config through the real binaries (issue 15): POST /config on a CP with a hybrid DP,
// a DB-less DP from a file (SIGHUP with good and bad files), the config CLI round trip, and
// POST /config racing Admin API writes.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A kong.yml in YAML with nesting, a top-level plugin by name, an anchor and a comment.
std::string OrdersYaml(uint16_t upstream_port, const std::string& path) {
  return absl::StrCat(R"(_format_version: "3.0"
_comment: orders API, from Git
services:
  - name: orders
    url: http://127.0.0.1:)", upstream_port, R"(
    tags: &team [team-orders]
    routes:
      - name: orders-route
        paths: [")", path, R"("]
        tags: *team
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-secret-key
plugins:
  - name: request-termination
    service: orders
    enabled: false
)");
}

int RunCli(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv{PORTICO_CP_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  Process cli("portico-cp config", argv, log);
  const int status = cli.Stop(0, 60s);  // signal 0: just wait
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(DeclarativeIntegrationTest, PostConfigThenTrafficThroughAHybridDp) {
  EchoUpstream upstream("orders");
  Cluster cluster;
  ASSERT_TRUE(cluster.StartCp());
  DataPlane& dp = cluster.StartDp();
  ASSERT_TRUE(dp.started) << cluster.Logs();
  const uint64_t before = cluster.CpVersion();
  HttpResult posted = Http(cluster.admin_port(), "POST", "/config", OrdersYaml(upstream.port(), "/orders"), "text/yaml");
  ASSERT_EQ(posted.status, 201) << posted.body;
  EXPECT_EQ(cluster.CpVersion(), before + 1);
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << cluster.Logs();
  HttpResult proxied = cluster.Proxy(dp, "/orders/1");
  EXPECT_EQ(proxied.status, 200) << proxied.body;
  EXPECT_EQ(proxied.headers["x-upstream"], "orders");
  // The Admin API shows what the file declared, with the anchor expanded.
  json route = ParseJson(cluster.Admin("GET", "/routes/orders-route"));
  EXPECT_EQ(route["tags"], json::array({"team-orders"}));
  // check_hash: the same document again changes nothing.
  HttpResult same = Http(cluster.admin_port(), "POST", "/config?check_hash=1",
                         OrdersYaml(upstream.port(), "/orders"), "text/yaml");
  EXPECT_EQ(same.status, 304) << same.body;
  EXPECT_EQ(cluster.CpVersion(), before + 1);
  // A new document replaces the old one as a whole.
  posted = Http(cluster.admin_port(), "POST", "/config",
                json{{"config", OrdersYaml(upstream.port(), "/v2/orders")}}.dump(), "application/json");
  ASSERT_EQ(posted.status, 201) << posted.body;
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << cluster.Logs();
  EXPECT_EQ(cluster.Proxy(dp, "/orders/1").status, 404);
  EXPECT_EQ(cluster.Proxy(dp, "/v2/orders/1").status, 200);
  // An invalid document: 400 code 14 naming the line, and the DP keeps serving.
  HttpResult bad = Http(cluster.admin_port(), "POST", "/config", "_format_version: \"3.0\"\nservices:\n  - name: [unclosed\n",
                        "text/yaml");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(ParseJson(bad)["code"], 14);
  EXPECT_NE(bad.body.find("line"), std::string::npos) << bad.body;
  // A YAML bomb is refused with bounded memory; the CP stays up.
  std::string bomb = "_format_version: \"3.0\"\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    absl::StrAppend(&bomb, "a", i, ": &a", i, " [");
    for (int j = 0; j < 10; ++j) absl::StrAppend(&bomb, j ? ", " : "", "*a", i - 1);
    absl::StrAppend(&bomb, "]\n");
  }
  HttpResult refused = Http(cluster.admin_port(), "POST", "/config", bomb, "text/yaml");
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(cluster.CpVersion(), before + 2);
  EXPECT_EQ(cluster.Proxy(dp, "/v2/orders/1").status, 200);
}

class DbLessDp {
 public:
  DbLessDp(const TempDir& tmp, const std::string& file) {
    proxy_port = PickFreePort();
    status_port = PickFreePort();
    process = std::make_unique<Process>(
        "portico-dp (DB-less)",
        std::vector<std::string>{PORTICO_DP_BIN, "--declarative-config", file, "--proxy-listen",
                                 absl::StrCat("127.0.0.1:", proxy_port), "--proxy-ssl-listen", "off",
                                 "--status-listen", absl::StrCat("127.0.0.1:", status_port), "--workers", "1"},
        tmp.File(absl::StrCat("dbless-", proxy_port, ".log")));
  }
  json Status() { return ParseJson(Http(status_port, "GET", "/status")); }
  int Proxy(const std::string& target) {
    return RawHttp(proxy_port, absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).status;
  }
  std::unique_ptr<Process> process;
  uint16_t proxy_port = 0, status_port = 0;
};

TEST(DeclarativeIntegrationTest, DbLessDpServesAFileAndReloadsItOnSighup) {
  EchoUpstream upstream("dbless");
  TempDir tmp;
  const std::string file = tmp.File("kong.yml");
  WriteFile(file, OrdersYaml(upstream.port(), "/orders"));
  DbLessDp dp(tmp, file);
  ASSERT_TRUE(WaitFor([&] { return Http(dp.status_port, "GET", "/status/ready").status == 200; }, 10s))
      << dp.process->Log();
  EXPECT_EQ(dp.Proxy("/orders/1"), 200);
  json status = dp.Status();
  EXPECT_EQ(status["config_version"], 1);
  EXPECT_EQ(status["control_plane_connected"], false);
  EXPECT_EQ(status["declarative_config"]["loads"], 1);

  // A good file: applied as version 2.
  WriteFile(file, OrdersYaml(upstream.port(), "/v2"));
  dp.process->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return dp.Proxy("/v2/x") == 200; }, 10s)) << dp.process->Log();
  EXPECT_EQ(dp.Proxy("/orders/1"), 404);
  EXPECT_EQ(dp.Status()["config_version"], 2);

  // A bad file (a dangling reference): refused, every error logged, version 2 still served.
  WriteFile(file, "_format_version: \"3.0\"\nroutes:\n  - name: r\n    paths: [/bad]\n    service: nowhere\n");
  dp.process->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return dp.Status()["declarative_config"]["failures"] == 1; }, 10s)) << dp.process->Log();
  EXPECT_EQ(dp.Proxy("/v2/x"), 200);
  EXPECT_EQ(dp.Status()["config_version"], 2);
  EXPECT_NE(dp.process->Log().find("invalid reference 'service: nowhere'"), std::string::npos) << dp.process->Log();

  // A file over the size limit and a syntax error are refused the same way.
  WriteFile(file, "_format_version: \"3.0\"\nservices: [\n");
  dp.process->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return dp.Status()["declarative_config"]["failures"] == 2; }, 10s)) << dp.process->Log();
  EXPECT_NE(dp.Status()["declarative_config"]["last_error"].get<std::string>().find("line"), std::string::npos);
  EXPECT_EQ(dp.Proxy("/v2/x"), 200);
  EXPECT_TRUE(dp.process->Running());
  EXPECT_EQ(WEXITSTATUS(dp.process->Stop(SIGTERM)), 0);
}

TEST(DeclarativeIntegrationTest, DbLessDpRefusesToStartOnABadFile) {
  TempDir tmp;
  const std::string file = tmp.File("kong.yml");
  WriteFile(file, "_format_version: \"3.0\"\nservices:\n  - name: no-host\n");
  DbLessDp dp(tmp, file);
  const int status = dp.process->Stop(0, 10s);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(dp.process->Log().find("host: required field missing"), std::string::npos) << dp.process->Log();
}

TEST(DeclarativeIntegrationTest, ImportExportImportKeepsIdsAndTheSnapshotHash) {
  EchoUpstream upstream("rt");
  Cluster cluster;
  TempDir tmp;
  const std::string file = tmp.File("kong.yml");
  WriteFile(file, OrdersYaml(upstream.port(), "/orders"));
  // CLI: validate, import into a fresh database, export, import the export into another, export again.
  EXPECT_EQ(RunCli({"config", "validate", file}, tmp.File("validate.log")), 0) << ReadFile(tmp.File("validate.log"));
  ASSERT_EQ(RunCli({"config", "import", file, "--db", tmp.File("a.db")}, tmp.File("import-a.log")), 0)
      << ReadFile(tmp.File("import-a.log"));
  ASSERT_EQ(RunCli({"config", "export", tmp.File("a.yml"), "--db", tmp.File("a.db")}, tmp.File("export-a.log")), 0)
      << ReadFile(tmp.File("export-a.log"));
  ASSERT_EQ(RunCli({"config", "import", tmp.File("a.yml"), "--db", tmp.File("b.db")}, tmp.File("import-b.log")), 0)
      << ReadFile(tmp.File("import-b.log"));
  ASSERT_EQ(RunCli({"config", "export", tmp.File("b.yml"), "--db", tmp.File("b.db")}, tmp.File("export-b.log")), 0);
  EXPECT_EQ(ReadFile(tmp.File("a.yml")), ReadFile(tmp.File("b.yml")));  // same ids, same timestamps
  // The same entities in another order, with a consumer added before the others: the import
  // keeps the stored key-auth credential (whose derived id follows its position).
  std::string reordered = OrdersYaml(upstream.port(), "/orders");
  reordered.insert(reordered.find("consumers:\n") + 11, "  - username: first\n");
  WriteFile(tmp.File("reordered.yml"), reordered);
  ASSERT_EQ(RunCli({"config", "import", tmp.File("reordered.yml"), "--db", tmp.File("a.db")}, tmp.File("import-r.log")),
            0)
      << ReadFile(tmp.File("import-r.log"));
  // A bad file does not even open (or create) the database.
  EXPECT_EQ(RunCli({"config", "import", tmp.File("missing.yml"), "--db", tmp.File("never.db")}, tmp.File("m.log")), 1);
  EXPECT_FALSE(std::filesystem::exists(tmp.File("never.db")));
  EXPECT_NE(RunCli({"config", "export", tmp.File("b.yml"), "--db", tmp.File("b.db")}, tmp.File("export-b2.log")), 0)
      << "an existing file must not be overwritten";
  WriteFile(tmp.File("bad.yml"), "_format_version: \"3.0\"\nroutes:\n  - paths: [/x]\n    service: nope\n");
  EXPECT_EQ(RunCli({"config", "validate", tmp.File("bad.yml")}, tmp.File("bad.log")), 1);
  EXPECT_NE(ReadFile(tmp.File("bad.log")).find("invalid reference 'service: nope'"), std::string::npos);

  // Through a running CP and DP: POST the file, GET /config, POST that back: the DP's config hash
  // is the same after both.
  ASSERT_TRUE(cluster.StartCp());
  DataPlane& dp = cluster.StartDp();
  ASSERT_TRUE(dp.started) << cluster.Logs();
  ASSERT_EQ(Http(cluster.admin_port(), "POST", "/config", ReadFile(file), "text/yaml").status, 201);
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << cluster.Logs();
  const json first = cluster.DpStatus(dp);
  const std::string exported = ParseJson(cluster.Admin("GET", "/config"))["config"];
  ASSERT_EQ(Http(cluster.admin_port(), "POST", "/config", exported, "text/yaml").status, 201);
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << cluster.Logs();
  const json second = cluster.DpStatus(dp);
  EXPECT_EQ(second["config_version"], first["config_version"].get<uint64_t>() + 1);
  EXPECT_EQ(second["configuration_hash"], first["configuration_hash"]);
  EXPECT_EQ(ParseJson(cluster.Admin("GET", "/config"))["config"], exported);
}

TEST(DeclarativeIntegrationTest, AnImportIntoARunningCpsDatabaseReachesTheDps) {
  EchoUpstream upstream("imported");
  Cluster cluster;
  ASSERT_TRUE(cluster.StartCp());
  DataPlane& dp = cluster.StartDp();
  ASSERT_TRUE(dp.started) << cluster.Logs();
  const uint64_t before = cluster.CpVersion();
  const std::string file = cluster.tmp().File("kong.yml");
  WriteFile(file, OrdersYaml(upstream.port(), "/imported"));
  ASSERT_EQ(RunCli({"config", "import", file, "--db", cluster.tmp().File("portico.db")}, cluster.tmp().File("import.log")),
            0)
      << ReadFile(cluster.tmp().File("import.log"));
  // Written by another process: the CP notices the new version and publishes it.
  ASSERT_TRUE(WaitFor([&] { return cluster.Proxy(dp, "/imported/x").status == 200; }, 15s)) << cluster.Logs();
  EXPECT_EQ(cluster.CpVersion(), before + 1);
  EXPECT_NE(cluster.cp()->Log().find("written by another process"), std::string::npos);
}

TEST(DeclarativeIntegrationTest, PostConfigAndAdminWritesAreSerialized) {
  Cluster cluster;
  ASSERT_TRUE(cluster.StartCp());
  DataPlane& dp = cluster.StartDp();
  ASSERT_TRUE(dp.started) << cluster.Logs();
  const uint64_t before = cluster.CpVersion();
  std::atomic<int> committed{0}, failed{0};
  std::thread configs([&] {
    for (int i = 0; i < 15; ++i) {
      json doc = {{"_format_version", "3.0"}, {"services", json::array()}};
      for (int s = 0; s < 20; ++s) {
        doc["services"].push_back({{"name", absl::StrCat("svc-", s)}, {"host", absl::StrCat("h", i, ".internal")},
                                   {"routes", json::array({{{"name", absl::StrCat("r-", s)},
                                                            {"paths", json::array({absl::StrCat("/s", s)})}}})}});
      }
      HttpResult r = Http(cluster.admin_port(), "POST", "/config", doc.dump());
      (r.status == 201 ? committed : failed)++;
    }
  });
  std::thread writes([&] {
    for (int i = 0; i < 40; ++i) {
      HttpResult r = cluster.Admin("POST", "/services", {{"name", absl::StrCat("extra-", i)}, {"host", "x.internal"}});
      (r.status == 201 ? committed : failed)++;
    }
  });
  configs.join();
  writes.join();
  EXPECT_EQ(failed.load(), 0);
  // Every acknowledged write is exactly one version: none lost, none merged.
  EXPECT_EQ(cluster.CpVersion(), before + committed.load());
  // The state is a document plus the services written after it: every document service is there
  // with the last document's host.
  for (int s = 0; s < 20; ++s) {
    json service = ParseJson(cluster.Admin("GET", absl::StrCat("/services/svc-", s)));
    EXPECT_EQ(service["host"], "h14.internal") << s;
  }
  ASSERT_TRUE(cluster.WaitDpSynced(dp)) << cluster.Logs();
  EXPECT_EQ(cluster.DpStatus(dp)["config_version"], cluster.CpVersion());
}

}  // namespace
}  // namespace portico::testing
