// The router end to end: routes created through the CP's Admin API, synced to a real DP, and raw
// request lines (so that nothing normalises them first) sent through the DP to an echo upstream.
// Each check looks at the route chosen (Kong-Route-Name debug header), the path the upstream
// received and its Host header.
#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster.h"

namespace portico::testing {
namespace {

using json = nlohmann::json;

class RouterIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartCp()) << cluster_.Logs();
    DataPlaneOptions options;
    options.extra_args = {"--allow-debug-header"};
    dp_ = &cluster_.StartDp(options);
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s", cluster_.Logs().c_str());
  }

  void Create(const std::string& target, const json& body) {
    HttpResult r = cluster_.Admin("POST", target, body);
    ASSERT_EQ(r.status, 201) << target << " " << body.dump() << " -> " << r.body;
  }

  // One raw request line + headers through the DP; Connection: close.
  HttpResult Send(const std::string& request_line, const std::string& host, const std::string& extra = "") {
    return RawHttp(dp_->proxy_port, absl::StrCat(request_line, "\r\nHost: ", host, "\r\nKong-Debug: 1\r\n", extra,
                                                  "Connection: close\r\n\r\n"));
  }

  // Expects a proxied 200 from `route` with the upstream seeing `target` and `host_header`.
  void ExpectRouted(const HttpResult& r, const std::string& route, const std::string& target,
                    const std::string& host_header) {
    ASSERT_TRUE(r.ok) << r.error;
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers.at("kong-route-name"), route);
    const json echo = json::parse(r.body);
    EXPECT_EQ(echo["target"], target);
    EXPECT_EQ(echo["headers"]["host"], host_header);
  }

  std::string UpstreamHost() const { return absl::StrCat("127.0.0.1:", upstream_.port()); }

  EchoUpstream upstream_;
  Cluster cluster_;
  DataPlane* dp_ = nullptr;
};

TEST_F(RouterIntegrationTest, KongSemanticsThroughARealDataPlane) {
  const std::string base_url = absl::StrCat("http://127.0.0.1:", upstream_.port());
  ASSERT_NO_FATAL_FAILURE(Create("/services", {{"name", "echo"}, {"url", base_url + "/base"}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services", {{"name", "root"}, {"url", base_url}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services", {{"name", "off"}, {"url", base_url}, {"enabled", false}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "prefix"}, {"paths", {"/api"}}}));
  ASSERT_NO_FATAL_FAILURE(
      Create("/services/root/routes", {{"name", "longer"}, {"paths", {"/api/v2"}}, {"strip_path", false}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "regex"}, {"paths", {"~/users/\\d+$"}}}));
  ASSERT_NO_FATAL_FAILURE(Create(
      "/services/root/routes", {{"name", "host-exact"}, {"hosts", {"shop.example.com"}}, {"preserve_host", true}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/root/routes", {{"name", "host-wild"}, {"hosts", {"*.example.com"}}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/root/routes", {{"name", "header"},
                                                           {"paths", {"/api"}},
                                                           {"headers", {{"x-version", {"~*^v2"}}}}}));
  ASSERT_NO_FATAL_FAILURE(
      Create("/services/root/routes", {{"name", "method"}, {"paths", {"/api"}}, {"methods", {"POST"}}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "secure"},
                                                           {"paths", {"/secure"}},
                                                           {"protocols", {"https"}},
                                                           {"https_redirect_status_code", 308}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/echo/routes", {{"name", "secure426"},
                                                           {"paths", {"/tls"}},
                                                           {"protocols", {"https"}}}));
  ASSERT_NO_FATAL_FAILURE(Create("/routes", {{"name", "orphan"}, {"paths", {"/orphan"}}}));
  ASSERT_NO_FATAL_FAILURE(Create("/services/off/routes", {{"name", "off-route"}, {"paths", {"/off"}}}));
  ASSERT_TRUE(cluster_.WaitDpSynced(*dp_)) << cluster_.DpStatus(*dp_).dump();

  // Plain prefix, strip_path, service path join, query unchanged.
  ExpectRouted(Send("GET /api/items?q=1&b=%2f HTTP/1.1", "client.example"), "prefix", "/base/items?q=1&b=%2f",
               UpstreamHost());
  // Prefix match is not segment-aware.
  ExpectRouted(Send("GET /apix HTTP/1.1", "client.example"), "prefix", "/base/x", UpstreamHost());
  // Longest prefix wins; strip_path=false, service without path.
  ExpectRouted(Send("GET /api/v2/x HTTP/1.1", "client.example"), "longer", "/api/v2/x", UpstreamHost());
  // Regex path: anchored at the start, "$" honoured; the whole match is stripped.
  ExpectRouted(Send("GET /users/42 HTTP/1.1", "client.example"), "regex", "/base", UpstreamHost());
  EXPECT_EQ(Send("GET /users/42/x HTTP/1.1", "client.example").status, 404);
  EXPECT_EQ(Send("GET /v1/users/42 HTTP/1.1", "client.example").status, 404);
  // Exact host (case-insensitive, port ignored) with preserve_host; wildcard host.
  ExpectRouted(Send("GET /x HTTP/1.1", "Shop.Example.com:8000"), "host-exact", "/x", "Shop.Example.com:8000");
  ExpectRouted(Send("GET /x HTTP/1.1", "a.shop.example.com"), "host-wild", "/x", UpstreamHost());
  EXPECT_EQ(Send("GET /x HTTP/1.1", "example.com").status, 404);  // "*." needs one more label
  // More fields win: header regex (value case-insensitive), then method.
  ExpectRouted(Send("GET /api/a HTTP/1.1", "client.example", "X-Version: V2.1\r\n"), "header", "/a", UpstreamHost());
  ExpectRouted(Send("POST /api/a HTTP/1.1", "client.example", "Content-Length: 0\r\n"), "method", "/a",
               UpstreamHost());
  // Normalisation before matching; the normalised path goes upstream; %2F stays encoded.
  ExpectRouted(Send("GET /%61pi//v3/../items/%2e/%7e?x=%2e HTTP/1.1", "client.example"), "prefix",
               "/base/items/~?x=%2e", UpstreamHost());
  ExpectRouted(Send("GET /api/a%2fb HTTP/1.1", "client.example"), "prefix", "/base/a%2Fb", UpstreamHost());
  ExpectRouted(Send("GET /api/a%20b HTTP/1.1", "client.example"), "prefix", "/base/a%20b", UpstreamHost());
  // https-only routes over plain HTTP.
  HttpResult redirect = Send("GET /secure/a?b=1 HTTP/1.1", "s.test:8000");
  EXPECT_EQ(redirect.status, 308);
  EXPECT_EQ(redirect.headers["location"], "https://s.test/secure/a?b=1");
  EXPECT_EQ(redirect.headers["kong-route-name"], "secure");
  HttpResult upgrade = Send("GET /tls HTTP/1.1", "s.test");
  EXPECT_EQ(upgrade.status, 426);
  EXPECT_EQ(json::parse(upgrade.body)["message"], "Please use HTTPS protocol");
  EXPECT_EQ(upgrade.headers["upgrade"], "TLS/1.2, HTTP/1.1");
  // No service → 503; routes of a disabled service are not routed.
  HttpResult orphan = Send("GET /orphan HTTP/1.1", "client.example");
  EXPECT_EQ(orphan.status, 503);
  EXPECT_EQ(json::parse(orphan.body)["message"], "no Service found with those values");
  HttpResult off = Send("GET /off HTTP/1.1", "client.example");
  EXPECT_EQ(off.status, 404);
  EXPECT_EQ(json::parse(off.body)["message"], "no Route matched with those values");
}

