// Upstreams and targets end to end: created through the real CP's Admin API, balanced by the
// real DP over real echo upstreams on loopback.
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/http_wire.h"
#include "tests/integration/balancing_fixture.h"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;

class LoadBalancingTest : public BalancingFixture {
 protected:
  // An upstream `name`, a service whose host names it, a route /<name>.
  void AddBalancedRoute(const std::string& name, const json& upstream_fields = json::object()) {
    json upstream = upstream_fields;
    upstream["name"] = name;
    Admin("POST", "/upstreams", upstream, 201);
    Admin("POST", "/services", {{"name", name}, {"host", name}, {"port", 80}}, 201);
    Admin("POST", absl::StrCat("/services/", name, "/routes"), {{"paths", {absl::StrCat("/", name)}}}, 201);
  }
  std::string OneAnswer(const std::string& path, const std::string& key) {
    HttpResult r = RawHttp(dp_->proxy_port,
                           absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\nX-Key: ", key, "\r\nConnection: close\r\n\r\n"));
    return r.status == 200 ? r.headers["x-upstream"] : absl::StrCat("status ", r.status);
  }

  EchoUpstream e1_{"e1"}, e2_{"e2"}, e3_{"e3"};
};

TEST_F(LoadBalancingTest, WeightedRoundRobinSpreadsTenThousandRequestsByWeight) {
  AddBalancedRoute("weighted");
  AddTarget("weighted", e1_.port(), 100);
  AddTarget("weighted", e2_.port(), 200);
  AddTarget("weighted", e3_.port(), 700);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  const std::map<std::string, int> seen = Spread("/weighted", 10000);
  // Within ±5 % of each target's share.
  EXPECT_NEAR(seen.count("e1") ? seen.at("e1") : 0, 1000, 50);
  EXPECT_NEAR(seen.count("e2") ? seen.at("e2") : 0, 2000, 100);
  EXPECT_NEAR(seen.count("e3") ? seen.at("e3") : 0, 7000, 350);
  EXPECT_EQ(seen.size(), 3u) << "no other answer";
}

TEST_F(LoadBalancingTest, ConsistentHashingKeepsKeysAcrossATargetAddedAndRemoved) {
  AddBalancedRoute("sticky", {{"hash_on", "header"}, {"hash_on_header", "X-Key"}});
  AddTarget("sticky", e1_.port(), 100);
  AddTarget("sticky", e2_.port(), 100);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  std::map<std::string, std::string> before;
  for (int k = 0; k < 200; ++k) before[absl::StrCat("user-", k)] = OneAnswer("/sticky", absl::StrCat("user-", k));
  for (const auto& [key, upstream] : before) {
    ASSERT_TRUE(upstream == "e1" || upstream == "e2") << key << " -> " << upstream;
    EXPECT_EQ(OneAnswer("/sticky", key), upstream) << "the same key, the same target";
  }
  AddTarget("sticky", e3_.port(), 100);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  int moved = 0;
  for (const auto& [key, upstream] : before) {
    const std::string now = OneAnswer("/sticky", key);
    if (now != upstream) {
      ++moved;
      EXPECT_EQ(now, "e3") << key << ": keys move only to the new target";
    }
  }
  EXPECT_GT(moved, 30);   // about a third of 200
  EXPECT_LT(moved, 110);
  Admin("DELETE", absl::StrCat("/upstreams/sticky/targets/127.0.0.1:", e3_.port()), json(), 204);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  for (const auto& [key, upstream] : before) EXPECT_EQ(OneAnswer("/sticky", key), upstream) << key;
}

TEST_F(LoadBalancingTest, ConnectFailuresRetryOnAnotherTargetAndNoTargetIsKongs503) {
  // A port nothing listens on: connections are refused at once.
  uint16_t dead = 0;
  const int fd = test_support::ListenOnLoopback(0, 1, &dead);
  ASSERT_GE(fd, 0);
  close(fd);
  AddBalancedRoute("flaky");
  AddTarget("flaky", dead, 100);
  AddTarget("flaky", e1_.port(), 100);
  AddBalancedRoute("empty");
  AddBalancedRoute("zero");
  AddTarget("zero", e2_.port(), 0);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  const std::map<std::string, int> seen = Spread("/flaky", 200);
  EXPECT_EQ(seen, (std::map<std::string, int>{{"e1", 200}})) << "every request retried on the live target";
  for (const char* path : {"/empty", "/zero"}) {
    HttpResult r = cluster_.Proxy(*dp_, path);
    EXPECT_EQ(r.status, 503) << path;
    EXPECT_EQ(json::parse(r.body, nullptr, false), json({{"message", "failure to get a peer from the ring-balancer"}}))
        << path << ": " << r.body;
  }
  EXPECT_EQ(e2_.requests_served(), 0);
}

TEST_F(LoadBalancingTest, ReadTimeoutsRetryIdempotentRequestsOnAnotherTargetOnly) {
  // A target that accepts (the kernel's backlog) and never answers.
  uint16_t silent = 0;
  const int fd = test_support::ListenOnLoopback(0, 64, &silent);
  ASSERT_GE(fd, 0);
  Admin("POST", "/upstreams", {{"name", "slow"}}, 201);
  Admin("POST", "/services", {{"name", "slow"}, {"host", "slow"}, {"port", 80}, {"read_timeout", 300}}, 201);
  Admin("POST", "/services/slow/routes", {{"paths", {"/slow"}}}, 201);
  AddTarget("slow", silent, 100);
  AddTarget("slow", e1_.port(), 100);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  // GET may be repeated: every one is answered, by e1, whichever target came first.
  EXPECT_EQ(Spread("/slow", 6), (std::map<std::string, int>{{"e1", 6}}));
  // POST may not: the ones that went to the silent target get 504 after one timeout. One
  // connection, so one worker's round-robin: the POSTs alternate between the two targets.
  int timed_out = 0, answered = 0;
  test_support::RawHttpClient client(dp_->proxy_port);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(client.Send("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"));
    test_support::HttpReply r = client.ReadResponse();
    ASSERT_TRUE(r.ok) << r.error;
    if (r.status == 504) {
      ++timed_out;
      EXPECT_EQ(json::parse(r.body, nullptr, false), json({{"message", "The upstream server is timing out"}}));
    } else {
      EXPECT_EQ(r.status, 200) << r.body;
      ++answered;
    }
  }
  EXPECT_EQ(timed_out, 3) << "half went to the silent target";
  EXPECT_EQ(answered, 3);
  close(fd);
}

