// The data plane's plugin chain (precedence, order, what is skipped, compile errors) and each
// plugin's behaviour, on a fake request context.
#include <chrono>
#include <algorithm>
#include <regex>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/config/validate.h"
#include "common/plugins/plugin_schema.h"
#include "data_plane/pipeline/loop_state.h"
#include "data_plane/pipeline/pipeline.h"
#include "data_plane/plugins/chain.h"
#include "data_plane/plugins/ip_restriction/ip_restriction.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/redis_server.h"
#include "tests/unit/data_plane/plugins/fake_context.h"

namespace portico::dp::plugins {
namespace {

using config::v1::Plugin;
using config::v1::Route;
using config::v1::Service;
using nlohmann::json;

using plugin_test::FakeContext;

std::string Id(int n) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "00000000-0000-4000-8000-%012d", n);
  return buf;
}

Plugin MakePlugin(int n, const std::string& name, json config, const std::string& route_id = "",
                  const std::string& service_id = "") {
  Plugin p;
  p.set_id(Id(n));
  p.set_name(name);
  p.set_config(config.dump());
  if (!route_id.empty()) p.set_route_id(route_id);
  if (!service_id.empty()) p.set_service_id(service_id);
  p.add_protocols("http");
  p.add_protocols("https");
  p.set_enabled(true);
  return p;
}

Plugin Terminate(int n, int status, const std::string& route_id = "", const std::string& service_id = "") {
  return MakePlugin(n, "request-termination", {{"status_code", status}}, route_id, service_id);
}

// Runs the chain built from `config` for a request matched to `route` (null: no match).
class ChainRunner {
 public:
  explicit ChainRunner(std::shared_ptr<ConfigSet> config) : config_(std::move(config)) {
    status_ = AddPluginChain(*config_, &pipeline_);
  }
  const absl::Status& status() const { return status_; }
  size_t steps() const { return pipeline_.request_steps().size(); }
  const RequestStep& step(size_t i) const { return *pipeline_.request_steps()[i]; }
  // The status of the local answer, 0 when every step continued.
  int Run(const Route* route, FakeContext& context) {
    if (route != nullptr) context.match = Match{route, nullptr, {}, false};
    for (const RequestStep* step : pipeline_.request_steps()) {
      if (step->OnRequest(context) == StepStatus::kStop) return context.status;
    }
    return 0;
  }
  int Run(const Route* route) {
    FakeContext context;
    return Run(route, context);
  }

 private:
  std::shared_ptr<ConfigSet> config_;
  Pipeline pipeline_;
  absl::Status status_;
};

// Services S (id 1) and T (id 2); routes A, B, C on S and D on T.
std::shared_ptr<ConfigSet> Base() {
  auto config = std::make_shared<ConfigSet>();
  for (int s : {1, 2}) {
    Service service;
    service.set_id(Id(s));
    service.set_enabled(true);
    config->services.push_back(service);
  }
  for (int r : {11, 12, 13, 14}) {
    Route route;
    route.set_id(Id(r));
    route.set_service_id(Id(r == 14 ? 2 : 1));
    config->routes.push_back(route);
  }
  return config;
}

