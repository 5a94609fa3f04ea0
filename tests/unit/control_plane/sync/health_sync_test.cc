// Target health over the real gRPC path, in process: a SQLite store, the Admin API, a SyncServer
// and DP SyncClients (mutual TLS on 127.0.0.1) whose target_health hooks return given views.
// What the DPs report must show in GET /upstreams/{u}/health and /metrics on the CP, soon after
// a change (early heartbeats, rate-limited), and POST .../unhealthy must reach every connected
// DP's on_health_override. The DP's real HealthRegistry is plugged into these hooks at merge time.
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/clock.h"
#include "common/tls/tls_files.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/cluster_status.h"
#include "control_plane/store/store.h"
#include "control_plane/sync/sync_server.h"
#include "data_plane/sync/sync_client.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/temp_dir.h"

namespace portico::cp {
namespace {

using dp::HealthOverrideCommand;
using dp::SyncClient;
using dp::SyncClientOptions;
using dp::TargetHealthView;
using nlohmann::json;
using test_support::TempDir;

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// A DP's health registry stand-in: the view its hook returns, and the overrides it received.
struct FakeRegistry {
  std::mutex mu;
  std::vector<TargetHealthView> view;
  std::vector<HealthOverrideCommand> overrides;
  int calls = 0;

  void Set(std::vector<TargetHealthView> v) {
    std::lock_guard<std::mutex> lock(mu);
    view = std::move(v);
  }
  size_t Overrides() {
    std::lock_guard<std::mutex> lock(mu);
    return overrides.size();
  }
  void Hook(SyncClientOptions* options) {
    options->target_health = [this] {
      std::lock_guard<std::mutex> lock(mu);
      ++calls;
      return view;
    };
    options->on_health_override = [this](const HealthOverrideCommand& command) {
      std::lock_guard<std::mutex> lock(mu);
      overrides.push_back(command);
      return absl::OkStatus();
    };
  }
};

class HealthSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = tmp_.path() + "/certs";
    ASSERT_TRUE(GenerateClusterCertificates(certs_, {}, "dp-1").ok());
    ASSERT_TRUE(IssueDataPlaneCertificate(certs_, "dp-2", certs_ + "/dp2").ok());
    ASSERT_TRUE(IssueDataPlaneCertificate(certs_, "dp-3", certs_ + "/dp3").ok());
    auto store = Store::Open(tmp_.path() + "/cp.db", clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);

    SyncServerOptions options;
    options.listen = "127.0.0.1:0";
    options.cert_file = certs_ + "/cp.crt";
    options.key_file = certs_ + "/cp.key";
    options.ca_file = certs_ + "/ca.crt";
    options.cp_id = "cp-test";
    // Long: a view that reaches the CP within seconds came with an early heartbeat.
    options.heartbeat_interval = absl::Seconds(30);
    Store* store_ptr = store_.get();
    auto server = SyncServer::Start(options, [store_ptr] { return store_ptr->ReadConfig(); }, clock_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);

    AdminOptions admin_options{"cp-node", "cp.local", "127.0.0.1:8001", "0.0.0.0:8005", "cp.db"};
    SyncServer* sync = server_.get();
    admin_options.metrics_text = [sync] { return sync->metrics_text(); };
    admin_options.send_health_override = [sync](const TargetHealthOverride& c) { return sync->SendHealthOverride(c); };
    admin_ = std::make_unique<AdminApi>(store_.get(), sync, admin_options, [sync] { sync->NotifyConfigChanged(); },
                                        clock_);

    upstream_id_ = Call("POST", "/upstreams", 201,
                        R"({"name":"a.internal","healthchecks":{"active":{"healthy":{"interval":5}}}})")["id"];
    Call("POST", "/upstreams/a.internal/targets", 201, R"({"target":"10.0.0.1:80"})");
    Call("POST", "/upstreams/a.internal/targets", 201, R"({"target":"10.0.0.2:80"})");
  }
  void TearDown() override {
    for (auto& c : clients_) c->Stop();
    if (server_) server_->Stop();
  }

  json Call(const std::string& method, const std::string& target, int status, const std::string& body = "") {
    HttpResponse r = Raw(method, target, body);
    EXPECT_EQ(r.status, status) << method << " " << target << " -> " << r.body;
    if (r.body.empty()) return nullptr;
    json parsed = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << r.body;
    return parsed;
  }
  HttpResponse Raw(const std::string& method, const std::string& target, const std::string& body = "") {
    HttpRequest request;
    request.method = method;
    request.target = target;
    size_t q = target.find('?');
    request.path = target.substr(0, q);
    request.query = q == std::string::npos ? "" : target.substr(q + 1);
    if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
    request.body = body;
    return admin_->Handle(request);
  }

