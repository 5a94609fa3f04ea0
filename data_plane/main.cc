// portico-dp: the data plane. DB-less: it receives config snapshots from the CP over mutual-TLS
// gRPC, keeps them in memory (and, only with --snapshot-cache, the last good one on disk), and
// proxies HTTP/1.1 and HTTP/2. It keeps serving its last config when the CP is gone. With
// --declarative-config FILE it runs without a CP from a kong.yml (reloaded on SIGHUP).
// `portico-dp check CONF_FILE [flags]` validates a --conf file without starting.
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <csignal>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/absl_mutex.h"
#include "common/base/flags.h"
#include "common/base/host_port.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "common/base/uuid.h"
#include "common/config/validate.h"
#include "common/http/http_server.h"
#include "common/metrics/metrics.h"
#include "common/tls/tls_files.h"
#include "common/declarative/declarative.h"
#include "data_plane/conf_keys.h"
#include "data_plane/declarative/declarative_source.h"
#include "data_plane/dns/resolver.h"
#include "data_plane/health/health_checker.h"
#include "data_plane/health/health_registry.h"
#include "data_plane/plugins/opentelemetry/otlp_sender.h"
#include "data_plane/telemetry/log_line_step.h"
#include "data_plane/telemetry/log_serializer.h"
#include "data_plane/telemetry/log_sinks.h"
#include "data_plane/plugins/plugin.h"
#include "data_plane/plugins/prometheus/traffic_metrics.h"
#include "data_plane/proxy/proxy_server.h"
#include "data_plane/proxy/runtime_config.h"
#include "data_plane/tls/server_context.h"
#include "data_plane/sync/cp_targets.h"
#include "data_plane/sync/niced_runner.h"
#include "data_plane/sync/sync_client.h"
#include "data_plane/sync/sync_client_test_hooks.h"
#include "nlohmann/json.hpp"

namespace portico::dp {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "portico-dp: %s\n", status.ToString().c_str());
  return 1;
}

// What the status listener reports; written by the sync thread, read by the status thread.
class ServingState {
 public:
  void Set(const ConfigVersion& version, size_t services, size_t routes) {
    std::lock_guard<std::mutex> lock(mu_);
    version_ = version;
    services_ = services;
    routes_ = routes;
    loaded_ = true;
  }
  bool loaded() const {
    std::lock_guard<std::mutex> lock(mu_);
    return loaded_;
  }
  uint64_t version() const {
    std::lock_guard<std::mutex> lock(mu_);
    return version_.version;
  }
  // The served config's hash as a number (its 32 bytes read big-endian, as a double); 0 for none.
  double hash_number() const {
    std::lock_guard<std::mutex> lock(mu_);
    double value = 0;
    for (unsigned char byte : version_.hash) value = value * 256 + byte;
    return value;
  }
  // Kong's readiness: a config is loaded and it is not empty.
  bool ready() const {
    std::lock_guard<std::mutex> lock(mu_);
    return loaded_ && services_ + routes_ > 0;
  }
  // SIGTERM/SIGQUIT: /status/ready answers 503 from now on.
  void SetDraining() { draining_.store(true, std::memory_order_release); }
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  nlohmann::json ToJson() const {
    std::lock_guard<std::mutex> lock(mu_);
    nlohmann::json j;
    j["config_loaded"] = loaded_;
    j["config_version"] = version_.version;
    j["configuration_hash"] = loaded_ ? nlohmann::json(ToHex(version_.hash)) : nlohmann::json();
    j["epoch"] = loaded_ ? nlohmann::json(ToHex(version_.epoch)) : nlohmann::json();
    j["services"] = services_;
    j["routes"] = routes_;
    return j;
  }

 private:
  mutable std::mutex mu_;
  ConfigVersion version_;
  size_t services_ = 0, routes_ = 0;
  bool loaded_ = false;
  std::atomic<bool> draining_{false};
};

// The DP's Prometheus metrics (docs/operations.md). Series that mirror other state (the proxy's
// request count, the sync client's state) are read at render time.
struct DpMetrics {
  explicit DpMetrics(Registry* r)
      : registry(r),
        apply_seconds(r->AddHistogram(
            "portico_dp_config_apply_seconds",
            "Time to decode, verify, build and swap a config snapshot received from the CP",
            {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10})) {}
  Registry* registry;
  Histogram* apply_seconds;
};

// The checker's view of a c-ares Resolver: one address of a name's answer, in turn.
class DnsProbeResolver final : public ProbeResolver {
 public:
  explicit DnsProbeResolver(std::unique_ptr<Resolver> resolver) : resolver_(std::move(resolver)) {}
  bool Resolve(const std::string& name, uint16_t port, uint64_t turn, sockaddr_storage* out, bool* pending) override {
    const DnsAnswerPtr* answer = resolver_->Lookup(name, port, pending);
    if (answer == nullptr || *answer == nullptr) return false;
    *out = (*answer)->Pick(turn)->address;
    return true;
  }
  void Close() override { resolver_->Close(); }

 private:
  std::unique_ptr<Resolver> resolver_;
};

void RegisterReadSeries(Registry* registry, const ServingState* state, const SyncClient* sync,
                        const ProxyServer* proxy) {
  registry->AddCallbackCounter("portico_dp_requests_total", "Requests received by the proxy workers",
                               [proxy] { return static_cast<double>(proxy->requests_total()); });
  registry->AddCallbackGauge("portico_websocket_connections", "WebSocket tunnels open on the proxy workers",
                             [proxy] { return static_cast<double>(proxy->websocket_connections()); });
  registry->AddCallbackCounter("portico_websocket_connections_opened_total",
                               "WebSocket tunnels opened (upstream answered 101) since the DP started",
                               [proxy] { return static_cast<double>(proxy->websocket_connections_opened()); });
  registry->AddCallbackGauge("portico_dp_config_version",
                             "Config version the DP serves (0 = none)",
                             [state] { return static_cast<double>(state->version()); });
  // The opentelemetry plugin's export (docs/operations.md "Tracing").
  registry->AddCallbackCounter("portico_opentelemetry_spans_queued_total", "Spans taken into a worker's OTLP batch", [] {
    return static_cast<double>(plugins::GlobalSpanExportCounters().spans_queued.load(std::memory_order_relaxed));
  });
  registry->AddCallbackCounter(
      "portico_opentelemetry_spans_dropped_total",
      "Spans dropped: a worker's batch was full (queue.max_entries) or the sender's queue refused the batch", [] {
        return static_cast<double>(plugins::GlobalSpanExportCounters().spans_dropped.load(std::memory_order_relaxed));
      });
  registry->AddCallbackCounter("portico_opentelemetry_batches_delivered_total",
                               "OTLP export requests the collector answered with 2xx",
                               [] { return static_cast<double>(plugins::OtlpSenderStats().batches_delivered); });
  registry->AddCallbackCounter("portico_opentelemetry_batches_lost_total",
                               "OTLP export requests dropped (sender queue full) or failed after their retries",
                               [] { return static_cast<double>(plugins::OtlpSenderStats().batches_lost); });
  if (sync == nullptr) return;  // DB-less: no control plane
  registry->AddCallbackGauge("portico_cluster_certificate_expiry_seconds",
                             "notAfter of the cluster certificate this process presents, as Unix time in seconds",
                             [sync] { return static_cast<double>(sync->certificate_not_after()); });
  registry->AddCallbackGauge("portico_dp_cp_connected",
                             "1 while the stream to the CP is up and its Hello was answered",
                             [sync] { return sync->connected() ? 1.0 : 0.0; });
  registry->AddCallbackGauge(
      "portico_dp_last_sync_timestamp_seconds",
      "Unix time the DP last knew it served what the CP wanted (now while in sync; 0 = never)",
      [sync] { return sync->last_sync_unix(); });
  registry->AddCallbackGauge(
      "portico_dp_seconds_since_last_sync",
      "Seconds since portico_dp_last_sync_timestamp_seconds (-1 = never synced)", [sync] {
        const double last = sync->last_sync_unix();
        if (last <= 0) return -1.0;
        return std::max(0.0, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()) - last);
      });
}

