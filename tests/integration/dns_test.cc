// DNS on the data plane end to end (issue 12): the real CP and DP, echo upstreams on loopback
// addresses, and a tiny DNS server (dns_server.py) the DP is pointed at with --dns-resolver; a
// hosts file of the test's own with --dns-hostsfile.
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

class DnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // e1 and e2 share a port on two loopback addresses: a DNS answer alone picks between them.
    e1_ = std::make_unique<EchoUpstream>("e1", 0, "127.0.0.2");
    port_ = e1_->port();
    e2_ = std::make_unique<EchoUpstream>("e2", port_, "127.0.0.3");
    ASSERT_EQ(e2_->port(), port_);
    zone_ = cluster_.tmp().File("zone.json");
    hosts_ = cluster_.tmp().File("hosts");
    WriteZone(json::object());
    // What the DP reads at start.
    WriteFile(hosts_, "127.0.0.1 localhost\n# a comment\n127.0.0.2   hosts-only.test other.alias  # trailing\n");
    StartDnsServer();
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    DataPlaneOptions options;
    options.extra_args = {"--dns-resolver", absl::StrCat("127.0.0.1:", dns_port_), "--dns-hostsfile", hosts_};
    dp_ = &cluster_.StartDp(options);
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
  }
  void TearDown() override {
    if (HasFailure()) {
      std::fprintf(stderr, "%s", cluster_.Logs().c_str());
      if (dns_) std::fprintf(stderr, "--- DNS server log ---\n%s\n", dns_->Log().c_str());
    }
  }

  static void WriteFile(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp);
      out << text;
    }
    std::rename(tmp.c_str(), path.c_str());  // atomic: the server never reads half a file
  }
  // names: {"name": {"A": [...], "SRV": [...], "ttl": n}}
  void WriteZone(const json& names) { WriteFile(zone_, json{{"ttl", 1}, {"names", names}}.dump()); }
  void StartDnsServer() {
    const std::string port_file = cluster_.tmp().File("dns.port");
    std::remove(port_file.c_str());
    dns_ = std::make_unique<Process>(
        "dns", std::vector<std::string>{"/usr/bin/python3", PORTICO_DNS_SERVER_PY, zone_, port_file},
        cluster_.tmp().File("dns.log"));
    ASSERT_TRUE(WaitFor([&] { return access(port_file.c_str(), F_OK) == 0; }, 10s)) << dns_->Log();
    std::ifstream in(port_file);
    in >> dns_port_;
    ASSERT_GT(dns_port_, 0);
  }
  void Admin(const std::string& method, const std::string& path, const json& body, int status) {
    HttpResult r = cluster_.Admin(method, path, body);
    ASSERT_EQ(r.status, status) << method << " " << path << " " << body.dump() << " -> " << r.body;
  }
  // A service named `name` with host `host`, a route /<name>.
  void AddRoute(const std::string& name, const std::string& host, uint16_t port) {
    Admin("POST", "/services", {{"name", name}, {"host", host}, {"port", port}}, 201);
    Admin("POST", absl::StrCat("/services/", name, "/routes"), {{"paths", {absl::StrCat("/", name)}}}, 201);
  }
  // Which upstream answered (its X-Upstream), or "status N" / "error".
  std::string Who(const std::string& path) {
    HttpResult r = cluster_.Proxy(*dp_, path);
    if (!r.ok) return "error";
    return r.status == 200 ? r.headers["x-upstream"] : absl::StrCat("status ", r.status);
  }
  std::map<std::string, int> Spread(const std::string& path, int count) {
    std::map<std::string, int> seen;
    for (int i = 0; i < count; ++i) ++seen[Who(path)];
    return seen;
  }
  // Waits until `path` is answered by `who` (polling).
  bool WaitForUpstream(const std::string& path, const std::string& who, std::chrono::milliseconds timeout) {
    return WaitFor([&] { return Who(path) == who; }, timeout);
  }

  std::unique_ptr<EchoUpstream> e1_, e2_;
  uint16_t port_ = 0;
  Cluster cluster_;
  std::string zone_, hosts_;
  std::unique_ptr<Process> dns_;
  uint16_t dns_port_ = 0;
  DataPlane* dp_ = nullptr;
};