  SyncClient* StartClient(const std::string& prefix, FakeRegistry* registry,
                          const std::function<void(SyncClientOptions&)>& tweak = nullptr) {
    SyncClientOptions options;
    options.control_plane = absl::StrCat("127.0.0.1:", server_->port());
    options.cert_file = prefix + ".crt";
    options.key_file = prefix + ".key";
    options.ca_file = certs_ + "/ca.crt";
    options.hostname = absl::StrCat("host-of-", prefix.substr(prefix.rfind('/') + 1));
    options.backoff_initial = absl::Milliseconds(100);
    options.backoff_max = absl::Milliseconds(500);
    if (registry != nullptr) registry->Hook(&options);
    if (tweak) tweak(options);
    auto client = SyncClient::Start(
        std::move(options), [](std::shared_ptr<const ConfigSet>, const ConfigVersion&) { return absl::OkStatus(); });
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return nullptr;
    clients_.push_back(std::move(*client));
    return clients_.back().get();
  }

  TargetHealthView View(const std::string& target, const std::string& health) {
    return {upstream_id_, "a.internal", target, health};
  }

  // The per-DP health the CP shows for `target` (GET /upstreams/a.internal/health?per_data_plane=true).
  json PerDataPlane(const std::string& target) {
    json body = Call("GET", "/upstreams/a.internal/health?per_data_plane=true", 200);
    for (const json& row : body["data"]) {
      if (row["target"] == target) return row;
    }
    return nullptr;
  }
  std::string HealthShownBy(const std::string& target, const std::string& node) {
    json row = PerDataPlane(target);
    if (row.is_null()) return "";
    for (const json& dp : row["data"]["per_data_plane"]) {
      if (dp["id"] == node) return dp["health"];
    }
    return "";
  }
  std::string Metrics() {
    HttpResponse r = Raw("GET", "/metrics");
    EXPECT_EQ(r.status, 200);
    return r.body;
  }

  TempDir tmp_;
  std::string certs_;
  FakeClock clock_{1700000000};
  std::unique_ptr<Store> store_;
  std::unique_ptr<SyncServer> server_;
  std::unique_ptr<AdminApi> admin_;
  std::vector<std::unique_ptr<SyncClient>> clients_;
  std::string upstream_id_;
};

TEST_F(HealthSyncTest, DataPlaneViewsShowPerDataPlaneAggregatedAndInMetrics) {
  FakeRegistry r1, r2;
  r1.Set({View("10.0.0.1:80", "HEALTHY"), View("10.0.0.2:80", "HEALTHY")});
  r2.Set({View("10.0.0.1:80", "HEALTHY"), View("10.0.0.2:80", "UNHEALTHY")});
  SyncClient* one = StartClient(certs_ + "/dp", &r1);
  SyncClient* two = StartClient(certs_ + "/dp2", &r2);
  SyncClient* old = StartClient(certs_ + "/dp3", nullptr);  // no hooks: reports nothing, as an older DP
  ASSERT_TRUE(WaitFor([&] { return one->connected() && two->connected() && old->connected(); }));
  // The first heartbeat carries the view right after the connect (the interval is 30 s).
  ASSERT_TRUE(WaitFor([&] { return HealthShownBy("10.0.0.2:80", "dp-2") == "UNHEALTHY"; }, std::chrono::seconds(5)));
  ASSERT_TRUE(WaitFor([&] { return HealthShownBy("10.0.0.2:80", "dp-1") == "HEALTHY"; }, std::chrono::seconds(5)));

  json body = Call("GET", "/upstreams/a.internal/health?per_data_plane=true", 200);
  EXPECT_EQ(body["node_id"], "cp-node");
  EXPECT_EQ(body["reporting_data_planes"], 2);  // dp-3 sends no report
  EXPECT_EQ(body["truncated_reports"], json::array());
  json row = PerDataPlane("10.0.0.2:80");
  EXPECT_EQ(row["health"], "UNHEALTHY");
  EXPECT_EQ(row["data"]["data_planes"], (json{{"HEALTHY", 1}, {"UNHEALTHY", 1}}));
  ASSERT_EQ(row["data"]["per_data_plane"].size(), 2u);
  EXPECT_EQ(row["data"]["per_data_plane"][1],
            (json{{"id", "dp-2"}, {"hostname", "host-of-dp2"}, {"health", "UNHEALTHY"}, {"reported_at", 1700000000}}));
  EXPECT_EQ(PerDataPlane("10.0.0.1:80")["health"], "HEALTHY");

  const std::string metrics = Metrics();
  EXPECT_TRUE(absl::StrContains(metrics, "# TYPE portico_upstream_target_health gauge\n")) << metrics;
  EXPECT_TRUE(absl::StrContains(
      metrics, "portico_upstream_target_health{upstream=\"a.internal\",target=\"10.0.0.2:80\",data_plane=\"dp-1\"} 1\n"))
      << metrics;
  EXPECT_TRUE(absl::StrContains(
      metrics, "portico_upstream_target_health{upstream=\"a.internal\",target=\"10.0.0.2:80\",data_plane=\"dp-2\"} 0\n"))
      << metrics;
  EXPECT_TRUE(absl::StrContains(
      metrics, "portico_upstream_target_health{upstream=\"a.internal\",target=\"10.0.0.1:80\",data_plane=\"dp-2\"} 1\n"))
      << metrics;
  EXPECT_FALSE(absl::StrContains(metrics, "data_plane=\"dp-3\"")) << metrics;
  EXPECT_TRUE(absl::StrContains(metrics, "portico_cp_connected_data_planes 3\n")) << metrics;  // the registry's too

  // A stream that ends takes its DP's view out of /health and /metrics.
  two->Stop();
  ASSERT_TRUE(WaitFor([&] { return PerDataPlane("10.0.0.2:80")["health"] == "HEALTHY"; }));
  EXPECT_EQ(PerDataPlane("10.0.0.2:80")["data"]["data_planes"], (json{{"HEALTHY", 1}}));
  EXPECT_FALSE(absl::StrContains(Metrics(), "data_plane=\"dp-2\""));
}

