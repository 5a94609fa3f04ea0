// Router scaling benchmark (issue 3): match time and build time with 10, 1,000, 10,000 and
// 100,000 routes of a realistic mix, and router memory per route.
//
//   ninja -C build-r router_bench && build-r/bench/router_bench
//
// Route mix: 50% exact host + prefix path, 10% exact host + regex path, 10% exact host + method +
// prefix, 10% exact host + header + prefix, 10% host-less prefix, 5% wildcard host, 5% host-less
// regex. Hosts are shared by ~20 routes each ("tenants").
// Every Match benchmark cycles through 1,024 requests of its kind (as many different ones as the
// config has, up to 1,024; repeated copies below that). Besides Google
// Benchmark's mean, each Match benchmark reports p50/p99 per match (counters p50_ns, p99_ns),
// measured over batches of 64 matches after the timed loop.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "common/config/config_set.h"
#include "common/config/validate.h"
#include "data_plane/router/router.h"

namespace portico::dp {
namespace {

constexpr int kRequestsPerKind = 1024;

std::string RouteId(int n) {
  std::string hex = absl::StrCat(absl::Hex(n, absl::kZeroPad12));
  return absl::StrCat("00000000-0000-4000-8000-", hex);
}

struct Workload {
  std::shared_ptr<const ConfigSet> config;
  struct Req {
    std::string method, host, path;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  std::map<std::string, std::vector<Req>> requests;  // kind -> requests
};

// The defaults the Admin API fills in, so that the config also passes ValidateConfigSet.
void SetRouteDefaults(config::v1::Route& route) {
  route.add_protocols("http");
  route.add_protocols("https");
  route.set_https_redirect_status_code(426);
  route.set_path_handling("v0");
}

// The one enabled service every benchmark route points to.
const config::v1::Service& AddService(ConfigSet& set) {
  config::v1::Service service;
  service.set_id("aaaaaaaa-0000-4000-8000-000000000001");
  service.set_host("127.0.0.1");
  service.set_port(80);
  service.set_enabled(true);
  service.set_protocol("http");
  service.set_connect_timeout(60000);
  service.set_read_timeout(60000);
  service.set_write_timeout(60000);
  set.services.push_back(service);
  return set.services.back();
}

std::shared_ptr<const ConfigSet> MakeConfig(int route_count, Workload* workload) {
  auto set = std::make_shared<ConfigSet>();
  const config::v1::Service& service = AddService(*set);
  const int tenants = std::max(1, route_count / 20);
  set->routes.reserve(static_cast<size_t>(route_count));
  for (int i = 0; i < route_count; ++i) {
    config::v1::Route route;
    SetRouteDefaults(route);
    route.set_id(RouteId(i + 1));
    route.set_service_id(service.id());
    route.set_strip_path(true);
    const int tenant = i % tenants;
    const std::string host = absl::StrCat("t", tenant, ".example.com");
    // 20-slot cycle: P prefix (50%), R regex, M method, H header, L host-less prefix (10% each),
    // W wildcard host, G host-less regex (5% each). Every kind appears within 10 routes.
    static constexpr char kCycle[] = "PRMHLPWPGPPRMPLPPHPP";
    const char slot = kCycle[i % 20];
    Workload::Req req;
    req.method = "GET";
    std::string kind;
    if (slot == 'P') {
      route.mutable_hosts()->add_values(host);
      route.mutable_paths()->add_values(absl::StrCat("/api/v", i % 3, "/res", i));
      kind = "host_prefix";
      req.host = host;
      req.path = absl::StrCat("/api/v", i % 3, "/res", i, "/items/7");
    } else if (slot == 'R') {
      route.mutable_hosts()->add_values(host);
      route.mutable_paths()->add_values(absl::StrCat("~/api/v1/obj", i, "/\\d+$"));
      kind = "host_regex";
      req.host = host;
      req.path = absl::StrCat("/api/v1/obj", i, "/123");
    } else if (slot == 'M') {
      route.mutable_hosts()->add_values(host);
      route.mutable_methods()->add_values("POST");
      route.mutable_paths()->add_values(absl::StrCat("/api/v1/orders", i));
      kind = "host_method";
      req.method = "POST";
      req.host = host;
      req.path = absl::StrCat("/api/v1/orders", i, "/1");
    } else if (slot == 'H') {
      route.mutable_hosts()->add_values(host);
      (*route.mutable_headers()->mutable_values())["x-version"].add_values(absl::StrCat("v", i % 4));
      route.mutable_paths()->add_values("/api");
      kind = "host_header";
      req.host = host;
      req.path = "/api/things";
      req.headers.push_back({"X-Version", absl::StrCat("v", i % 4)});
    } else if (slot == 'L') {
      route.mutable_paths()->add_values(absl::StrCat("/global/", i, "/"));
      kind = "hostless_prefix";
      req.host = "unknown.example.net";
      req.path = absl::StrCat("/global/", i, "/x");
    } else if (slot == 'W') {
      route.mutable_hosts()->add_values(absl::StrCat("*.w", i, ".example.org"));
      route.mutable_paths()->add_values("/");
      kind = "wildcard_host";
      req.host = absl::StrCat("a.w", i, ".example.org");
      req.path = "/x";
    } else {
      route.mutable_paths()->add_values(absl::StrCat("~/g/", i, "/\\w+$"));
      kind = "hostless_regex";
      req.host = "unknown.example.net";
      req.path = absl::StrCat("/g/", i, "/abc");
    }
    set->routes.push_back(std::move(route));
    if (workload != nullptr) workload->requests[kind].push_back(std::move(req));
  }
  if (workload != nullptr) {
    // Requests that match nothing: unknown host, unknown path.
    for (int i = 0; i < kRequestsPerKind; ++i) {
      workload->requests["miss"].push_back({"GET", absl::StrCat("nope", i, ".test"), absl::StrCat("/nothing/", i), {}});
    }
    for (auto& [kind, list] : workload->requests) {
      // Spread over the whole config, at most kRequestsPerKind.
      if (list.size() > static_cast<size_t>(kRequestsPerKind)) {
        std::vector<Workload::Req> picked;
        const size_t step = list.size() / kRequestsPerKind;
        for (size_t i = 0; i < list.size() && picked.size() < static_cast<size_t>(kRequestsPerKind); i += step) {
          picked.push_back(list[i]);
        }
        list = std::move(picked);
      }
      // Small configs have few requests of a kind: repeat them (separate copies) up to
      // kRequestsPerKind so that every size reads the same amount of request data per match and
      // only the router's own cost differs between sizes.
      const size_t distinct = list.size();
      while (!list.empty() && list.size() < static_cast<size_t>(kRequestsPerKind)) {
        list.push_back(list[list.size() % distinct]);
      }
    }
  }
  return set;
}

struct Prepared {
  Workload workload;
  std::unique_ptr<const Router> router;
  // The same config matched by a router layered (Router::BuildOn) on a whole one, told that 64
  // routes spread over the config changed (the most a layered router holds): every request then
  // also goes through the overlay table, the mask and the index mapping, as on a DP after deltas.
  std::unique_ptr<const Router> layered;
};

constexpr int kLayeredChanges = 64;

Prepared& Get(int route_count) {
  static std::map<int, std::unique_ptr<Prepared>> cache;
  auto& slot = cache[route_count];
  if (slot == nullptr) {
    slot = std::make_unique<Prepared>();
    slot->workload.config = MakeConfig(route_count, &slot->workload);
    slot->router = *Router::Build(slot->workload.config);
    std::vector<std::string> ids;
    const int changes = std::min(route_count, kLayeredChanges);
    for (int i = 0; i < changes; ++i) ids.push_back(RouteId(1 + i * (route_count / changes)));
    RouteChanges route_changes;
    for (const std::string& id : ids) route_changes.route_ids.push_back(id);
    auto copy = std::make_shared<const ConfigSet>(*slot->workload.config);
    slot->layered = *Router::BuildOn(*slot->router, copy, route_changes);
    if (!slot->layered->layered()) std::abort();
    slot->workload.config = copy;  // the layered router resolves into the copy
  }
  return *slot;
}

// Request views with header vectors that outlive the benchmark loop.
struct Views {
  std::vector<std::vector<std::pair<absl::string_view, absl::string_view>>> headers;
  std::vector<RequestView> views;
};

Views MakeViews(const std::vector<Workload::Req>& requests) {
  Views v;
  v.headers.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    for (const auto& [name, value] : requests[i].headers) v.headers[i].emplace_back(name, value);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    RequestView view;
    view.method = requests[i].method;
    view.host = requests[i].host;
    view.port = 8000;
    view.path = requests[i].path;
    view.headers = v.headers[i].empty() ? nullptr : &v.headers[i];
    v.views.push_back(view);
  }
  return v;
}

void BM_Match(benchmark::State& state, const std::string& kind, bool expect_match, bool layered = false) {
  Prepared& prepared = Get(static_cast<int>(state.range(0)));
  auto it = prepared.workload.requests.find(kind);
  if (it == prepared.workload.requests.end() || it->second.empty()) {
    state.SkipWithError("no route of this kind at this size");
    return;
  }
  const Views views = MakeViews(it->second);
  const Router& router = layered ? *prepared.layered : *prepared.router;
  for (const RequestView& view : views.views) {
    if (router.Find(view).has_value() != expect_match) {
      state.SkipWithError("unexpected match result");
      return;
    }
  }
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(router.Find(views.views[i]));
    if (++i == views.views.size()) i = 0;
  }
  // p50 / p99 per match over batches of 64 (amortises the clock read).
  std::vector<double> per_match_ns;
  constexpr int kBatch = 64;
  for (int batch = 0; batch < 2000; ++batch) {
    const auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < kBatch; ++k) {
      benchmark::DoNotOptimize(router.Find(views.views[i]));
      if (++i == views.views.size()) i = 0;
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    per_match_ns.push_back(std::chrono::duration<double, std::nano>(elapsed).count() / kBatch);
  }
  std::sort(per_match_ns.begin(), per_match_ns.end());
  state.counters["p50_ns"] = per_match_ns[per_match_ns.size() / 2];
  state.counters["p99_ns"] = per_match_ns[per_match_ns.size() * 99 / 100];
  state.counters["routes"] = static_cast<double>(state.range(0));
}

void BM_Build(benchmark::State& state) {
  const int route_count = static_cast<int>(state.range(0));
  const std::shared_ptr<const ConfigSet> config = MakeConfig(route_count, nullptr);
  size_t bytes = 0;
  for (auto _ : state) {
    const struct mallinfo2 before = mallinfo2();
    absl::StatusOr<std::unique_ptr<const Router>> router = Router::Build(config);
    const struct mallinfo2 after = mallinfo2();
    if (!router.ok()) {
      state.SkipWithError("build failed");
      return;
    }
    // Heap in use (small and mmapped chunks) plus the router's own mapped arena blocks.
    bytes = (after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd) + (*router)->mapped_bytes();
    state.PauseTiming();
    router->reset();
    state.ResumeTiming();
  }
  state.counters["router_bytes_per_route"] = static_cast<double>(bytes) / route_count;
  state.counters["router_MiB"] = static_cast<double>(bytes) / (1 << 20);
  state.counters["routes"] = route_count;
}

// What the DP's validation (ValidateConfigSet, run before Router::Build) costs on the same mix.
void BM_Validate(benchmark::State& state) {
  const std::shared_ptr<const ConfigSet> config = MakeConfig(static_cast<int>(state.range(0)), nullptr);
  for (auto _ : state) {
    absl::Status status = ValidateConfigSet(*config);
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      return;
    }
  }
  state.counters["routes"] = static_cast<double>(state.range(0));
}

