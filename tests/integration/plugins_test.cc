// Plugins end to end: created through the real CP's Admin API, compiled by the real DP, applied to
// real HTTP on loopback in front of a real upstream.
#include <regex>
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

class PluginsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    dp_ = &cluster_.StartDp();
    ASSERT_TRUE(dp_->started) << cluster_.Logs();
    const std::string url = absl::StrCat("http://127.0.0.1:", upstream_.port());
    for (const char* service : {"s1", "s2"}) {
      ASSERT_EQ(cluster_.Admin("POST", "/services", {{"name", service}, {"url", url}}).status, 201);
    }
    for (const auto& [route, service] : {std::pair{"a", "s1"}, {"b", "s1"}, {"c", "s1"}, {"d", "s2"}}) {
      HttpResult r = cluster_.Admin("POST", absl::StrCat("/services/", service, "/routes"),
                                    {{"name", route}, {"paths", {absl::StrCat("/", route)}}});
      ASSERT_EQ(r.status, 201) << r.body;
    }
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }
  void Add(const std::string& path, const json& plugin) {
    HttpResult r = cluster_.Admin("POST", path, plugin);
    ASSERT_EQ(r.status, 201) << path << " " << plugin.dump() << " -> " << r.body;
  }
  HttpResult Send(const std::string& raw) { return RawHttp(dp_->proxy_port, raw); }
  HttpResult Get(const std::string& path) { return cluster_.Proxy(*dp_, path); }

  EchoUpstream upstream_;
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
};

json Terminate(int status) {
  return {{"name", "request-termination"}, {"config", {{"status_code", status}, {"message", absl::StrCat("t", status)}}}};
}

TEST_F(PluginsTest, ScopesResolveAsKongsPrecedenceTable) {
  Add("/plugins", Terminate(418));                    // global
  Add("/services/s1/plugins", Terminate(419));        // service s1
  Add("/routes/b/plugins", Terminate(420));           // route b
  Add("/routes/a/plugins", Terminate(420));           // route a ...
  json route_and_service = Terminate(421);            // ... and route a + service s1
  route_and_service["route"] = {{"name", "a"}};
  route_and_service["service"] = {{"name", "s1"}};
  Add("/plugins", route_and_service);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  EXPECT_EQ(Get("/a").status, 421);
  EXPECT_EQ(Get("/b").status, 420);
  EXPECT_EQ(Get("/c").status, 419);
  HttpResult d = Get("/d");
  EXPECT_EQ(d.status, 418);
  EXPECT_EQ(json::parse(d.body, nullptr, false), json({{"message", "t418"}}));
  EXPECT_EQ(Get("/nothing").status, 404) << "no route: no plugin runs";

  // Disabling the route+service instance falls back to the route's own.
  json plugins = ParseJson(cluster_.Admin("GET", "/plugins?size=100"));
  std::string id;
  for (const json& p : plugins["data"]) {
    if (p["config"]["status_code"] == 421) id = p["id"];
  }
  ASSERT_FALSE(id.empty()) << plugins.dump();
  ASSERT_EQ(cluster_.Admin("PATCH", "/plugins/" + id, {{"enabled", false}}).status, 200);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  EXPECT_EQ(Get("/a").status, 420);
  EXPECT_EQ(upstream_.requests_served(), 0) << "every request was answered by a plugin";
}

