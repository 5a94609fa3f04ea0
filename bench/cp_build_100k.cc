// cp_build_100k: where the CP's time goes from a commit to a published snapshot with N routes
// (default 100,000; the route shape of apply_100k: 1 path, 2 hosts, 2 methods, one service), in
// process, without the Admin API: the store read, ExportableConfig, ValidateConfigSet and the
// snapshot build (with its parts measured separately: serializing the entities, SHA-256 of the
// bodies, serializing the payload, gzip), then the change log (diff + deltas) for one added route;
// then the incremental build of one added route (the store's change feed and the config mirror).
// Usage: cp_build_100k [routes] [repeats] [store location (default: a SQLite file in a temporary
// directory; a PostgreSQL conninfo must name an empty database)]
#include <openssl/evp.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/route_shape.h"
#include "common/base/clock.h"
#include "common/config/entity_json.h"
#include "common/config/validate.h"
#include "common/snapshot/snapshot.h"
#include "control_plane/store/store.h"
#include "control_plane/sync/change_log.h"
#include "control_plane/sync/config_mirror.h"

namespace portico {
using cp::EntityPtr;
using cp::Store;
using cp::WriteMode;
namespace {

using Steady = std::chrono::steady_clock;

double MsSince(Steady::time_point t) { return std::chrono::duration<double, std::milli>(Steady::now() - t).count(); }

config::v1::Route MakeRoute(int i, const std::string& service_id) {
  return BenchRoute(i, IdFor(1000000 + i), service_id);
}

std::string Gzip6(const std::string& raw) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, raw.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

int Run(int routes, int repeats, std::string location) {
  const std::string dir = absl::StrCat(std::filesystem::temp_directory_path().string(), "/cp_build_100k_", getpid());
  std::filesystem::create_directories(dir);
  RealClock clock;
  if (location.empty()) location = dir + "/portico.db";
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(location, clock);
  if (!store.ok()) {
    std::fprintf(stderr, "store: %s\n", store.status().ToString().c_str());
    return 1;
  }
  config::v1::Service service = DefaultService();
  service.set_id(IdFor(1));
  service.set_name("echo");
  service.set_host("127.0.0.1");
  service.set_port(8080);
  std::vector<config::v1::Route> route_rows;
  route_rows.reserve(routes);
  for (int i = 0; i < routes; ++i) route_rows.push_back(MakeRoute(i, service.id()));
  const EntityRegistry& kinds = (*store)->kinds();
  Store::KindRows service_rows{kinds.Find(config::v1::Service::descriptor()), {&service}};
  Store::KindRows route_kind{kinds.Find(config::v1::Route::descriptor()), {}};
  for (const auto& r : route_rows) route_kind.entities.push_back(&r);
  auto t = Steady::now();
  absl::StatusOr<std::vector<EntityPtr>> replaced = (*store)->ReplaceConfig({service_rows, route_kind});
  if (!replaced.ok()) {
    std::fprintf(stderr, "ReplaceConfig: %s\n", replaced.status().ToString().c_str());
    return 1;
  }
  std::printf("store: %d routes written in one transaction in %.0f ms\n", routes, MsSince(t));

  std::shared_ptr<BuiltSnapshot> previous;
  cp::ChangeLog log;
  for (int round = 0; round < repeats; ++round) {
    if (round > 0) {  // one more route, as apply_100k's swap does
      config::v1::Route more = MakeRoute(routes + round, service.id());
      absl::StatusOr<EntityPtr> w =
          (*store)->WriteEntity(*route_kind.kind, more, WriteMode::kInsert);
      if (!w.ok()) {
        std::fprintf(stderr, "write: %s\n", w.status().ToString().c_str());
        return 1;
      }
    }
    t = Steady::now();
    absl::StatusOr<StoredConfig> stored = (*store)->ReadConfig();
    const double read_ms = MsSince(t);
    if (!stored.ok()) return 1;
    const ConfigVersion version = stored->version;
    t = Steady::now();
    ConfigSet exported = ExportableConfig(std::move(stored->config), version.epoch);
    const double export_ms = MsSince(t);
    t = Steady::now();
    absl::Status valid = ValidateConfigSet(exported);
    const double validate_ms = MsSince(t);
    if (!valid.ok()) {
      std::fprintf(stderr, "invalid: %s\n", valid.ToString().c_str());
      return 1;
    }
    t = Steady::now();
    absl::StatusOr<std::shared_ptr<BuiltSnapshot>> built = BuildSnapshotOfExported(exported, version, clock);
    const double build_ms = MsSince(t);
    if (!built.ok()) return 1;

    // The parts of the build, measured apart on the same data.
    t = Steady::now();
    size_t body_bytes = 0;
    std::vector<std::string> bodies;
    bodies.reserve(exported.routes.size() + exported.services.size());
    for (const auto& s : exported.services) bodies.push_back(s.SerializeAsString());
    for (const auto& r : exported.routes) bodies.push_back(r.SerializeAsString());
    for (const auto& b : bodies) body_bytes += b.size();
    const double serialize_entities_ms = MsSince(t);
    t = Steady::now();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    for (const auto& b : bodies) EVP_Digest(b.data(), b.size(), digest, &len, EVP_sha256(), nullptr);
    const double sha_ms = MsSince(t);
    t = Steady::now();
    std::string payload = SerializeFullPayload((*built)->version, *(*built)->resources);
    const double payload_ms = MsSince(t);
    t = Steady::now();
    std::string gz = Gzip6(payload);
    const double gzip_ms = MsSince(t);

    t = Steady::now();
    log.Record(previous.get(), **built);
    const double diff_ms = MsSince(t);
    t = Steady::now();
    (*built)->deltas = log.BuildDeltas(**built, clock, {});
    const double deltas_ms = MsSince(t);

    std::printf(
        "version %llu: read %.0f ms | export %.0f ms | validate %.0f ms | build %.0f ms (apart: serialize "
        "entities %.0f ms, SHA-256 %.0f ms, payload %.0f ms, gzip %.0f ms; %zu bodies %.1f MB, payload %.1f MB, gzip "
        "%.2f MB) | change log: diff %.1f ms, %zu delta(s) in %.1f ms%s\n",
        static_cast<unsigned long long>(version.version), read_ms, export_ms, validate_ms, build_ms,
        serialize_entities_ms, sha_ms, payload_ms, gzip_ms, bodies.size(), body_bytes / 1e6, payload.size() / 1e6,
        gz.size() / 1e6, diff_ms, (*built)->deltas.size(), deltas_ms,
        (*built)->deltas.empty()
            ? ""
            : absl::StrCat(" (newest: ", (*built)->deltas[0]->change_count, " change(s), ",
                           (*built)->deltas[0]->compressed.size(), " bytes gzip)")
                  .c_str());
    previous = *built;
  }
  // The incremental build (docs/sync.md "Incremental build"): the mirror of the last version, then
  // one more route at a time through the store's change feed.
  t = Steady::now();
  absl::StatusOr<StoredConfig> again = (*store)->ReadConfig();
  if (!again.ok() || previous == nullptr || again->version.version != previous->version.version) return 1;
  ConfigSet exported_again = ExportableConfig(again->config, again->version.epoch);
  cp::ConfigMirror mirror;
  mirror.Reset(std::move(again->config), exported_again, previous);
  std::printf("incremental: mirror of version %llu held after %.0f ms (read, export copy, reset)\n",
              static_cast<unsigned long long>(previous->version.version), MsSince(t));
  for (int round = 0; round < repeats; ++round) {
    config::v1::Route more = MakeRoute(routes + repeats + round, service.id());
    absl::StatusOr<EntityPtr> w = (*store)->WriteEntity(*route_kind.kind, more, WriteMode::kInsert);
    if (!w.ok()) return 1;
    const auto start = Steady::now();
    absl::StatusOr<StoredChanges> changes = (*store)->ReadConfigChanges(previous->version.version, 10000);
    const double read_ms = MsSince(start);
    if (!changes.ok()) return 1;
    const bool by_hand = !changes->covered;
    if (by_hand) {  // a store without a change feed: the change made here
      changes->covered = true;
      ConfigChange change;
      change.kind = route_kind.kind;
      change.id = more.id();
      change.entity = std::move(*w);
      changes->changes.push_back(std::move(change));
    }
    const size_t rows = changes->changes.size();
    t = Steady::now();
    absl::StatusOr<cp::ConfigMirror::Next> next = mirror.Apply(*std::move(changes), clock);
    const double apply_ms = MsSince(t);
    if (!next.ok()) {
      std::fprintf(stderr, "incremental: %s\n", next.status().ToString().c_str());
      return 1;
    }
    t = Steady::now();
    log.Record(previous.get(), *next->indexed, &next->diff);
    next->indexed->deltas = log.BuildDeltas(*next->indexed, clock, {});
    const double deltas_ms = MsSince(t);
    std::printf(
        "incremental version %llu: read changes %.1f ms (%zu row(s)%s) | apply %.1f ms (%zu validated) | "
        "deltas %.1f ms | commit -> deltas ready %.1f ms\n",
        static_cast<unsigned long long>(next->indexed->version.version), read_ms, rows,
        by_hand ? ", no feed: made by hand" : "", apply_ms, next->validated, deltas_ms, MsSince(start));
    previous = next->indexed;
    mirror.Commit(previous);
  }
  (*store)->Close().IgnoreError();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace portico

int main(int argc, char** argv) {
  int routes = 100000, repeats = 3;
  if (argc > 1 && !absl::SimpleAtoi(argv[1], &routes)) return 2;
  if (argc > 2 && !absl::SimpleAtoi(argv[2], &repeats)) return 2;
  return portico::Run(routes, repeats, argc > 3 ? argv[3] : "");
}
