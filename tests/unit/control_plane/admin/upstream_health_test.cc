// Target health on the CP: the aggregation of DP reports, GET /upstreams/{u}/health (Kong's shape,
// per_data_plane, balancer_health, 404s) and the healthy/unhealthy overrides (404s, 204, what is
// handed to the sync layer). The DP reports come from a fake status source here; the real gRPC
// path is covered by tests/unit/control_plane/sync/health_sync_test.cc.
#include "control_plane/admin/upstream_health.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <mutex>

#include "common/config/upstreams.h"
#include "control_plane/admin/admin_api.h"
#include "control_plane/cluster_status.h"
#include "control_plane/store/store.h"
#include "tests/common/postgres_test_db.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace portico::cp {
namespace {

using nlohmann::json;

DataPlaneTargetHealth Report(const std::string& node, std::vector<TargetHealthEntry> entries, int64_t at = 1700000100) {
  DataPlaneTargetHealth r;
  r.node_id = node;
  r.hostname = node + ".host";
  r.reported_at = at;
  r.targets = std::make_shared<const std::vector<TargetHealthEntry>>(std::move(entries));
  return r;
}

class FakeDataPlanes : public DataPlaneStatusSource {
 public:
  std::vector<DataPlaneStatus> ListDataPlanes() const override { return {}; }
  std::vector<DataPlaneTargetHealth> TargetHealth() const override {
    std::lock_guard<std::mutex> lock(mu);
    return reports;
  }
  mutable std::mutex mu;
  std::vector<DataPlaneTargetHealth> reports;
};

TEST(TargetHealthAggregation, CountsPerStateAndTheWorstWins) {
  std::vector<DataPlaneTargetHealth> reports = {
      Report("dp-b", {{"u1", "a.internal", "10.0.0.1:80", kHealthUnhealthy},
                      {"u1", "a.internal", "10.0.0.2:80", kHealthHealthy},
                      {"u2", "b.internal", "10.0.0.1:80", kHealthDnsError}}),  // another upstream
      Report("dp-a", {{"u1", "a.internal", "10.0.0.1:80", kHealthHealthy},
                      {"u1", "a.internal", "10.0.0.1:80", kHealthUnhealthy},  // a repeat counts once
                      {"", "a.internal", "10.0.0.2:80", kHealthDnsError}}),    // no id: matched by name
  };
  auto agg = AggregateTargetHealth("u1", "a.internal", reports);
  ASSERT_EQ(agg.size(), 2u);
  const TargetHealthAggregate& one = agg.at("10.0.0.1:80");
  EXPECT_EQ(one.counts, (std::map<std::string, int>{{"HEALTHY", 1}, {"UNHEALTHY", 1}}));
  ASSERT_EQ(one.data_planes.size(), 2u);
  EXPECT_EQ(one.data_planes[0].id, "dp-a");  // sorted by node id
  EXPECT_EQ(one.data_planes[0].health, "HEALTHY");
  EXPECT_EQ(one.data_planes[0].hostname, "dp-a.host");
  EXPECT_EQ(one.data_planes[1].health, "UNHEALTHY");
  EXPECT_EQ(AggregatedHealth(true, &one), "UNHEALTHY");
  EXPECT_EQ(AggregatedHealth(true, &agg.at("10.0.0.2:80")), "DNS_ERROR");
  EXPECT_EQ(AggregatedHealth(false, &one), "HEALTHCHECKS_OFF");
  EXPECT_EQ(AggregatedHealth(true, nullptr), "HEALTHY");  // nobody reports it
  EXPECT_TRUE(AggregateTargetHealth("u3", "c.internal", reports).empty());
}

TEST(TargetHealthAggregation, HealthchecksOnIsKongsRule) {
  EXPECT_FALSE(UpstreamUsesHealthchecks(json::parse(DefaultUpstreamHealthchecksJson())));
  EXPECT_FALSE(UpstreamUsesHealthchecks(json::object()));
  EXPECT_TRUE(UpstreamUsesHealthchecks(json::parse(R"({"active":{"healthy":{"interval":5}}})")));
  EXPECT_TRUE(UpstreamUsesHealthchecks(json::parse(R"({"active":{"unhealthy":{"interval":0.5}}})")));
  EXPECT_TRUE(UpstreamUsesHealthchecks(json::parse(R"({"passive":{"unhealthy":{"timeouts":3}}})")));
  EXPECT_TRUE(UpstreamUsesHealthchecks(json::parse(R"({"passive":{"unhealthy":{"http_failures":1}}})")));
  EXPECT_TRUE(UpstreamUsesHealthchecks(json::parse(R"({"passive":{"unhealthy":{"tcp_failures":1}}})")));
  // Successes alone turn nothing on (Kong's is_upstream_using_healthcheck).
  EXPECT_FALSE(UpstreamUsesHealthchecks(json::parse(R"({"passive":{"healthy":{"successes":3}}})")));
}

class UpstreamHealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico_upstream_health_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    absl::StatusOr<std::string> location = test_support::TestStoreLocation(dir_ + "/admin.db", &db_);
    ASSERT_TRUE(location.ok()) << location.status();
    location_ = *location;
    auto store = Store::Open(location_, clock_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    AdminOptions options{"node-1", "cp.local", "127.0.0.1:8001", "0.0.0.0:8005", location_};
    options.send_health_override = [this](const TargetHealthOverride& command) {
      std::lock_guard<std::mutex> lock(mu_);
      sent_.push_back(command);
      return std::vector<std::string>{"dp-a", "dp-b"};
    };
    api_ = std::make_unique<AdminApi>(store_.get(), &data_planes_, options, [] {}, clock_);

    upstream_id_ = CallJson("POST", "/upstreams", 201,
                            R"({"name":"a.internal","healthchecks":{"active":{"healthy":{"interval":5}},"threshold":50}})")["id"];
    t1_ = CallJson("POST", "/upstreams/a.internal/targets", 201, R"({"target":"10.0.0.1:80"})")["id"];
    t2_ = CallJson("POST", "/upstreams/a.internal/targets", 201, R"({"target":"10.0.0.2:80","weight":300})")["id"];
    t0_ = CallJson("POST", "/upstreams/a.internal/targets", 201, R"({"target":"10.0.0.3:80","weight":0})")["id"];
    CallJson("POST", "/upstreams", 201, R"({"name":"off.internal"})");
    CallJson("POST", "/upstreams/off.internal/targets", 201, R"({"target":"10.0.0.9:80"})");
  }
  void TearDown() override {
    api_.reset();
    store_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  HttpResponse Call(const std::string& method, const std::string& target, const std::string& body = "") {
    HttpRequest request;
    request.method = method;
    request.target = target;
    size_t q = target.find('?');
    request.path = target.substr(0, q);
    request.query = q == std::string::npos ? "" : target.substr(q + 1);
    if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
    request.body = body;
    return api_->Handle(request);
  }
  json CallJson(const std::string& method, const std::string& target, int status, const std::string& body = "") {
    HttpResponse r = Call(method, target, body);
    EXPECT_EQ(r.status, status) << method << " " << target << " -> " << r.body;
    json parsed = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << r.body;
    return parsed;
  }
  static const json* Row(const json& body, const std::string& target) {
    for (const json& row : body["data"]) {
      if (row["target"] == target) return &row;
    }
    return nullptr;
  }

  FakeClock clock_{1700000000};
  std::string dir_;
  std::unique_ptr<test_support::PostgresTestDb> db_;  // with PORTICO_TEST_STORE=postgres
  std::string location_;                               // the store's
  std::unique_ptr<Store> store_;
  FakeDataPlanes data_planes_;
  std::unique_ptr<AdminApi> api_;
  std::string upstream_id_, t1_, t2_, t0_;
  std::mutex mu_;
  std::vector<TargetHealthOverride> sent_;
};

TEST_F(UpstreamHealthTest, ListsEveryTargetInKongsShapeWithTheAggregatedHealth) {
  data_planes_.reports = {
      Report("dp-a", {{upstream_id_, "a.internal", "10.0.0.1:80", kHealthHealthy},
                      {upstream_id_, "a.internal", "10.0.0.2:80", kHealthHealthy}}),
      Report("dp-b", {{upstream_id_, "a.internal", "10.0.0.1:80", kHealthHealthy},
                      {upstream_id_, "a.internal", "10.0.0.2:80", kHealthUnhealthy}}, 1700000200),
  };
  for (const std::string& key : {std::string("a.internal"), upstream_id_}) {
    json body = CallJson("GET", "/upstreams/" + key + "/health", 200);
    EXPECT_EQ(body["node_id"], "node-1");
    EXPECT_TRUE(body["next"].is_null());
    EXPECT_EQ(body["reporting_data_planes"], 2);
    ASSERT_EQ(body["data"].size(), 3u) << body;  // weight 0 listed too, as Kong 3.x does
    const json* one = Row(body, "10.0.0.1:80");
    ASSERT_NE(one, nullptr);
    EXPECT_EQ((*one)["id"], t1_);
    EXPECT_EQ((*one)["weight"], 100);
    EXPECT_EQ((*one)["upstream"], (json{{"id", upstream_id_}}));
    EXPECT_TRUE(one->contains("created_at"));
    EXPECT_TRUE(one->contains("tags"));
    EXPECT_EQ((*one)["health"], "HEALTHY");
    EXPECT_EQ((*one)["data"], (json{{"data_planes", {{"HEALTHY", 2}}}}));
    const json* two = Row(body, "10.0.0.2:80");
    EXPECT_EQ((*two)["health"], "UNHEALTHY");
    EXPECT_EQ((*two)["data"]["data_planes"], (json{{"HEALTHY", 1}, {"UNHEALTHY", 1}}));
    EXPECT_FALSE((*two)["data"].contains("per_data_plane"));
    const json* zero = Row(body, "10.0.0.3:80");
    EXPECT_EQ((*zero)["weight"], 0);
    EXPECT_EQ((*zero)["health"], "HEALTHY");  // reported by no DP
    EXPECT_EQ((*zero)["data"]["data_planes"], json::object());
  }

  json body = CallJson("GET", "/upstreams/a.internal/health?per_data_plane=true", 200);
  const json* two = Row(body, "10.0.0.2:80");
  ASSERT_NE(two, nullptr);
  EXPECT_EQ((*two)["data"]["per_data_plane"],
            json::parse(R"([{"id":"dp-a","hostname":"dp-a.host","health":"HEALTHY","reported_at":1700000100},
                            {"id":"dp-b","hostname":"dp-b.host","health":"UNHEALTHY","reported_at":1700000200}])"));
  EXPECT_EQ((*Row(body, "10.0.0.3:80"))["data"]["per_data_plane"], json::array());
}

TEST_F(UpstreamHealthTest, ChecksOffShowsHealthchecksOffWhateverTheDataPlanesSay) {
  data_planes_.reports = {Report("dp-a", {{"", "off.internal", "10.0.0.9:80", kHealthUnhealthy}})};
  json body = CallJson("GET", "/upstreams/off.internal/health", 200);
  ASSERT_EQ(body["data"].size(), 1u);
  EXPECT_EQ(body["data"][0]["health"], "HEALTHCHECKS_OFF");
  EXPECT_EQ(body["data"][0]["data"]["data_planes"], (json{{"UNHEALTHY", 1}}));
  json balancer = CallJson("GET", "/upstreams/off.internal/health?balancer_health=1", 200);
  EXPECT_EQ(balancer["data"]["health"], "HEALTHCHECKS_OFF");
}

TEST_F(UpstreamHealthTest, PagesLikeKong) {
  json first = CallJson("GET", "/upstreams/a.internal/health?size=2&per_data_plane=true", 200);
  ASSERT_EQ(first["data"].size(), 2u);
  ASSERT_TRUE(first["next"].is_string());
  const std::string next = first["next"];
  EXPECT_EQ(next.rfind("/upstreams/a.internal/health?offset=", 0), 0u) << next;
  EXPECT_NE(next.find("&size=2&per_data_plane=true"), std::string::npos) << next;
  json second = CallJson("GET", next, 200);
  EXPECT_EQ(second["data"].size(), 1u);
  EXPECT_TRUE(second["next"].is_null());
  EXPECT_EQ(CallJson("GET", "/upstreams/a.internal/health?size=0", 400)["code"], 9);
}

TEST_F(UpstreamHealthTest, BalancerHealthFollowsTheThresholdPerDataPlane) {
  // threshold 50: dp-a lost 10.0.0.2 (300 of 400) -> unhealthy; dp-b lost 10.0.0.1 (100) -> healthy.
  data_planes_.reports = {
      Report("dp-a", {{upstream_id_, "a.internal", "10.0.0.2:80", kHealthUnhealthy}}),
      Report("dp-b", {{upstream_id_, "a.internal", "10.0.0.1:80", kHealthDnsError}}),
      Report("dp-c", {{"other", "b.internal", "10.0.0.1:80", kHealthUnhealthy}}),  // not this upstream
  };
  json body = CallJson("GET", "/upstreams/a.internal/health?balancer_health=1&per_data_plane=true", 200);
  EXPECT_EQ(body["node_id"], "node-1");
  EXPECT_TRUE(body["next"].is_null());
  EXPECT_EQ(body["data"]["id"], upstream_id_);
  EXPECT_EQ(body["data"]["health"], "UNHEALTHY");
  EXPECT_EQ(body["data"]["data_planes"], (json{{"HEALTHY", 1}, {"UNHEALTHY", 1}}));
  ASSERT_EQ(body["data"]["per_data_plane"].size(), 2u);
  EXPECT_EQ(body["data"]["per_data_plane"][0]["id"], "dp-a");
  EXPECT_EQ(body["data"]["per_data_plane"][0]["health"], "UNHEALTHY");

  data_planes_.reports.erase(data_planes_.reports.begin());
  body = CallJson("GET", "/upstreams/a.internal/health?balancer_health=1", 200);
  EXPECT_EQ(body["data"]["health"], "HEALTHY");
  EXPECT_FALSE(body["data"].contains("per_data_plane"));
}

TEST_F(UpstreamHealthTest, UnknownUpstreamIs404) {
  EXPECT_EQ(CallJson("GET", "/upstreams/nope.internal/health", 404), (json{{"message", "Not found"}}));
  EXPECT_EQ(CallJson("GET", "/upstreams/00000000-0000-4000-8000-000000000099/health", 404)["message"], "Not found");
  EXPECT_EQ(Call("POST", "/upstreams/a.internal/health").status, 405);
}

TEST_F(UpstreamHealthTest, OverrideIsHandedToTheSyncLayerAndAnswers204) {
  HttpResponse r = Call("POST", "/upstreams/a.internal/targets/10.0.0.2:80/unhealthy");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(r.body.empty());
  r = Call("PUT", "/upstreams/" + upstream_id_ + "/targets/" + t1_ + "/healthy");  // Kong 3.x verb, ids
  EXPECT_EQ(r.status, 204) << r.body;
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[0].upstream_id, upstream_id_);
  EXPECT_EQ(sent_[0].upstream_name, "a.internal");
  EXPECT_EQ(sent_[0].target, "10.0.0.2:80");
  EXPECT_FALSE(sent_[0].healthy);
  EXPECT_EQ(sent_[0].id.size(), 36u);
  EXPECT_EQ(sent_[1].target, "10.0.0.1:80");
  EXPECT_TRUE(sent_[1].healthy);
  EXPECT_NE(sent_[0].id, sent_[1].id);
}