// A target given as an IP literal and port ("10.0.0.1:80", "[::1]:80"): Kong's `address` label
// of kong_upstream_target_health. Empty for a target given by hostname.
std::string TargetAddressLabel(const std::string& target) {
  const size_t colon = target.rfind(':');
  if (colon == std::string::npos) return "";
  std::string host = target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1) return target;
  return "";
}

// Kong's node-level series on a data plane (Kong 3.x prometheus exporter), then the prometheus
// plugin's traffic families (plugins::TrafficMetrics). `sync` is null in DB-less mode.
struct KongNodeIdentity {
  std::string node_id;
  std::string hostname;
};

void RenderKongMetrics(std::string* out, const KongNodeIdentity& node, const ServingState& state,
                       const SyncClient* sync, const ProxyServer& proxy, const HealthRegistry& health) {
  using plugins::AppendFamilyHeader;
  using plugins::AppendSample;
  const uint64_t accepted = proxy.connections_accepted();
  const int64_t active = proxy.connections_active();
  const int64_t writing = std::min<int64_t>(active, proxy.request_states_held());
  const uint64_t requests = proxy.requests_total();
  AppendFamilyHeader(out, "kong_datastore_reachable",
                     "Datastore reachable from Kong, 0 is unreachable (a data plane has none: always 1)", "gauge");
  AppendSample(out, "kong_datastore_reachable", {}, "1");
  if (sync != nullptr) {
    AppendFamilyHeader(out, "kong_control_plane_connected", "Kong connected to control plane, 0 is unconnected",
                       "gauge");
    AppendSample(out, "kong_control_plane_connected", {}, sync->connected() ? "1" : "0");
    AppendFamilyHeader(out, "kong_data_plane_cluster_cert_expiry_timestamp",
                       "Unix timestamp of Data Plane's cluster_cert expiry time", "gauge");
    AppendSample(out, "kong_data_plane_cluster_cert_expiry_timestamp", {},
                 absl::StrCat(sync->certificate_not_after()));
  }
  AppendFamilyHeader(out, "kong_data_plane_config_hash",
                     "Config hash numeric value of the data plane (the config it serves; 0 = none)", "gauge");
  AppendSample(out, "kong_data_plane_config_hash",
               {{"node_id", node.node_id}, {"hostname", node.hostname}, {"ip", ""}},
               FormatSampleValue(state.hash_number()));
  AppendFamilyHeader(out, "kong_nginx_connections_total", "Number of connections by subsystem", "gauge");
  const struct {
    const char* state;
    int64_t value;
  } connection_states[] = {{"accepted", static_cast<int64_t>(accepted)}, {"active", active},
                           {"handled", static_cast<int64_t>(accepted)}, {"reading", 0},
                           {"total", static_cast<int64_t>(requests)},   {"waiting", active - writing},
                           {"writing", writing}};
  for (const auto& c : connection_states) {
    AppendSample(out, "kong_nginx_connections_total",
                 {{"node_id", node.node_id}, {"subsystem", "http"}, {"state", c.state}}, absl::StrCat(c.value));
  }
  AppendFamilyHeader(out, "kong_nginx_requests_total", "Number of requests total", "gauge");
  AppendSample(out, "kong_nginx_requests_total", {{"node_id", node.node_id}, {"subsystem", "http"}},
               absl::StrCat(requests));
  AppendFamilyHeader(out, "kong_node_info", "Kong Node metadata information", "gauge");
  AppendSample(out, "kong_node_info", {{"node_id", node.node_id}, {"version", PORTICO_VERSION}}, "1");
  plugins::TrafficMetrics& traffic = plugins::TrafficMetrics::Process();
  if (traffic.upstream_health_enabled()) {
    AppendFamilyHeader(out, "kong_upstream_target_health",
                       "Health status of targets of upstream. States = healthchecks_off|healthy|unhealthy|dns_error, "
                       "value is 1 when state is populated.",
                       "gauge");
    for (const TargetHealthReport& t : health.Report()) {
      const char* current = t.health == TargetHealthState::kHealthy     ? "healthy"
                            : t.health == TargetHealthState::kUnhealthy ? "unhealthy"
                            : t.health == TargetHealthState::kDnsError  ? "dns_error"
                                                                        : "healthchecks_off";
      const std::string address = t.health == TargetHealthState::kDnsError ? "" : TargetAddressLabel(t.target);
      const std::string& upstream = t.upstream_name.empty() ? t.upstream_id : t.upstream_name;
      for (const char* s : {"healthchecks_off", "healthy", "unhealthy", "dns_error"}) {
        AppendSample(out, "kong_upstream_target_health",
                     {{"upstream", upstream}, {"target", t.target}, {"address", address}, {"state", s},
                      {"subsystem", "http"}},
                     std::strcmp(s, current) == 0 ? "1" : "0");
      }
    }
  }
  AppendFamilyHeader(out, "portico_prometheus_dropped_total",
                     "Traffic metric records dropped because a worker's table was full", "counter");
  AppendSample(out, "portico_prometheus_dropped_total", {}, absl::StrCat(traffic.dropped()));
  traffic.Render(out);
}

