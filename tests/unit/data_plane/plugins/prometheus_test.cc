// The prometheus plugin: the per-worker counter store (shards summed, Kong's histogram buckets,
// exact exposition text, a full shard) and the plugin's compile (scopes, opt-in families,
// labels) on a fake request context.
#include <atomic>
#include <cstdlib>
#include <new>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config/config_set.h"
#include "data_plane/pipeline/pipeline.h"
#include "data_plane/plugins/chain.h"
#include "data_plane/plugins/prometheus/prometheus.h"
#include "data_plane/plugins/prometheus/traffic_metrics.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/allocation_counter.h"  // replaces operator new: one per test binary
#include "tests/unit/data_plane/plugins/fake_context.h"


namespace portico::dp::plugins {
namespace {

using config::v1::Consumer;
using config::v1::Plugin;
using config::v1::Route;
using config::v1::Service;
using nlohmann::json;

using plugin_test::FakeContext;

std::string Id(int n) { return absl::StrCat("00000000-0000-4000-8000-", std::string(12 - std::to_string(n).size(), '0'), n); }

// The lines of `text` that start with `prefix`.
std::vector<std::string> Lines(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (absl::StartsWith(line, prefix)) out.push_back(line);
    start = end + 1;
  }
  return out;
}

TEST(TrafficMetricsTest, WorkerShardsAreSummedIntoExactExpositionText) {
  TrafficMetrics store(1024);
  const uint32_t orders = store.InternRoute("orders", "list");
  const uint32_t users = store.InternRoute("users", "get \"one\"");
  EXPECT_EQ(store.InternRoute("orders", "list"), orders);  // interned once
  EXPECT_NE(orders, users);
  const uint32_t alice = store.InternConsumer("alice");
  store.CountRequest(0, orders, 0, 200, true);
  store.CountRequest(3, orders, 0, 200, true);
  store.CountRequest(3, orders, 0, 404, false);
  store.CountRequest(1, users, alice, 200, true);
  store.AddBandwidth(0, orders, 0, 100, 250);
  store.AddBandwidth(2, orders, 0, 50, 0);  // egress 0: not counted
  store.ObserveLatency(0, orders, LatencyKind::kKong, 3);
  store.ObserveLatency(1, orders, LatencyKind::kKong, 0.5);
  std::string text;
  store.Render(&text);
  EXPECT_EQ(text,
            "# HELP kong_bandwidth_bytes Total bandwidth (ingress/egress) throughput in bytes\n"
            "# TYPE kong_bandwidth_bytes counter\n"
            "kong_bandwidth_bytes{service=\"orders\",route=\"list\",direction=\"ingress\",workspace=\"default\",consumer=\"\"} 150\n"
            "kong_bandwidth_bytes{service=\"orders\",route=\"list\",direction=\"egress\",workspace=\"default\",consumer=\"\"} 250\n"
            "# HELP kong_http_requests_total HTTP status codes per consumer/service/route in Kong\n"
            "# TYPE kong_http_requests_total counter\n"
            "kong_http_requests_total{service=\"orders\",route=\"list\",code=\"200\",source=\"service\",workspace=\"default\",consumer=\"\"} 2\n"
            "kong_http_requests_total{service=\"orders\",route=\"list\",code=\"404\",source=\"kong\",workspace=\"default\",consumer=\"\"} 1\n"
            "kong_http_requests_total{service=\"users\",route=\"get \\\"one\\\"\",code=\"200\",source=\"service\",workspace=\"default\",consumer=\"alice\"} 1\n"
            "# HELP kong_kong_latency_ms Latency added by Kong and enabled plugins for each service/route in Kong\n"
            "# TYPE kong_kong_latency_ms histogram\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0001.0\"} 1\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0002.0\"} 1\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0005.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0007.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0010.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0015.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0020.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0030.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0050.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0075.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0100.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0200.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0500.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"0750.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"1000.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"3000.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"6000.0\"} 2\n"
            "kong_kong_latency_ms_bucket{service=\"orders\",route=\"list\",workspace=\"default\",le=\"+Inf\"} 2\n"
            "kong_kong_latency_ms_sum{service=\"orders\",route=\"list\",workspace=\"default\"} 3.5\n"
            "kong_kong_latency_ms_count{service=\"orders\",route=\"list\",workspace=\"default\"} 2\n");
  EXPECT_EQ(store.dropped(), 0u);
}

TEST(TrafficMetricsTest, HistogramBucketsAreKongsUpperBoundsInclusive) {
  TrafficMetrics store(1024);
  const uint32_t r = store.InternRoute("s", "r");
  for (double ms : {25.0, 25.5, 60000.0, 60001.0, -1.0}) store.ObserveLatency(0, r, LatencyKind::kUpstream, ms);
  store.ObserveLatency(0, r, LatencyKind::kRequest, 80);
  std::string text;
  store.Render(&text);
  const std::string labels = "{service=\"s\",route=\"r\",workspace=\"default\"";
  auto has = [&text](const std::string& line) { return absl::StrContains(text, line + "\n"); };
  EXPECT_TRUE(has("kong_upstream_latency_ms_bucket" + labels + ",le=\"00025.0\"} 1"));  // le is inclusive
  EXPECT_TRUE(has("kong_upstream_latency_ms_bucket" + labels + ",le=\"00050.0\"} 2"));
  EXPECT_TRUE(has("kong_upstream_latency_ms_bucket" + labels + ",le=\"60000.0\"} 3"));
  EXPECT_TRUE(has("kong_upstream_latency_ms_bucket" + labels + ",le=\"+Inf\"} 4"));  // a negative one is not observed
  EXPECT_TRUE(has("kong_upstream_latency_ms_count" + labels + "} 4"));
  EXPECT_TRUE(has("kong_upstream_latency_ms_sum" + labels + "} 120051.5"));
  EXPECT_TRUE(has("kong_request_latency_ms_bucket" + labels + ",le=\"00050.0\"} 0"));
  EXPECT_TRUE(has("kong_request_latency_ms_bucket" + labels + ",le=\"00080.0\"} 1"));
  EXPECT_EQ(Lines(text, "kong_upstream_latency_ms_bucket").size(), std::size(kUpstreamLatencyBucketsMs) + 1);
  EXPECT_TRUE(Lines(text, "kong_kong_latency_ms").empty());  // no samples, no family
}

TEST(TrafficMetricsTest, AFullShardDropsAndCountsWithoutLosingOtherShards) {
  TrafficMetrics store(64);  // the smallest table
  const uint32_t r = store.InternRoute("s", "r");
  for (int code = 100; code < 400; ++code) store.CountRequest(0, r, 0, code, true);
  store.CountRequest(1, r, 0, 99, true);  // another worker's shard still has room
  EXPECT_GT(store.dropped(), 0u);
  std::string text;
  store.Render(&text);
  const size_t kept = Lines(text, "kong_http_requests_total{").size();
  EXPECT_EQ(kept + store.dropped(), 301u);  // every record is either in a cell or counted as dropped
  EXPECT_TRUE(absl::StrContains(text, "code=\"99\""));
}

TEST(TrafficMetricsTest, WorkersCountConcurrentlyWithAScraperAndNothingIsLost) {
  TrafficMetrics store(4096);
  const uint32_t r = store.InternRoute("s", "r");
  constexpr int kWorkers = 4, kPerWorker = 200000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    uint64_t last = 0;
    while (!done.load()) {
      std::string text;
      store.Render(&text);
      for (const std::string& line : Lines(text, "kong_http_requests_total{")) {
        const uint64_t value = std::stoull(line.substr(line.rfind(' ') + 1));
        EXPECT_GE(value, last);  // a counter never goes back
        last = value;
      }
    }
  });
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&store, r, w] {
      for (int i = 0; i < kPerWorker; ++i) store.CountRequest(w, r, 0, 200, true);
    });
  }
  for (std::thread& t : workers) t.join();
  done.store(true);
  scraper.join();
  std::string text;
  store.Render(&text);
  EXPECT_TRUE(absl::StrContains(text, absl::StrCat("code=\"200\",source=\"service\",workspace=\"default\",consumer=\"\"} ",
                                                   kWorkers * kPerWorker, "\n")));
}

