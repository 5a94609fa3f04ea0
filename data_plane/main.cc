// portico-dp: the data plane. DB-less: it receives config snapshots from the CP over mutual-TLS
// gRPC, keeps them in memory only, and proxies HTTP/1.1. It keeps serving its last config when
// the CP is gone.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/flags.h"
#include "common/base/host_port.h"
#include "common/base/log.h"
#include "common/base/signals.h"
#include "common/base/uuid.h"
#include "common/config/validate.h"
#include "common/http/http_server.h"
#include "data_plane/proxy/proxy_server.h"
#include "data_plane/proxy/runtime_config.h"
#include "data_plane/sync/sync_client.h"
#include "nlohmann/json.hpp"

namespace portico {
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
  // Kong's readiness: a config is loaded and it is not empty.
  bool ready() const {
    std::lock_guard<std::mutex> lock(mu_);
    return loaded_ && services_ + routes_ > 0;
  }
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
};

HttpResponse StatusResponse(const HttpRequest& request, const ServingState& state,
                            const SyncClient& sync, const ProxyServer& proxy) {
  if (request.method != "GET" && request.method != "HEAD") {
    return HttpResponse::Json(405, R"({"message":"Method not allowed"})");
  }
  if (request.path == "/status") {
    nlohmann::json j = state.ToJson();
    j["control_plane_connected"] = sync.connected();
    j["node_id"] = sync.node_id();
    j["version"] = PORTICO_VERSION;
    j["server"] = {{"total_requests", proxy.requests_total()}};
    return HttpResponse::Json(200, j.dump());
  }
  if (request.path == "/status/ready") {
    if (!state.ready()) {
      return HttpResponse::Json(
          503, R"json({"message":"no configuration available (empty configuration present)"})json");
    }
    return HttpResponse::Json(200, R"({"message":"ready"})");
  }
  return HttpResponse::Json(404, R"({"message":"Not found"})");
}

int Serve(int argc, char** argv) {
  Flags flags({
      {"control-plane", "127.0.0.1:8005", "CP cluster address host:port"},
      {"cluster-cert", "", "DP client certificate (PEM); its identity is the node id"},
      {"cluster-key", "", "DP client private key (PEM)"},
      {"cluster-ca", "", "cluster CA; the CP certificate must chain to it"},
      {"cluster-server-name", "", "name expected in the CP certificate (default: CP host)"},
      {"proxy-listen", "0.0.0.0:8000", "proxy address"},
      {"status-listen", "127.0.0.1:8100", "status listener address"},
      {"workers", "0", "proxy worker threads (0 = one per core)"},
      {"allow-debug-header", "", "honour Kong-Debug: 1 request headers", true},
      {"log-level", "info", "debug|info|warn|error"},
  });
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) return Fail(s);
  if (!flags.positional().empty()) {
    std::fprintf(stderr, "usage: portico-dp [flags]\n%s", flags.Usage().c_str());
    return 2;
  }
  LogLevel level;
  if (!ParseLogLevel(flags.Get("log-level"), &level)) {
    return Fail(absl::InvalidArgumentError("--log-level must be debug, info, warn or error"));
  }
  SetLogLevel(level);
  for (const char* required : {"cluster-cert", "cluster-key", "cluster-ca"}) {
    if (flags.Get(required).empty()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--", required, " (or ", Flags::EnvName(required), ") is required")));
    }
  }
  absl::StatusOr<HostPort> proxy_addr = ParseHostPort(flags.Get("proxy-listen"));
  if (!proxy_addr.ok()) return Fail(proxy_addr.status());
  absl::StatusOr<HostPort> status_addr = ParseHostPort(flags.Get("status-listen"));
  if (!status_addr.ok()) return Fail(status_addr.status());
  int workers = 0;
  if (!absl::SimpleAtoi(flags.Get("workers"), &workers) || workers < 0 || workers > 256) {
    return Fail(absl::InvalidArgumentError("--workers must be an integer in 0..256"));
  }
  if (workers == 0) workers = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));

  BlockTerminationSignals();
  ProxyOptions proxy_options;
  proxy_options.host = proxy_addr->host;
  proxy_options.port = proxy_addr->port;
  proxy_options.workers = workers;
  proxy_options.allow_debug_header = flags.GetBool("allow-debug-header");
  absl::StatusOr<std::unique_ptr<ProxyServer>> proxy = ProxyServer::Start(proxy_options);
  if (!proxy.ok()) return Fail(proxy.status());
  ProxyServer* proxy_ptr = proxy->get();

  ServingState serving;
  // Runs on the sync client's thread: validate, compile off the workers, swap, then ACK.
  ApplyConfigFn apply = [proxy_ptr, &serving](std::shared_ptr<const ConfigSet> config,
                                              const ConfigVersion& version) -> absl::Status {
    if (absl::Status s = ValidateConfigSet(*config); !s.ok()) return s;
    absl::StatusOr<std::shared_ptr<const RuntimeConfig>> runtime =
        RuntimeConfig::Compile(config, version);
    if (!runtime.ok()) return runtime.status();
    proxy_ptr->Publish(*std::move(runtime));
    serving.Set(version, config->services.size(), config->routes.size());
    PORTICO_LOG(kInfo, "dp", "serving config version ", version.version, " hash ",
                ToHex(version.hash).substr(0, 12), " (", config->services.size(), " services, ",
                config->routes.size(), " routes)");
    return absl::OkStatus();
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
  absl::StatusOr<std::unique_ptr<SyncClient>> sync = SyncClient::Start(sync_options, apply);
  if (!sync.ok()) return Fail(sync.status());
  SyncClient* sync_ptr = sync->get();

  absl::StatusOr<std::unique_ptr<HttpServer>> status = HttpServer::Start(
      status_addr->host, status_addr->port,
      [&serving, sync_ptr, proxy_ptr](const HttpRequest& request) {
        return StatusResponse(request, serving, *sync_ptr, *proxy_ptr);
      });
  if (!status.ok()) return Fail(status.status());

  PORTICO_LOG(kInfo, "dp", "node ", sync_ptr->node_id(), " proxy listening on ",
              proxy_addr->host, ":", proxy_ptr->port(), " (", workers, " workers), status on ",
              status_addr->host, ":", (*status)->port(), ", control plane ",
              flags.Get("control-plane"));
  int sig = WaitForTerminationSignal();
  PORTICO_LOG(kInfo, "dp", "signal ", sig, ", shutting down");
  (*status)->Stop();
  sync_ptr->Stop();
  proxy_ptr->Stop();
  return 0;
}

}  // namespace
}  // namespace portico

int main(int argc, char** argv) { return portico::Serve(argc, argv); }