// `sync` is null in DB-less mode, where `declarative` is set instead.
HttpResponse StatusResponse(const HttpRequest& request, const ServingState& state, const SyncClient* sync,
                            const DeclarativeSource* declarative, const ProxyServer& proxy,
                            const DpMetrics& dp_metrics, const HealthRegistry& health,
                            const KongNodeIdentity& node) {
  if (request.method != "GET" && request.method != "HEAD") {
    return HttpResponse::Json(405, R"({"message":"Method not allowed"})");
  }
  if (request.path == "/metrics") {
    HttpResponse r;
    r.status = 200;
    r.headers.emplace_back("Content-Type", kTextContentType);
    r.body = dp_metrics.registry->Render();
    RenderKongMetrics(&r.body, node, state, sync, proxy, health);
    return r;
  }
  if (request.path == "/status") {
    nlohmann::json j = state.ToJson();
    j["version"] = PORTICO_VERSION;
    j["server"] = {{"total_requests", proxy.requests_total()}};
    if (sync != nullptr) {
      j["control_plane_connected"] = sync->connected();
      // The CP of the live stream: the address dialled, the --control-plane entry, its cp_id.
      const ControlPlaneLink link = sync->control_plane();
      j["control_plane"] = link.address.empty() ? nlohmann::json()
                                                : nlohmann::json{{"address", link.address},
                                                                 {"entry", link.entry},
                                                                 {"cp_id", link.cp_id}};
      j["node_id"] = sync->node_id();
      const SyncClientStats stats = sync->stats();
      j["sync"] = {{"connect_attempts", stats.connect_attempts},
                   {"sessions", stats.sessions},
                   {"snapshots_applied", stats.snapshots_applied},
                   {"snapshots_rejected", stats.snapshots_rejected},
                   {"deltas_applied", stats.deltas_applied},
                   {"deltas_in_place", stats.deltas_in_place},
                   {"deltas_rejected", stats.deltas_rejected},
                   {"partial_discarded", stats.partial_discarded},
                   {"up_to_date", stats.up_to_date},
                   {"refusals", stats.refusals},
                   {"loaded_from_cache", stats.loaded_from_cache},
                   {"persisted", stats.persisted},
                   {"persist_failures", stats.persist_failures},
                   {"health_reports", stats.health_reports},
                   {"health_overrides", stats.health_overrides},
                   {"health_override_failures", stats.health_override_failures},
                   {"control_plane_moves", stats.control_plane_moves}};
    }
    if (declarative != nullptr) {
      const DeclarativeSource::Stats stats = declarative->stats();
      j["control_plane_connected"] = false;
      j["declarative_config"] = {
          {"file", declarative->path()},
          {"loads", stats.loads},
          {"unchanged", stats.unchanged},
          {"failures", stats.failures},
          {"last_error", stats.last_error.empty() ? nlohmann::json() : nlohmann::json(stats.last_error)}};
    }
    // This DP's view of its balanced targets (Kong's per-node health).
    nlohmann::json targets = nlohmann::json::array();
    for (const TargetHealthReport& t : health.Report()) {
      targets.push_back({{"upstream_id", t.upstream_id},
                         {"upstream", t.upstream_name},
                         {"target", t.target},
                         {"health", std::string(TargetHealthName(t.health))}});
    }
    j["targets_health"] = std::move(targets);
    return HttpResponse::Json(200, j.dump());
  }
  if (request.path == "/status/ready") {
    if (state.draining()) {
      return HttpResponse::Json(503, R"json({"message":"shutting down (draining connections)"})json");
    }
    // Kong's two texts (kong/status/ready.lua): nothing received yet, or an empty config.
    if (!state.loaded()) {
      return HttpResponse::Json(
          503, R"json({"message":"no configuration available (configuration hash is not initialized)"})json");
    }
    if (!state.ready()) {
      return HttpResponse::Json(
          503, R"json({"message":"no configuration available (empty configuration present)"})json");
    }
    // With a shared port the listeners accept only from the first config on: ready once every
    // worker confirmed its listen(); a failed listen() keeps it 503 (and is logged as an error).
    if (proxy.listen_failed()) {
      return HttpResponse::Json(503, R"json({"message":"proxy listener failed (see the log)"})json");
    }
    if (!proxy.listening()) {
      return HttpResponse::Json(503, R"json({"message":"proxy listeners not accepting yet"})json");
    }
    return HttpResponse::Json(200, R"({"message":"ready"})");
  }
  return HttpResponse::Json(404, R"({"message":"Not found"})");
}

// net.ipv4.tcp_migrate_req of this network namespace: -1 when it cannot be read.
int TcpMigrateReq() {
  std::FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_migrate_req", "r");
  if (f == nullptr) return -1;
  int value = -1;
  if (std::fscanf(f, "%d", &value) != 1) value = -1;
  std::fclose(f);
  return value;
}

// `host` as /proc/net/tcp{,6} prints a local address: the address's 32-bit words in host order,
// each as %08X (8 hex digits for IPv4, 32 for IPv6). Empty when `host` is not an IP literal.
std::string ProcNetAddressHex(const std::string& host) {
  in_addr v4{};
  in6_addr v6{};
  char hex[40] = {0};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    std::snprintf(hex, sizeof(hex), "%08X", v4.s_addr);
    return hex;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    uint32_t words[4];
    std::memcpy(words, &v6, sizeof(words));
    std::snprintf(hex, sizeof(hex), "%08X%08X%08X%08X", words[0], words[1], words[2], words[3]);
    return hex;
  }
  return "";
}

// Whether a socket of this network namespace listens on TCP `host`:`port` (/proc/net/tcp and
// tcp6): another process serves the address this DP is about to share through SO_REUSEPORT. A
// wildcard listener matches any host, and a wildcard (or non-literal) host any listener on the
// port; a listener on
// another address of the same port does not count (the two do not share connections).
bool PortHasListener(const std::string& host, uint16_t port) {
  if (port == 0) return false;
  const std::string wanted_address = ProcNetAddressHex(host);
  const bool wanted_wildcard = wanted_address.empty() || wanted_address.find_first_not_of('0') == std::string::npos;
  char wanted_port[8];
  std::snprintf(wanted_port, sizeof(wanted_port), ":%04X", port);
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::FILE* f = std::fopen(table, "r");
    if (f == nullptr) continue;
    char line[512];
    bool found = false;
    while (!found && std::fgets(line, sizeof(line), f) != nullptr) {
      char local[64] = {0}, remote[64] = {0}, state[8] = {0};
      if (std::sscanf(line, " %*s %63s %63s %7s", local, remote, state) != 3) continue;
      const size_t n = std::strlen(local);
      if (n <= 5 || std::strcmp(local + n - 5, wanted_port) != 0 || std::strcmp(state, "0A") != 0) continue;  // LISTEN
      const std::string address(local, n - 5);
      const bool listener_wildcard = address.find_first_not_of('0') == std::string::npos;
      found = wanted_wildcard || listener_wildcard || address == wanted_address;
    }
    std::fclose(f);
    if (found) return true;
  }
  return false;
}