// Services S (named "orders") and T (no name: its host); routes A ("list"), B (no name: its id)
// on S, C on T, and D without a service.
std::shared_ptr<ConfigSet> Config() {
  auto config = std::make_shared<ConfigSet>();
  Service s, t;
  s.set_id(Id(1));
  s.set_name("orders");
  s.set_host("orders.internal");
  s.set_enabled(true);
  t.set_id(Id(2));
  t.set_host("users.internal");
  t.set_enabled(true);
  config->services = {s, t};
  for (int r : {11, 12, 13, 14}) {
    Route route;
    route.set_id(Id(r));
    if (r == 11) route.set_name("list");
    if (r != 14) route.set_service_id(Id(r == 13 ? 2 : 1));
    config->routes.push_back(route);
  }
  Consumer alice, bob;
  alice.set_id(Id(21));
  alice.set_username("alice");
  bob.set_id(Id(22));
  bob.set_custom_id("bob-7");
  config->consumers = {alice, bob};
  return config;
}

Plugin MakePlugin(json config, const std::string& route_id = "", const std::string& service_id = "") {
  Plugin p;
  p.set_id(Id(900));
  p.set_name("prometheus");
  p.set_config(config.dump());
  if (!route_id.empty()) p.set_route_id(route_id);
  if (!service_id.empty()) p.set_service_id(service_id);
  p.add_protocols("http");
  p.add_protocols("https");
  p.set_enabled(true);
  return p;
}