TEST_F(DnsTest, ServiceHostResolvesFollowsTtlAndKeepsLastAnswerWhenDnsStops) {
  WriteZone({{"app.dns.test", {{"A", {"127.0.0.2"}}, {"ttl", 1}}}});
  AddRoute("app", "app.dns.test", port_);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  // The first request after the config arrived already finds (or waits for) the answer.
  EXPECT_EQ(Who("/app"), "e1");
  EXPECT_EQ(Spread("/app", 20), (std::map<std::string, int>{{"e1", 20}}));

  // The record changes; after its TTL (1 s) traffic moves, on every worker (each resolves on its
  // own: 10 requests in a row on new connections reach both of the DP's two workers).
  WriteZone({{"app.dns.test", {{"A", {"127.0.0.3"}}, {"ttl", 1}}}});
  const auto changed = std::chrono::steady_clock::now();
  const std::map<std::string, int> all_e2{{"e2", 10}};
  ASSERT_TRUE(WaitFor([&] { return Spread("/app", 10) == all_e2; }, 6s)) << json(Spread("/app", 10)).dump();
  EXPECT_LT(std::chrono::steady_clock::now() - changed, 4s);

  // The DNS server goes away: the last good answer keeps serving well past its TTL.
  ASSERT_EQ(dns_->Stop(9), 9) << "killed by SIGKILL";
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(Who("/app"), "e2") << "after " << (i + 1) * 500 << " ms without DNS";
  }
  EXPECT_NE(dp_->process->Log().find("serving its last good answer"), std::string::npos) << dp_->process->Log();
  // Stopping with queries in flight (the server is gone): every worker closes its resolver and exits.
  EXPECT_EQ(dp_->process->Stop(15), 0) << "clean exit status";
}

TEST_F(DnsTest, AaaaRecordsAndEveryAddressOfAnAnswerTakeTraffic) {
  EchoUpstream e6("e6", port_, "::1");
  ASSERT_EQ(e6.port(), port_);
  WriteZone({{"v6.dns.test", {{"AAAA", {"::1"}}}}, {"dual.dns.test", {{"A", {"127.0.0.2"}}, {"AAAA", {"::1"}}}}});
  AddRoute("v6", "v6.dns.test", port_);
  AddRoute("dual", "dual.dns.test", port_);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  EXPECT_EQ(Spread("/v6", 5), (std::map<std::string, int>{{"e6", 5}}));
  const std::map<std::string, int> seen = Spread("/dual", 40);
  EXPECT_EQ(seen.size(), 2u) << json(seen).dump();
  EXPECT_NEAR(seen.count("e1") ? seen.at("e1") : 0, 20, 3) << "round-robin per worker: " << json(seen).dump();
  EXPECT_NEAR(seen.count("e6") ? seen.at("e6") : 0, 20, 3) << json(seen).dump();
}

TEST_F(DnsTest, UnknownNameIs503NameResolutionFailedWhileOtherRoutesWork) {
  WriteZone({{"app.dns.test", {{"A", {"127.0.0.2"}}}}});
  AddRoute("app", "app.dns.test", port_);
  AddRoute("ghost", "ghost.dns.test", port_);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  for (int i = 0; i < 3; ++i) {
    HttpResult r = cluster_.Proxy(*dp_, "/ghost");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(json::parse(r.body, nullptr, false), json({{"message", "name resolution failed"}})) << r.body;
    EXPECT_EQ(Who("/app"), "e1") << "the other route keeps working";
  }
  const std::string log = dp_->process->Log();
  EXPECT_NE(log.find("name resolution failed for ghost.dns.test"), std::string::npos) << log;
  EXPECT_TRUE(dp_->process->Running());
}