// SIGTERM/SIGQUIT: /status/ready turns 503, the proxy stops accepting and finishes what is in
// flight. Returns true when every client connection ended within `timeout_ms`; false at the
// timeout, or when SIGINT cuts the drain short.
bool DrainProxy(ProxyServer& proxy, ServingState& serving, int64_t timeout_ms) {
  serving.SetDraining();
  const auto start = std::chrono::steady_clock::now();
  proxy.BeginDrain();
  const int migrate = TcpMigrateReq();
  PORTICO_LOG(kInfo, "dp", "proxy listeners closed; waiting up to ", timeout_ms, " ms for requests in flight");
  if (migrate == 0) {
    PORTICO_LOG(kWarn, "dp", "net.ipv4.tcp_migrate_req is 0: connections still in the accept queues were reset "
                             "instead of moving to another data plane on the same port");
  }
  for (;;) {
    if (proxy.drained()) break;
    const int64_t left = timeout_ms - std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now() - start).count();
    if (left <= 0) {
      PORTICO_LOG(kWarn, "dp", "drain timeout (", timeout_ms, " ms) reached: closing what is left");
      return false;
    }
    // SIGUSR1 (logrotate) still reopens the log files while draining.
    if (WaitForTerminationSignalFor(std::min<int64_t>(left, 20), [] { LogWriters::Global().ReopenAll(); }) == SIGINT) {
      PORTICO_LOG(kWarn, "dp", "SIGINT during the drain: closing what is left now");
      return false;
    }
  }
  PORTICO_LOG(kInfo, "dp", "drained in ",
              std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count(),
              " ms");
  return true;
}

constexpr char kUsage[] =
    "portico-dp [flags]\n       portico-dp --declarative-config FILE [proxy flags]\n"
    "       portico-dp check CONF_FILE [flags]";
constexpr char kDescription[] =
    "The Portico data plane: proxies HTTP/1.1 with the config snapshots it receives from a control\n"
    "plane over mutual-TLS gRPC, keeps them in memory only, and keeps serving the last good one\n"
    "while the control plane is away. With --declarative-config it serves a kong.yml file instead,\n"
    "without a control plane (SIGHUP reloads the file; a bad file keeps the current config).\n"
    "--control-plane takes host:port entries, comma-separated, each an IP address or a name that\n"
    "resolves here (to one address or several); the DP streams from one CP at a time and moves to\n"
    "the next address when that stream fails. Each CP's certificate must match its entry's host,\n"
    "or --cluster-server-name when given. Every flag can also be set through its environment variable or in the --conf\n"
    "file (kong.conf syntax, Kong's key names); the command line wins over the environment, which\n"
    "wins over the file. `portico-dp check FILE` validates a file without starting. Boolean values:\n"
    "true/false, 1/0, yes/no, on/off.";

// For `check`: a start makes the snapshot cache folder `dir` (one level) and writes in it.
absl::Status CheckSnapshotCacheDir(const std::string& dir) {
  if (dir.empty()) return absl::OkStatus();
  auto refuse = [&dir](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--snapshot-cache ", dir, ": ", why));
  };
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return refuse("not a directory");
    if (::access(dir.c_str(), W_OK | X_OK) != 0) return refuse(absl::StrCat("not writable (", std::strerror(errno), ")"));
    return absl::OkStatus();
  }
  // Made and removed again: the start's own mkdir is the only faithful test (/proc, read-only mounts).
  if (::mkdir(dir.c_str(), 0700) != 0) return refuse(absl::StrCat("cannot be created (", std::strerror(errno), ")"));
  ::rmdir(dir.c_str());
  return absl::OkStatus();
}

// For `check`: the files a start reads, read and validated as the start would (cluster and proxy
// certificates, the declarative config), nothing applied.
absl::Status CheckFiles(const Flags& flags, bool db_less, size_t declarative_max_bytes) {
  if (!db_less) {
    absl::StatusOr<TlsMaterial> cluster =
        LoadTlsMaterial(flags.Get("cluster-cert"), flags.Get("cluster-key"), flags.Get("cluster-ca"));
    if (!cluster.ok()) {
      return absl::Status(cluster.status().code(),
                          absl::StrCat("--cluster-cert, --cluster-key, --cluster-ca: ", cluster.status().message()));
    }
  }
  if (!flags.Get("ssl-cert").empty()) {
    absl::StatusOr<TlsMaterial> proxy_tls = LoadTlsMaterial(flags.Get("ssl-cert"), flags.Get("ssl-cert-key"), "");
    if (!proxy_tls.ok()) {
      return absl::Status(proxy_tls.status().code(),
                          absl::StrCat("--ssl-cert, --ssl-cert-key: ", proxy_tls.status().message()));
    }
  }
  if (!db_less) return CheckSnapshotCacheDir(flags.Get("snapshot-cache"));
  // Its errors are logged (warn and above); "applied" would be untrue here.
  if (GetLogLevel() < LogLevel::kWarn) SetLogLevel(LogLevel::kWarn);
  DeclarativeSource source(flags.Get("declarative-config"), declarative_max_bytes,
                           [](std::shared_ptr<const ConfigSet> config, const ConfigVersion&) {
                             return ValidateConfigSet(*config);
                           });
  if (absl::Status s = source.Load(); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--declarative-config ", flags.Get("declarative-config"), ": ", s.message()));
  }
  return absl::OkStatus();
}