// Logs one request on `route` (with its service from the config) through the handler.
void LogRequest(const PluginHandler& handler, const ConfigSet& config, int route_index, int status,
                const Consumer* consumer = nullptr) {
  FakeContext request;
  const Route& route = config.routes[route_index];
  const Service* service = nullptr;
  for (const Service& s : config.services) {
    if (s.id() == route.service_id()) service = &s;
  }
  request.match = Match{&route, service, {}, false};
  request.consumer = consumer;
  request.upstream_status = status;
  request.received_ns = 1'000'000;
  request.upstream_started_ns = 2'000'000;
  request.upstream_head_ns = 12'000'000;
  request.finished_ns = 13'000'000;
  request.response_bytes = 40;
  request.worker_index = route_index % 2;
  handler.Log(request, status);
}

std::unique_ptr<const PluginHandler> Compile(TrafficMetrics* store, const ConfigSet& config, const Plugin& plugin) {
  const json normalized = json::parse(plugin.config());
  absl::StatusOr<std::unique_ptr<const PluginHandler>> handler =
      CompilePrometheusInto(PluginCompileContext{normalized, config, plugin}, store);
  EXPECT_TRUE(handler.ok()) << handler.status();
  return handler.ok() ? *std::move(handler) : nullptr;
}

TEST(PrometheusPluginTest, AGlobalInstanceRecordsEveryRouteWithAServiceUnderKongsLabels) {
  TrafficMetrics store(4096);
  auto config = Config();
  auto handler = Compile(&store, *config,
                         MakePlugin({{"status_code_metrics", true}, {"per_consumer", true}, {"bandwidth_metrics", true},
                                     {"latency_metrics", true}}));
  ASSERT_NE(handler, nullptr);
  EXPECT_TRUE(handler->logs());
  LogRequest(*handler, *config, 0, 200, &config->consumers[0]);
  LogRequest(*handler, *config, 1, 500, &config->consumers[1]);
  LogRequest(*handler, *config, 2, 200);
  LogRequest(*handler, *config, 3, 200);  // no service: not recorded
  std::string text;
  store.Render(&text);
  const std::vector<std::string> requests = Lines(text, "kong_http_requests_total{");
  ASSERT_EQ(requests.size(), 3u) << text;
  EXPECT_EQ(requests[0], "kong_http_requests_total{service=\"orders\",route=\"list\",code=\"200\",source=\"service\","
                         "workspace=\"default\",consumer=\"alice\"} 1");
  EXPECT_EQ(requests[1], "kong_http_requests_total{service=\"orders\",route=\"" + Id(12) +
                             "\",code=\"500\",source=\"service\",workspace=\"default\",consumer=\"bob-7\"} 1");
  EXPECT_EQ(requests[2], "kong_http_requests_total{service=\"users.internal\",route=\"" + Id(13) +
                             "\",code=\"200\",source=\"service\",workspace=\"default\",consumer=\"\"} 1");
  // Latencies from the exchange's moments: request 12 ms, upstream 10 ms, kong 2 ms.
  EXPECT_TRUE(absl::StrContains(
      text, "kong_upstream_latency_ms_sum{service=\"orders\",route=\"list\",workspace=\"default\"} 10\n"));
  EXPECT_TRUE(absl::StrContains(
      text, "kong_request_latency_ms_sum{service=\"orders\",route=\"list\",workspace=\"default\"} 12\n"));
  EXPECT_TRUE(absl::StrContains(
      text, "kong_kong_latency_ms_sum{service=\"orders\",route=\"list\",workspace=\"default\"} 2\n"));
  EXPECT_TRUE(absl::StrContains(text, "kong_bandwidth_bytes{service=\"orders\",route=\"list\",direction=\"egress\","
                                      "workspace=\"default\",consumer=\"alice\"} 40\n"));
}