TEST(PluginChainTest, MostSpecificScopeWinsPerPluginName) {
  auto config = Base();
  config->plugins = {Terminate(101, 418), Terminate(102, 419, "", Id(1)), Terminate(103, 420, Id(12)),
                     Terminate(104, 420, Id(11)), Terminate(105, 421, Id(11), Id(1))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  EXPECT_EQ(chain.Run(&config->routes[0]), 421) << "route+service beats route, service and global";
  EXPECT_EQ(chain.Run(&config->routes[1]), 420) << "route beats service and global";
  EXPECT_EQ(chain.Run(&config->routes[2]), 419) << "service beats global";
  EXPECT_EQ(chain.Run(&config->routes[3]), 418) << "global for a route of another service";
}

TEST(PluginChainTest, DifferentPluginsRunInKongPriorityOrder) {
  auto config = Base();
  // request-termination (priority 2) is global; ip-restriction (990) on route A runs first.
  config->plugins = {Terminate(101, 418),
                     MakePlugin(102, "ip-restriction", {{"deny", {"127.0.0.0/8"}}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext context;
  EXPECT_EQ(chain.Run(&config->routes[0], context), 403);
  EXPECT_EQ(context.message, "IP address not allowed: 127.0.0.1");
  EXPECT_EQ(chain.Run(&config->routes[1]), 418) << "route B gets the global plugin only";
}

TEST(PluginChainTest, DisabledAndNonHttpInstancesAreSkipped) {
  auto config = Base();
  Plugin disabled = Terminate(101, 418);
  disabled.set_enabled(false);
  Plugin grpc_only = Terminate(103, 420, Id(12));
  grpc_only.clear_protocols();
  grpc_only.add_protocols("grpc");
  config->plugins = {disabled, grpc_only};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  EXPECT_EQ(chain.steps(), 0u) << "no plugin to run: no step at all";

  auto none = Base();
  ChainRunner empty(none);
  EXPECT_EQ(empty.steps(), 0u);
}

TEST(PluginChainTest, PluginThatCannotCompileFailsTheSnapshotNamingPluginAndField) {
  auto config = Base();
  config->plugins = {MakePlugin(101, "request-termination", {{"status_code", 700}})};
  ChainRunner bad_value(config);
  ASSERT_FALSE(bad_value.status().ok());
  EXPECT_NE(bad_value.status().message().find(Id(101)), std::string::npos) << bad_value.status();
  EXPECT_NE(bad_value.status().message().find("config.status_code: value should be between 100 and 599"),
            std::string::npos)
      << bad_value.status();

  config->plugins = {MakePlugin(102, "no-such-plugin", json::object())};
  ChainRunner unknown(config);
  EXPECT_NE(unknown.status().message().find("(no-such-plugin): this data plane cannot run it"), std::string::npos)
      << unknown.status();

  config->plugins = {MakePlugin(103, "request-termination", json::object())};
  config->plugins[0].set_config("[1,2");
  ChainRunner not_json(config);
  EXPECT_NE(not_json.status().message().find("config: expected a record"), std::string::npos) << not_json.status();
}

TEST(RequestTerminationTest, MessageBodyDefaultsAndTrigger) {
  auto config = Base();
  config->plugins = {MakePlugin(101, "request-termination", json::object(), Id(11)),
                     MakePlugin(102, "request-termination",
                                {{"status_code", 200}, {"body", "<ok/>"}, {"content_type", "text/xml"}}, Id(12)),
                     MakePlugin(103, "request-termination", {{"status_code", 410}, {"trigger", "X-Stop"}}, Id(13))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext a;
  EXPECT_EQ(chain.Run(&config->routes[0], a), 503);
  EXPECT_EQ(a.message, "Service unavailable");
  FakeContext b;
  EXPECT_EQ(chain.Run(&config->routes[1], b), 200);
  EXPECT_EQ(b.body, "<ok/>");
  EXPECT_EQ(b.content_type, "text/xml");

  FakeContext untriggered;
  EXPECT_EQ(chain.Run(&config->routes[2], untriggered), 0);
  FakeContext by_header;
  by_header.request_head.headers.emplace_back("x-stop", "1");
  EXPECT_EQ(chain.Run(&config->routes[2], by_header), 410);
  FakeContext by_query;
  by_query.target.query = "a=1&X-Stop";
  EXPECT_EQ(chain.Run(&config->routes[2], by_query), 410);
}

TEST(RequestTerminationTest, EchoReturnsTheRequestAndTheMatchedEntitiesAsKong) {
  auto config = Base();
  config->routes[0].set_name("orders");
  config->services[0].set_name("shop");
  config->plugins = {MakePlugin(101, "request-termination", {{"status_code", 418}, {"echo", true}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext c;
  c.request_head.method = "PUT";
  c.request_head.headers = {{"X-A", "1"}, {"x-a", "2"}, {"Host", "api.example:8000"}};
  c.host = "api.example:8000";
  c.local_port = 8000;
  c.target.path = "/o/1";
  c.target.query = "k=v%20w&k=x&flag&e=";
  c.target.has_query = true;
  c.match = Match{&config->routes[0], &config->services[0], {}, false};
  ASSERT_EQ(chain.steps(), 1u);
  EXPECT_EQ(chain.step(0).OnRequest(c), StepStatus::kStop);
  ASSERT_TRUE(c.responded);
  EXPECT_EQ(c.status, 418);
  EXPECT_EQ(c.content_type, "application/json");
  json body = json::parse(c.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << c.body;
  EXPECT_EQ(body["message"], nullptr) << "418 has no default message";
  EXPECT_EQ(body["request"]["method"], "PUT");
  EXPECT_EQ(body["request"]["host"], "api.example");
  EXPECT_EQ(body["request"]["port"], 8000);
  EXPECT_EQ(body["request"]["path"], "/o/1");
  EXPECT_EQ(body["request"]["headers"]["x-a"], json({"1", "2"}));
  EXPECT_EQ(body["request"]["query"], json::parse(R"({"k":["v w","x"],"flag":true,"e":""})"));
  EXPECT_EQ(body["matched_route"]["name"], "orders");
  EXPECT_EQ(body["matched_service"]["name"], "shop");
}

TEST(RequestSizeLimitingTest, AChunkedBodyGetsALimitTheExchangeCounts) {
  auto config = Base();
  config->plugins = {MakePlugin(101, "request-size-limiting", {{"allowed_payload_size", 3}, {"size_unit", "bytes"}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext chunked;
  chunked.request_head.chunked = true;
  EXPECT_EQ(chain.Run(&config->routes[0], chunked), 0);
  EXPECT_EQ(chunked.request_body_limit, 3u);
  FakeContext plain;
  EXPECT_EQ(chain.Run(&config->routes[0], plain), 0);
  EXPECT_EQ(plain.request_body_limit, RequestContext::kNoBodyLimit) << "no body: nothing to count";
}

TEST(RequestSizeLimitingTest, ContentLengthOverTheLimitExpectAndRequiredLength) {
  auto config = Base();
  config->plugins = {
      MakePlugin(101, "request-size-limiting", {{"allowed_payload_size", 2}, {"size_unit", "kilobytes"}}, Id(11)),
      MakePlugin(102, "request-size-limiting", {{"require_content_length", true}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext small;
  small.request_head.has_content_length = true;
  small.request_head.content_length = 2048;
  EXPECT_EQ(chain.Run(&config->routes[0], small), 0);
  FakeContext large;
  large.request_head.has_content_length = true;
  large.request_head.content_length = 2049;
  EXPECT_EQ(chain.Run(&config->routes[0], large), 413);
  EXPECT_EQ(large.message, "Request size limit exceeded");
  FakeContext expect = FakeContext();
  expect.request_head.has_content_length = true;
  expect.request_head.content_length = 1 << 20;
  expect.request_head.headers.emplace_back("Expect", "100-continue");
  EXPECT_EQ(chain.Run(&config->routes[0], expect), 417);
  FakeContext chunked;
  chunked.request_head.chunked = true;
  EXPECT_EQ(chain.Run(&config->routes[0], chunked), 0) << "not counted yet (docs/plugins.md)";
  EXPECT_EQ(chain.Run(&config->routes[1], chunked), 411);
  EXPECT_EQ(chunked.message, "A valid Content-Length header is required");
}

TEST(IpRestrictionTest, BlocksMatchIpv4Ipv6AndMappedAddresses) {
  IpBlockSet set;
  ASSERT_TRUE(set.Add("10.1.0.0/16"));
  ASSERT_TRUE(set.Add("192.168.1.7"));
  ASSERT_TRUE(set.Add("2001:db8::/33"));
  ASSERT_TRUE(set.Add("10.200.0.0/9"));
  EXPECT_FALSE(set.Add("10.0.0.0/33"));
  EXPECT_FALSE(set.Add("nope"));
  EXPECT_FALSE(set.Add("::/129"));
  // The validator and the data plane agree on what an address is, NUL bytes included.
  const std::string with_nul("1.2.3.4\0junk", 12);
  EXPECT_FALSE(set.Add(with_nul));
  EXPECT_FALSE(IsValidIpOrCidr(with_nul));
  EXPECT_TRUE(set.Contains("10.1.255.255"));
  EXPECT_FALSE(set.Contains("10.2.0.0"));
  EXPECT_TRUE(set.Contains("10.128.0.1")) << "/9 of 10.200.0.0 is 10.128.0.0-10.255.255.255";
  EXPECT_FALSE(set.Contains("10.127.0.1"));
  EXPECT_TRUE(set.Contains("192.168.1.7"));
  EXPECT_FALSE(set.Contains("192.168.1.8"));
  EXPECT_TRUE(set.Contains("::ffff:10.1.2.3")) << "an IPv4-mapped client counts as IPv4";
  EXPECT_TRUE(set.Contains("2001:db8:7fff::1"));
  EXPECT_FALSE(set.Contains("2001:db8:8000::1"));
  EXPECT_FALSE(set.Contains("garbage"));

  auto config = Base();
  config->plugins = {MakePlugin(101, "ip-restriction", {{"allow", {"10.0.0.0/8"}}, {"status", 401}, {"message", "no"}}),
                     MakePlugin(102, "ip-restriction", {{"allow", {"::1"}}, {"deny", {"::1"}}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext outside;
  EXPECT_EQ(chain.Run(&config->routes[0], outside), 401);
  EXPECT_EQ(outside.message, "no");
  FakeContext inside;
  inside.client_ip = "10.9.9.9";
  EXPECT_EQ(chain.Run(&config->routes[0], inside), 0);
  FakeContext both;
  both.client_ip = "::1";
  EXPECT_EQ(chain.Run(&config->routes[1], both), 403) << "deny wins over allow";
}

}  // namespace
}  // namespace portico::dp::plugins

#include "common/snapshot/snapshot.h"

namespace portico::dp::plugins {
namespace {

// A snapshot as a DP receives it: consumers, and credentials as digests (through the export).
std::shared_ptr<ConfigSet> WithConsumers() {
  auto config = Base();
  config::v1::Consumer alice;
  alice.set_id(Id(501));
  alice.set_username("alice");
  config::v1::Consumer anon;
  anon.set_id(Id(502));
  anon.set_custom_id("guest");
  config->consumers = {alice, anon};
  config::v1::KeyAuthCredential key;
  key.set_id(Id(601));
  key.set_consumer_id(Id(501));
  key.set_key("k-alice");
  config->keyauth_credentials = {key};
  auto exported = std::make_shared<ConfigSet>(ExportableConfig(*config, std::string(16, 'e')));
  EXPECT_EQ(exported->routes.size(), config->routes.size());
  return exported;
}

std::string UpstreamHeader(const FakeContext& c, absl::string_view name) {
  for (const auto& [n, v] : c.upstream_headers) {
    if (n == name) return std::string(v);
  }
  return "<none>";
}

TEST(KeyAuthTest, KeyInHeaderOrQueryIdentifiesTheConsumer) {
  auto config = WithConsumers();
  ASSERT_TRUE(config->keyauth_credentials.empty());
  ASSERT_EQ(config->keyauth_digests.size(), 1u);
  config->plugins = {MakePlugin(101, "key-auth", json::object(), Id(11)),
                     MakePlugin(102, "key-auth", {{"key_names", {"X-Key", "token"}}, {"hide_credentials", true},
                                                  {"realm", "api"}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();

  FakeContext header;
  header.request_head.headers.emplace_back("APIKEY", "k-alice");
  EXPECT_EQ(chain.Run(&config->routes[0], header), 0);
  ASSERT_NE(header.consumer, nullptr);
  EXPECT_EQ(header.consumer->username(), "alice");
  EXPECT_EQ(header.credential_id, Id(601));
  EXPECT_EQ(UpstreamHeader(header, "X-Consumer-ID"), Id(501));
  EXPECT_EQ(UpstreamHeader(header, "X-Consumer-Username"), "alice");
  EXPECT_EQ(UpstreamHeader(header, "X-Credential-Identifier"), Id(601));
  EXPECT_EQ(UpstreamHeader(header, "X-Consumer-Custom-ID"), "<none>");
  EXPECT_EQ(header.upstream_headers_removed,
            (std::vector<absl::string_view>{"x-consumer-custom-id", "x-anonymous-consumer"}))
      << "headers the client may have sent to pass as someone are dropped";

  FakeContext query;
  query.target.query = "a=1&apikey=k%2Dalice";
  query.target.has_query = true;
  EXPECT_EQ(chain.Run(&config->routes[0], query), 0) << "query values are percent-decoded";
  EXPECT_FALSE(query.upstream_query_set) << "hide_credentials is off on route A";

  FakeContext hidden;
  hidden.target.query = "a=1&token=k-alice&b=2";
  hidden.target.has_query = true;
  EXPECT_EQ(chain.Run(&config->routes[1], hidden), 0);
  EXPECT_TRUE(hidden.upstream_query_set);
  EXPECT_EQ(hidden.upstream_query, "a=1&b=2");
  FakeContext hidden_header;
  hidden_header.request_head.headers.emplace_back("x-key", "k-alice");
  EXPECT_EQ(chain.Run(&config->routes[1], hidden_header), 0);
  EXPECT_NE(std::find(hidden_header.upstream_headers_removed.begin(), hidden_header.upstream_headers_removed.end(),
                      "x-key"),
            hidden_header.upstream_headers_removed.end());
}

TEST(KeyAuthTest, MissingDuplicateAndUnknownKeysGetKongs401) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(101, "key-auth", json::object(), Id(11)),
                     MakePlugin(102, "key-auth", {{"realm", "api"}, {"key_in_query", false}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext none;
  EXPECT_EQ(chain.Run(&config->routes[0], none), 401);
  EXPECT_EQ(none.message, "No API key found in request");
  FakeContext twice;
  twice.request_head.headers = {{"apikey", "k-alice"}, {"ApiKey", "other"}};
  EXPECT_EQ(chain.Run(&config->routes[0], twice), 401);
  EXPECT_EQ(twice.message, "Duplicate API key found");
  FakeContext wrong;
  wrong.request_head.headers = {{"apikey", "k-alicf"}};
  EXPECT_EQ(chain.Run(&config->routes[0], wrong), 401);
  EXPECT_EQ(wrong.message, "Unauthorized");
  EXPECT_EQ(wrong.consumer, nullptr);
  FakeContext query_off;
  query_off.target.query = "apikey=k-alice";
  query_off.target.has_query = true;
  EXPECT_EQ(chain.Run(&config->routes[1], query_off), 401) << "key_in_query=false";
  FakeContext empty;
  empty.request_head.headers = {{"apikey", ""}};
  EXPECT_EQ(chain.Run(&config->routes[0], empty), 401);
}

TEST(KeyAuthTest, AnonymousConsumerTakesOverFailuresAndAMissingOneIs500) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(101, "key-auth", {{"anonymous", Id(502)}}, Id(11)),
                     MakePlugin(102, "key-auth", {{"anonymous", "nobody"}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext anonymous;
  EXPECT_EQ(chain.Run(&config->routes[0], anonymous), 0);
  ASSERT_NE(anonymous.consumer, nullptr);
  EXPECT_EQ(anonymous.consumer->custom_id(), "guest");
  EXPECT_EQ(UpstreamHeader(anonymous, "X-Anonymous-Consumer"), "true");
  EXPECT_EQ(UpstreamHeader(anonymous, "X-Consumer-Custom-ID"), "guest");
  EXPECT_EQ(UpstreamHeader(anonymous, "X-Credential-Identifier"), "<none>");
  FakeContext missing;
  EXPECT_EQ(chain.Run(&config->routes[1], missing), 500);
}

}  // namespace
}  // namespace portico::dp::plugins

#include <thread>

#include "data_plane/plugins/rate_limiting/counters.h"

namespace portico::dp::plugins {
namespace {

TEST(WindowCountersTest, CountsPerKeyAndWindowAndRestartsWithANewWindow) {
  WindowCounters counters(4);
  EXPECT_EQ(counters.Peek(0x100, 7), 0u);
  EXPECT_EQ(counters.Add(0x100, 7), 1u);
  EXPECT_EQ(counters.Add(0x100, 7), 2u);
  EXPECT_EQ(counters.Add(0x200, 7), 1u) << "another key";
  EXPECT_EQ(counters.Peek(0x100, 7), 2u);
  EXPECT_EQ(counters.Peek(0x100, 8), 0u) << "a new window starts at zero";
  EXPECT_EQ(counters.Add(0x100, 8), 1u);
}

TEST(WindowCountersTest, WorkersCountTogetherWithoutLosingIncrements) {
  WindowCounters counters;
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&counters] {
      for (int i = 0; i < 10000; ++i) counters.Add(0xabc0, 1);
    });
  }
  for (std::thread& w : workers) w.join();
  EXPECT_EQ(counters.Peek(0xabc0, 1), 40000u);
}

TEST(WindowCountersTest, FullTableFailsOpenAndExpiredSlotsAreReused) {
  WindowCounters counters(3);  // 8 slots: every probe sequence sees all of them
  for (uint64_t k = 1; k <= 8; ++k) ASSERT_TRUE(counters.Add(k << 3, 5).has_value()) << k;
  EXPECT_FALSE(counters.Add(uint64_t{9} << 3, 5).has_value()) << "no room: not counted";
  EXPECT_EQ(counters.Add(uint64_t{9} << 3, 6), 1u) << "a later window reuses an expired slot";
  EXPECT_EQ(&ProcessCounters(), &ProcessCounters()) << "one table for every instance and snapshot";
  EXPECT_EQ(ProcessCounters().slots(), size_t{1} << 18);
}

// Day and year windows: a test run never straddles their boundary in practice (a minute window
// could end between two requests of a test).
TEST(RateLimitingTest, LimitsPerIdentifierWithKongsHeadersAnd429) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(201, "rate-limiting", {{"day", 2}, {"year", 10}}, Id(11)),
                     MakePlugin(202, "rate-limiting", {{"day", 1}, {"limit_by", "header"}, {"header_name", "X-Tenant"},
                                                       {"hide_client_headers", true}, {"error_code", 503},
                                                       {"error_message", "slow down"}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  auto header = [](const FakeContext& c, absl::string_view name) {
    for (const auto& [n, v] : c.response_headers.items()) {
      if (n == name) return v;
    }
    return std::string("<none>");
  };
  FakeContext first, second, third;
  EXPECT_EQ(chain.Run(&config->routes[0], first), 0);
  EXPECT_EQ(header(first, "X-RateLimit-Limit-Day"), "2");
  EXPECT_EQ(header(first, "X-RateLimit-Remaining-Day"), "1");
  EXPECT_EQ(header(first, "X-RateLimit-Remaining-Year"), "9");
  EXPECT_EQ(header(first, "RateLimit-Remaining"), "1");
  EXPECT_EQ(chain.Run(&config->routes[0], second), 0);
  EXPECT_EQ(chain.Run(&config->routes[0], third), 429);
  EXPECT_EQ(third.message, "API rate limit exceeded");
  EXPECT_EQ(header(third, "RateLimit-Remaining"), "0");
  EXPECT_NE(header(third, "Retry-After"), "<none>");
  EXPECT_EQ(header(third, "X-RateLimit-Remaining-Year"), "8") << "the refused request is not counted";
  FakeContext other_client;
  other_client.client_ip = "10.0.0.9";
  EXPECT_EQ(chain.Run(&config->routes[0], other_client), 0) << "limit_by consumer falls back to the client address";

  FakeContext tenant_a, tenant_a_again, tenant_b;
  tenant_a.request_head.headers = {{"x-tenant", "a"}};
  tenant_a_again.request_head.headers = {{"X-Tenant", "a"}};
  tenant_b.request_head.headers = {{"x-tenant", "b"}};
  EXPECT_EQ(chain.Run(&config->routes[1], tenant_a), 0);
  EXPECT_TRUE(tenant_a.response_headers.empty()) << "hide_client_headers";
  EXPECT_EQ(chain.Run(&config->routes[1], tenant_a_again), 503);
  EXPECT_EQ(tenant_a_again.message, "slow down");
  EXPECT_EQ(chain.Run(&config->routes[1], tenant_b), 0);
}

// Kong keys the counters by the plugin's scope: a service-scoped instance counts a client across
// every route of the service (not per route), and another service's routes are not counted.
TEST(RateLimitingTest, AServiceInstanceCountsAcrossTheRoutesOfItsService) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(203, "rate-limiting", {{"day", 2}, {"limit_by", "ip"}}, "", Id(1))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext on_a, on_b, on_c, on_d;
  for (FakeContext* c : {&on_a, &on_b, &on_c, &on_d}) c->client_ip = "10.9.9.9";
  EXPECT_EQ(chain.Run(&config->routes[0], on_a), 0);
  EXPECT_EQ(chain.Run(&config->routes[1], on_b), 0);
  EXPECT_EQ(chain.Run(&config->routes[2], on_c), 429) << "routes A, B and C share service S's counter";
  EXPECT_EQ(chain.Run(&config->routes[3], on_d), 0) << "route D is on service T: no plugin";
}

TEST(RateLimitingTest, KeyAuthRunsFirstSoTheLimitIsPerConsumer) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(301, "rate-limiting", {{"day", 1}}, Id(13)),
                     MakePlugin(102, "key-auth", {{"anonymous", Id(502)}}, Id(13))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext alice;
  alice.request_head.headers = {{"apikey", "k-alice"}};
  EXPECT_EQ(chain.Run(&config->routes[2], alice), 0);
  FakeContext anonymous;
  EXPECT_EQ(chain.Run(&config->routes[2], anonymous), 0) << "another consumer, same address";
  FakeContext alice_again;
  alice_again.request_head.headers = {{"apikey", "k-alice"}};
  EXPECT_EQ(chain.Run(&config->routes[2], alice_again), 429);
}

}  // namespace
}  // namespace portico::dp::plugins

namespace portico::dp::plugins {
namespace {

Plugin ForConsumer(Plugin p, const std::string& consumer_id) {
  p.set_consumer_id(consumer_id);
  return p;
}

TEST(PluginChainTest, ConsumerScopesApplyToTheConsumerAnAuthPluginIdentified) {
  auto config = WithConsumers();
  const std::string alice = Id(501), anonymous = Id(502);
  config->plugins = {
      MakePlugin(101, "key-auth", {{"anonymous", anonymous}}, Id(11)),
      MakePlugin(102, "key-auth", {{"anonymous", anonymous}}, "", Id(2)),  // service T (route D)
      Terminate(103, 418),                                       // global
      ForConsumer(Terminate(104, 430), alice),                   // consumer
      ForConsumer(Terminate(105, 431, Id(11)), alice),           // route A + consumer
      ForConsumer(Terminate(106, 432, "", Id(1)), anonymous),    // service S + consumer
  };
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext alice_on_a;
  alice_on_a.request_head.headers = {{"apikey", "k-alice"}};
  EXPECT_EQ(chain.Run(&config->routes[0], alice_on_a), 431) << "route+consumer beats consumer";
  FakeContext anonymous_on_a;
  EXPECT_EQ(chain.Run(&config->routes[0], anonymous_on_a), 432) << "service+consumer for the anonymous consumer";
  FakeContext nobody_on_b;
  EXPECT_EQ(chain.Run(&config->routes[1], nobody_on_b), 418) << "no auth plugin on B: no consumer, global";
  FakeContext alice_on_d;
  alice_on_d.request_head.headers = {{"apikey", "k-alice"}};
  EXPECT_EQ(chain.Run(&config->routes[3], alice_on_d), 430) << "consumer scope beats global";
  FakeContext anonymous_on_d;
  EXPECT_EQ(chain.Run(&config->routes[3], anonymous_on_d), 418) << "S+anonymous does not apply to T";
}

}  // namespace
}  // namespace portico::dp::plugins

namespace portico::dp::plugins {
namespace {

TEST(CorrelationIdTest, GeneratesKeepsAndEchoesTheRequestId) {
  auto config = Base();
  config->plugins = {MakePlugin(701, "correlation-id", {{"echo_downstream", true}}, Id(11)),
                     MakePlugin(702, "correlation-id", {{"generator", "uuid"}, {"header_name", "X-Trace"}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext first, second;
  EXPECT_EQ(chain.Run(&config->routes[0], first), 0);
  EXPECT_EQ(chain.Run(&config->routes[0], second), 0);
  ASSERT_EQ(first.upstream_headers.size(), 1u);
  EXPECT_EQ(first.upstream_headers[0].first, "Kong-Request-ID");
  const std::string a = std::string(first.upstream_headers[0].second), b = first.request_id;
  EXPECT_EQ(a, b);
  ASSERT_GE(a.size(), 38u);  // "<36-character uuid>#<n>"
  EXPECT_EQ(a.substr(0, 36), second.request_id.substr(0, 36)) << "uuid#counter: one UUID per worker";
  EXPECT_NE(a, second.request_id) << "and a counter";
  EXPECT_EQ(a[36], '#');
  ASSERT_EQ(first.response_headers.size(), 1u) << "echo_downstream";
  EXPECT_EQ(first.response_headers.items()[0].second, a);

  FakeContext uuid;
  EXPECT_EQ(chain.Run(&config->routes[1], uuid), 0);
  EXPECT_TRUE(std::regex_match(uuid.request_id,
                               std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << uuid.request_id;
  EXPECT_TRUE(uuid.response_headers.empty());
  FakeContext given;
  given.request_head.headers = {{"x-trace", "abc"}};
  EXPECT_EQ(chain.Run(&config->routes[1], given), 0);
  EXPECT_EQ(given.request_id, "abc");
  EXPECT_TRUE(given.upstream_headers.empty()) << "the client's own id goes upstream as sent";
  FakeContext empty;
  empty.request_head.headers = {{"x-trace", ""}};
  EXPECT_EQ(chain.Run(&config->routes[1], empty), 0);
  EXPECT_EQ(empty.request_id.size(), 36u) << "an empty id counts as absent (Kong)";
  EXPECT_EQ(first.response_headers_removed, (std::vector<absl::string_view>{"kong-request-id"}))
      << "the echoed id replaces one the upstream sends";
}

}  // namespace
}  // namespace portico::dp::plugins

#include "absl/strings/escaping.h"
#include "common/config/basic_auth_password.h"

namespace portico::dp::plugins {
namespace {

// Alice (credentials: key "k-alice", basic-auth "al" / "s3cret"; groups admins, dev), Bob (key
// "k-bob"; group dev), Carol (key "k-carol"; no group).
std::shared_ptr<ConfigSet> WithAuthConsumers() {
  auto config = Base();
  const char* names[] = {"alice", "bob", "carol"};
  for (int i = 0; i < 3; ++i) {
    config::v1::Consumer c;
    c.set_id(Id(501 + i));
    c.set_username(names[i]);
    config->consumers.push_back(c);
    config::v1::KeyAuthCredential key;
    key.set_id(Id(601 + i));
    key.set_consumer_id(Id(501 + i));
    key.set_key(std::string("k-") + names[i]);
    config->keyauth_credentials.push_back(key);
  }
  config::v1::BasicAuthCredential basic;
  basic.set_id(Id(701));
  basic.set_consumer_id(Id(501));
  basic.set_username("al");
  basic.set_password(HashBasicAuthPassword("s3cret"));
  config->basicauth_credentials = {basic};
  int n = 801;
  for (auto [consumer, group] : {std::pair{501, "admins"}, {501, "dev"}, {502, "dev"}}) {
    config::v1::Acl acl;
    acl.set_id(Id(n));
    acl.set_created_at(n++);
    acl.set_consumer_id(Id(consumer));
    acl.set_group(group);
    config->acls.push_back(acl);
  }
  ConfigSet credentials_only;  // (Base()'s services are skeletons)
  credentials_only.consumers = config->consumers;
  credentials_only.keyauth_credentials = config->keyauth_credentials;
  credentials_only.basicauth_credentials = config->basicauth_credentials;
  credentials_only.acls = config->acls;
  EXPECT_TRUE(ValidateConfigSet(credentials_only).ok()) << ValidateConfigSet(credentials_only);
  return std::make_shared<ConfigSet>(ExportableConfig(*config, std::string(16, 'e')));
}

std::string Basic(absl::string_view user_password) { return "Basic " + absl::Base64Escape(user_password); }

std::string ResponseHeader(const FakeContext& c, absl::string_view name) {
  for (const auto& [n, v] : c.headers) {
    if (n == name) return v;
  }
  return "<none>";
}

TEST(BasicAuthTest, AuthorizationOrProxyAuthorizationIdentifiesTheConsumer) {
  auto config = WithAuthConsumers();
  ASSERT_EQ(config->basicauth_credentials.size(), 1u);
  EXPECT_TRUE(IsHashedBasicAuthPassword(config->basicauth_credentials[0].password()))
      << "data planes receive the hash, never the password";
  config->plugins = {MakePlugin(101, "basic-auth", json::object(), Id(11)),
                     MakePlugin(102, "basic-auth", {{"hide_credentials", true}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();

  FakeContext ok;
  ok.request_head.headers.emplace_back("Authorization", Basic("al:s3cret"));
  EXPECT_EQ(chain.Run(&config->routes[0], ok), 0);
  ASSERT_NE(ok.consumer, nullptr);
  EXPECT_EQ(ok.consumer->username(), "alice");
  EXPECT_EQ(ok.credential_id, Id(701));
  EXPECT_EQ(UpstreamHeader(ok, "X-Consumer-Username"), "alice");
  EXPECT_EQ(UpstreamHeader(ok, "X-Credential-Identifier"), "al") << "Kong sends the basic-auth username";
  EXPECT_TRUE(ok.upstream_headers_removed.end() ==
              std::find(ok.upstream_headers_removed.begin(), ok.upstream_headers_removed.end(), "authorization"));

  FakeContext lower;
  lower.request_head.headers.emplace_back("authorization", "  basic " + absl::Base64Escape("al:s3cret"));
  EXPECT_EQ(chain.Run(&config->routes[0], lower), 0) << "Kong accepts 'basic' and leading spaces";

  FakeContext colon_in_password;
  colon_in_password.request_head.headers.emplace_back("Authorization", Basic("al:s3cret:"));
  EXPECT_EQ(chain.Run(&config->routes[0], colon_in_password), 401) << "the password is everything after the first ':'";

  FakeContext proxy;
  proxy.request_head.headers = {{"Proxy-Authorization", Basic("al:s3cret")}, {"Authorization", "Bearer x"}};
  EXPECT_EQ(chain.Run(&config->routes[1], proxy), 0);
  EXPECT_EQ(proxy.upstream_headers_removed.front(), "proxy-authorization") << "hide_credentials";
  EXPECT_TRUE(proxy.upstream_headers_removed.end() ==
              std::find(proxy.upstream_headers_removed.begin(), proxy.upstream_headers_removed.end(), "authorization"))
      << "Authorization was not what authenticated: it stays";
}

TEST(BasicAuthTest, MissingMalformedAndWrongCredentialsGetKongs401) {
  auto config = WithAuthConsumers();
  config->plugins = {MakePlugin(101, "basic-auth", json::object(), Id(11)),
                     MakePlugin(102, "basic-auth", {{"realm", "api"}, {"anonymous", "carol"}}, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  for (const std::string& value : {std::string("<absent>"), Basic("al:wrong"), Basic("al:"), Basic("nobody:s3cret"),
                                   Basic(":s3cret"), Basic("al"), std::string("Basic !!!"), std::string("Basic"),
                                   std::string("Bearer abc"), std::string(""), Basic(std::string("al:s3cret\0", 10))}) {
    FakeContext c;
    if (value != "<absent>") c.request_head.headers.emplace_back("Authorization", value);
    EXPECT_EQ(chain.Run(&config->routes[0], c), 401) << value;
    EXPECT_EQ(c.message, "Unauthorized") << value;
    EXPECT_EQ(ResponseHeader(c, "WWW-Authenticate"), "Basic realm=\"service\"") << value;
    EXPECT_EQ(c.consumer, nullptr);
  }
  FakeContext anonymous;
  anonymous.request_head.headers.emplace_back("Authorization", Basic("al:wrong"));
  EXPECT_EQ(chain.Run(&config->routes[1], anonymous), 0);
  ASSERT_NE(anonymous.consumer, nullptr);
  EXPECT_EQ(anonymous.consumer->username(), "carol");
  EXPECT_EQ(UpstreamHeader(anonymous, "X-Anonymous-Consumer"), "true");
}

TEST(AclTest, AllowAndDenyListsDecideFromTheIdentifiedConsumersGroups) {
  auto config = WithAuthConsumers();
  config->plugins = {MakePlugin(101, "key-auth", {{"anonymous", "carol"}}), MakePlugin(102, "acl", {{"allow", {"admins"}}}, Id(11)),
                     MakePlugin(103, "acl", {{"deny", {"dev"}}}, Id(12)),
                     MakePlugin(104, "acl", {{"allow", {"dev"}}, {"hide_groups_header", true}}, Id(13))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  auto run = [&](int route, const char* key, FakeContext& c) {
    c.request_head.headers.emplace_back("X-Consumer-Groups", "admins");  // spoofed
    if (key != nullptr) c.request_head.headers.emplace_back("apikey", key);
    return chain.Run(&config->routes[route], c);
  };
  FakeContext alice, bob, carol, anonymous;
  EXPECT_EQ(run(0, "k-alice", alice), 0);
  EXPECT_EQ(UpstreamHeader(alice, "X-Consumer-Groups"), "admins, dev") << "groups in creation order";
  EXPECT_NE(std::find(alice.upstream_headers_removed.begin(), alice.upstream_headers_removed.end(), "x-consumer-groups"),
            alice.upstream_headers_removed.end());
  EXPECT_EQ(run(0, "k-bob", bob), 403);
  EXPECT_EQ(bob.message, "You cannot consume this service");
  EXPECT_EQ(run(0, "k-carol", carol), 403) << "a consumer without groups under allow";
  EXPECT_EQ(run(0, nullptr, anonymous), 401) << "the anonymous consumer has no credential";
  EXPECT_EQ(anonymous.message, "Unauthorized");

  FakeContext deny_alice, deny_carol;
  EXPECT_EQ(run(1, "k-alice", deny_alice), 403);
  EXPECT_EQ(run(1, "k-carol", deny_carol), 0);
  EXPECT_EQ(UpstreamHeader(deny_carol, "X-Consumer-Groups"), "<none>");
  EXPECT_NE(std::find(deny_carol.upstream_headers_removed.begin(), deny_carol.upstream_headers_removed.end(),
                      "x-consumer-groups"),
            deny_carol.upstream_headers_removed.end())
      << "the spoofed header never reaches the upstream";

  FakeContext hidden;
  EXPECT_EQ(run(2, "k-bob", hidden), 0);
  EXPECT_EQ(UpstreamHeader(hidden, "X-Consumer-Groups"), "<none>") << "hide_groups_header";
}

TEST(AclTest, WithoutAnAuthPluginEveryRequestIs401) {
  auto config = WithAuthConsumers();
  config->plugins = {MakePlugin(102, "acl", {{"deny", {"dev"}}})};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext c;
  EXPECT_EQ(chain.Run(&config->routes[0], c), 401);
}

}  // namespace
}  // namespace portico::dp::plugins
#include <cstdlib>
#include <new>

#include "absl/strings/str_cat.h"
#include "data_plane/pipeline/upstream_request.h"
#include "tests/common/allocation_counter.h"  // replaces operator new: one per test binary

namespace portico::dp::plugins {
namespace {

// rate-limiting with policy redis, on a real redis-server and a real uv loop: the chain suspends
// while Redis answers and goes on with the next plugin (request-termination, priority 2) after it.
class RedisRateLimitingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ASSERT_TRUE(redis_.Start()) << redis_.error();
  }
  void TearDown() override {
    CloseLoopStates(&loop_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "every Redis handle is closed when the loop's states close";
  }

  Plugin Limit(int n, bool fault_tolerant, const std::string& route_id) {
    return MakePlugin(n, "rate-limiting",
                      {{"day", 2}, {"policy", "redis"}, {"fault_tolerant", fault_tolerant},
                       {"redis", {{"host", "127.0.0.1"}, {"port", redis_.port()}, {"timeout", 1000}}}},
                      route_id);
  }

  // Runs the chain for one request on the loop until it ends: the status it answered with (503
  // from request-termination when every plugin let it through), or 0 when it did not end in 5 s.
  int Request(ChainRunner& chain, const Route* route, FakeContext& context) {
    context.loop = &loop_;
    context.match = Match{route, nullptr, {}, false};
    const StepStatus first = chain.step(0).OnRequest(context);
    if (first != StepStatus::kSuspend) return context.status;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (context.resumes == 0 && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_ONCE);
    return context.resumes == 1 ? context.status : 0;
  }

  static std::string Header(const FakeContext& c, absl::string_view name) {
    for (const auto& [n, v] : c.response_headers.items()) {
      if (n == name) return v;
    }
    return "<none>";
  }

  uv_loop_t loop_;
  portico::testing::RedisServer redis_;
};

TEST(RateLimitingTest, RedisConfigTheDataPlaneCannotRunFailsTheSnapshotNamingTheField) {
  auto config = Base();
  config->plugins = {MakePlugin(631, "rate-limiting",
                                {{"day", 2}, {"policy", "redis"}, {"redis", {{"host", "10.0.0.1"}, {"ssl", true}}}})};
  ChainRunner chain(config);
  ASSERT_FALSE(chain.status().ok());
  EXPECT_NE(chain.status().message().find("(rate-limiting)"), absl::string_view::npos) << chain.status();
  EXPECT_NE(chain.status().message().find("config.redis.ssl: TLS to Redis is not supported"), absl::string_view::npos)
      << chain.status();
}

TEST_F(RedisRateLimitingTest, CountsInRedisWithKongsKeysAndTheChainGoesOnAfterTheReply) {
  auto config = Base();
  config->plugins = {Limit(601, true, Id(11)), Terminate(602, 503, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext first, second, third;
  EXPECT_EQ(Request(chain, &config->routes[0], first), 503) << "request-termination ran after the reply";
  EXPECT_EQ(first.resumed_with, StepStatus::kStop);
  EXPECT_EQ(Header(first, "X-RateLimit-Remaining-Day"), "1");
  EXPECT_EQ(Request(chain, &config->routes[0], second), 503);
  EXPECT_EQ(Header(second, "X-RateLimit-Remaining-Day"), "0");
  EXPECT_EQ(Request(chain, &config->routes[0], third), 429);
  EXPECT_EQ(third.message, "API rate limit exceeded");
  EXPECT_NE(Header(third, "Retry-After"), "<none>");
  // Kong's key: ratelimit:<route>:<service>:<identifier>:<window start ms>:<period>, the plugin's
  // scope (route 11, no service), with an expiry.
  const std::string keys = redis_.Command("KEYS ratelimit:*");
  const std::string prefix = "ratelimit:" + Id(11) + ":00000000-0000-0000-0000-000000000000:127.0.0.1:";
  EXPECT_NE(keys.find(prefix), std::string::npos) << keys;
  const size_t at = keys.find(prefix);
  const std::string key = keys.substr(at, keys.find("\r\n", at) - at);
  EXPECT_NE(key.find(":day"), std::string::npos) << key;
  EXPECT_EQ(redis_.Command("GET " + key), "$1\r\n2\r\n") << "the refused request is not counted";
  const std::string ttl = redis_.Command("TTL " + key);
  EXPECT_TRUE(ttl.size() > 1 && ttl[0] == ':' && ttl[1] != '-') << ttl;
}

TEST_F(RedisRateLimitingTest, CancelledRequestIsNeverResumed) {
  auto config = Base();
  config->plugins = {Limit(611, true, Id(11)), Terminate(612, 503, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext gone, next;
  gone.loop = &loop_;
  gone.match = Match{&config->routes[0], nullptr, {}, false};
  ASSERT_EQ(chain.step(0).OnRequest(gone), StepStatus::kSuspend);
  chain.step(0).OnCancel(gone);  // the client went away: the chain tells the plugin
  // Replies come in order: once the next request has its answer, the first one's came too.
  EXPECT_EQ(Request(chain, &config->routes[0], next), 503);
  EXPECT_EQ(gone.resumes, 0);
  EXPECT_FALSE(gone.responded);
}

TEST_F(RedisRateLimitingTest, RedisDownFaultTolerantGoesOnElse500ThenLimitingResumes) {
  auto config = Base();
  config->plugins = {Limit(621, true, Id(11)), Terminate(622, 503, Id(11)), Limit(623, false, Id(12)),
                     Terminate(624, 503, Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext warm;
  ASSERT_EQ(Request(chain, &config->routes[0], warm), 503);
  ASSERT_EQ(Header(warm, "X-RateLimit-Remaining-Day"), "1");

  redis_.Kill();
  for (int i = 0; i < 3; ++i) {  // the connection breaks, then refuses at once while down
    FakeContext tolerant, strict;
    EXPECT_EQ(Request(chain, &config->routes[0], tolerant), 503) << i;
    EXPECT_EQ(Header(tolerant, "X-RateLimit-Remaining-Day"), "<none>") << i;
    EXPECT_EQ(Request(chain, &config->routes[1], strict), 500) << i;
    EXPECT_EQ(strict.message, "An unexpected error occurred");
  }

  ASSERT_TRUE(redis_.Start()) << redis_.error();  // same port, empty
  std::string remaining = "<none>";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (remaining == "<none>" && std::chrono::steady_clock::now() < deadline) {
    FakeContext again;
    EXPECT_EQ(Request(chain, &config->routes[0], again), 503);
    remaining = Header(again, "X-RateLimit-Remaining-Day");
    if (remaining == "<none>") {  // (the reconnect backoff)
      uv_sleep(50);
      uv_run(&loop_, UV_RUN_NOWAIT);
    }
  }
  EXPECT_EQ(remaining, "1") << "counting again from the restarted (empty) Redis";
}

}  // namespace
}  // namespace portico::dp::plugins

namespace portico::dp::plugins {
namespace {

std::vector<std::string> Sent(const FakeContext& c, const MessageHead& upstream) {
  // What the client would see: the upstream's headers not dropped, then the added ones.
  std::vector<std::string> out;
  for (const auto& [name, value] : upstream.headers) {
    bool dropped = false;
    for (absl::string_view d : c.response_headers_removed) dropped |= absl::EqualsIgnoreCase(name, d);
    if (!dropped) out.push_back(name + ": " + value);
  }
  for (const auto& [name, value] : c.response_headers.items()) out.push_back(name + ": " + value);
  return out;
}

TEST(ResponseTransformerTest, EditsUpstreamAndPluginHeadersInKongsOrder) {
  auto config = Base();
  config->plugins = {MakePlugin(101, "response-transformer",
                                {{"remove", {{"headers", {"x-remove", "X-Added-Early"}}}},
                                 {"rename", {{"headers", {"X-Old:X-New", "x-missing:x-never"}}}},
                                 {"replace", {{"headers", {"content-type:text/plain", "x-absent:1"}}}},
                                 {"add", {{"headers", {"X-Add:a", "X-New:not-added"}}}},
                                 {"append", {{"headers", {"X-Multi:2", "X-Colons::v"}}}}},
                                Id(11))};
  Pipeline pipeline;
  ASSERT_TRUE(AddPluginChain(*config, &pipeline).ok());
  ASSERT_EQ(pipeline.response_head_steps().size(), 1u) << "a plugin with a header filter adds a response step";
  MessageHead upstream;
  upstream.status = 200;
  upstream.headers = {{"Content-Type", "application/json"}, {"X-Remove", "r"}, {"X-Old", "o1"},
                      {"X-Old", "o2"}, {"X-Multi", "1"}, {"X-Keep", "k"}};
  FakeContext c;
  c.match = Match{&config->routes[0], nullptr, {}, false};
  c.response_headers.Add("X-Added-Early", "by another plugin");
  c.response_head = &upstream;
  for (const ResponseHeadStep* step : pipeline.response_head_steps()) step->OnResponseHead(c, 200);
  EXPECT_EQ(Sent(c, upstream), (std::vector<std::string>{"X-Multi: 1", "X-Keep: k", "X-New: o1", "X-New: o2",
                                                        "content-type: text/plain", "X-Add: a", "X-Multi: 2",
                                                        "X-Colons: v"}))
      << "the colons after a name are skipped, as Kong splits entries";

  FakeContext other_route;  // route B has no plugin: nothing changes
  other_route.match = Match{&config->routes[1], nullptr, {}, false};
  other_route.response_head = &upstream;
  for (const ResponseHeadStep* step : pipeline.response_head_steps()) step->OnResponseHead(other_route, 200);
  EXPECT_TRUE(other_route.response_headers_removed.empty());
  EXPECT_TRUE(other_route.response_headers.empty());

  FakeContext local;  // a local response: only the headers plugins added are there
  local.match = Match{&config->routes[0], nullptr, {}, false};
  for (const ResponseHeadStep* step : pipeline.response_head_steps()) step->OnResponseHead(local, 401);
  std::vector<std::string> added;
  for (const auto& [name, value] : local.response_headers.items()) added.push_back(name + ": " + value);
  EXPECT_EQ(added, (std::vector<std::string>{"X-Add: a", "X-New: not-added", "X-Multi: 2", "X-Colons: v"}));
}

TEST(ResponseTransformerTest, SchemaChecksJsonEntriesTypesAndBadItems) {
  const portico::plugins::PluginSchema* schema = portico::plugins::FindPluginSchema("response-transformer");
  ASSERT_NE(schema, nullptr);
  FieldErrors errors;
  portico::plugins::NormalizePluginConfig(*schema,
                                 {{"add", {{"json", {"a:1", "no-colon", ":x"}}, {"json_types", {"number", "int"}},
                                           {"headers", {"no-colon"}}}},
                                  {"rename", {{"headers", {"a:b c"}}}},
                                  {"remove", "x"}},
                                 &errors);
  EXPECT_FALSE(errors.Has("config.add.json.1")) << errors.KongMessage();
  EXPECT_TRUE(errors.Has("config.add.json.2")) << errors.KongMessage();
  EXPECT_TRUE(errors.Has("config.add.json.3")) << errors.KongMessage();
  EXPECT_FALSE(errors.Has("config.add.json_types.1")) << errors.KongMessage();
  EXPECT_TRUE(errors.Has("config.add.json_types.2")) << errors.KongMessage();
  EXPECT_NE(errors.KongMessage().find("add.json_types.2: expected one of: boolean, number, string"), std::string::npos)
      << errors.KongMessage();
  EXPECT_TRUE(errors.Has("config.add.headers.1")) << errors.KongMessage();
  EXPECT_TRUE(errors.Has("config.rename.headers.1")) << errors.KongMessage();
  EXPECT_TRUE(errors.Has("config.remove")) << errors.KongMessage();
  FieldErrors none;
  json defaults = portico::plugins::NormalizePluginConfig(*schema, json::object(), &none);
  EXPECT_TRUE(none.empty()) << none.KongMessage();
  EXPECT_EQ(defaults["append"], json::parse(R"({"headers":[],"json":[],"json_types":[]})"));
  EXPECT_EQ(defaults["remove"], json::parse(R"({"headers":[],"json":[]})"));
  FieldErrors fine;
  json kept = portico::plugins::NormalizePluginConfig(
      *schema, {{"add", {{"json", {"a:", "b:c:d"}}, {"json_types", {"string", "boolean"}}}}}, &fine);
  EXPECT_TRUE(fine.empty()) << fine.KongMessage() << ": Kong's ^[^:]+:.*$ allows an empty value";
  EXPECT_EQ(kept["add"]["json_types"], json({"string", "boolean"}));
}

// The response headers a step added, "Name: value" each, in order.
std::vector<std::string> ResponseHeaders(const FakeContext& c) {
  std::vector<std::string> out;
  for (const auto& [name, value] : c.response_headers.items()) out.push_back(absl::StrCat(name, ": ", value));
  return out;
}

// A chain with one cors instance per config, on routes A, B, C, D in order.
ChainRunner* CorsChain(std::shared_ptr<ConfigSet> config, const std::vector<json>& configs) {
  for (size_t i = 0; i < configs.size(); ++i) {
    config->plugins.push_back(MakePlugin(801 + static_cast<int>(i), "cors", configs[i], Id(11 + static_cast<int>(i))));
  }
  return new ChainRunner(std::move(config));
}

FakeContext Request(const std::string& method, std::vector<std::pair<std::string, std::string>> headers) {
  FakeContext c;
  c.request_head.method = method;
  c.request_head.headers = std::move(headers);
  return c;
}

TEST(CorsTest, PreflightIsAnsweredWithKongsHeaders) {
  auto config = Base();
  std::unique_ptr<ChainRunner> chain(CorsChain(
      config, {json::object(),
               {{"origins", {"https://a.example"}}, {"headers", {"X-One", "X-Two"}}, {"methods", {"GET", "POST"}},
                {"max_age", 600}, {"credentials", true}, {"private_network", true}},
               {{"preflight_continue", true}}}));
  ASSERT_TRUE(chain->status().ok()) << chain->status();

  FakeContext all = Request("OPTIONS", {{"Origin", "https://x.example"}, {"Access-Control-Request-Method", "PUT"},
                                        {"Access-Control-Request-Headers", "X-Asked"}});
  EXPECT_EQ(chain->Run(&config->routes[0], all), 200);
  EXPECT_EQ(all.message, "") << "no body";
  EXPECT_EQ(ResponseHeaders(all),
            (std::vector<std::string>{
                "Access-Control-Allow-Origin: *", "Access-Control-Allow-Headers: X-Asked",
                "Access-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"}));

  FakeContext one = Request("OPTIONS", {{"Origin", "https://x.example"}, {"Access-Control-Request-Method", "PUT"},
                                        {"Access-Control-Request-Private-Network", "true"}});
  EXPECT_EQ(chain->Run(&config->routes[1], one), 200);
  EXPECT_EQ(ResponseHeaders(one),
            (std::vector<std::string>{"Vary: Origin", "Access-Control-Allow-Origin: https://a.example",
                                      "Access-Control-Allow-Credentials: true",
                                      "Access-Control-Allow-Headers: X-One,X-Two",
                                      "Access-Control-Allow-Methods: GET,POST", "Access-Control-Max-Age: 600",
                                      "Access-Control-Allow-Private-Network: true"}))
      << "a single plain origin is sent as configured, whatever the Origin";

  FakeContext passed = Request("OPTIONS", {{"Origin", "https://x.example"}, {"Access-Control-Request-Method", "PUT"}});
  EXPECT_EQ(chain->Run(&config->routes[2], passed), 0) << "preflight_continue: the upstream answers";
  EXPECT_TRUE(passed.response_headers.empty());

  FakeContext not_preflight = Request("OPTIONS", {{"Origin", "https://x.example"}});
  EXPECT_EQ(chain->Run(&config->routes[0], not_preflight), 0) << "no Access-Control-Request-Method: proxied";
  EXPECT_EQ(ResponseHeaders(not_preflight), std::vector<std::string>{"Access-Control-Allow-Origin: *"});
}

TEST(CorsTest, OriginsPlainRegexAndCredentialsFollowKong) {
  auto config = Base();
  std::unique_ptr<ChainRunner> chain(CorsChain(
      config, {{{"origins", {"http://a.example", "(.*\\.)?b\\.example", "https://c\\.example:\\d+"}},
                {"exposed_headers", {"X-Total", "X-Page"}}},
               {{"credentials", true}},
               {{"origins", {"https://a.example"}}, {"allow_origin_absent", false}},
               {{"origins", {"https://a.example", "*"}}, {"credentials", true}}}));
  ASSERT_TRUE(chain->status().ok()) << chain->status();

  FakeContext plain = Request("GET", {{"Origin", "http://a.example:80"}});
  EXPECT_EQ(chain->Run(&config->routes[0], plain), 0);
  EXPECT_EQ(ResponseHeaders(plain),
            (std::vector<std::string>{"Vary: Origin", "Access-Control-Allow-Origin: http://a.example",
                                      "Access-Control-Expose-Headers: X-Total,X-Page"}))
      << "the Origin is normalized (default port dropped)";
  EXPECT_EQ(plain.response_headers_removed,
            (std::vector<absl::string_view>{"access-control-allow-origin", "access-control-expose-headers"}))
      << "the upstream's own values are replaced";

  FakeContext by_host = Request("GET", {{"Origin", "https://api.b.example:8443"}});
  EXPECT_EQ(chain->Run(&config->routes[0], by_host), 0);
  EXPECT_EQ(ResponseHeaders(by_host)[1], "Access-Control-Allow-Origin: https://api.b.example:8443")
      << "a regex without ':' is matched against the host";
  FakeContext with_port = Request("GET", {{"Origin", "https://c.example:8443"}});
  EXPECT_EQ(chain->Run(&config->routes[0], with_port), 0);
  EXPECT_EQ(ResponseHeaders(with_port)[1], "Access-Control-Allow-Origin: https://c.example:8443");
  FakeContext anchored = Request("GET", {{"Origin", "https://b.example.evil"}});
  EXPECT_EQ(chain->Run(&config->routes[0], anchored), 0);
  EXPECT_EQ(ResponseHeaders(anchored),
            (std::vector<std::string>{"Vary: Origin", "Access-Control-Expose-Headers: X-Total,X-Page"}))
      << "regexes are anchored at both ends; no match: no Allow-Origin, and the upstream's is removed";
  EXPECT_EQ(anchored.response_headers_removed[0], "access-control-allow-origin");

  FakeContext credentials = Request("GET", {{"Origin", "https://x.example"}});
  EXPECT_EQ(chain->Run(&config->routes[1], credentials), 0);
  EXPECT_EQ(ResponseHeaders(credentials),
            (std::vector<std::string>{"Vary: Origin", "Access-Control-Allow-Origin: https://x.example",
                                      "Access-Control-Allow-Credentials: true"}))
      << "credentials cannot go with '*': the Origin is echoed";
  FakeContext no_origin = Request("GET", {});
  EXPECT_EQ(chain->Run(&config->routes[1], no_origin), 0);
  EXPECT_EQ(ResponseHeaders(no_origin), std::vector<std::string>{"Access-Control-Allow-Origin: *"})
      << "allow_origin_absent (default true)";

  FakeContext absent = Request("GET", {});
  EXPECT_EQ(chain->Run(&config->routes[2], absent), 0);
  EXPECT_TRUE(absent.response_headers.empty()) << "allow_origin_absent: false";

  FakeContext star = Request("GET", {{"Origin", "https://z.example"}});
  EXPECT_EQ(chain->Run(&config->routes[3], star), 0);
  EXPECT_EQ(ResponseHeaders(star),
            (std::vector<std::string>{"Vary: Origin", "Vary: Origin", "Access-Control-Allow-Origin: https://z.example",
                                      "Access-Control-Allow-Credentials: true"}))
      << "a '*' in a list allows every Origin; Kong adds Vary twice here";
}

TEST(CorsTest, NoAllocationOnTheRequestPathOnceWarm) {
  g_allocations = 0;
  g_count_allocations = true;
  auto counted = std::make_unique<std::string>(64, 'x');
  g_count_allocations = false;
  ASSERT_GT(g_allocations, 0u) << "the counter counts";
  auto config = Base();
  std::unique_ptr<ChainRunner> chain(CorsChain(
      config, {{{"origins", {"http://a.example", "(.*\\.)?b\\.example"}}, {"credentials", true}}}));
  ASSERT_TRUE(chain->status().ok()) << chain->status();
  FakeContext c = Request("GET", {{"Origin", "https://www.b.example"}});
  FakeContext p = Request("OPTIONS", {{"Origin", "https://www.b.example"}, {"Access-Control-Request-Method", "GET"}});
  for (int round = 0; round < 3; ++round) {
    c.ResetContext();
    p.ResetContext();
    c.head = &c.request_head;
    p.head = &p.request_head;
    g_allocations = 0;
    g_count_allocations = round > 0;
    const int simple = chain->Run(&config->routes[0], c);
    const int preflight = chain->Run(&config->routes[0], p);
    g_count_allocations = false;
    EXPECT_EQ(simple, 0);
    EXPECT_EQ(preflight, 200);
    if (round > 0) {
      EXPECT_EQ(g_allocations, 0u) << "round " << round;
    }
  }
}

}  // namespace
}  // namespace portico::dp::plugins

namespace portico::dp::plugins {
namespace {

// The head the upstream step would send for `c` (service Host "service.internal", path "/").
std::string UpstreamHead(const FakeContext& c) {
  UpstreamRequestParams params;
  params.method = c.upstream_method;
  params.upstream_path = c.upstream_path.empty() ? absl::string_view("/") : c.upstream_path;
  params.query = c.upstream_query_set ? absl::string_view(c.upstream_query) : c.target.query;
  params.has_query = c.upstream_query_set ? !c.upstream_query.empty() : c.target.has_query;
  params.set_headers = &c.upstream_headers;
  params.removed_headers = &c.upstream_headers_removed;
  params.host_header = c.upstream_host.empty() ? absl::string_view("service.internal") : c.upstream_host;
  params.client_ip = "127.0.0.1";
  const std::string head = BuildUpstreamRequestHead(*c.head, params);
  return head.substr(0, head.find("X-Real-IP:"));  // the proxy's own headers follow
}

json Transformer(const json& remove, const json& rename, const json& replace, const json& add, const json& append) {
  return {{"remove", remove}, {"rename", rename}, {"replace", replace}, {"add", add}, {"append", append}};
}

TEST(RequestTransformerTest, HeadersChangeInKongsOrderAndMethodAndPathAreReplaced) {
  auto config = Base();
  json headers = Transformer({{"headers", {"x-remove"}}}, {{"headers", {"X-Old:X-New"}}},
                             {{"headers", {"X-Rep:b", "X-Missing:z", "Host:upstream.example"}},
                              {"uri", "/v2/new items"}},
                             {{"headers", {"X-Add:1", "X-Rep:no", "Content-Length:5", "X-Forwarded-For:spoof"}}},
                             {{"headers", {"X-App:d", "X-Fresh:e"}}});
  headers["http_method"] = "POST";
  config->plugins = {MakePlugin(901, "request-transformer", headers, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();

  FakeContext c = Request("GET", {{"Host", "client.example"}, {"X-Remove", "1"}, {"X-Old", "v1"}, {"x-old", "v2"},
                                  {"X-Rep", "a"}, {"X-App", "c"}, {"X-Keep", "k"}});
  EXPECT_EQ(chain.Run(&config->routes[0], c), 0);
  EXPECT_EQ(UpstreamHead(c),
            "POST /v2/new%20items HTTP/1.1\r\nHost: upstream.example\r\nX-Keep: k\r\nX-New: v1\r\nX-New: v2\r\n"
            "X-Rep: b\r\nX-Add: 1\r\nX-App: c\r\nX-App: d\r\nX-Fresh: e\r\n")
      << "remove, rename (every value), replace (only what is there; Host), add (only what is not), append "
         "(after the client's values); framing and X-Forwarded-* are the proxy's";

  FakeContext head = Request("HEAD", {});
  EXPECT_EQ(chain.Run(&config->routes[0], head), 0);
  EXPECT_EQ(head.upstream_method, "") << "a HEAD request stays HEAD (its response has no body)";
}

TEST(RequestTransformerTest, QueryIsDecodedChangedAndReencodedSortedAsKongsSetQuery) {
  auto config = Base();
  config->plugins = {MakePlugin(
      901, "request-transformer",
      Transformer({{"querystring", {"drop"}}}, {{"querystring", {"old:new", "absent:b"}}},
                  {{"querystring", {"b:20", "missing:1"}}}, {{"querystring", {"c:hello world", "a:no"}}},
                  {{"querystring", {"flag:on", "a:4"}}}),
      Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();

  FakeContext c;
  c.target.query = "b=2&a=1&flag&a=%33&drop=x&old=o%2Bk&b";
  c.target.has_query = true;
  EXPECT_EQ(chain.Run(&config->routes[0], c), 0);
  EXPECT_TRUE(c.upstream_query_set);
  EXPECT_EQ(c.upstream_query, "a=1&a=3&a=4&c=hello%20world&flag=on&new=o%2Bk")
      << "rename to a name that is there takes its place; a rename of a missing argument removes the new name "
         "(b); append replaces a lone flag";

  // After an earlier plugin: its headers and query are what this one sees.
  auto earlier = Base();
  earlier->plugins = {MakePlugin(902, "request-transformer",
                                 Transformer({{"headers", {"X-Consumer-ID"}}}, json::object(), json::object(),
                                             {{"querystring", {"y:2"}}}, {{"headers", {"X-Credential:more"}}}),
                                 Id(11))};
  ChainRunner after(earlier);
  ASSERT_TRUE(after.status().ok()) << after.status();
  FakeContext k = Request("GET", {});
  k.upstream_headers = {{"X-Consumer-ID", "c1"}, {"X-Credential", "id1"}};
  k.upstream_query = "z=1";
  k.upstream_query_set = true;
  EXPECT_EQ(after.Run(&earlier->routes[0], k), 0);
  EXPECT_EQ(UpstreamHead(k),
            "GET /?y=2&z=1 HTTP/1.1\r\nHost: service.internal\r\nX-Credential: id1\r\nX-Credential: more\r\n");
}

TEST(RequestTransformerTest, NoAllocationOnTheRequestPathOnceWarm) {
  auto config = Base();
  config->plugins = {MakePlugin(
      901, "request-transformer",
      Transformer({{"headers", {"X-A"}}, {"querystring", {"a"}}}, {{"headers", {"X-B:X-C"}}, {"querystring", {"b:c"}}},
                  {{"headers", {"X-D:1"}}}, {{"headers", {"X-E:2"}}, {"querystring", {"e:2"}}},
                  {{"headers", {"X-F:3"}}, {"querystring", {"f:3"}}}),
      Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext c = Request("GET", {{"X-A", "1"}, {"X-B", "2"}, {"X-D", "3"}, {"X-F", "4"}});
  for (int round = 0; round < 3; ++round) {
    c.ResetContext();
    c.head = &c.request_head;
    c.target.query = "a=1&b=2&f=%20x&g";
    c.target.has_query = true;
    g_allocations = 0;
    g_count_allocations = round > 0;
    const int status = chain.Run(&config->routes[0], c);
    g_count_allocations = false;
    EXPECT_EQ(status, 0);
    EXPECT_EQ(c.upstream_query, "c=2&e=2&f=%20x&f=3&g");
    if (round > 0) {
      EXPECT_EQ(g_allocations, 0u) << "round " << round;
    }
  }
}

}  // namespace
}  // namespace portico::dp::plugins

// ---- Whole bodies: request-transformer's body, response-transformer's json, key-auth's
// key_in_body, correlation-id's tracker, request-termination's echo body.

#include <unistd.h>

namespace portico::dp::plugins {
namespace {

// A request with a body the exchange has not read yet (body_ready false): the test then makes it
// ready and runs the step again, as the exchange does.
FakeContext WithPendingBody(const std::string& content_type, const std::string& body) {
  FakeContext c;
  c.request_head.method = "POST";
  if (!content_type.empty()) c.request_head.headers.emplace_back("Content-Type", content_type);
  c.body_ready = false;
  c.request_body = body;
  return c;
}

// Runs the only request step; when it waits for the body, makes the body ready and runs it again.
StepStatus RunReadingBody(const ChainRunner& chain, FakeContext& c) {
  StepStatus status = chain.step(0).OnRequest(c);
  if (status != StepStatus::kSuspend) return status;
  c.body_ready = true;
  c.request_body_read = !c.request_body_too_large;
  return chain.step(0).OnRequest(c);
}

TEST(RequestTransformerBodyTest, JsonBodyIsReadThenEditedInKongsOrderWithLuaTruthiness) {
  auto config = Base();
  json transformer = Transformer({{"body", {"drop"}}}, {{"body", {"old:new", "gone:taken"}}},
                                 {{"body", {"r:2", "missing:x"}}}, {{"body", {"a:1", "f:no", "r:not-added"}}},
                                 {{"body", {"list:3", "s:t", "n:9"}}, {"headers", {"X-A:1"}}});
  config->plugins = {MakePlugin(901, "request-transformer", transformer, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext c = WithPendingBody("application/json; charset=utf-8",
                                  R"({"drop":1,"old":"o","taken":true,"r":null,"f":false,"list":[1],"s":"x","n":5})");
  c.match = Match{&config->routes[0], nullptr, {}, false};
  EXPECT_EQ(chain.step(0).OnRequest(c), StepStatus::kSuspend) << "waits for the body";
  EXPECT_EQ(c.body_reads, 1);
  EXPECT_TRUE(c.upstream_headers.empty()) << "nothing changed before the body is read";
  EXPECT_FALSE(c.upstream_body_set);
  c.body_ready = true;
  c.request_body_read = true;
  EXPECT_EQ(chain.step(0).OnRequest(c), StepStatus::kContinue) << "runs again from the start";
  EXPECT_EQ(c.body_reads, 2);
  ASSERT_EQ(c.upstream_headers.size(), 1u) << "headers changed once";
  ASSERT_TRUE(c.upstream_body_set);
  EXPECT_EQ(json::parse(c.upstream_body, nullptr, false),
            json::parse(R"({"new":"o","r":"2","a":"1","f":"no","list":[1,"3"],"s":["x","t"],"n":["9"]})"))
      << c.upstream_body
      << ": remove; rename (an absent old name removes the new one); replace when truthy (null is); add when "
         "absent or false; append makes arrays (a number is replaced)";
}

TEST(RequestTransformerBodyTest, FormBodyIsDecodedEditedAndEncodedSorted) {
  auto config = Base();
  config->plugins = {MakePlugin(901, "request-transformer",
                                Transformer({{"body", {"drop"}}}, {{"body", {"old:new"}}}, {{"body", {"b:20"}}},
                                            {{"body", {"c:hello world", "a:no"}}}, {{"body", {"flag:on", "a:4"}}}),
                                Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext c = WithPendingBody("application/x-www-form-urlencoded", "b=2&a=1&flag&a=%33&drop=x&old=o%2Bk&sp=a+b");
  c.match = Match{&config->routes[0], nullptr, {}, false};
  EXPECT_EQ(RunReadingBody(chain, c), StepStatus::kContinue);
  EXPECT_EQ(c.body_reads, 2);
  ASSERT_TRUE(c.upstream_body_set);
  EXPECT_EQ(c.upstream_body, "a=1&a=3&a=4&b=20&c=hello%20world&flag=on&new=o%2Bk&sp=a%20b")
      << "'+' decodes to a space; a lone flag is replaced by append; pieces sorted";

  FakeContext empty = WithPendingBody("application/x-www-form-urlencoded", "");
  empty.match = c.match;
  EXPECT_EQ(RunReadingBody(chain, empty), StepStatus::kContinue);
  EXPECT_EQ(empty.upstream_body, "a=no&a=4&c=hello%20world&flag=on") << "add and append make a body of an empty one";
}

TEST(RequestTransformerBodyTest, BodyUnchangedWhenNotAnObjectTooLargeMultipartOrOtherType) {
  auto config = Base();
  config->plugins = {MakePlugin(901, "request-transformer",
                                Transformer(json::object(), json::object(), {{"body", {"a:1"}}}, json::object(),
                                            json::object()),
                                Id(11)),
                     MakePlugin(902, "request-transformer", Transformer({{"headers", {"X-A"}}}, json::object(),
                                                                        json::object(), json::object(), json::object()),
                                Id(12))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  for (const char* body : {"{not json", "[1,2]", "\"a\"", "null"}) {
    FakeContext c = WithPendingBody("application/json", body);
    c.match = Match{&config->routes[0], nullptr, {}, false};
    EXPECT_EQ(RunReadingBody(chain, c), StepStatus::kContinue);
    EXPECT_FALSE(c.upstream_body_set) << body;
  }
  FakeContext large = WithPendingBody("application/json", R"({"a":0})");
  large.match = Match{&config->routes[0], nullptr, {}, false};
  large.request_body_too_large = true;
  EXPECT_EQ(RunReadingBody(chain, large), StepStatus::kContinue);
  EXPECT_FALSE(large.upstream_body_set) << "a body too large to hold streams unchanged";
  for (const char* type : {"multipart/form-data; boundary=x", "text/plain", ""}) {
    FakeContext c = WithPendingBody(type, "a=0");
    c.match = Match{&config->routes[0], nullptr, {}, false};
    EXPECT_EQ(chain.step(0).OnRequest(c), StepStatus::kContinue) << type;
    EXPECT_EQ(c.body_reads, 0) << "not read: " << type;
  }
  FakeContext no_body_ops = WithPendingBody("application/json", R"({"a":0})");
  no_body_ops.match = Match{&config->routes[1], nullptr, {}, false};
  EXPECT_EQ(chain.step(0).OnRequest(no_body_ops), StepStatus::kContinue);
  EXPECT_EQ(no_body_ops.body_reads, 0) << "no body operations: the body is never read";
}

// Runs the response steps of `pipeline` for an upstream response with these headers and body, as
// the exchange does; returns whether the body was buffered (then response_body is the result).
bool RunResponse(const Pipeline& pipeline, FakeContext& c, const MessageHead& upstream, const std::string& body) {
  c.response_head = &upstream;
  for (const ResponseHeadStep* step : pipeline.response_head_steps()) step->OnResponseHead(c, upstream.status);
  if (!c.buffer_response_body) return false;
  c.response_body = body;
  for (const BufferedResponseBodyStep* step : pipeline.buffered_body_steps()) step->OnBufferedResponseBody(c, upstream.status);
  return true;
}

TEST(ResponseTransformerTest, JsonBodyEditsCastJsonTypesWithKongsRules) {
  auto config = Base();
  config->plugins = {MakePlugin(
      101, "response-transformer",
      {{"remove", {{"json", {"secret"}}}},
       {"rename", {{"json", {"old:new", "absent:x", "keep:"}}}},
       {"replace", {{"json", {"r:1", "absent:2", "f:x", "q:0x10"}}, {"json_types", {"number", "string", "boolean", "number"}}}},
       {"add", {{"json", {"n:12.5", "b:true", "s:/a\\\"b", "bad:abc", "f:y", "z:", "no:yes"}},
                {"json_types", {"number", "boolean", "string", "number", "string", "string", "boolean"}}}},
       {"append", {{"json", {"list:1", "str:2", "num:3"}}, {"json_types", {"number"}}}}},
      Id(11))};
  Pipeline pipeline;
  ASSERT_TRUE(AddPluginChain(*config, &pipeline).ok());
  ASSERT_EQ(pipeline.buffered_body_steps().size(), 1u) << "json edits add a buffered-body step";
  MessageHead upstream;
  upstream.status = 200;
  upstream.headers = {{"Content-Type", "Application/JSON; charset=utf-8"}};
  FakeContext c;
  c.match = Match{&config->routes[0], nullptr, {}, false};
  ASSERT_TRUE(RunResponse(pipeline, c, upstream,
                          R"({"secret":1,"old":"o","keep":2,"r":null,"q":"v","f":false,"list":[0],"str":"s","num":7})"));
  EXPECT_EQ(json::parse(c.response_body, nullptr, false),
            json::parse(R"({"new":"o","keep":2,"r":1,"q":16,"f":"y","n":12.5,"b":true,"s":"/a\\\\\"b","z":"null",
                            "no":false,"list":[0,1],"str":["s","2"],"num":["3"]})"))
      << c.response_body
      << ": rename only what is there and has a new name; replace when truthy (null is, false is not); add when "
         "absent or false; tonumber (hex too; not-a-number skips the entry); boolean is value == \"true\"; an "
         "empty value is the string null; a backslash doubles as Kong's json_value leaves it";
}

TEST(ResponseTransformerTest, BuffersOnlyUncompressedJsonUpstreamResponsesAndKeepsOtherBodies) {
  auto config = Base();
  config->plugins = {MakePlugin(101, "response-transformer", {{"add", {{"json", {"a:1"}}}}}, Id(11)),
                     MakePlugin(102, "response-transformer", {{"add", {{"headers", {"X-A:1"}}}}}, Id(12))};
  Pipeline pipeline;
  ASSERT_TRUE(AddPluginChain(*config, &pipeline).ok());
  auto head = [](std::vector<std::pair<std::string, std::string>> headers) {
    MessageHead h;
    h.status = 200;
    h.headers = std::move(headers);
    return h;
  };
  auto on_route = [&](int route) {
    FakeContext c;
    c.match = Match{&config->routes[route], nullptr, {}, false};
    return c;
  };
  struct Case {
    MessageHead upstream;
    bool buffered;
  };
  const Case cases[] = {
      {head({{"Content-Type", "application/json"}}), true},
      {head({{"Content-Type", "application/json"}, {"Content-Encoding", "identity"}}), true},
      {head({{"Content-Type", "application/json"}, {"Content-Encoding", "gzip"}}), false},
      {head({{"Content-Type", "text/html"}}), false},
      {head({}), false},
  };
  for (const Case& k : cases) {
    FakeContext c = on_route(0);
    EXPECT_EQ(RunResponse(pipeline, c, k.upstream, R"({"b":2})"), k.buffered) << k.upstream.headers.size();
    if (k.buffered) EXPECT_EQ(json::parse(c.response_body), json::parse(R"({"a":"1","b":2})"));
  }
  FakeContext without_json = on_route(1);
  EXPECT_FALSE(RunResponse(pipeline, without_json, cases[0].upstream, "{}")) << "no json edits: no buffering";
  FakeContext local = on_route(0);
  for (const ResponseHeadStep* step : pipeline.response_head_steps()) step->OnResponseHead(local, 401);
  EXPECT_FALSE(local.buffer_response_body) << "a local response is not edited";
  for (const char* body : {"not json", "[1]", "3"}) {
    FakeContext c = on_route(0);
    ASSERT_TRUE(RunResponse(pipeline, c, cases[0].upstream, body));
    EXPECT_EQ(c.response_body, body) << "not an object: unchanged";
  }
  // Another plugin buffered a gzip response: the json edits leave it alone.
  FakeContext gzip = on_route(0);
  gzip.response_head = &cases[2].upstream;
  gzip.response_body = R"({"b":2})";
  for (const BufferedResponseBodyStep* step : pipeline.buffered_body_steps()) step->OnBufferedResponseBody(gzip, 200);
  EXPECT_EQ(gzip.response_body, R"({"b":2})");
}

TEST(KeyAuthBodyTest, KeyInJsonOrFormBodyAfterHeaderAndQuery) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(101, "key-auth", {{"key_in_body", true}, {"key_names", {"X-Key", "apikey"}}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext c = WithPendingBody("application/json", R"({"apikey":"k-alice","other":1})");
  c.match = Match{&config->routes[0], nullptr, {}, false};
  EXPECT_EQ(chain.step(0).OnRequest(c), StepStatus::kSuspend);
  EXPECT_EQ(c.body_reads, 1);
  EXPECT_EQ(c.consumer, nullptr);
  EXPECT_FALSE(c.responded);
  c.body_ready = true;
  EXPECT_EQ(chain.step(0).OnRequest(c), StepStatus::kContinue);
  ASSERT_NE(c.consumer, nullptr);
  EXPECT_EQ(c.consumer->username(), "alice");
  EXPECT_FALSE(c.upstream_body_set) << "hide_credentials off";

  FakeContext form = WithPendingBody("application/x-www-form-urlencoded; charset=utf-8", "x=1&apikey=k%2Dalice");
  form.match = c.match;
  EXPECT_EQ(RunReadingBody(chain, form), StepStatus::kContinue);
  ASSERT_NE(form.consumer, nullptr);

  FakeContext header = WithPendingBody("application/json", R"({"apikey":"wrong"})");
  header.match = c.match;
  header.request_head.headers.emplace_back("x-key", "k-alice");
  EXPECT_EQ(chain.step(0).OnRequest(header), StepStatus::kContinue);
  EXPECT_EQ(header.body_reads, 0) << "found in a header under the first name: the body is not read";
  ASSERT_NE(header.consumer, nullptr);

  FakeContext second = WithPendingBody("application/json", R"({"apikey":"wrong"})");
  second.match = c.match;
  second.request_head.headers.emplace_back("apikey", "k-alice");
  EXPECT_EQ(chain.step(0).OnRequest(second), StepStatus::kSuspend)
      << "the first name is looked up in the body before the second in the headers (Kong's order)";
  second.body_ready = true;
  EXPECT_EQ(chain.step(0).OnRequest(second), StepStatus::kContinue);
  ASSERT_NE(second.consumer, nullptr);

  FakeContext flag = WithPendingBody("application/json", R"({"apikey":"k-alice"})");
  flag.match = c.match;
  flag.target.query = "apikey";
  flag.target.has_query = true;
  EXPECT_EQ(RunReadingBody(chain, flag), StepStatus::kStop);
  EXPECT_EQ(flag.status, 401) << "a query flag is Kong's true: the body is not searched for that name";
  EXPECT_EQ(flag.message, "No API key found in request");
}

TEST(KeyAuthBodyTest, DuplicateUnparsableAndNonStringBodyValues) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(101, "key-auth", {{"key_in_body", true}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  struct Case {
    const char* content_type;
    const char* body;
    const char* message;
    bool too_large = false;
  };
  const Case cases[] = {
      {"application/json", R"({"apikey":["k-alice","x"]})", "Duplicate API key found"},
      {"application/json", R"({"apikey":{"k":"k-alice"}})", "Duplicate API key found"},
      {"application/x-www-form-urlencoded", "apikey=k-alice&apikey=x", "Duplicate API key found"},
      {"application/json", R"({"apikey":5})", "No API key found in request"},
      {"application/json", R"({"apikey":null})", "No API key found in request"},
      {"application/json", "{not json", "No API key found in request"},
      {"application/json", R"(["k-alice"])", "No API key found in request"},
      {"", "apikey=k-alice", "No API key found in request"},
      {"text/plain", "apikey=k-alice", "No API key found in request"},
      {"multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nk-alice\r\n--b--",
       "No API key found in request"},
      {"application/x-www-form-urlencoded", "apikey=k-alice", "No API key found in request", true},
      {"application/json", R"({"apikey":"k-alicf"})", "Unauthorized"},
  };
  for (const Case& k : cases) {
    FakeContext c = WithPendingBody(k.content_type, k.body);
    c.match = Match{&config->routes[0], nullptr, {}, false};
    c.request_body_too_large = k.too_large;
    EXPECT_EQ(RunReadingBody(chain, c), StepStatus::kStop) << k.body;
    EXPECT_EQ(c.status, 401) << k.body;
    EXPECT_EQ(c.message, k.message) << k.content_type << " " << k.body;
  }
}

TEST(KeyAuthBodyTest, HideCredentialsRemovesTheKeyFromAParsableBody) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(101, "key-auth", {{"key_in_body", true}, {"hide_credentials", true}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  const Match match{&config->routes[0], nullptr, {}, false};

  FakeContext j = WithPendingBody("application/json", R"({"apikey":"k-alice","a":1})");
  j.match = match;
  EXPECT_EQ(RunReadingBody(chain, j), StepStatus::kContinue);
  ASSERT_TRUE(j.upstream_body_set);
  EXPECT_EQ(json::parse(j.upstream_body), json::parse(R"({"a":1})"));

  FakeContext form = WithPendingBody("application/x-www-form-urlencoded", "z=1&apikey=k-alice&b=x%20y");
  form.match = match;
  EXPECT_EQ(RunReadingBody(chain, form), StepStatus::kContinue);
  EXPECT_EQ(form.upstream_body, "b=x%20y&z=1") << "re-encoded as Kong's set_body encodes a form: sorted";

  FakeContext header = WithPendingBody("application/json", R"({"apikey":"decoy","a":1})");
  header.match = match;
  header.request_head.headers.emplace_back("ApiKey", "k-alice");
  header.target.query = "apikey=other&q=1";
  header.target.has_query = true;
  EXPECT_EQ(chain.step(0).OnRequest(header), StepStatus::kSuspend) << "hiding reads the body";
  header.body_ready = true;
  EXPECT_EQ(chain.step(0).OnRequest(header), StepStatus::kContinue);
  ASSERT_NE(header.consumer, nullptr);
  EXPECT_EQ(json::parse(header.upstream_body), json::parse(R"({"a":1})"));
  EXPECT_EQ(header.upstream_query, "q=1") << "Kong clears the name from the query as well";
  EXPECT_NE(std::find(header.upstream_headers_removed.begin(), header.upstream_headers_removed.end(), "apikey"),
            header.upstream_headers_removed.end());

  FakeContext unparsable = WithPendingBody("text/plain", "apikey=k-alice");
  unparsable.match = match;
  unparsable.request_head.headers.emplace_back("apikey", "k-alice");
  EXPECT_EQ(RunReadingBody(chain, unparsable), StepStatus::kContinue);
  EXPECT_FALSE(unparsable.upstream_body_set) << "a body Kong cannot parse is left alone";
}

TEST(CorrelationIdTest, TrackerIsAddressPortPidConnectionRequestAndTime) {
  auto config = Base();
  config->plugins = {MakePlugin(701, "correlation-id", {{"generator", "tracker"}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext c;
  c.local_ip = "10.0.0.5";
  c.local_port = 8000;
  c.connection_serial = 42;
  c.connection_requests = 3;
  EXPECT_EQ(chain.Run(&config->routes[0], c), 0);
  const std::string prefix = "10.0.0.5-8000-" + std::to_string(getpid()) + "-42-3-";
  ASSERT_EQ(c.request_id.substr(0, prefix.size()), prefix) << c.request_id;
  const std::string time = c.request_id.substr(prefix.size());
  EXPECT_TRUE(std::regex_match(time, std::regex("[0-9]+\\.[0-9]{3}"))) << time;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(std::stod(time), now, 5.0);
  EXPECT_EQ(UpstreamHeader(c, "Kong-Request-ID"), c.request_id);
}

TEST(RequestTerminationTest, EchoReadsTheBodyAsKongsGetBodyAndGetRawBody) {
  auto config = Base();
  config->plugins = {MakePlugin(101, "request-termination", {{"status_code", 200}, {"echo", true}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  auto echo = [&](const std::string& type, const std::string& body, bool too_large = false) {
    FakeContext c = WithPendingBody(type, body);
    c.match = Match{&config->routes[0], nullptr, {}, false};
    c.request_body_too_large = too_large;
    EXPECT_EQ(chain.step(0).OnRequest(c), StepStatus::kSuspend);
    EXPECT_FALSE(c.responded);
    c.body_ready = true;
    EXPECT_EQ(chain.step(0).OnRequest(c), StepStatus::kStop);
    EXPECT_EQ(c.body_reads, 2);
    return json::parse(c.body, nullptr, false)["request"];
  };
  json j = echo("application/json", R"({"a":[1,2],"b":null})");
  EXPECT_EQ(j["body"], json::parse(R"({"a":[1,2],"b":null})"));
  EXPECT_EQ(j["raw_body"], R"({"a":[1,2],"b":null})");
  json form = echo("application/x-www-form-urlencoded", "a=1&a=2&f&e=&s=x+y");
  EXPECT_EQ(form["body"], json::parse(R"({"a":["1","2"],"f":true,"e":"","s":"x y"})"));
  json text = echo("text/plain", "hi");
  EXPECT_FALSE(text.contains("body")) << "Kong's get_body fails: nil, left out";
  EXPECT_EQ(text["raw_body"], "hi");
  json none = echo("", "");
  EXPECT_FALSE(none.contains("body"));
  EXPECT_EQ(none["raw_body"], "") << "no body: get_raw_body is the empty string";
  json large = echo("application/json", R"({"a":)", true);
  EXPECT_FALSE(large.contains("body"));
  EXPECT_FALSE(large.contains("raw_body")) << "too large to hold: get_raw_body fails";
}

}  // namespace
}  // namespace portico::dp::plugins

namespace portico::dp::plugins {
namespace {

TEST(KeyAuthBodyTest, NoAllocationWithoutKeyInBodyOnceWarm) {
  auto config = WithConsumers();
  config->plugins = {MakePlugin(101, "key-auth", {{"hide_credentials", true}}, Id(11))};
  ChainRunner chain(config);
  ASSERT_TRUE(chain.status().ok()) << chain.status();
  FakeContext c;
  for (int round = 0; round < 3; ++round) {
    c.ResetContext();
    c.head = &c.request_head;
    c.body_ready = false;
    c.target.query = "a=1&apikey=k-alice&b=2";
    c.target.has_query = true;
    g_allocations = 0;
    g_count_allocations = round > 0;
    const int status = chain.Run(&config->routes[0], c);
    g_count_allocations = false;
    EXPECT_EQ(status, 0);
    EXPECT_EQ(c.upstream_query, "a=1&b=2");
    EXPECT_EQ(c.body_reads, 0);
    if (round > 0) {
      EXPECT_EQ(g_allocations, 0u) << "round " << round;
    }
  }
}

}  // namespace
}  // namespace portico::dp::plugins
