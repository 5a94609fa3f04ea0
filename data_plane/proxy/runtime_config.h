#pragma once
// The data plane's compiled, immutable configuration: the router plus what the proxy needs per
// service, precomputed once (upstream address, Host header, timeouts). Built off the worker
// threads by RuntimeConfig::Compile and handed to every worker as shared_ptr<const RuntimeConfig>;
// each request pins the instance it started with until it ends.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config/config_set.h"
#include "data_plane/router/router.h"

namespace portico::proxy {

// Everything the proxy needs to reach one service, with no strings left to parse per request.
struct ServiceTarget {
  std::string id;
  std::string name;              // empty when the service has no name
  std::string host;              // service.host as configured
  // Numeric address to connect to ("127.0.0.1", "::1"). Empty when the host is a DNS name that
  // this build does not resolve: requests then get 503 "name resolution failed".
  std::string ip;
  uint16_t port = 80;
  // Precomputed from ip and port (only when ip is set): the worker's upstream pool key
  // ("127.0.0.1:80", "[::1]:80") and the socket address to connect to.
  std::string pool_key;
  sockaddr_storage address{};
  std::string host_header;       // "host" or "host:port" ("[v6]:port"), port omitted for 80/443
  std::string path;              // service.path, empty when null
  bool has_path = false;
  int retries = 0;               // extra connect attempts after a connect failure
  int64_t connect_timeout_ms = 60000;
  int64_t write_timeout_ms = 60000;
  int64_t read_timeout_ms = 60000;
};

class RuntimeConfig {
 public:
  // Builds the router and the per-service targets. Fails (and nothing changes for the caller)
  // when the router cannot be built or a service is unusable (bad port, empty host).
  static absl::StatusOr<std::shared_ptr<const RuntimeConfig>> Compile(
      std::shared_ptr<const ConfigSet> config, ConfigVersion version);

  const ConfigVersion& version() const { return version_; }
  const router::Router& router() const { return *router_; }
  const ConfigSet& config() const { return *config_; }

  // The target for a service pointer returned by this config's router().Find() (pointers into
  // config().services); nullptr for any other pointer.
  const ServiceTarget* FindService(const config::v1::Service* service) const;

 private:
  RuntimeConfig() = default;

  std::shared_ptr<const ConfigSet> config_;
  ConfigVersion version_;
  std::unique_ptr<const router::Router> router_;
  absl::flat_hash_map<const config::v1::Service*, ServiceTarget> by_pointer_;
};

// Compiles one service; exposed for tests.
absl::StatusOr<ServiceTarget> CompileServiceTarget(const config::v1::Service& service);

}  // namespace portico::proxy

// Also visible as portico::X for callers outside the proxy (data_plane/main.cc).
namespace portico {
using proxy::RuntimeConfig;
using proxy::ServiceTarget;
}  // namespace portico