TEST(PrometheusPluginTest, RouteAndServiceScopesRecordOnlyTheirRoutes) {
  TrafficMetrics store(4096);
  auto config = Config();
  auto on_route = Compile(&store, *config, MakePlugin({{"status_code_metrics", true}}, Id(12)));
  auto on_service = Compile(&store, *config, MakePlugin({{"status_code_metrics", true}}, "", Id(2)));
  ASSERT_NE(on_route, nullptr);
  ASSERT_NE(on_service, nullptr);
  for (int route = 0; route < 4; ++route) {
    LogRequest(*on_route, *config, route, 201);
    LogRequest(*on_service, *config, route, 202);
  }
  std::string text;
  store.Render(&text);
  const std::vector<std::string> requests = Lines(text, "kong_http_requests_total{");
  ASSERT_EQ(requests.size(), 2u) << text;
  EXPECT_TRUE(absl::StrContains(requests[0], "route=\"" + Id(12) + "\",code=\"201\""));
  EXPECT_TRUE(absl::StrContains(requests[1], "service=\"users.internal\",route=\"" + Id(13) + "\",code=\"202\""));
}

TEST(PrometheusPluginTest, KongsDefaultsRecordNothingPerRequestAndAddNoLogStep) {
  TrafficMetrics store(1024);
  auto config = Config();
  auto handler = Compile(&store, *config, MakePlugin(json::object()));
  ASSERT_NE(handler, nullptr);
  EXPECT_FALSE(handler->logs());
  EXPECT_FALSE(store.upstream_health_enabled());
  Compile(&store, *config, MakePlugin({{"upstream_health_metrics", true}}));
  EXPECT_TRUE(store.upstream_health_enabled());

  // Through the chain: the schema fills Kong's defaults; a log step only when a family is on.
  config->plugins = {MakePlugin(json::object())};
  Pipeline quiet;
  ASSERT_TRUE(AddPluginChain(*config, &quiet).ok());
  EXPECT_TRUE(quiet.log_steps().empty());
  config->plugins = {MakePlugin({{"latency_metrics", true}})};
  Pipeline measured;
  ASSERT_TRUE(AddPluginChain(*config, &measured).ok());
  EXPECT_EQ(measured.log_steps().size(), 1u);
  config->plugins = {MakePlugin({{"latency_metrics", "maybe"}})};
  Pipeline refused;
  absl::Status s = AddPluginChain(*config, &refused);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "latency_metrics")) << s;
}

TEST(PrometheusPluginTest, NoAllocationInTheLogPhaseOnceWarm) {
  g_allocations = 0;
  g_count_allocations = true;
  auto counted = std::make_unique<std::string>(64, 'x');
  g_count_allocations = false;
  ASSERT_GT(g_allocations, 0u) << "the counter counts";
  TrafficMetrics store(4096);
  auto config = Config();
  auto handler = Compile(&store, *config,
                         MakePlugin({{"status_code_metrics", true}, {"per_consumer", true}, {"bandwidth_metrics", true},
                                     {"latency_metrics", true}}));
  ASSERT_NE(handler, nullptr);
  for (int round = 0; round < 3; ++round) {
    g_allocations = 0;
    g_count_allocations = round > 0;
    LogRequest(*handler, *config, 0, 200, &config->consumers[0]);  // a new status code or bucket takes a
    LogRequest(*handler, *config, 1, 503);                         // cell, never memory
    g_count_allocations = false;
    if (round > 0) EXPECT_EQ(g_allocations, 0u) << "round " << round;
  }
}

TEST(PrometheusPluginTest, CountersSurviveASnapshotSwap) {
  TrafficMetrics store(1024);
  auto first = Config();
  auto second = Config();  // the same routes again, at new addresses
  auto before = Compile(&store, *first, MakePlugin({{"status_code_metrics", true}}));
  auto after = Compile(&store, *second, MakePlugin({{"status_code_metrics", true}}));
  LogRequest(*before, *first, 0, 200);
  LogRequest(*after, *second, 0, 200);
  std::string text;
  store.Render(&text);
  const std::vector<std::string> requests = Lines(text, "kong_http_requests_total{");
  ASSERT_EQ(requests.size(), 1u) << text;
  EXPECT_TRUE(absl::EndsWith(requests[0], "} 2"));
}

}  // namespace
}  // namespace portico::dp::plugins