TEST_F(LoadBalancingTest, TheHostSentIsTheTargetsOrTheUpstreamsHostHeader) {
  AddBalancedRoute("hosts");
  AddTarget("hosts", e1_.port(), 100);
  AddBalancedRoute("named", {{"host_header", "api.internal"}});
  AddTarget("named", e2_.port(), 100);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  HttpResult plain = cluster_.Proxy(*dp_, "/hosts");
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(json::parse(plain.body, nullptr, false)["headers"]["host"], absl::StrCat("127.0.0.1:", e1_.port()));
  HttpResult named = cluster_.Proxy(*dp_, "/named");
  ASSERT_EQ(named.status, 200) << named.body;
  EXPECT_EQ(json::parse(named.body, nullptr, false)["headers"]["host"], "api.internal");
}

TEST_F(LoadBalancingTest, ConsistentHashingOnAUriCaptureOfTheRoutesRegexPath) {
  Admin("POST", "/upstreams", {{"name", "captured"}, {"hash_on", "uri_capture"}, {"hash_on_uri_capture", "user"}}, 201);
  Admin("POST", "/services", {{"name", "captured"}, {"host", "captured"}, {"port", 80}}, 201);
  Admin("POST", "/services/captured/routes", {{"paths", {"~/users/(?P<user>[a-z0-9]+)/"}}}, 201);
  AddTarget("captured", e1_.port(), 100);
  AddTarget("captured", e2_.port(), 100);
  AddTarget("captured", e3_.port(), 100);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  auto answer = [&](const std::string& path) {
    HttpResult r = cluster_.Proxy(*dp_, path);
    return r.status == 200 ? r.headers["x-upstream"] : absl::StrCat("status ", r.status, " ", r.body);
  };
  std::map<std::string, int> targets_used;
  for (int u = 0; u < 30; ++u) {
    const std::string user = absl::StrCat("user", u);
    const std::string first = answer(absl::StrCat("/users/", user, "/orders"));
    ASSERT_TRUE(first == "e1" || first == "e2" || first == "e3") << first;
    ++targets_used[first];
    // The rest of the path differs; the captured user decides the target.
    for (const char* rest : {"/profile", "/orders/7", "/x?y=1"}) {
      EXPECT_EQ(answer(absl::StrCat("/users/", user, rest)), first) << user << rest;
    }
  }
  EXPECT_EQ(targets_used.size(), 3u) << "30 users spread over the three targets";
}