// With `check` (portico-dp check, a ConfCheck round): read and validate everything a start would,
// certificate files and the declarative config too, and return 0 before anything listens.
int Serve(int argc, char** argv, ConfCheck* check) {
  Flags flags({
      {"control-plane", "127.0.0.1:8005", "CP cluster address host:port, or several comma-separated "
                                          "(one is used at a time; on failure the next, round robin)"},
      {"cluster-cert", "", "DP client certificate (PEM); its identity is the node id"},
      {"cluster-key", "", "DP client private key (PEM)"},
      {"cluster-ca", "", "cluster CA; the CP certificate must chain to it"},
      {"cluster-server-name", "", "name expected in the CP certificate (default: CP host)"},
      {"proxy-listen", "0.0.0.0:8000", "proxy address"},
      {"proxy-ssl-listen", "0.0.0.0:8443", "proxy TLS (HTTPS) address, or off"},
      {"ssl-cert", "", "default certificate of the TLS listener (PEM, may hold its chain after it; "
                       "empty: a self-signed ECDSA P-256 certificate for localhost is generated)"},
      {"ssl-cert-key", "", "private key of --ssl-cert (PEM)"},
      {"status-listen", "127.0.0.1:8100", "status listener address"},
      {"workers", "0", "proxy worker threads (0 = one per core, at most 256)"},
      {"client-timeout", "60", "seconds a client may stay idle (keep-alive), take to send a request "
                               "head, or go without reading any of a response, before it is closed"},
      {"http2", "on", "HTTP/2 on the proxy listeners (on|off): h2c (prior knowledge and Upgrade: h2c) "
                      "on the cleartext one, ALPN h2 on the TLS one"},
      {"allow-debug-header", "", "answer requests carrying Kong-Debug with Kong-Route-*/Kong-Service-* headers", true},
      {"incremental-sync", "on", "ask the control plane for changes as deltas from the version served "
                                 "(off: every change comes as a full snapshot)", true},
      {"apply-nice", "10", "nice value (0-19) of the thread that validates and compiles a new config, so "
                           "that it yields the CPU to the proxy workers (0: same priority as the workers)"},
      {"snapshot-cache", "", "directory for the last good snapshot (off when empty): written "
                             "atomically after each apply, served at start until the CP answers"},
      {"dns-resolver", "", "nameservers for upstream hostnames, ip[:port][,ip[:port]...] "
                           "(default: those of /etc/resolv.conf)"},
      {"dns-hostsfile", "/etc/hosts", "hosts file read before DNS (re-read when it changes; empty: none)"},
      {"upstream-tls-verify", "", "verify https upstreams' certificates when a service's tls_verify is null "
                                  "(Kong's proxy_ssl_verify; off by default, as Kong)", true},
      {"declarative-config", "", "serve this declarative config file (kong.yml, YAML or JSON) without a "
                                 "control plane (DB-less mode); SIGHUP reloads it"},
      {"declarative-config-max-bytes", "67108864", "largest declarative config file accepted"},
      {"drain-timeout", "10", "seconds SIGTERM/SIGQUIT let requests in flight finish before the rest "
                              "is closed (Kong's kong quit --timeout)"},
      {"log-level", "info", "debug|info|warn|error"},
      {"access-log", "off", "JSON access log (Kong's log serializer, one line per request): a file path, "
                            "stdout, or off; SIGUSR1 reopens the file (logrotate)"},
  });
  flags.EnableConfFile(DataPlaneConfKeys());
  // In Serve, an error about a flag whose value came from the --conf file names the file's line; in
  // a check round it is recorded instead of printed.
  const auto Fail = [&flags, check](const absl::Status& s) {
    return check != nullptr ? check->Record(flags, s) : dp::Fail(flags.Explain(s));
  };
  const absl::Status parsed = flags.Parse(argc, argv);
  if (parsed.ok() && AnswerHelpOrVersion(flags, "portico-dp", kUsage, kDescription)) return 0;
  // A usage error even when the file has errors too (`check FILE extra`).
  if (!flags.positional().empty()) {
    std::fprintf(stderr, "portico-dp: unexpected argument '%s'\nusage: %s\n(portico-dp --help lists every flag)\n",
                 PrintableExcerpt(flags.positional()[0]).c_str(), kUsage);
    return 2;
  }
  if (!parsed.ok()) return Fail(parsed);
  if (check != nullptr) check->Prepare(flags);  // without the file values earlier rounds refused
  if (absl::Status s = ApplyLogLevelFlag(flags); !s.ok()) return Fail(s);
  const std::string declarative_file = flags.Get("declarative-config");
  const bool db_less = !declarative_file.empty();
  size_t declarative_max_bytes = 0;
  if (!absl::SimpleAtoi(flags.Get("declarative-config-max-bytes"), &declarative_max_bytes) ||
      declarative_max_bytes == 0) {
    return Fail(absl::InvalidArgumentError("--declarative-config-max-bytes must be a positive integer"));
  }
  if (db_less) {
    // One source of config: a file or a control plane, never both.
    for (const char* cluster_flag : {"control-plane", "cluster-cert", "cluster-key", "cluster-ca",
                                     "cluster-server-name", "snapshot-cache"}) {
      if (flags.IsSet(cluster_flag)) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "--declarative-config serves a file without a control plane; drop --", cluster_flag)));
      }
    }
  } else {
    if (absl::Status s = RequireFlags(flags, {"cluster-cert", "cluster-key", "cluster-ca"}); !s.ok()) return Fail(s);
    if (absl::StatusOr<std::vector<ControlPlaneEntry>> cps = ParseControlPlaneList(flags.Get("control-plane"));
        !cps.ok()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("--control-plane: ", cps.status().message())));
    }
  }
  absl::StatusOr<HostPort> proxy_addr = ParseHostPort(flags.Get("proxy-listen"));
  if (!proxy_addr.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--proxy-listen: ", proxy_addr.status().message())));
  }
  std::optional<HostPort> proxy_ssl_addr;
  if (flags.Get("proxy-ssl-listen") != "off") {
    absl::StatusOr<HostPort> parsed = ParseHostPort(flags.Get("proxy-ssl-listen"));
    if (!parsed.ok()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("--proxy-ssl-listen: ", parsed.status().message())));
    }
    proxy_ssl_addr = *parsed;
  }
  if (flags.Get("ssl-cert").empty() != flags.Get("ssl-cert-key").empty()) {
    return Fail(absl::InvalidArgumentError("--ssl-cert and --ssl-cert-key must be given together"));
  }
  absl::StatusOr<HostPort> status_addr = ParseHostPort(flags.Get("status-listen"));
  if (!status_addr.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("--status-listen: ", status_addr.status().message())));
  }
  int workers = 0;
  if (!absl::SimpleAtoi(flags.Get("workers"), &workers) || workers < 0 || workers > 256) {
    return Fail(absl::InvalidArgumentError("--workers must be an integer in 0..256"));
  }
  if (workers == 0) workers = static_cast<int>(std::clamp(sysconf(_SC_NPROCESSORS_ONLN), 1L, 256L));
  absl::StatusOr<double> client_timeout_s = NumberFlag(flags, "client-timeout", 0.1, 86400, "seconds");
  if (!client_timeout_s.ok()) return Fail(client_timeout_s.status());
  absl::StatusOr<double> drain_timeout_s = NumberFlag(flags, "drain-timeout", 0, 3600, "seconds");
  if (!drain_timeout_s.ok()) return Fail(drain_timeout_s.status());

  if (absl::Status s = Resolver::CheckServers(flags.Get("dns-resolver")); !s.ok()) return Fail(s);

  ProxyOptions proxy_options;
  proxy_options.host = proxy_addr->host;
  proxy_options.port = proxy_addr->port;
  proxy_options.workers = workers;
  // The opentelemetry plugin's OTLP exports: one sender per endpoint, a producer slot per worker.
  plugins::InstallOtlpSenders(workers);
  proxy_options.allow_debug_header = flags.GetBool("allow-debug-header");
  if (flags.Get("http2") != "on" && flags.Get("http2") != "off") {
    return Fail(absl::InvalidArgumentError("--http2: expected on or off"));
  }
  proxy_options.http2 = flags.Get("http2") == "on";
  proxy_options.client_timeout_ms = static_cast<int64_t>(*client_timeout_s * 1000);
  proxy_options.dns.servers = flags.Get("dns-resolver");
  proxy_options.dns.hosts_file = flags.Get("dns-hostsfile");
  // A port another process already listens on (the DP this one replaces): accept only once a
  // config is served, so that no client gets this DP's 404 meanwhile.
  const bool port_shared = PortHasListener(proxy_addr->host, proxy_addr->port) ||
                           (proxy_ssl_addr.has_value() && PortHasListener(proxy_ssl_addr->host, proxy_ssl_addr->port));
  proxy_options.accept_at_start = !port_shared;
  if (proxy_ssl_addr.has_value()) {
    proxy_options.tls.enabled = true;
    proxy_options.tls.host = proxy_ssl_addr->host;
    proxy_options.tls.port = proxy_ssl_addr->port;
    proxy_options.tls.cert_file = flags.Get("ssl-cert");
    proxy_options.tls.key_file = flags.Get("ssl-cert-key");
  }
  const std::string access_log_destination = flags.Get("access-log");
  if (access_log_destination.empty()) {
    return Fail(absl::InvalidArgumentError("--access-log: expected a file path, stdout or off"));
  }
  if (check != nullptr && access_log_destination != "off" && access_log_destination != "stdout") {
    // The file itself is made at start, by the user the DP runs as: a check must not create it.
    std::filesystem::path folder = std::filesystem::path(access_log_destination).parent_path();
    if (folder.empty()) folder = ".";
    std::error_code error;
    if (!std::filesystem::is_directory(folder, error)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--access-log: the folder ", folder.string(), " does not exist")));
    }
  }
  if (check != nullptr) {
    absl::Status checked = CheckFiles(flags, db_less, declarative_max_bytes);
    if (!checked.ok()) return Fail(checked);
    return 0;  // before BlockTerminationSignals: a check (reading a fifo, say) stays killable
  }
  BlockTerminationSignals();  // before any thread starts (log writers included)
  // --access-log and the log plugins (docs/operations.md "Access logs"): one writer thread per
  // destination; the access log is a log step of every compiled config.
  SetLogProducers(workers);
  PipelineExtensions extensions;
  std::shared_ptr<LogWriter> access_log;
  if (const std::string& destination = access_log_destination; destination != "off") {
    absl::StatusOr<std::shared_ptr<LogWriter>> writer = LogWriters::Global().Get(destination);
    if (!writer.ok()) return Fail(absl::InvalidArgumentError(absl::StrCat("--access-log: ", writer.status().message())));
    // At startup an unopenable access log is a mistake to report (file-log retries instead).
    if (!(*writer)->open_status().ok()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("--access-log: ", (*writer)->open_status().message())));
    }
    access_log = *std::move(writer);
    extensions.log_step_factories.push_back([access_log](const ConfigSet& snapshot) -> std::shared_ptr<const LogStep> {
      return std::make_shared<LogLineStep>(access_log, ConfiguredCredentialNames(snapshot));
    });
  }
  // Where health changes are announced (an early heartbeat): declared before everything that may
  // announce (workers, the checker) so that it outlives them; points at the sync client only
  // while that client lives (cleared by a guard declared after it).
  std::atomic<SyncClient*> health_listener{nullptr};
  // Target health outlives every compiled config (balancers hold its records); the checker
  // thread probes what each published snapshot balances over.
  HealthRegistry health;
  HealthChecker checker;
  // Active probes of targets given by hostname resolve on the checker's loop, with the same
  // nameservers and hosts file as the workers.
  ProbeResolverFactory probe_resolvers = [&proxy_options](uv_loop_t* loop)
      -> absl::StatusOr<std::unique_ptr<ProbeResolver>> {
    absl::StatusOr<std::unique_ptr<Resolver>> resolver = Resolver::Create(loop, proxy_options.dns);
    if (!resolver.ok()) return resolver.status();
    return std::unique_ptr<ProbeResolver>(std::make_unique<DnsProbeResolver>(*std::move(resolver)));
  };
  if (absl::Status s = checker.Start(std::move(probe_resolvers)); !s.ok()) return Fail(s);
  absl::StatusOr<std::unique_ptr<ProxyServer>> proxy = ProxyServer::Start(proxy_options);
  if (!proxy.ok()) return Fail(proxy.status());
  ProxyServer* proxy_ptr = proxy->get();
  // A replaced config is freed on the proxy's release thread, often after the apply below pruned:
  // prune again then, so that senders and writers only it used stop without waiting for a change.
  // http-log senders, file-log writers and opentelemetry senders that no config uses any more.
  auto prune_unused_senders = [] {
    BatchSenders::Global().Prune();
    LogWriters::Global().Prune();
    plugins::PruneOtlpSenders();
  };
  proxy_ptr->SetOnConfigReleased(prune_unused_senders);
  if (port_shared) {
    PORTICO_LOG(kInfo, "dp", "another process listens on the proxy port: accepting from the first config served on");
  }

  ServingState serving;
  // Runs on the sync client's thread: validate, compile off the workers, swap, then ACK.
  auto announce_health = [&health_listener] {
    if (SyncClient* client = health_listener.load(std::memory_order_acquire); client != nullptr) {
      client->NotifyTargetHealthChanged();
    }
  };
  health.SetOnChange(announce_health);  // a target's state flipped (any thread; never blocks)
  dp::UpstreamTlsOptions upstream_tls;
  upstream_tls.verify_default = flags.GetBool("upstream-tls-verify");
  int apply_nice = 0;
  if (!absl::SimpleAtoi(flags.Get("apply-nice"), &apply_nice) || apply_nice < 0 || apply_nice > 19) {
    return Fail(absl::InvalidArgumentError("--apply-nice must be an integer from 0 to 19"));
  }
  // `upserted`: set for a config reconstructed from a delta (only those entities' own rules are
  // checked again; ids, uniqueness and references always are).
  using ApplyCore =
      std::function<absl::Status(std::shared_ptr<const ConfigSet>, const ConfigVersion&, const ChangedEntities*)>;
  // Validation and compile run on the sync client's thread; at a lower priority than the
  // workers, they take the CPU the workers leave instead of delaying requests. Not in DB-less
  // mode: there the main thread applies, and the threads it starts later would inherit the nice.
  // The apply runs on a thread of its own (NicedRunner) so that only it is lowered, not the sync
  // client's thread nor the heartbeat and watchdog threads that one starts.
  std::unique_ptr<NicedRunner> apply_runner;
  if (!db_less && apply_nice > 0) apply_runner = std::make_unique<NicedRunner>(apply_nice);
  // The last config compiled and published: a delta's router is layered on its router.
  std::shared_ptr<const RuntimeConfig> last_runtime;
  ApplyCore apply_body = [proxy_ptr, &serving, &health, &checker, announce_health, prune_unused_senders, upstream_tls,
                         extensions, &last_runtime](
                             std::shared_ptr<const ConfigSet> config, const ConfigVersion& version,
                             const ChangedEntities* upserted) -> absl::Status {
    const auto start = std::chrono::steady_clock::now();
    if (absl::Status s = ValidateConfigSet(*config, upserted); !s.ok()) return s;
    const auto validated = std::chrono::steady_clock::now();
    absl::StatusOr<std::shared_ptr<const RuntimeConfig>> runtime =
        RuntimeConfig::Compile(config, version, extensions, proxy_ptr->workers(), &health, upstream_tls,
                               last_runtime.get(), upserted);
    if (!runtime.ok()) {
      plugins::PruneOtlpSenders();  // those the refused config started
      return runtime.status();
    }
    const auto compiled = std::chrono::steady_clock::now();
    std::vector<HealthTarget> health_targets = (*runtime)->HealthTargets();
    const bool layered = (*runtime)->router().layered();
    last_runtime = *runtime;
    proxy_ptr->Publish(*std::move(runtime));
    prune_unused_senders();  // what only a config freed at once used
    checker.Reconfigure(health_targets);
    health.Install(std::move(health_targets));
    announce_health();  // targets may have come or gone
    // Where apply time goes besides decoding (the sync client logs the total).
    auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
    PORTICO_LOG(kInfo, "dp", "config version ", version.version, ": validated in ", ms(validated - start),
                " ms, router", layered ? " (layered)" : "", " and targets compiled in ", ms(compiled - validated),
                " ms, published to the workers in ",
                ms(std::chrono::steady_clock::now() - compiled), " ms");
    serving.Set(version, config->services.size(), config->routes.size());
    // (With a shared port, not before. /status/ready waits for the workers' listen() too.)
    if (serving.ready()) proxy_ptr->StartAccepting();
    return absl::OkStatus();  // the sync client logs what is served (and the total time)
  };
  ApplyCore apply_core = [&apply_runner, &apply_body](std::shared_ptr<const ConfigSet> config,
                                                     const ConfigVersion& version,
                                                     const ChangedEntities* upserted) -> absl::Status {
    if (apply_runner == nullptr) return apply_body(std::move(config), version, upserted);
    return apply_runner->Run([&] { return apply_body(config, version, upserted); });
  };
  ApplyConfigFn apply = [&apply_core](std::shared_ptr<const ConfigSet> config, const ConfigVersion& version) {
    return apply_core(std::move(config), version, nullptr);
  };

  char host_buf[256] = {0};
  gethostname(host_buf, sizeof(host_buf) - 1);
  SyncClientOptions sync_options;
  sync_options.control_plane = flags.Get("control-plane");
  sync_options.cert_file = flags.Get("cluster-cert");
  sync_options.key_file = flags.Get("cluster-key");
  sync_options.ca_file = flags.Get("cluster-ca");
  sync_options.server_name = flags.Get("cluster-server-name");
  sync_options.hostname = host_buf;
  sync_options.snapshot_cache_dir = flags.Get("snapshot-cache");
  sync_options.plugins = plugins::RunnablePluginNames();
  // Test-only fault switches (PORTICO_TEST_*), installed only when asked for.
  // Fail (NACK BUILD) the apply of any config with a route of this name.
  if (const char* poison = std::getenv("PORTICO_TEST_FAIL_APPLY_IF_ROUTE_NAMED"); poison != nullptr) {
    apply_core = [poison_name = std::string(poison), inner = std::move(apply_core)](
                     std::shared_ptr<const ConfigSet> config, const ConfigVersion& version,
                     const ChangedEntities* upserted) -> absl::Status {
      for (const config::v1::Route& route : config->routes) {
        if (route.name() == poison_name) {
          return absl::InternalError(absl::StrCat(
              "PORTICO_TEST_FAIL_APPLY_IF_ROUTE_NAMED: injected failure, config has a route named '",
              poison_name, "'"));
        }
      }
      return inner(std::move(config), version, upserted);
    };
  }
  sync_options.incremental = flags.GetBool("incremental-sync");
  sync_options.release = [proxy_ptr](std::shared_ptr<const void> replaced) { proxy_ptr->Release(std::move(replaced)); };
  sync_options.apply_delta = [&apply_core](std::shared_ptr<const ConfigSet> config, const ConfigVersion& version,
                                           const ChangedEntities& upserted) {
    return apply_core(std::move(config), version, &upserted);
  };
  // Announce another node id in Hello than the certificate's (the CP must refuse it).
  class HelloNodeIdHook final : public SyncClientTestHooks {
   public:
    explicit HelloNodeIdHook(std::string id) : id_(std::move(id)) {}
    std::string HelloNodeId(const std::string&) const override { return id_; }

   private:
    std::string id_;
  };
  std::unique_ptr<SyncClientTestHooks> test_hooks;
  if (const char* id = std::getenv("PORTICO_TEST_HELLO_NODE_ID"); id != nullptr) {
    test_hooks = std::make_unique<HelloNodeIdHook>(id);
  }
  // Announce these plugins (comma-separated; empty: none) instead of those this build runs, as an
  // older build does: the CP must send no config that needs another.
  if (const char* announced = std::getenv("PORTICO_TEST_ANNOUNCE_PLUGINS"); announced != nullptr) {
    sync_options.plugins = absl::StrSplit(announced, ',', absl::SkipEmpty());
  }
  sync_options.requests_total = [proxy_ptr] { return proxy_ptr->requests_total(); };
  // This DP's view of target health goes to the CP in heartbeats; the CP's manual overrides
  // (POST /upstreams/{u}/targets/{t}/healthy|unhealthy) come back to the registry.
  sync_options.target_health = [&health] {
    std::vector<TargetHealthView> views;
    for (TargetHealthReport& t : health.Report()) {
      views.push_back(TargetHealthView{std::move(t.upstream_id), std::move(t.upstream_name), std::move(t.target),
                                       std::string(TargetHealthName(t.health))});
    }
    return views;
  };
  sync_options.on_health_override = [&health](const HealthOverrideCommand& command) {
    absl::Status s = health.SetManual(command.upstream_id, command.target, command.healthy);
    if (absl::IsNotFound(s) && !command.upstream_name.empty()) {
      s = health.SetManual(command.upstream_name, command.target, command.healthy);
    }
    const std::string what = absl::StrCat(
        "health override from the control plane: target ", command.target, " of upstream ",
        command.upstream_name.empty() ? command.upstream_id : command.upstream_name, " set ",
        command.healthy ? "healthy" : "unhealthy");
    if (s.ok()) {
      PORTICO_LOG(kInfo, "dp", what);
    } else {
      PORTICO_LOG(kWarn, "dp", what, " refused: ", s.message());
    }
    return s;
  };
  Registry registry;
  DpMetrics dp_metrics(&registry);
  sync_options.on_applied = [&dp_metrics](absl::Duration took) {
    dp_metrics.apply_seconds->Observe(absl::ToDoubleSeconds(took));
  };
  // DB-less: the file is the only source; it must load before anything listens for status.
  std::unique_ptr<DeclarativeSource> declarative;
  if (db_less) {
    declarative = std::make_unique<DeclarativeSource>(
        declarative_file, declarative_max_bytes,
        [&apply, &dp_metrics](std::shared_ptr<const ConfigSet> config, const ConfigVersion& version) {
          const auto start = std::chrono::steady_clock::now();
          absl::Status s = apply(std::move(config), version);
          if (s.ok()) {
            dp_metrics.apply_seconds->Observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
          }
          return s;
        });
    if (absl::Status s = declarative->Load(); !s.ok()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("--declarative-config ", declarative_file, ": ", s.message())));
    }
  }
  std::unique_ptr<SyncClient> sync;
  if (!db_less) {
    absl::StatusOr<std::unique_ptr<SyncClient>> started = SyncClient::Start(sync_options, apply, test_hooks.get());
    if (!started.ok()) return Fail(started.status());
    sync = *std::move(started);
  }
  SyncClient* sync_ptr = sync.get();
  health_listener.store(sync_ptr, std::memory_order_release);
  // Runs before the sync client is destroyed, on every way out of main (workers and the checker
  // may still report until the proxy and the checker stop, which happens after).
  absl::Cleanup forget_listener = [&health_listener] { health_listener.store(nullptr, std::memory_order_release); };
  RegisterReadSeries(&registry, &serving, sync_ptr, proxy_ptr);
  RegisterLogMetrics(&registry, access_log.get());

  // Kong's node_id label: the certificate's identity; DB-less, the host name.
  const KongNodeIdentity kong_node{sync_ptr != nullptr ? sync_ptr->node_id() : std::string(host_buf), host_buf};
  absl::StatusOr<std::unique_ptr<HttpServer>> status = HttpServer::Start(
      status_addr->host, status_addr->port,
      [&serving, sync_ptr, declarative_ptr = declarative.get(), proxy_ptr, &dp_metrics, &health,
       &kong_node](const HttpRequest& request) {
        return StatusResponse(request, serving, sync_ptr, declarative_ptr, *proxy_ptr, dp_metrics, health, kong_node);
      });
  if (!status.ok()) return Fail(status.status());

  const ServerTlsContext* tls = proxy_ptr->tls_context();
  PORTICO_LOG(kInfo, "dp", db_less ? std::string("DB-less node") : absl::StrCat("node ", sync_ptr->node_id()),
              " proxy listening on ",
              proxy_addr->host, ":", proxy_ptr->port(),
              tls == nullptr ? std::string(", TLS off")
                             : absl::StrCat(", TLS on ", proxy_options.tls.host, ":", proxy_ptr->tls_port(),
                                            " (default certificate ", tls->default_subject(),
                                            tls->default_generated() ? ", generated" : "", ")"),
              " (", workers, " workers), status on ",
              status_addr->host, ":", (*status)->port(),
              db_less ? absl::StrCat(", declarative config ", declarative_file)
                      : absl::StrCat(", control plane ", flags.Get("control-plane")),
              sync_options.snapshot_cache_dir.empty()
                  ? std::string()
                  : absl::StrCat(", snapshot cache ", sync_options.snapshot_cache_dir));
  // SIGHUP: reload the declarative file (DB-less), or the cluster cert, key and CA for the next
  // connection (docs/tls.md).
  int sig = WaitForTerminationSignal([sync_ptr, declarative_ptr = declarative.get()] {
    if (declarative_ptr != nullptr) {
      declarative_ptr->Load().IgnoreError();  // a refused file is logged and the config kept
    } else {
      sync_ptr->ReloadCertificates().IgnoreError();
    }
  }, [] { LogWriters::Global().ReopenAll(); });  // SIGUSR1: logrotate moved the log files
  PORTICO_LOG(kInfo, "dp", "signal ", sig, IsGracefulStopSignal(sig) ? ", draining" : ", shutting down");
  const bool drained = IsGracefulStopSignal(sig) &&
                       DrainProxy(*proxy_ptr, serving, static_cast<int64_t>(*drain_timeout_s * 1000));
  // The config source first (nothing is published any more), the status listener before the
  // proxy (it reads the workers' counters), the proxy last (it closes what the drain left).
  if (sync_ptr != nullptr) sync_ptr->Stop();
  checker.Stop();
  (*status)->Stop();
  proxy_ptr->Stop();
  if (IsGracefulStopSignal(sig)) {
    const ProxyServer::DrainCounts counts = proxy_ptr->drain_counts();
    PORTICO_LOG(kInfo, "dp", "stopped: ", counts.open_at_drain, " client connection(s) were open when the drain began; ",
                drained ? std::string("all finished")
                        : absl::StrCat(counts.cut_at_stop, " still open were closed"));
  }
  plugins::StopOtlpSenders();
  // Writes what the workers logged last; a destination stuck (a stalled pipe) is left behind.
  LogWriters::Global().StopAll(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  BatchSenders::Global().StopAll();
  return 0;
}

}  // namespace
}  // namespace portico::dp

int main(int argc, char** argv) {
  portico::DisableAbslDeadlockDetection();
  if (argc >= 2 && std::string(argv[1]) == "check") {
    return portico::ConfCheck::Main("portico-dp", argc, argv, portico::dp::Serve);  // Kong's `kong check`
  }
  return portico::dp::Serve(argc, argv, /*check=*/nullptr);
}
