// dp_apply_100k: where the DP's time goes when it applies a one-route delta to a config of N
// routes (default 100,000; the route shape of apply_100k and cp_build_100k: 1 path, 2 hosts, 2
// methods, one service), in process, without gRPC or workers. The full snapshot and the delta are
// built with the CP's functions (BuildSnapshotOfExported, DiffResources, BuildDeltaSnapshot); the
// DP side runs what SyncClient and portico-dp's apply run: DecodeSnapshot for the full snapshot,
// then DecodeDelta on it, ValidateConfigSet with the upserted set, RuntimeConfig::Compile (the
// router layered on the serving runtime's, Router::BuildOn) and
// HealthTargets. Each step is timed on its own (median of the repeats), and so are parts of them
// measured apart on the same data (Router::Build alone; the copies DecodeDelta makes; releasing
// the previous config, which the DP does when the next one replaces it).
// Usage: dp_apply_100k [routes] [repeats] [--deferred-release]
// --deferred-release: the replaced config goes to a DeferredRelease, as ProxyServer::Publish and
// the sync client's `release` hook hand it over; the release step then times only what the caller
// still does.
#include <algorithm>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/route_shape.h"
#include "common/base/clock.h"
#include "common/config/entity_json.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"
#include "data_plane/health/health_registry.h"
#include "data_plane/proxy/deferred_release.h"
#include "data_plane/proxy/runtime_config.h"
#include "data_plane/router/router.h"

