#include "data_plane/proxy/runtime_config.h"

#include <arpa/inet.h>
#include <uv.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace portico::proxy {
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

absl::StatusOr<ServiceTarget> CompileServiceTarget(const config::v1::Service& service) {
  ServiceTarget target;
  target.id = service.id();
  if (service.has_name()) target.name = service.name();
  target.host = service.host();
  if (target.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("service ", service.id(), ": host: required field missing"));
  }
  if (service.port() < 1 || service.port() > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("service ", service.id(), ": port: value should be between 0 and 65535"));
  }
  target.port = static_cast<uint16_t>(service.port());

  // Hosts in the config never carry brackets; tolerate them anyway.
  std::string bare = target.host;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
  const bool v6 = IsIpv6(bare);
  if (IsIpv4(bare) || v6) {
    target.ip = bare;
  } else if (absl::AsciiStrToLower(bare) == "localhost") {
    target.ip = "127.0.0.1";
  }  // else: DNS name, left unresolved (ip empty).
  if (!target.ip.empty()) {
    if (v6) {
      target.pool_key = absl::StrCat("[", target.ip, "]:", target.port);
      uv_ip6_addr(target.ip.c_str(), target.port, reinterpret_cast<sockaddr_in6*>(&target.address));
    } else {
      target.pool_key = absl::StrCat(target.ip, ":", target.port);
      uv_ip4_addr(target.ip.c_str(), target.port, reinterpret_cast<sockaddr_in*>(&target.address));
    }
  }

  const std::string host_for_header = v6 ? absl::StrCat("[", bare, "]") : target.host;
  target.host_header = (target.port == 80 || target.port == 443)
                           ? host_for_header
                           : absl::StrCat(host_for_header, ":", target.port);
  if (service.has_path()) {
    target.path = service.path();
    target.has_path = true;
  }
  target.retries = service.retries() > 0 ? service.retries() : 0;
  target.connect_timeout_ms = TimeoutOrDefault(service.connect_timeout());
  target.write_timeout_ms = TimeoutOrDefault(service.write_timeout());
  target.read_timeout_ms = TimeoutOrDefault(service.read_timeout());
  return target;
}

absl::StatusOr<std::shared_ptr<const RuntimeConfig>> RuntimeConfig::Compile(
    std::shared_ptr<const ConfigSet> config, ConfigVersion version) {
  if (config == nullptr) return absl::InvalidArgumentError("no config");
  std::shared_ptr<RuntimeConfig> runtime(new RuntimeConfig());
  runtime->config_ = config;
  runtime->version_ = std::move(version);
  absl::StatusOr<std::unique_ptr<const router::Router>> built = router::Router::Build(config);
  if (!built.ok()) return built.status();
  runtime->router_ = std::move(*built);

  runtime->by_pointer_.reserve(config->services.size());
  for (const config::v1::Service& service : config->services) {
    absl::StatusOr<ServiceTarget> target = CompileServiceTarget(service);
    if (!target.ok()) return target.status();
    runtime->by_pointer_.emplace(&service, *std::move(target));
  }
  return std::shared_ptr<const RuntimeConfig>(std::move(runtime));
}

const ServiceTarget* RuntimeConfig::FindService(const config::v1::Service* service) const {
  if (service == nullptr) return nullptr;
  auto it = by_pointer_.find(service);
  return it != by_pointer_.end() ? &it->second : nullptr;
}

}  // namespace portico::proxy