TEST_F(HealthSyncTest, AChangeReachesTheCpWithinASecondAndEarlyHeartbeatsAreRateLimited) {
  FakeRegistry r1, r2;
  r1.Set({View("10.0.0.1:80", "HEALTHY")});
  r2.Set({View("10.0.0.1:80", "HEALTHY")});
  SyncClient* one = StartClient(certs_ + "/dp", &r1);
  SyncClient* two = StartClient(certs_ + "/dp2", &r2,
                                [](SyncClientOptions& o) { o.health_heartbeat_min_gap = absl::Seconds(2); });
  ASSERT_TRUE(WaitFor([&] {
    return HealthShownBy("10.0.0.1:80", "dp-1") == "HEALTHY" && HealthShownBy("10.0.0.1:80", "dp-2") == "HEALTHY";
  }));

  // dp-1 (1 s gap): the change shows within about a second, long before the 30 s heartbeat.
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // past the gap after the first heartbeat
  r1.Set({View("10.0.0.1:80", "DNS_ERROR")});
  auto start = std::chrono::steady_clock::now();
  one->NotifyTargetHealthChanged();
  ASSERT_TRUE(WaitFor([&] { return HealthShownBy("10.0.0.1:80", "dp-1") == "DNS_ERROR"; }, std::chrono::seconds(5)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
  EXPECT_EQ(PerDataPlane("10.0.0.1:80")["health"], "DNS_ERROR");

  // dp-2 (2 s gap): a burst of changes right after an early heartbeat is coalesced into one
  // heartbeat sent when the gap has passed, carrying the last view.
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  r2.Set({View("10.0.0.1:80", "UNHEALTHY")});
  two->NotifyTargetHealthChanged();
  ASSERT_TRUE(WaitFor([&] { return HealthShownBy("10.0.0.1:80", "dp-2") == "UNHEALTHY"; }, std::chrono::seconds(5)));
  const uint64_t reports = two->stats().health_reports;
  for (const char* health : {"HEALTHY", "UNHEALTHY", "DNS_ERROR", "HEALTHY", "HEALTHCHECKS_OFF"}) {
    r2.Set({View("10.0.0.1:80", health)});
    two->NotifyTargetHealthChanged();
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(two->stats().health_reports, reports) << "an early heartbeat inside the 2 s gap";
  EXPECT_EQ(HealthShownBy("10.0.0.1:80", "dp-2"), "UNHEALTHY");
  ASSERT_TRUE(
      WaitFor([&] { return HealthShownBy("10.0.0.1:80", "dp-2") == "HEALTHCHECKS_OFF"; }, std::chrono::seconds(5)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(two->stats().health_reports, reports + 1);

  // A heartbeat whose view did not change says UNCHANGED: the CP keeps the entries and moves
  // reported_at.
  clock_.Advance(7);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  one->NotifyTargetHealthChanged();  // nothing changed in r1
  ASSERT_TRUE(WaitFor([&] {
    const json row = PerDataPlane("10.0.0.1:80");  // kept: the loop below refers into it
    for (const json& dp : row["data"]["per_data_plane"]) {
      if (dp["id"] == "dp-1") return dp["reported_at"] == 1700000007 && dp["health"] == "DNS_ERROR";
    }
    return false;
  })) << PerDataPlane("10.0.0.1:80").dump();
  EXPECT_EQ(one->stats().health_reports, 2u);  // the first view and DNS_ERROR; the last was UNCHANGED
}

TEST_F(HealthSyncTest, AReportOverTheCapIsCutAndSaysSo) {
  FakeRegistry r1;
  r1.Set({View("10.0.0.2:80", "UNHEALTHY"), View("10.0.0.1:80", "UNHEALTHY"), View("10.0.0.3:80", "UNHEALTHY")});
  SyncClient* one =
      StartClient(certs_ + "/dp", &r1, [](SyncClientOptions& o) { o.max_target_health_entries = 2; });
  ASSERT_TRUE(WaitFor([&] { return server_->TargetHealth().size() == 1; }));
  std::vector<DataPlaneTargetHealth> reports = server_->TargetHealth();
  EXPECT_TRUE(reports[0].truncated);
  ASSERT_EQ(reports[0].targets->size(), 2u);  // sorted before the cut: .1 and .2 are kept
  EXPECT_EQ((*reports[0].targets)[0].target, "10.0.0.1:80");
  json body = Call("GET", "/upstreams/a.internal/health", 200);
  EXPECT_EQ(body["truncated_reports"], json::array({"dp-1"}));
  EXPECT_EQ(one->stats().health_reports, 1u);
}

TEST_F(HealthSyncTest, OverrideReachesEveryConnectedDataPlane) {
  FakeRegistry r1, r2;
  SyncClient* one = StartClient(certs_ + "/dp", &r1);
  SyncClient* two = StartClient(certs_ + "/dp2", &r2);
  SyncClient* old = StartClient(certs_ + "/dp3", nullptr);  // no on_health_override: logged, counted
  ASSERT_TRUE(WaitFor([&] { return one->connected() && two->connected() && old->connected(); }));
  ASSERT_TRUE(WaitFor([&] { return server_->TargetHealth().size() == 2; }));

  HttpResponse r = Raw("POST", "/upstreams/a.internal/targets/10.0.0.2:80/unhealthy");
  EXPECT_EQ(r.status, 204) << r.body;
  ASSERT_TRUE(WaitFor([&] { return r1.Overrides() == 1 && r2.Overrides() == 1; }));
  for (FakeRegistry* reg : {&r1, &r2}) {
    std::lock_guard<std::mutex> lock(reg->mu);
    EXPECT_EQ(reg->overrides[0].upstream_id, upstream_id_);
    EXPECT_EQ(reg->overrides[0].upstream_name, "a.internal");
    EXPECT_EQ(reg->overrides[0].target, "10.0.0.2:80");
    EXPECT_FALSE(reg->overrides[0].healthy);
  }
  ASSERT_TRUE(WaitFor([&] { return old->stats().health_overrides == 1; }));
  EXPECT_EQ(old->stats().health_override_failures, 1u);
  EXPECT_EQ(one->stats().health_override_failures, 0u);

  // PUT (Kong 3.x) by target id, healthy.
  const std::string t1 = Call("GET", "/upstreams/a.internal/targets/10.0.0.1:80", 200)["id"];
  EXPECT_EQ(Raw("PUT", "/upstreams/" + upstream_id_ + "/targets/" + t1 + "/healthy").status, 204);
  ASSERT_TRUE(WaitFor([&] { return r1.Overrides() == 2 && r2.Overrides() == 2; }));
  {
    std::lock_guard<std::mutex> lock(r2.mu);
    EXPECT_EQ(r2.overrides[1].target, "10.0.0.1:80");
    EXPECT_TRUE(r2.overrides[1].healthy);
  }

  // Not kept on the CP: a DP that connects afterwards gets nothing; a stopped one is not counted.
  two->Stop();
  ASSERT_TRUE(WaitFor([&] { return server_->TargetHealth().size() == 1; }));
  EXPECT_EQ(server_->SendHealthOverride({"id-1", upstream_id_, "a.internal", "10.0.0.1:80", false}),
            (std::vector<std::string>{"dp-1", "dp-3"}));
  ASSERT_TRUE(WaitFor([&] { return r1.Overrides() == 3; }));
  EXPECT_EQ(r2.Overrides(), 2u);
  // Unknown target: 404, nothing sent.
  EXPECT_EQ(Raw("POST", "/upstreams/a.internal/targets/10.0.0.7:80/unhealthy").status, 404);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(r1.Overrides(), 3u);
}

}  // namespace
}  // namespace portico::cp