namespace portico {
namespace {

using Steady = std::chrono::steady_clock;

// A point in time: wall clock and this thread's CPU time (the CPU figure holds when other
// processes share the machine; the wall one is what a DP waits).
struct Mark {
  Steady::time_point wall;
  double cpu_ms;
};
double ThreadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}
Mark Now() { return Mark{Steady::now(), ThreadCpuMs()}; }
struct Sample {
  double wall_ms = 0;
  double cpu_ms = 0;
  Sample operator+(const Sample& o) const { return Sample{wall_ms + o.wall_ms, cpu_ms + o.cpu_ms}; }
};
Sample MsSince(const Mark& t) {
  return Sample{std::chrono::duration<double, std::milli>(Steady::now() - t.wall).count(), ThreadCpuMs() - t.cpu_ms};
}

constexpr int64_t kCreatedAt = 1790000000;  // a fixed time, as the Admin API sets one

config::v1::Route MakeRoute(int i, const std::string& id, const std::string& service_id) {
  config::v1::Route r = BenchRoute(i, id, service_id);
  r.set_created_at(kCreatedAt);
  r.set_updated_at(kCreatedAt);
  return r;
}

// Times a copy of `value` and the free of that copy.
template <typename T>
void TimeCopyAndFree(const T& value, std::vector<Sample>* copy_times, std::vector<Sample>* free_times) {
  Mark t = Now();
  auto copy = std::make_unique<T>(value);
  copy_times->push_back(MsSince(t));
  t = Now();
  copy.reset();
  free_times->push_back(MsSince(t));
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Median, min and max of one step's wall time over the repeats, and its median CPU time.
std::string Figure(const std::vector<Sample>& samples) {
  if (samples.empty()) return "-";
  std::vector<double> wall, cpu;
  for (const Sample& x : samples) {
    wall.push_back(x.wall_ms);
    cpu.push_back(x.cpu_ms);
  }
  return absl::StrFormat("%7.1f ms (min %.1f, max %.1f; CPU %.1f ms)", Median(wall),
                         *std::min_element(wall.begin(), wall.end()), *std::max_element(wall.begin(), wall.end()),
                         Median(cpu));
}

int Run(int routes, int repeats, bool deferred_release) {
  RealClock clock;
  config::v1::Service service = DefaultService();
  service.set_id(IdFor(1));
  service.set_created_at(kCreatedAt);
  service.set_updated_at(kCreatedAt);
  service.set_name("echo");
  service.set_host("127.0.0.1");
  service.set_port(8080);

  // Base version: `routes` routes (ids sorted as the store reads them).
  ConfigSet base_set;
  base_set.services.push_back(service);
  base_set.routes.reserve(routes);
  for (int i = 0; i < routes; ++i) base_set.routes.push_back(MakeRoute(i, IdFor(1000000 + i), service.id()));
  // `set` with route number `n` added, its id sorted among the others (a new route's random UUID
  // lands anywhere): the id of the route numbered ...9 near `near`, last digit replaced by `mark`.
  auto with_route = [&service](ConfigSet set, int near, char mark, int n) {
    std::string id = IdFor(1000000 + std::max(0, near / 10 * 10 - 1));
    id.back() = mark;
    auto at = std::upper_bound(set.routes.begin(), set.routes.end(), id,
                               [](const std::string& key, const config::v1::Route& r) { return key < r.id(); });
    set.routes.insert(at, MakeRoute(n, id, service.id()));
    return set;
  };
  // Target: one more route, in the middle. A third version: one more again (the DP's next delta,
  // applied in place; see below).
  const ConfigSet target_set = with_route(base_set, routes / 2, 'a', routes);
  const ConfigSet third_set = with_route(target_set, routes / 3, 'b', routes + 1);
  const std::string epoch(16, '\x42');

  auto t = Now();
  ConfigSet base_exported = ExportableConfig(base_set, epoch);
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> base_built =
      BuildSnapshotOfExported(base_exported, ConfigVersion{epoch, 1, ""}, clock);
  if (!base_built.ok()) {
    std::fprintf(stderr, "base build: %s\n", base_built.status().ToString().c_str());
    return 1;
  }
  ConfigSet target_exported = ExportableConfig(target_set, epoch);
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> target_built =
      BuildSnapshotOfExported(target_exported, ConfigVersion{epoch, 2, ""}, clock);
  if (!target_built.ok()) return 1;
  const ChangeList changes = DiffResources(*(*base_built)->resources, *(*target_built)->resources);
  absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> delta =
      BuildDeltaSnapshot(**target_built, (*base_built)->version, changes, clock);
  if (!delta.ok()) {
    std::fprintf(stderr, "delta build: %s\n", delta.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::shared_ptr<BuiltSnapshot>> third_built =
      BuildSnapshotOfExported(ExportableConfig(third_set, epoch), ConfigVersion{epoch, 3, ""}, clock);
  if (!third_built.ok()) return 1;
  absl::StatusOr<std::shared_ptr<const BuiltSnapshot>> third_delta = BuildDeltaSnapshot(
      **third_built, (*target_built)->version,
      DiffResources(*(*target_built)->resources, *(*third_built)->resources), clock);
  if (!third_delta.ok()) return 1;
  std::printf("CP side (not the subject here): 2 full snapshots and the delta built in %.0f ms; full %.2f MB gzip "
              "(%.1f MB raw), delta %zu change(s), %zu bytes%s\n",
              MsSince(t).wall_ms, (*base_built)->compressed.size() / 1e6, (*base_built)->uncompressed_size / 1e6,
              changes.size(), (*delta)->compressed.size(), (*delta)->gzip ? " gzip" : " (uncompressed)");

  dp::HealthRegistry health;
  dp::DeferredRelease release;  // with --deferred-release: frees replaced configs, as the DP does
  constexpr int kWorkers = 2;  // the DP of apply_100k
  std::vector<Sample> full_decode, full_validate, full_compile, full_total;
  std::vector<Sample> d_decode, d_validate, d_compile, d_health, d_total, d_release;
  std::vector<Sample> release_runtime, release_config;
  std::vector<Sample> in_place_decode;
  std::vector<Sample> router_build, configset_copy, configset_free, index_copy, index_free, config_hash, persist;
  DecodedSnapshot held;
  std::shared_ptr<const dp::RuntimeConfig> serving;

  for (int round = 0; round < repeats; ++round) {
    // The full snapshot, applied as a DP at first contact does (the base of the delta).
    const auto full_start = Now();
    t = Now();
    absl::StatusOr<DecodedSnapshot> full = DecodeSnapshot((*base_built)->compressed, true,
                                                          (*base_built)->uncompressed_size, (*base_built)->version);
    full_decode.push_back(MsSince(t));
    if (!full.ok()) {
      std::fprintf(stderr, "decode: %s\n", full.status().ToString().c_str());
      return 1;
    }
    t = Now();
    if (absl::Status s = ValidateConfigSet(*full->config); !s.ok()) {
      std::fprintf(stderr, "validate: %s\n", s.ToString().c_str());
      return 1;
    }
    full_validate.push_back(MsSince(t));
    t = Now();
    absl::StatusOr<std::shared_ptr<const dp::RuntimeConfig>> full_runtime =
        dp::RuntimeConfig::Compile(full->config, full->version, {}, kWorkers, &health, {});
    full_compile.push_back(MsSince(t));
    if (!full_runtime.ok()) {
      std::fprintf(stderr, "compile: %s\n", full_runtime.status().ToString().c_str());
      return 1;
    }
    health.Install((*full_runtime)->HealthTargets());
    full_total.push_back(MsSince(full_start));
    held = *std::move(full);
    serving = *std::move(full_runtime);

    // The one-route delta on it, as SyncClient::HandleChunk and portico-dp's apply_delta do.
    const auto delta_start = Now();
    t = Now();
    absl::StatusOr<DecodedSnapshot> decoded = DecodeDelta((*delta)->compressed, (*delta)->gzip, (*delta)->uncompressed_size,
                                                          (*delta)->base, (*delta)->version, held);
    d_decode.push_back(MsSince(t));
    if (!decoded.ok()) {
      std::fprintf(stderr, "delta: %s\n", decoded.status().ToString().c_str());
      return 1;
    }
    t = Now();
    if (absl::Status s = ValidateConfigSet(*decoded->config, decoded->upserted.get()); !s.ok()) {
      std::fprintf(stderr, "validate delta: %s\n", s.ToString().c_str());
      return 1;
    }
    d_validate.push_back(MsSince(t));
    t = Now();
    absl::StatusOr<std::shared_ptr<const dp::RuntimeConfig>> runtime =
        dp::RuntimeConfig::Compile(decoded->config, decoded->version, {}, kWorkers, &health, {}, serving.get(),
                                   decoded->upserted.get());
    d_compile.push_back(MsSince(t));
    if (!runtime.ok()) return 1;
    if (!(*runtime)->router().layered()) {  // as portico-dp: layered on the serving runtime's router
      std::fprintf(stderr, "the delta's router was built whole\n");
      return 1;
    }
    t = Now();
    health.Install((*runtime)->HealthTargets());
    d_health.push_back(MsSince(t));
    d_total.push_back(MsSince(delta_start));
    if ((*runtime)->router().route_count() != static_cast<size_t>(routes) + 1) {
      std::fprintf(stderr, "the new router has %zu routes\n", (*runtime)->router().route_count());
      return 1;
    }

    // Releasing the replaced config (its RuntimeConfig and ConfigSet): the DP does it when the
    // last worker adopts the new one and the sync client drops its held copy.
    t = Now();
    if (deferred_release) {
      release.Retire(std::exchange(serving, *std::move(runtime)));  // as ProxyServer::Publish does
    } else {
      serving = *std::move(runtime);
    }
    release_runtime.push_back(MsSince(t));
    t = Now();
    if (deferred_release) {  // as SyncClient's `release` hook hands them over in portico-dp
      release.Retire(std::move(held.config));
      release.Retire(std::move(held.resources));
    }
    held = *std::move(decoded);
    release_config.push_back(MsSince(t));
    d_release.push_back(release_runtime.back() + release_config.back());

    // The next delta (one more route) applied as portico-dp's sync client does once the runtime
    // of the version before the held one is released: that version (here decoded again, with
    // nothing else holding it) brought forward in place (RecycledBase) instead of copying `held`.
    {
      absl::StatusOr<DecodedSnapshot> before = DecodeSnapshot((*base_built)->compressed, true,
                                                              (*base_built)->uncompressed_size, (*base_built)->version);
      if (!before.ok()) return 1;
      RecycledBase previous;
      previous.snapshot = *std::move(before);
      previous.to_held = held.changes;
      const ConfigSet* recycled = previous.snapshot.config.get();
      t = Now();
      absl::StatusOr<DecodedSnapshot> third =
          DecodeDelta((*third_delta)->compressed, (*third_delta)->gzip, (*third_delta)->uncompressed_size,
                      (*third_delta)->base, (*third_delta)->version, held, {}, &previous);
      in_place_decode.push_back(MsSince(t));
      if (!third.ok() || third->config.get() != recycled || third->config->routes.size() != static_cast<size_t>(routes) + 2) {
        std::fprintf(stderr, "in place: %s\n", third.ok() ? "not applied in place" : third.status().ToString().c_str());
        return 1;
      }
    }

    // Parts, measured apart on the same data.
    t = Now();
    absl::StatusOr<std::unique_ptr<const dp::Router>> router = dp::Router::Build(held.config);
    router_build.push_back(MsSince(t));
    if (!router.ok()) return 1;
    router->reset();
    TimeCopyAndFree(*held.config, &configset_copy, &configset_free);
    TimeCopyAndFree(*held.resources, &index_copy, &index_free);
    t = Now();
    const std::string hash = ConfigHashOf(*held.resources);
    config_hash.push_back(MsSince(t));
    t = Now();
    const std::string payload = SerializeFullPayload(held.version, *held.resources);
    persist.push_back(MsSince(t));
    serving.reset();
    held = DecodedSnapshot();
    while (release.held() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // not in the next round
  }

  std::printf("%d routes, %d repeat(s), median (min, max):\n", routes, repeats);
  std::printf("full snapshot apply   %s\n", Figure(full_total).c_str());
  std::printf("  decode (gunzip, parse, SHA-256)  %s\n", Figure(full_decode).c_str());
  std::printf("  validate                         %s\n", Figure(full_validate).c_str());
  std::printf("  compile                          %s\n", Figure(full_compile).c_str());
  std::printf("one-route delta apply %s\n", Figure(d_total).c_str());
  std::printf("  DecodeDelta                      %s\n", Figure(d_decode).c_str());
  std::printf("  DecodeDelta in place (the next delta on the version before, RecycledBase) %s\n",
              Figure(in_place_decode).c_str());
  std::printf("  validate (upserted only)         %s\n", Figure(d_validate).c_str());
  std::printf("  RuntimeConfig::Compile (router layered) %s\n", Figure(d_compile).c_str());
  std::printf("  HealthTargets + Install          %s\n", Figure(d_health).c_str());
  std::printf("releasing the replaced config%s %s\n",
              deferred_release ? " (DeferredRelease: the caller's part)" : " (on the caller)", Figure(d_release).c_str());
  std::printf("  its RuntimeConfig (router, ...)  %s\n", Figure(release_runtime).c_str());
  std::printf("  its ConfigSet and index          %s\n", Figure(release_config).c_str());
  std::printf("apart: Router::Build (whole)       %s\n", Figure(router_build).c_str());
  std::printf("apart: ConfigSet copy / free       %s / %s\n", Figure(configset_copy).c_str(),
              Figure(configset_free).c_str());
  std::printf("apart: ResourceIndex copy / free   %s / %s\n", Figure(index_copy).c_str(), Figure(index_free).c_str());
  std::printf("apart: ConfigHashOf                %s\n", Figure(config_hash).c_str());
  std::printf("apart: SerializeFullPayload (--snapshot-cache persists it after a delta) %s\n",
              Figure(persist).c_str());
  return 0;
}

}  // namespace
}  // namespace portico

int main(int argc, char** argv) {
  int routes = 100000, repeats = 5;
  bool deferred_release = false;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--deferred-release") {
      deferred_release = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  if (args.size() > 0 && (!absl::SimpleAtoi(args[0], &routes) || routes < 1)) return 2;
  if (args.size() > 1 && (!absl::SimpleAtoi(args[1], &repeats) || repeats < 1)) return 2;
  return portico::Run(routes, repeats, deferred_release);
}