// The route shape of bench/apply_100k: every route has its own path, one of 100 tenant hosts and a
// host shared by all routes (one bucket holds every route), and two methods.
void BM_BuildSharedHost(benchmark::State& state) {
  const int route_count = static_cast<int>(state.range(0));
  auto set = std::make_shared<ConfigSet>();
  const config::v1::Service& service = AddService(*set);
  for (int i = 0; i < route_count; ++i) {
    config::v1::Route route;
    SetRouteDefaults(route);
    route.set_id(RouteId(i + 1));
    route.set_service_id(service.id());
    route.mutable_paths()->add_values(absl::StrCat("/r", i));
    route.mutable_hosts()->add_values(absl::StrCat("h", i % 100, ".example.com"));
    route.mutable_hosts()->add_values("client.example");
    route.mutable_methods()->add_values("GET");
    route.mutable_methods()->add_values("POST");
    set->routes.push_back(std::move(route));
  }
  const std::shared_ptr<const ConfigSet> config = set;
  for (auto _ : state) {
    absl::StatusOr<std::unique_ptr<const Router>> router = Router::Build(config);
    if (!router.ok()) {
      state.SkipWithError("build failed");
      return;
    }
    state.PauseTiming();
    router->reset();
    state.ResumeTiming();
  }
  state.counters["routes"] = route_count;
}