TEST_F(LoadBalancingTest, ConsistentHashingOnACookieSetsItWhenTheRequestHasNone) {
  AddBalancedRoute("cookied", {{"hash_on", "cookie"}, {"hash_on_cookie", "lb"}, {"hash_on_cookie_path", "/cookied"}});
  AddTarget("cookied", e1_.port(), 100);
  AddTarget("cookied", e2_.port(), 100);
  AddTarget("cookied", e3_.port(), 100);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  std::map<std::string, int> targets_used;
  for (int i = 0; i < 20; ++i) {
    HttpResult first = RawHttp(dp_->proxy_port, "GET /cookied HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ASSERT_EQ(first.status, 200) << first.body;
    const std::string set_cookie = first.headers["set-cookie"];
    ASSERT_TRUE(set_cookie.rfind("lb=", 0) == 0) << set_cookie;
    EXPECT_NE(set_cookie.find("; Path=/cookied; SameSite=Lax; HttpOnly"), std::string::npos) << set_cookie;
    const std::string value = set_cookie.substr(3, set_cookie.find(';') - 3);
    EXPECT_EQ(value.size(), 36u) << set_cookie;
    const std::string target = first.headers["x-upstream"];
    ++targets_used[target];
    // The client sends the cookie back: the same target, and no new cookie.
    for (int k = 0; k < 3; ++k) {
      HttpResult again = RawHttp(dp_->proxy_port, absl::StrCat("GET /cookied HTTP/1.1\r\nHost: x\r\nCookie: a=b; lb=",
                                                               value, "\r\nConnection: close\r\n\r\n"));
      ASSERT_EQ(again.status, 200) << again.body;
      EXPECT_EQ(again.headers["x-upstream"], target) << value;
      EXPECT_EQ(again.headers.count("set-cookie"), 0u);
    }
  }
  EXPECT_GE(targets_used.size(), 2u) << "new cookies spread over the targets";
}

TEST_F(LoadBalancingTest, LatencySendsMostRequestsToTheFasterTarget) {
  e2_.set_response_delay_ms(20);
  AddBalancedRoute("fastest", {{"algorithm", "latency"}});
  AddTarget("fastest", e1_.port(), 100);
  AddTarget("fastest", e2_.port(), 100);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  // One connection (one worker's estimates); round-robin would give each target half.
  const std::map<std::string, int> seen = Spread("/fastest", 200);
  const int fast = seen.count("e1") ? seen.at("e1") : 0;
  const int slow = seen.count("e2") ? seen.at("e2") : 0;
  EXPECT_EQ(fast + slow, 200);
  EXPECT_GT(fast, 170) << "e1 answers at once, e2 after 20 ms";
  EXPECT_GE(slow, 1) << "the slow target was measured at least once";
}

}  // namespace
}  // namespace portico::testing
