#pragma once
// Where a service's requests go: its compiled settings and its destination set, built once per
// snapshot (RuntimeConfig::Compile) and shared read-only by every worker. Today a service has one
// target (its host, when that is an IP literal or localhost); upstream entities, load-balancing
// algorithms and health checks (issue 12) add targets and a smarter Pick without changing callers.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/config/config_set.h"

namespace portico::dp {

class Balancer;
class HealthRegistry;
class UpstreamTlsContext;

// One address requests can be sent to. Upstream keep-alive pools are keyed by pool_key.
struct Target {
  std::string ip;        // numeric ("127.0.0.1", "::1")
  uint16_t port = 0;
  std::string pool_key;  // "127.0.0.1:80", "[::1]:80": one pool per target
  sockaddr_storage address{};
};

// The targets of one service.
class DestinationSet {
 public:
  // Adds a target; the set keeps the order it was given.
  void Add(Target target) { targets_.push_back(std::move(target)); }
  bool empty() const { return targets_.empty(); }
  size_t size() const { return targets_.size(); }
  const Target& at(size_t i) const { return targets_[i]; }
  // The target for one attempt of a request: `attempt` counts from 0 (retries pass 1, 2, ...),
  // `cursor` is the picking worker's own counter (round-robin without shared mutable state).
  // nullptr when the set is empty.
  const Target* Pick(uint64_t cursor, int attempt) const {
    if (targets_.empty()) return nullptr;
    return &targets_[(cursor + static_cast<uint64_t>(attempt)) % targets_.size()];
  }

 private:
  std::vector<Target> targets_;
};

// A service as the proxy uses it, with no strings left to parse per request.
struct UpstreamService {
  std::string id;
  std::string name;              // empty when the service has no name
  std::string host;              // service.host as configured
  std::string host_header;       // "host" or "host:port" ("[v6]:port"), port omitted for 80/443
  std::string path;              // service.path, empty when null
  bool has_path = false;
  // Extra attempts after a connect failure or timeout, and, for an idempotent request whose body
  // was not streamed, after a write/read timeout or a reset when an untried target exists.
  int retries = 0;
  int64_t connect_timeout_ms = 60000;
  int64_t write_timeout_ms = 60000;
  int64_t read_timeout_ms = 60000;
  // Protocol grpc or grpcs: requests go over HTTP/2 (data_plane/proxy/http2_upstream.h), over
  // TLS (`tls`) for grpcs.
  bool http2 = false;
  // Empty when the host is a DNS name: then dns_name (lowercase) and dns_port say what the
  // worker's resolver looks up per request (data_plane/dns; 503 "name resolution failed" when it
  // has no answer).
  DestinationSet destinations;
  std::string dns_name;
  uint16_t dns_port = 0;
  // Set when the host names an upstream: requests are balanced over its targets instead (the
  // service's port is not used). Owned by the runtime config, like the service.
  const Balancer* balancer = nullptr;
  // Set when the service's protocol is https or grpcs: the client context its connections use (owned by
  // the runtime config; upstream_tls.h). Null: cleartext.
  const UpstreamTlsContext* tls = nullptr;
};

// Upstream name -> its compiled balancer.
using BalancerMap = absl::flat_hash_map<std::string, std::unique_ptr<const Balancer>>;

// Compiles one service: settings and destinations (one target for an IP literal or localhost, or
// the balancer of the upstream its host names, from `balancers`).
absl::StatusOr<UpstreamService> CompileUpstreamService(const config::v1::Service& service,
                                                       const BalancerMap* balancers = nullptr);
// Compiles the balancers of `config`'s upstreams with `workers` worker slots; their targets'
// health records come from `health` (null: health is not looked at).
absl::StatusOr<BalancerMap> CompileBalancers(const ConfigSet& config, int workers, HealthRegistry* health = nullptr);

}  // namespace portico::dp