#define PORTICO_SIZES Arg(10)->Arg(1000)->Arg(10000)->Arg(100000)
BENCHMARK_CAPTURE(BM_Match, host_prefix, std::string("host_prefix"), true)->PORTICO_SIZES;
BENCHMARK_CAPTURE(BM_Match, host_regex, std::string("host_regex"), true)->PORTICO_SIZES;
BENCHMARK_CAPTURE(BM_Match, host_method, std::string("host_method"), true)->PORTICO_SIZES;
BENCHMARK_CAPTURE(BM_Match, host_header, std::string("host_header"), true)->PORTICO_SIZES;
BENCHMARK_CAPTURE(BM_Match, hostless_prefix, std::string("hostless_prefix"), true)->PORTICO_SIZES;
BENCHMARK_CAPTURE(BM_Match, wildcard_host, std::string("wildcard_host"), true)->PORTICO_SIZES;
BENCHMARK_CAPTURE(BM_Match, hostless_regex, std::string("hostless_regex"), true)->PORTICO_SIZES;
BENCHMARK_CAPTURE(BM_Match, miss, std::string("miss"), false)->PORTICO_SIZES;
// Layered on a whole table with 64 routes changed (Router::BuildOn), 100,000 routes.
BENCHMARK_CAPTURE(BM_Match, layered_host_prefix, std::string("host_prefix"), true, true)->Arg(100000);
BENCHMARK_CAPTURE(BM_Match, layered_host_regex, std::string("host_regex"), true, true)->Arg(100000);
BENCHMARK_CAPTURE(BM_Match, layered_hostless_prefix, std::string("hostless_prefix"), true, true)->Arg(100000);
BENCHMARK_CAPTURE(BM_Match, layered_wildcard_host, std::string("wildcard_host"), true, true)->Arg(100000);
BENCHMARK_CAPTURE(BM_Match, layered_miss, std::string("miss"), false, true)->Arg(100000);
BENCHMARK(BM_Build)->PORTICO_SIZES->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_Validate)->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_BuildSharedHost)->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace portico::dp

BENCHMARK_MAIN();