TEST_F(RouterIntegrationTest, AdminApiRejectsRoutesTheRouterCannotServe) {
  struct Bad {
    json body;
    std::string message_part;
  };
  const Bad cases[] = {
      {{{"paths", {"~/a("}}}, "invalid regex: '/a(' (RE2 returned: missing )"},
      {{{"headers", {{"x-a", {"~*[z"}}}}}, "invalid regex: '[z'"},
      {{{"hosts", {"a.*.com"}}}, "invalid wildcard: must be placed at leftmost or rightmost label"},
      {{{"headers", {{"Host", {"a.com"}}}}}, "cannot contain 'host' header"},
      {{{"paths", {"/a//b"}}}, "non-normalized path, consider use '/a/b' instead"},
      {{{"paths", {"a"}}}, "should start with: / (fixed path) or ~ (regex path)"},
      {{{"protocols", {"http"}}, {"snis", {"a.com"}}},
       "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', 'tls_passthrough' or 'wss'"},
      {{{"strip_path", true}}, "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis'"},
  };
  for (const Bad& bad : cases) {
    HttpResult r = cluster_.Admin("POST", "/routes", bad.body);
    EXPECT_EQ(r.status, 400) << bad.body.dump() << " -> " << r.body;
    const json error = json::parse(r.body);
    EXPECT_EQ(error["code"], 2) << r.body;
    EXPECT_TRUE(absl::StrContains(error["message"].get<std::string>(), bad.message_part)) << r.body;
  }
  // https route with only snis is valid (stored; applied once HTTPS listeners exist).
  HttpResult sni = cluster_.Admin("POST", "/routes", {{"protocols", {"https"}}, {"snis", {"a.example.com"}}});
  EXPECT_EQ(sni.status, 201) << sni.body;
  EXPECT_EQ(json::parse(sni.body)["snis"], json({"a.example.com"}));
}

}  // namespace
}  // namespace portico::testing