TEST_F(UpstreamHealthTest, OverrideOfAnUnknownUpstreamOrTargetIs404AndSendsNothing) {
  const json not_found = {{"message", "Not found"}};
  EXPECT_EQ(CallJson("POST", "/upstreams/nope.internal/targets/10.0.0.1:80/unhealthy", 404), not_found);
  EXPECT_EQ(CallJson("POST", "/upstreams/a.internal/targets/10.0.0.7:80/unhealthy", 404), not_found);
  EXPECT_EQ(CallJson("POST", "/upstreams/a.internal/targets/10.0.0.1/unhealthy", 404), not_found);  // stored text only
  EXPECT_EQ(CallJson("POST", "/upstreams/a.internal/targets/00000000-0000-4000-8000-000000000099/healthy", 404),
            not_found);
  // Another upstream's target, by id and by text.
  const std::string other = CallJson("GET", "/upstreams/off.internal/targets", 200)["data"][0]["id"];
  EXPECT_EQ(CallJson("POST", "/upstreams/a.internal/targets/" + other + "/healthy", 404), not_found);
  EXPECT_EQ(CallJson("POST", "/upstreams/a.internal/targets/10.0.0.9:80/healthy", 404), not_found);
  EXPECT_EQ(Call("GET", "/upstreams/a.internal/targets/10.0.0.1:80/healthy").status, 405);
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_TRUE(sent_.empty());
}

TEST_F(UpstreamHealthTest, WithoutASyncLayerTheOverrideStillAnswers204) {
  AdminOptions options{"node-1", "cp.local", "127.0.0.1:8001", "0.0.0.0:8005", location_};
  AdminApi bare(store_.get(), nullptr, options, [] {}, clock_);
  HttpRequest request;
  request.method = "POST";
  request.target = request.path = "/upstreams/a.internal/targets/10.0.0.1:80/unhealthy";
  EXPECT_EQ(bare.Handle(request).status, 204);
  request.method = "GET";
  request.target = request.path = "/upstreams/a.internal/health";
  HttpResponse r = bare.Handle(request);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["reporting_data_planes"], 0);
}

}  // namespace
}  // namespace portico::cp