TEST_F(DnsTest, HostnameTargetsOfAnUpstreamAreBalanced) {
  WriteZone({{"one.dns.test", {{"A", {"127.0.0.2"}}}}, {"two.dns.test", {{"A", {"127.0.0.3"}}}}});
  Admin("POST", "/upstreams", {{"name", "pool"}}, 201);
  Admin("POST", "/upstreams/pool/targets", {{"target", absl::StrCat("one.dns.test:", port_)}, {"weight", 100}}, 201);
  Admin("POST", "/upstreams/pool/targets", {{"target", absl::StrCat("two.dns.test:", port_)}, {"weight", 300}}, 201);
  // A target whose name does not resolve is skipped, not answered with an error.
  Admin("POST", "/upstreams/pool/targets", {{"target", absl::StrCat("nowhere.dns.test:", port_)}, {"weight", 100}},
        201);
  AddRoute("pool", "pool", 80);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  const std::map<std::string, int> seen = Spread("/pool", 200);
  EXPECT_EQ(seen.size(), 2u) << json(seen).dump();
  const int one = seen.count("e1") ? seen.at("e1") : 0;
  const int two = seen.count("e2") ? seen.at("e2") : 0;
  EXPECT_EQ(one + two, 200) << json(seen).dump();
  EXPECT_GT(two, one * 2) << "weights 100 and 300: " << json(seen).dump();
  // The DP reports the name that does not resolve as Kong's DNS_ERROR (to the CP too).
  std::map<std::string, std::string> health;
  const json dp_status = cluster_.DpStatus(*dp_);
  for (const json& t : dp_status["targets_health"]) health[t["target"]] = t["health"];
  EXPECT_EQ(health[absl::StrCat("nowhere.dns.test:", port_)], "DNS_ERROR") << dp_status.dump();
  EXPECT_EQ(health[absl::StrCat("one.dns.test:", port_)], "HEALTHCHECKS_OFF") << json(health).dump();
  EXPECT_TRUE(WaitFor(
      [&] {
        const json body = json::parse(cluster_.Admin("GET", "/upstreams/pool/health?per_data_plane=true").body,
                                      nullptr, false);
        if (!body.contains("data")) return false;
        for (const json& t : body["data"]) {
          if (t.value("target", "") != absl::StrCat("nowhere.dns.test:", port_)) continue;
          for (const json& d : t["data"].value("per_data_plane", json::array())) {
            if (d.value("health", "") == "DNS_ERROR") return true;
          }
        }
        return false;
      },
      std::chrono::seconds(5)))
      << cluster_.Admin("GET", "/upstreams/pool/health?per_data_plane=true").body;
}

TEST_F(DnsTest, SrvNameGivesPortsAndWeights) {
  EchoUpstream e3("e3");  // 127.0.0.1, a port of its own
  WriteZone({{"_http._tcp.svc.dns.test",
              {{"SRV", {{{"priority", 1}, {"weight", 10}, {"port", port_}, {"target", "one.dns.test"}},
                        {{"priority", 1}, {"weight", 30}, {"port", e3.port()}, {"target", "127.0.0.1"}},
                        {{"priority", 9}, {"weight", 100}, {"port", port_}, {"target", "two.dns.test"}}}}}},
             {"one.dns.test", {{"A", {"127.0.0.2"}}}},
             {"two.dns.test", {{"A", {"127.0.0.3"}}}}});
  AddRoute("srv", "_http._tcp.svc.dns.test", 1);  // the service port is not used: SRV gives it
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  const std::map<std::string, int> seen = Spread("/srv", 80);
  EXPECT_EQ(seen.count("e2"), 0u) << "priority 9 is only a backup: " << json(seen).dump();
  // Weights 10:30, each of the DP's 2 workers going round its own schedule: 20 and 60 within one
  // schedule's rounding per worker.
  EXPECT_NEAR(seen.count("e1") ? seen.at("e1") : 0, 20, 3) << json(seen).dump();
  EXPECT_NEAR(seen.count("e3") ? seen.at("e3") : 0, 60, 3) << json(seen).dump();
  EXPECT_EQ((seen.count("e1") ? seen.at("e1") : 0) + (seen.count("e3") ? seen.at("e3") : 0), 80) << json(seen).dump();
}