TEST_F(PluginsTest, IpRestrictionAndSizeLimitGuardTheUpstream) {
  Add("/routes/a/plugins", {{"name", "ip-restriction"}, {"config", {{"deny", {"127.0.0.0/8"}}}}});
  Add("/routes/b/plugins", {{"name", "ip-restriction"}, {"config", {{"allow", {"127.0.0.1", "::1"}}}}});
  Add("/routes/c/plugins",
      {{"name", "request-size-limiting"}, {"config", {{"allowed_payload_size", 1}, {"size_unit", "kilobytes"}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  HttpResult denied = Get("/a");
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(json::parse(denied.body, nullptr, false), json({{"message", "IP address not allowed: 127.0.0.1"}}));
  EXPECT_EQ(Get("/b").status, 200);
  EXPECT_EQ(upstream_.requests_served(), 1);

  // Over the limit: 413, and the body never reaches the upstream; under it, proxied.
  const std::string big(2048, 'x');
  HttpResult over = Send(absl::StrCat("POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: ", big.size(), "\r\n\r\n", big));
  EXPECT_EQ(over.status, 413) << over.body;
  EXPECT_EQ(json::parse(over.body, nullptr, false), json({{"message", "Request size limit exceeded"}}));
  const std::string small(1024, 'y');
  HttpResult under = Send(absl::StrCat("POST /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ",
                                       small.size(), "\r\n\r\n", small));
  EXPECT_EQ(under.status, 200) << under.body;
  EXPECT_EQ(json::parse(under.body, nullptr, false)["body_len"], 1024);
  EXPECT_EQ(upstream_.requests_served(), 2) << "the refused body never reached the upstream";

  // Chunked bodies are counted as they arrive: over the limit, 413 and the connection closes.
  HttpResult chunked_over = Send(absl::StrCat("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                                              "400\r\n", small, "\r\n", "400\r\n", small, "\r\n0\r\n\r\n"));
  EXPECT_EQ(chunked_over.status, 413) << chunked_over.body;
  EXPECT_EQ(json::parse(chunked_over.body, nullptr, false), json({{"message", "Request size limit exceeded"}}));
  EXPECT_EQ(chunked_over.headers["connection"], "close");
  HttpResult chunked_under = Send(absl::StrCat("POST /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                               "Transfer-Encoding: chunked\r\n\r\n400\r\n", small, "\r\n0\r\n\r\n"));
  EXPECT_EQ(chunked_under.status, 200) << chunked_under.body;
  EXPECT_EQ(json::parse(chunked_under.body, nullptr, false)["body_len"], 1024);
  EXPECT_EQ(Get("/c").status, 200) << "the DP serves on";
}

TEST_F(PluginsTest, BadPluginWritesAreRefusedAndTheDataPlaneKeepsServing) {
  Add("/routes/a/plugins", Terminate(418));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  const uint64_t version = cluster_.CpVersion();
  HttpResult bad = cluster_.Admin("POST", "/routes/b/plugins",
                                  {{"name", "request-termination"}, {"config", {{"status_code", 99}}}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(ParseJson(bad)["fields"]["config"]["status_code"], "value should be between 100 and 599");
  EXPECT_EQ(cluster_.Admin("POST", "/routes/a/plugins", Terminate(419)).status, 409);
  EXPECT_EQ(cluster_.Admin("POST", "/plugins", {{"name", "no-such-plugin"}}).status, 400);
  EXPECT_EQ(cluster_.CpVersion(), version);
  EXPECT_EQ(Get("/a").status, 418);
  EXPECT_EQ(Get("/b").status, 200);
  json dps = ParseJson(cluster_.Admin("GET", "/clustering/data-planes"));
  ASSERT_EQ(dps["data"].size(), 1u) << dps.dump();
  EXPECT_EQ(dps["data"][0]["state"], "connected_synced") << dps.dump();
}

TEST_F(PluginsTest, KeyAuthIdentifiesConsumersReplacesSpoofedHeadersAndHidesTheKey) {
  HttpResult alice = cluster_.Admin("POST", "/consumers", {{"username", "alice"}});
  ASSERT_EQ(alice.status, 201) << alice.body;
  HttpResult key = cluster_.Admin("POST", "/consumers/alice/key-auth", {{"key", "alice-secret-7"}});
  ASSERT_EQ(key.status, 201) << key.body;
  Add("/routes/a/plugins", {{"name", "key-auth"}, {"config", {{"hide_credentials", true}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  HttpResult none = Get("/a");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(json::parse(none.body, nullptr, false), json({{"message", "No API key found in request"}}));
  EXPECT_EQ(none.headers["www-authenticate"], "Key realm=\"kong\"");
  HttpResult wrong = Send("GET /a HTTP/1.1\r\nHost: x\r\napikey: alice-secret-8\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(json::parse(wrong.body, nullptr, false), json({{"message", "Unauthorized"}}));
  EXPECT_EQ(upstream_.requests_served(), 0);

  HttpResult ok = Send(
      "GET /a?x=1 HTTP/1.1\r\nHost: x\r\napikey: alice-secret-7\r\nX-Consumer-ID: spoofed\r\n"
      "Connection: close\r\n\r\n");
  ASSERT_EQ(ok.status, 200) << ok.body;
  json seen = json::parse(ok.body, nullptr, false);
  EXPECT_EQ(seen["headers"]["x-consumer-id"], ParseJson(alice)["id"]) << seen.dump();
  EXPECT_EQ(seen["headers"]["x-consumer-username"], "alice");
  EXPECT_EQ(seen["headers"]["x-credential-identifier"], ParseJson(key)["id"]);
  EXPECT_FALSE(seen["headers"].contains("apikey")) << "hide_credentials";
  HttpResult by_query = Get("/a?apikey=alice-secret-7&y=2");
  ASSERT_EQ(by_query.status, 200) << by_query.body;
  EXPECT_EQ(json::parse(by_query.body, nullptr, false)["target"], "/?y=2");
  EXPECT_EQ(Get("/b").status, 200) << "other routes stay open";
}

}  // namespace
}  // namespace portico::testing

namespace portico::testing {
namespace {

TEST_F(PluginsTest, RateLimitIsSharedByTheWorkersAndSurvivesAConfigChange) {
  // The DP runs 2 workers; every request below is a new connection, so both workers count.
  Add("/routes/a/plugins", {{"name", "rate-limiting"}, {"config", {{"day", 5}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  int ok = 0, limited = 0;
  for (int i = 0; i < 4; ++i) (Get("/a").status == 200 ? ok : limited)++;
  // A config change (a new route) swaps the snapshot; the counters stay.
  ASSERT_EQ(cluster_.Admin("POST", "/services/s1/routes", {{"name", "e"}, {"paths", {"/e"}}}).status, 201);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_));
  HttpResult last = Get("/a");
  EXPECT_EQ(last.status, 200);
  EXPECT_EQ(last.headers["x-ratelimit-remaining-day"], "0");
  for (int i = 0; i < 3; ++i) {
    HttpResult r = Get("/a");
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(json::parse(r.body, nullptr, false), json({{"message", "API rate limit exceeded"}}));
    EXPECT_FALSE(r.headers["retry-after"].empty());
  }
  EXPECT_EQ(ok, 4);
  EXPECT_EQ(limited, 0);
  EXPECT_EQ(Get("/b").status, 200) << "other routes are not limited";
}

}  // namespace
}  // namespace portico::testing

namespace portico::testing {
namespace {

TEST_F(PluginsTest, ConsumerScopedPluginFollowsTheConsumerKeyAuthIdentified) {
  ASSERT_EQ(cluster_.Admin("POST", "/consumers", {{"username", "alice"}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/consumers", {{"username", "bob"}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/consumers/alice/key-auth", {{"key", "ka"}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/consumers/bob/key-auth", {{"key", "kb"}}).status, 201);
  Add("/services/s1/plugins", {{"name", "key-auth"}});
  Add("/plugins", Terminate(418));                         // global
  Add("/consumers/alice/plugins", Terminate(430));         // consumer alice
  json route_and_consumer = Terminate(431);                // route c + consumer alice
  route_and_consumer["route"] = {{"name", "c"}};
  Add("/consumers/alice/plugins", route_and_consumer);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  auto with_key = [this](const std::string& path, const std::string& key) {
    return Send(absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\napikey: ", key, "\r\nConnection: close\r\n\r\n"))
        .status;
  };
  EXPECT_EQ(with_key("/a", "ka"), 430) << "alice: her consumer scope beats global";
  EXPECT_EQ(with_key("/c", "ka"), 431) << "alice on route c: route+consumer";
  EXPECT_EQ(with_key("/a", "kb"), 418) << "bob: global";
  EXPECT_EQ(Get("/a").status, 401) << "no key: key-auth refuses before anything else";
  EXPECT_EQ(Get("/d").status, 418) << "service s2 has no key-auth: no consumer, global";
  EXPECT_EQ(cluster_.Admin("POST", "/consumers/alice/plugins", {{"name", "key-auth"}}).status, 400)
      << "an auth plugin cannot be scoped to a consumer";
}

}  // namespace
}  // namespace portico::testing

namespace portico::testing {
namespace {

TEST_F(PluginsTest, CorrelationIdReachesTheUpstreamAndComesBack) {
  Add("/routes/b/plugins", {{"name", "correlation-id"}, {"config", {{"echo_downstream", true}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  HttpResult r = Get("/b");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string id = r.headers["kong-request-id"];
  ASSERT_GE(id.size(), 38u) << id;  // "<36-character uuid>#<counter>"
  EXPECT_EQ(id[36], '#') << id;
  EXPECT_EQ(json::parse(r.body, nullptr, false)["headers"]["kong-request-id"], id);
  HttpResult again = Get("/b");
  EXPECT_NE(again.headers["kong-request-id"], id);
}

}  // namespace
}  // namespace portico::testing

namespace portico::testing {
namespace {

std::string BasicHeader(const std::string& user_password) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < user_password.size(); i += 3) {
    const uint32_t n = (uint8_t(user_password[i]) << 16) | (uint8_t(user_password[i + 1]) << 8) | uint8_t(user_password[i + 2]);
    for (int shift : {18, 12, 6, 0}) out.push_back(kAlphabet[(n >> shift) & 63]);
  }
  if (i + 1 == user_password.size()) {
    const uint32_t n = uint8_t(user_password[i]) << 16;
    out += {kAlphabet[(n >> 18) & 63], kAlphabet[(n >> 12) & 63], '=', '='};
  } else if (i + 2 == user_password.size()) {
    const uint32_t n = (uint8_t(user_password[i]) << 16) | (uint8_t(user_password[i + 1]) << 8);
    out += {kAlphabet[(n >> 18) & 63], kAlphabet[(n >> 12) & 63], kAlphabet[(n >> 6) & 63], '='};
  }
  return "Basic " + out;
}

TEST_F(PluginsTest, BasicAuthAndAclGuardARouteAndPasswordsAreStoredHashed) {
  for (const char* name : {"alice", "bob"}) {
    ASSERT_EQ(cluster_.Admin("POST", "/consumers", {{"username", name}}).status, 201);
  }
  HttpResult cred = cluster_.Admin("POST", "/consumers/alice/basic-auth", {{"username", "al"}, {"password", "open sesame"}});
  ASSERT_EQ(cred.status, 201) << cred.body;
  const std::string stored = ParseJson(cred)["password"];
  EXPECT_NE(stored, "open sesame");
  EXPECT_EQ(stored.rfind("sha256$", 0), 0u) << stored;
  HttpResult patched = cluster_.Admin("PATCH", "/basic-auths/al", {{"tags", {"t"}}});
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(ParseJson(patched)["password"], stored) << "a PATCH without a password keeps the hash";
  ASSERT_EQ(cluster_.Admin("POST", "/consumers/bob/basic-auth", {{"username", "bo"}, {"password", "pw-bob"}}).status, 201);
  EXPECT_EQ(cluster_.Admin("POST", "/consumers/nobody/basic-auth", {{"username", "x"}, {"password", "y"}}).status, 404);
  EXPECT_EQ(cluster_.Admin("POST", "/consumers/bob/basic-auth", {{"username", "al"}, {"password", "y"}}).status, 409);
  ASSERT_EQ(cluster_.Admin("POST", "/consumers/alice/acls", {{"group", "admins"}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/consumers/bob/acls", {{"group", "guests"}}).status, 201);
  EXPECT_EQ(cluster_.Admin("POST", "/consumers/bob/acls", {{"group", "guests"}}).status, 409);
  HttpResult bad = cluster_.Admin("POST", "/routes/a/plugins", {{"name", "acl"}, {"config", json::object()}});
  EXPECT_EQ(bad.status, 400) << bad.body;
  Add("/routes/a/plugins", {{"name", "basic-auth"}, {"config", {{"hide_credentials", true}}}});
  Add("/routes/a/plugins", {{"name", "acl"}, {"config", {{"allow", {"admins"}}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  auto send = [&](const std::string& authorization) {
    return Send("GET /a HTTP/1.1\r\nHost: x\r\n" +
                (authorization.empty() ? std::string() : "Authorization: " + authorization + "\r\n") +
                "X-Consumer-Groups: admins\r\nConnection: close\r\n\r\n");
  };
  HttpResult none = send("");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(json::parse(none.body, nullptr, false), json({{"message", "Unauthorized"}}));
  EXPECT_EQ(none.headers["www-authenticate"], "Basic realm=\"service\"");
  EXPECT_EQ(send(BasicHeader("al:open sesamE")).status, 401);
  EXPECT_EQ(send("Basic %%%").status, 401);
  HttpResult bob = send(BasicHeader("bo:pw-bob"));
  EXPECT_EQ(bob.status, 403);
  EXPECT_EQ(json::parse(bob.body, nullptr, false), json({{"message", "You cannot consume this service"}}));
  EXPECT_EQ(upstream_.requests_served(), 0);

  HttpResult ok = send(BasicHeader("al:open sesame"));
  ASSERT_EQ(ok.status, 200) << ok.body;
  json seen = json::parse(ok.body, nullptr, false);
  EXPECT_EQ(seen["headers"]["x-consumer-username"], "alice") << seen.dump();
  EXPECT_EQ(seen["headers"]["x-credential-identifier"], "al");
  EXPECT_EQ(seen["headers"]["x-consumer-groups"], "admins");
  EXPECT_FALSE(seen["headers"].contains("authorization")) << "hide_credentials";

  // Removing alice from the group takes effect at the next snapshot.
  HttpResult acls = cluster_.Admin("GET", "/consumers/alice/acls", json());
  ASSERT_EQ(acls.status, 200);
  const std::string acl_id = ParseJson(acls)["data"][0]["id"];
  ASSERT_EQ(cluster_.Admin("DELETE", "/consumers/alice/acls/" + acl_id, json()).status, 204);
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  EXPECT_EQ(send(BasicHeader("al:open sesame")).status, 403);
}

TEST_F(PluginsTest, CorsAnswersPreflightsAndDecoratesEveryResponse) {
  Add("/routes/a/plugins", {{"name", "cors"},
                            {"config", {{"origins", {"http://app.example", "(.*\\.)?trusted\\.example"}},
                                        {"credentials", true},
                                        {"exposed_headers", {"X-Total"}},
                                        {"max_age", 600}}}});
  Add("/routes/b/plugins", {{"name", "cors"}, {"config", {{"preflight_continue", true}}}});
  Add("/routes/c/plugins", {{"name", "cors"}});
  Add("/routes/c/plugins", Terminate(403));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  HttpResult preflight = Send(
      "OPTIONS /a HTTP/1.1\r\nHost: x\r\nOrigin: https://api.trusted.example\r\n"
      "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: X-Custom\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(preflight.status, 200) << preflight.body;
  EXPECT_EQ(preflight.body, "");
  EXPECT_EQ(preflight.headers["access-control-allow-origin"], "https://api.trusted.example");
  EXPECT_EQ(preflight.headers["access-control-allow-credentials"], "true");
  EXPECT_EQ(preflight.headers["access-control-allow-methods"], "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT");
  EXPECT_EQ(preflight.headers["access-control-allow-headers"], "X-Custom");
  EXPECT_EQ(preflight.headers["access-control-max-age"], "600");
  EXPECT_EQ(preflight.headers["vary"], "Origin");
  EXPECT_EQ(upstream_.requests_served(), 0) << "the plugin answered the preflight";

  HttpResult simple = Send("GET /a HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example:80\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(simple.status, 200) << simple.body;
  EXPECT_EQ(json::parse(simple.body, nullptr, false)["method"], "GET") << "proxied";
  EXPECT_EQ(simple.headers["access-control-allow-origin"], "http://app.example");
  EXPECT_EQ(simple.headers["access-control-allow-credentials"], "true");
  EXPECT_EQ(simple.headers["access-control-expose-headers"], "X-Total");
  EXPECT_EQ(simple.headers["x-upstream"], "echo") << "the upstream's own headers stay";

  HttpResult stranger = Send("GET /a HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(stranger.status, 200);
  EXPECT_FALSE(stranger.headers.contains("access-control-allow-origin")) << "an Origin no entry matches";

  HttpResult continued = Send(
      "OPTIONS /b HTTP/1.1\r\nHost: x\r\nOrigin: https://x.example\r\nAccess-Control-Request-Method: GET\r\n"
      "Connection: close\r\n\r\n");
  ASSERT_EQ(continued.status, 200) << continued.body;
  EXPECT_EQ(json::parse(continued.body, nullptr, false)["method"], "OPTIONS") << "preflight_continue";
  EXPECT_FALSE(continued.headers.contains("access-control-allow-origin"));

  HttpResult terminated = Get("/c");
  EXPECT_EQ(terminated.status, 403) << "request-termination (priority 2) answers after cors (2000)";
  EXPECT_EQ(terminated.headers["access-control-allow-origin"], "*") << "local responses carry the headers too";

  HttpResult bad = cluster_.Admin("POST", "/routes/d/plugins", {{"name", "cors"}, {"config", {{"origins", {"(x"}}}}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(ParseJson(bad)["fields"]["config"]["origins"], json({"'(x' is not a valid regex"})) << bad.body;
}

TEST_F(PluginsTest, RequestTransformerRewritesWhatTheUpstreamReceives) {
  Add("/routes/a/plugins",
      {{"name", "request-transformer"},
       {"config",
        {{"http_method", "POST"},
         {"remove", {{"headers", {"X-Secret"}}, {"querystring", {"drop"}}}},
         {"rename", {{"headers", {"X-Old:X-New"}}, {"querystring", {"old:new"}}}},
         {"replace", {{"headers", {"Host:internal.example"}}, {"uri", "/rewritten"}}},
         {"add", {{"headers", {"X-Added:yes"}}, {"querystring", {"added:a b"}}}},
         {"append", {{"headers", {"X-Multi:two"}}}}}}});
  // After key-auth has hidden the key: the transformer works on what key-auth left.
  ASSERT_EQ(cluster_.Admin("POST", "/consumers", {{"username", "alice"}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/consumers/alice/key-auth", {{"key", "alice-key"}}).status, 201);
  Add("/routes/b/plugins", {{"name", "key-auth"}, {"config", {{"hide_credentials", true}}}});
  Add("/routes/b/plugins", {{"name", "request-transformer"}, {"config", {{"add", {{"querystring", {"from:rt"}}}}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  HttpResult r = Send(
      "GET /a?drop=1&old=v&keep=k HTTP/1.1\r\nHost: client.example\r\nX-Secret: s\r\nX-Old: o\r\nX-Multi: one\r\n"
      "Connection: close\r\n\r\n");
  ASSERT_EQ(r.status, 200) << r.body;
  json seen = json::parse(r.body, nullptr, false);
  EXPECT_EQ(seen["method"], "POST") << seen.dump();
  EXPECT_EQ(seen["target"], "/rewritten?added=a%20b&keep=k&new=v");
  EXPECT_EQ(seen["headers"]["host"], "internal.example");
  EXPECT_FALSE(seen["headers"].contains("x-secret"));
  EXPECT_FALSE(seen["headers"].contains("x-old"));
  EXPECT_EQ(seen["headers"]["x-new"], "o");
  EXPECT_EQ(seen["headers"]["x-added"], "yes");
  EXPECT_EQ(seen["headers"]["x-multi"], "one, two");

  HttpResult keyed = Get("/b?apikey=alice-key&z=1");
  ASSERT_EQ(keyed.status, 200) << keyed.body;
  EXPECT_EQ(json::parse(keyed.body, nullptr, false)["target"], "/?from=rt&z=1");

  HttpResult body = cluster_.Admin("POST", "/routes/c/plugins",
                                   {{"name", "request-transformer"}, {"config", {{"add", {{"body", {"a"}}}}}}});
  EXPECT_EQ(body.status, 400);
  EXPECT_EQ(ParseJson(body)["fields"]["config"]["add"]["body"][0], "key 'a' has no value") << body.body;
  HttpResult head = cluster_.Admin("POST", "/routes/c/plugins",
                                   {{"name", "request-transformer"}, {"config", {{"http_method", "HEAD"}}}});
  EXPECT_EQ(head.status, 400) << head.body;
}

}  // namespace
}  // namespace portico::testing

#include <ctime>

#include "tests/common/jwt_signer.h"

namespace portico::testing {
namespace {

TEST_F(PluginsTest, JwtVerifiesHmacAndRsaTokensAndRefusesWithKongs401s) {
  HttpResult alice = cluster_.Admin("POST", "/consumers", {{"username", "alice"}});
  ASSERT_EQ(alice.status, 201) << alice.body;
  HttpResult hs = cluster_.Admin("POST", "/consumers/alice/jwt", {{"key", "alice-iss"}, {"secret", "alice-secret"}});
  ASSERT_EQ(hs.status, 201) << hs.body;
  const test_support::TestKeyPair rsa = test_support::NewRsaKeyPair();
  HttpResult rs = cluster_.Admin("POST", "/jwts", {{"consumer", {{"username", "alice"}}}, {"key", "alice-rs"},
                                                   {"algorithm", "RS256"}, {"rsa_public_key", rsa.public_pem}});
  ASSERT_EQ(rs.status, 201) << rs.body;
  HttpResult no_key = cluster_.Admin("POST", "/consumers/alice/jwt", {{"algorithm", "ES256"}});
  EXPECT_EQ(no_key.status, 400);
  EXPECT_EQ(ParseJson(no_key)["fields"]["rsa_public_key"], "required field missing");
  Add("/routes/a/plugins", {{"name", "jwt"}, {"config", {{"claims_to_verify", {"exp"}}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  auto claims = [now](const std::string& iss, int64_t exp_in) {
    return json{{"iss", iss}, {"exp", now + exp_in}}.dump();
  };
  auto send = [this](const std::string& authorization) {
    return Send(absl::StrCat("GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: ", authorization,
                             "\r\nX-Credential-Identifier: spoofed\r\nConnection: close\r\n\r\n"));
  };
  HttpResult ok = send("Bearer " + test_support::SignJwt("HS256", claims("alice-iss", 600), "alice-secret"));
  ASSERT_EQ(ok.status, 200) << ok.body;
  json seen = json::parse(ok.body, nullptr, false);
  EXPECT_EQ(seen["headers"]["x-consumer-id"], ParseJson(alice)["id"]) << seen.dump();
  EXPECT_EQ(seen["headers"]["x-consumer-username"], "alice");
  EXPECT_EQ(seen["headers"]["x-credential-identifier"], "alice-iss") << "Kong sends the jwt key";
  HttpResult by_rsa = send("Bearer " + test_support::SignJwt("RS256", claims("alice-rs", 600), "", rsa.key.get()));
  EXPECT_EQ(by_rsa.status, 200) << by_rsa.body;
  const std::string token = test_support::SignJwt("HS256", claims("alice-iss", 600), "alice-secret");
  EXPECT_EQ(Get("/a?jwt=" + token).status, 200) << "from the query";
  EXPECT_EQ(upstream_.requests_served(), 3);

  auto refused = [&](const std::string& authorization) {
    HttpResult r = send(authorization);
    EXPECT_EQ(r.status, 401) << authorization << " -> " << r.body;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer error=\"invalid_token\"");
    return json::parse(r.body, nullptr, false);
  };
  EXPECT_EQ(refused("Bearer " + test_support::SignJwt("HS256", claims("alice-iss", -10), "alice-secret")),
            json({{"exp", "token expired"}}));
  EXPECT_EQ(refused("Bearer " + test_support::SignJwt("HS256", claims("alice-iss", 600), "guessed")),
            json({{"message", "Invalid signature"}}));
  EXPECT_EQ(refused("Bearer " + test_support::SignJwt("HS256", claims("mallory", 600), "alice-secret")),
            json({{"message", "No credentials found for given 'iss'"}}));
  EXPECT_EQ(refused("Bearer " + test_support::SignJwt("HS256", claims("alice-rs", 600), "alice-secret")),
            json({{"message", "Invalid algorithm"}}));
  EXPECT_EQ(refused("Bearer %%%.~~~.@@"), json({{"message", "Bad token; invalid JSON"}}));
  HttpResult none = Get("/a");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(json::parse(none.body, nullptr, false), json({{"message", "Unauthorized"}}));
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer");
  EXPECT_EQ(upstream_.requests_served(), 3) << "no refused request reached the upstream";
}

}  // namespace
}  // namespace portico::testing

namespace portico::testing {
namespace {

TEST_F(PluginsTest, ResponseTransformerEditsUpstreamAndLocalResponses) {
  HttpResult bad = cluster_.Admin("POST", "/routes/a/plugins",
                                  {{"name", "response-transformer"}, {"config", {{"add", {{"json_types", {"int"}}}}}}});
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(ParseJson(bad)["fields"]["config"]["add"]["json_types"][0], "expected one of: boolean, number, string")
      << bad.body;
  Add("/routes/a/plugins", {{"name", "response-transformer"},
                            {"config", {{"remove", {{"headers", {"x-upstream"}}}},
                                        {"rename", {{"headers", {"content-type:x-original-type"}}}},
                                        {"add", {{"headers", {"x-added:yes", "x-ratelimit-limit-minute:overridden?"}}}}}}});
  Add("/routes/a/plugins", {{"name", "rate-limiting"}, {"config", {{"minute", 100}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  HttpResult ok = Get("/a");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.headers.count("x-upstream"), 0u);
  EXPECT_EQ(ok.headers.count("content-type"), 0u);
  EXPECT_EQ(ok.headers["x-original-type"], "application/json");
  EXPECT_EQ(ok.headers["x-added"], "yes");
  EXPECT_EQ(ok.headers["x-ratelimit-limit-minute"], "100") << "add leaves a header another plugin set";
  EXPECT_NE(json::parse(ok.body, nullptr, false)["target"], nullptr) << "the body is untouched";
  HttpResult other = Get("/b");
  EXPECT_EQ(other.headers["x-upstream"], "echo") << "only route a is transformed";
}

}  // namespace
}  // namespace portico::testing

namespace portico::testing {
namespace {

// A DP build that lacks a plugin (announced as an older build would) keeps the config it has
// and is listed plugin_set_incompatible while another DP gets the plugin; it catches up as soon
// as the config no longer needs the plugin.
TEST_F(PluginsTest, ADataPlaneThatCannotRunAPluginKeepsItsConfigUntilTheConfigStopsNeedingIt) {
  std::string gen_log;
  ASSERT_TRUE(GenerateCerts(cluster_.certs(), "dp-old", &gen_log)) << gen_log;
  DataPlane& old_dp = cluster_.StartDp({.cert = cluster_.certs() + "/dp-old.crt",
                                        .key = cluster_.certs() + "/dp-old.key",
                                        .env = {{"PORTICO_TEST_ANNOUNCE_PLUGINS", "cors,acl"}},
                                        .log_name = "dp-old.log"});
  ASSERT_TRUE(old_dp.started) << cluster_.Logs();
  ASSERT_TRUE(cluster_.WaitDpSynced(old_dp)) << cluster_.DpStatus(old_dp).dump();
  const uint64_t before = cluster_.CpVersion();

  Add("/routes/a/plugins", {{"name", "request-termination"}, {"config", {{"status_code", 403}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();
  EXPECT_EQ(Get("/a").status, 403) << "the DP that runs the plugin applies it";
  auto old_record = [this]() {
    const json listed = ParseJson(cluster_.Admin("GET", "/clustering/data-planes"));
    if (!listed.is_object() || !listed.contains("data")) return json();
    for (const json& node : listed["data"]) {
      if (node["id"] == "dp-old") return node;
    }
    return json();
  };
  json record;
  for (int i = 0; i < 100 && record["sync_status"] != "plugin_set_incompatible"; ++i) {
    std::this_thread::sleep_for(50ms);
    record = old_record();
  }
  EXPECT_EQ(record["sync_status"], "plugin_set_incompatible") << record.dump();
  EXPECT_EQ(record["state"], "incompatible");
  EXPECT_NE(record.value("last_error", std::string()).find("request-termination"), std::string::npos) << record.dump();
  EXPECT_EQ(record["config_version"], before) << "it keeps the version it had";
  EXPECT_EQ(cluster_.Proxy(old_dp, "/a").status, 200) << "and serves it";

  // The config stops needing the plugin: the old DP gets the next version.
  const json on_a = ParseJson(cluster_.Admin("GET", "/routes/a/plugins"));
  ASSERT_EQ(on_a["data"].size(), 1u) << on_a.dump();
  const std::string id = on_a["data"][0]["id"];
  ASSERT_EQ(cluster_.Admin("DELETE", "/plugins/" + id).status, 204);
  ASSERT_TRUE(cluster_.WaitDpSynced(old_dp)) << cluster_.DpStatus(old_dp).dump();
  for (int i = 0; i < 100 && old_record()["sync_status"] != "normal"; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(old_record()["sync_status"], "normal");
}

}  // namespace
}  // namespace portico::testing


namespace portico::testing {
namespace {

// Plugins that need the whole body, through the real exchange: the body is read (chunked or
// not), edited, and sent upstream with its new Content-Length; one too large to hold streams
// unchanged; key-auth finds a key in it and hides it.
TEST_F(PluginsTest, BodyPluginsReadEditAndForwardTheWholeBody) {
  Add("/routes/a/plugins", {{"name", "request-transformer"},
                            {"config", {{"remove", {{"body", {"secret"}}}},
                                        {"rename", {{"body", {"old:new"}}}},
                                        {"add", {{"body", {"x:1"}}}},
                                        {"append", {{"body", {"list:b"}}}}}}});
  ASSERT_EQ(cluster_.Admin("POST", "/consumers", {{"username", "alice"}}).status, 201);
  ASSERT_EQ(cluster_.Admin("POST", "/consumers/alice/key-auth", {{"key", "alice-key"}}).status, 201);
  Add("/routes/b/plugins", {{"name", "key-auth"}, {"config", {{"key_in_body", true}, {"hide_credentials", true}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  const std::string doc = R"({"old":"o","secret":"s","list":"a"})";
  const json edited = json::parse(R"({"new":"o","x":"1","list":["a","b"]})");
  HttpResult plain = Send(absl::StrCat("POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                       "Content-Type: application/json\r\nContent-Length: ", doc.size(), "\r\n\r\n", doc));
  ASSERT_EQ(plain.status, 200) << plain.body;
  json seen = json::parse(plain.body, nullptr, false);
  EXPECT_EQ(json::parse(seen["body"].get<std::string>(), nullptr, false), edited) << seen.dump();
  EXPECT_EQ(seen["headers"]["content-length"], std::to_string(seen["body_len"].get<size_t>()));

  HttpResult chunked = Send(absl::StrCat("POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                                         "5\r\n", doc.substr(0, 5), "\r\n", absl::Hex(doc.size() - 5), "\r\n",
                                         doc.substr(5), "\r\n0\r\n\r\n"));
  ASSERT_EQ(chunked.status, 200) << chunked.body;
  seen = json::parse(chunked.body, nullptr, false);
  EXPECT_EQ(json::parse(seen["body"].get<std::string>(), nullptr, false), edited) << seen.dump();
  EXPECT_FALSE(seen["headers"].contains("transfer-encoding")) << seen.dump();

  const std::string form = "secret=s&old=o&list=a";
  HttpResult form_result = Send(absl::StrCat("POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                             "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ",
                                             form.size(), "\r\n\r\n", form));
  ASSERT_EQ(form_result.status, 200) << form_result.body;
  EXPECT_EQ(json::parse(form_result.body, nullptr, false)["body"], "list=a&list=b&new=o&x=1");

  // Too large to hold (over 1 MiB): it reaches the upstream whole and unchanged.
  const std::string big = absl::StrCat(R"({"secret":")", std::string(1200 * 1024, 'z'), R"("})");
  HttpResult large = Send(absl::StrCat("POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                       "Content-Type: application/json\r\nContent-Length: ", big.size(), "\r\n\r\n", big));
  ASSERT_EQ(large.status, 200) << large.body;
  EXPECT_EQ(json::parse(large.body, nullptr, false)["body_len"], big.size());

  // key-auth: the key from a form body identifies alice and is removed from what goes upstream.
  const std::string keyed = "apikey=alice-key&z=1";
  HttpResult ok = Send(absl::StrCat("POST /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ",
                                    keyed.size(), "\r\n\r\n", keyed));
  ASSERT_EQ(ok.status, 200) << ok.body;
  seen = json::parse(ok.body, nullptr, false);
  EXPECT_EQ(seen["headers"]["x-consumer-username"], "alice");
  EXPECT_EQ(seen["body"], "z=1");
  const std::string wrong = R"({"apikey":"nope"})";
  HttpResult refused = Send(absl::StrCat("POST /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n",
                                         "Content-Type: application/json\r\nContent-Length: ", wrong.size(),
                                         "\r\n\r\n", wrong));
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(json::parse(refused.body, nullptr, false), json({{"message", "Unauthorized"}}));
  EXPECT_EQ(Get("/b").status, 401) << "no body, no key";
  EXPECT_EQ(upstream_.requests_served(), 5);
}

TEST_F(PluginsTest, ResponseTransformerEditsJsonBodiesAndTheLengthFollows) {
  Add("/routes/c/plugins", {{"name", "response-transformer"},
                            {"config", {{"remove", {{"json", {"connection_id", "headers"}}}},
                                        {"replace", {{"json", {"method:REPLACED"}}}},
                                        {"add", {{"json", {"added:true", "count:3"}}, {"json_types", {"boolean", "number"}}}}}}});
  Add("/routes/d/plugins", {{"name", "correlation-id"}, {"config", {{"generator", "tracker"}, {"echo_downstream", true}}}});
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  HttpResult r = Get("/c");
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = json::parse(r.body, nullptr, false);
  EXPECT_FALSE(body.contains("connection_id")) << r.body;
  EXPECT_FALSE(body.contains("headers")) << r.body;
  EXPECT_EQ(body["method"], "REPLACED");
  EXPECT_EQ(body["added"], true);
  EXPECT_EQ(body["count"], 3);
  EXPECT_EQ(body["target"], "/");
  EXPECT_EQ(r.headers["content-length"], std::to_string(r.body.size()));
  HttpResult head = Send("HEAD /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());

  // Route d: untouched body; a tracker id "<address>-<port>-<pid>-<connection>-<request>-<time>".
  HttpResult d = Get("/d");
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_TRUE(json::parse(d.body, nullptr, false).contains("connection_id"));
  const std::string id = d.headers["kong-request-id"];
  EXPECT_TRUE(std::regex_match(id, std::regex(R"([0-9a-f.:]+-[0-9]+-[0-9]+-[0-9]+-1-[0-9]+\.[0-9]{3})"))) << id;
  EXPECT_EQ(json::parse(d.body, nullptr, false)["headers"]["kong-request-id"], id);
}

}  // namespace
}  // namespace portico::testing
