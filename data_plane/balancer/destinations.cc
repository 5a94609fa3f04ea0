#include "data_plane/balancer/destinations.h"

#include <arpa/inet.h>
#include <uv.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "data_plane/balancer/balancer.h"

namespace portico::dp {
namespace {

constexpr int64_t kDefaultTimeoutMs = 60000;

int64_t TimeoutOrDefault(int32_t ms) { return ms > 0 ? ms : kDefaultTimeoutMs; }

bool IsIpv4(const std::string& host) {
  in_addr addr;
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool IsIpv6(const std::string& host) {
  in6_addr addr;
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

}  // namespace

absl::StatusOr<BalancerMap> CompileBalancers(const ConfigSet& config, int workers, HealthRegistry* health) {
  BalancerMap out;
  if (config.upstreams.empty()) return out;
  absl::flat_hash_map<std::string, std::vector<const config::v1::Target*>> targets;  // by upstream id
  for (const config::v1::Target& t : config.targets) {
    if (t.has_upstream_id()) targets[t.upstream_id()].push_back(&t);
  }
  for (const config::v1::Upstream& u : config.upstreams) {
    auto it = targets.find(u.id());
    absl::StatusOr<std::unique_ptr<const Balancer>> balancer =
        Balancer::Compile(u, it == targets.end() ? std::vector<const config::v1::Target*>() : it->second, workers,
                          health);
    if (!balancer.ok()) return balancer.status();
    out.emplace(u.name(), *std::move(balancer));
  }
  return out;
}

absl::StatusOr<UpstreamService> CompileUpstreamService(const config::v1::Service& service,
                                                       const BalancerMap* balancers) {
  UpstreamService out;
  out.id = service.id();
  if (service.has_name()) out.name = service.name();
  out.host = service.host();
  if (out.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("service ", service.id(), ": host: required field missing"));
  }
  // Kong accepts 0 to 65535 and so does the validator; port 0 compiles (a connect to it fails:
  // 502), so that one such service cannot make a DP refuse every snapshot.
  if (service.port() < 0 || service.port() > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("service ", service.id(), ": port: value should be between 0 and 65535"));
  }
  const uint16_t port = static_cast<uint16_t>(service.port());
  if (balancers != nullptr) {
    auto it = balancers->find(out.host);
    if (it != balancers->end()) out.balancer = it->second.get();
  }

  // Hosts in the config never carry brackets; tolerate them anyway.
  std::string bare = out.host;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
  const bool v6 = IsIpv6(bare);
  Target target;
  if (out.balancer != nullptr) {
    // balanced: the targets are the upstream's
  } else if (IsIpv4(bare) || v6) {
    target.ip = bare;
  } else if (absl::AsciiStrToLower(bare) == "localhost") {
    target.ip = "127.0.0.1";
  } else {  // a DNS name: resolved per worker (data_plane/dns)
    out.dns_name = absl::AsciiStrToLower(bare);
    if (!out.dns_name.empty() && out.dns_name.back() == '.') out.dns_name.pop_back();
    out.dns_port = port;
  }
  if (!target.ip.empty()) {
    target.port = port;
    if (v6) {
      target.pool_key = absl::StrCat("[", target.ip, "]:", port);
      uv_ip6_addr(target.ip.c_str(), port, reinterpret_cast<sockaddr_in6*>(&target.address));
    } else {
      target.pool_key = absl::StrCat(target.ip, ":", port);
      uv_ip4_addr(target.ip.c_str(), port, reinterpret_cast<sockaddr_in*>(&target.address));
    }
    out.destinations.Add(std::move(target));
  }

  const std::string host_for_header = v6 ? absl::StrCat("[", bare, "]") : out.host;
  out.host_header = (port == 80 || port == 443) ? host_for_header : absl::StrCat(host_for_header, ":", port);
  if (service.has_path()) {
    out.path = service.path();
    out.has_path = true;
  }
  out.retries = service.retries() > 0 ? service.retries() : 0;
  out.connect_timeout_ms = TimeoutOrDefault(service.connect_timeout());
  out.write_timeout_ms = TimeoutOrDefault(service.write_timeout());
  out.read_timeout_ms = TimeoutOrDefault(service.read_timeout());
  out.http2 = service.protocol() == "grpc" || service.protocol() == "grpcs";
  return out;
}

}  // namespace portico::dp