TEST_F(DnsTest, HostsFileNamesResolveAndItsChangesAreSeen) {
  // hosts-only.test is in the hosts file the DP started with (SetUp); DNS has another address for
  // it: the hosts file wins.
  WriteZone({{"hosts-only.test", {{"A", {"127.0.0.3"}}}}});
  AddRoute("h", "hosts-only.test", port_);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  EXPECT_EQ(Spread("/h", 5), (std::map<std::string, int>{{"e1", 5}}));
  // Edited: re-read within a second or two (mtime checked once a second).
  std::this_thread::sleep_for(20ms);  // a distinct mtime
  WriteFile(hosts_, "127.0.0.3 hosts-only.test\n");
  EXPECT_TRUE(WaitForUpstream("/h", "e2", 5s)) << Who("/h");
  // Removed from the file: DNS answers now.
  WriteZone({{"hosts-only.test", {{"A", {"127.0.0.2"}}}}});
  std::this_thread::sleep_for(20ms);
  WriteFile(hosts_, "127.0.0.1 localhost\n");
  EXPECT_TRUE(WaitForUpstream("/h", "e1", 5s)) << Who("/h");
}

// Active checks reach a target given by hostname at the addresses its DNS answer gives (the
// checker resolves on its own loop): a dead address marks it down, a live one brings it back,
// and a name that does not resolve is DNS_ERROR without any proxied request.
TEST_F(DnsTest, ActiveChecksProbeHostnameTargetsAtTheirResolvedAddress) {
  WriteZone({{"svc.dns.test", {{"A", {"127.0.0.2"}}}}});
  const json checks = {{"active",
                        {{"type", "tcp"},
                         {"timeout", 0.5},
                         {"healthy", {{"interval", 0.2}, {"successes", 1}}},
                         {"unhealthy", {{"interval", 0.2}, {"tcp_failures", 1}}}}}};
  Admin("POST", "/upstreams", {{"name", "probed"}, {"healthchecks", checks}}, 201);
  Admin("POST", "/upstreams/probed/targets", {{"target", absl::StrCat("svc.dns.test:", port_)}}, 201);
  Admin("POST", "/upstreams/probed/targets", {{"target", absl::StrCat("gone.dns.test:", port_)}}, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  auto health_of = [&](const std::string& target) {
    const json status = cluster_.DpStatus(*dp_);  // kept: the loop refers into it
    for (const json& t : status["targets_health"]) {
      if (t["target"] == target) return t["health"].get<std::string>();
    }
    return std::string();
  };
  const std::string svc = absl::StrCat("svc.dns.test:", port_);
  const std::string gone = absl::StrCat("gone.dns.test:", port_);
  EXPECT_TRUE(WaitFor([&] { return health_of(gone) == "DNS_ERROR"; }, 5s)) << health_of(gone);
  EXPECT_EQ(health_of(svc), "HEALTHY");
  // The name now points at an address nothing listens on: the probes mark it down.
  WriteZone({{"svc.dns.test", {{"A", {"127.0.0.9"}}}}});
  EXPECT_TRUE(WaitFor([&] { return health_of(svc) == "UNHEALTHY"; }, 6s)) << health_of(svc);
  // Back at e2's address: healthy again.
  WriteZone({{"svc.dns.test", {{"A", {"127.0.0.3"}}}}});
  EXPECT_TRUE(WaitFor([&] { return health_of(svc) == "HEALTHY"; }, 6s)) << health_of(svc);
}

}  // namespace
}  // namespace portico::testing
