#include "data_plane/proxy/runtime_config.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "common/config/validate.h"
#include "data_plane/balancer/balancer.h"

#include "data_plane/plugins/chain.h"

namespace portico::dp {

absl::StatusOr<std::shared_ptr<const RuntimeConfig>> RuntimeConfig::Compile(std::shared_ptr<const ConfigSet> config,
                                                                            ConfigVersion version,
                                                                            const PipelineExtensions& extensions,
                                                                            int worker_slots,
                                                                            dp::HealthRegistry* health,
                                                                            const dp::UpstreamTlsOptions& upstream_tls,
                                                                            const RuntimeConfig* previous,
                                                                            const ChangedEntities* changes) {
  if (config == nullptr) return absl::InvalidArgumentError("no config");
  std::shared_ptr<RuntimeConfig> runtime(new RuntimeConfig());
  runtime->config_ = config;
  runtime->version_ = std::move(version);
  absl::StatusOr<std::unique_ptr<const dp::Router>> built;
  if (previous != nullptr && changes != nullptr && changes->ListsDeletes()) {
    dp::RouteChanges route_changes;
    for (const auto* ids : {changes->IdsOf("routes"), changes->DeletedIdsOf("routes")}) {
      if (ids != nullptr) route_changes.route_ids.insert(route_changes.route_ids.end(), ids->begin(), ids->end());
    }
    route_changes.services_changed = changes->IdsOf("services") != nullptr || changes->AnyDeleted("services");
    built = dp::Router::BuildOn(previous->router(), config, route_changes);
  } else {
    built = dp::Router::Build(config);
  }
  if (!built.ok()) return built.status();
  runtime->router_ = std::move(*built);
  absl::StatusOr<std::shared_ptr<const CertificateStore>> certificates = CertificateStore::Build(*config);
  if (!certificates.ok()) return certificates.status();
  runtime->certificates_ = *std::move(certificates);

  runtime->worker_slots_ = std::max(1, worker_slots);
  absl::StatusOr<dp::BalancerMap> balancers = dp::CompileBalancers(*config, runtime->worker_slots_, health);
  if (!balancers.ok()) return balancers.status();
  runtime->balancers_ = *std::move(balancers);
  absl::StatusOr<std::unique_ptr<const dp::UpstreamTlsContexts>> tls =
      dp::UpstreamTlsContexts::Compile(*config, upstream_tls);
  if (!tls.ok()) return tls.status();
  runtime->upstream_tls_ = *std::move(tls);
  runtime->services_.reserve(config->services.size());
  for (const config::v1::Service& service : config->services) {
    absl::StatusOr<dp::UpstreamService> compiled = dp::CompileUpstreamService(service, &runtime->balancers_);
    if (!compiled.ok()) return compiled.status();
    compiled->tls = runtime->upstream_tls_->ForService(service.id());
    runtime->services_.emplace(&service, *std::move(compiled));
  }

  {
    absl::flat_hash_set<std::pair<std::string, uint16_t>> seen;
    auto add = [&](const std::string& name, uint16_t port) {
      if (!name.empty() && seen.emplace(name, port).second) runtime->dns_names_.push_back(dp::DnsKey{name, port});
    };
    for (const auto& [pointer, service] : runtime->services_) {
      if (service.balancer == nullptr) add(service.dns_name, service.dns_port);
    }
    for (const auto& [name, balancer] : runtime->balancers_) {
      for (size_t i = 0; i < balancer->size(); ++i) {
        if (balancer->target(i).weight > 0) add(balancer->target(i).dns_name, balancer->target(i).dns_port);
      }
    }
  }

  dp::Pipeline& steps = runtime->pipeline_;
  dp::AddBuiltinSteps(&steps, runtime->router_.get(), &runtime->services_);
  if (absl::Status s = dp::plugins::AddPluginChain(*config, &steps); !s.ok()) return s;
  for (const auto& [phase, step] : extensions.request_steps) steps.Add(phase, step);
  for (const auto& step : extensions.response_head_steps) steps.AddResponseHead(step);
  for (const auto& step : extensions.response_body_steps) steps.AddResponseBody(step);
  for (const auto& step : extensions.buffered_body_steps) steps.AddBufferedResponseBody(step);
  for (const auto& step : extensions.log_steps) steps.AddLog(step);
  for (const auto& make_step : extensions.log_step_factories) steps.AddLog(make_step(*config));
  return std::shared_ptr<const RuntimeConfig>(std::move(runtime));
}

std::vector<dp::HealthTarget> RuntimeConfig::HealthTargets() const {
  std::vector<dp::HealthTarget> out;
  for (const auto& [name, balancer] : balancers_) balancer->AppendHealthTargets(&out);
  for (dp::HealthTarget& target : out) {
    dp::UpstreamTlsContexts::ProbeContexts probe = upstream_tls_->ForUpstreamProbes(target.upstream_id);
    target.probe_tls_verify = std::move(probe.verify);
    target.probe_tls_no_verify = std::move(probe.no_verify);
  }
  return out;
}

const dp::UpstreamService* RuntimeConfig::FindService(const config::v1::Service* service) const {
  if (service == nullptr) return nullptr;
  auto it = services_.find(service);
  return it != services_.end() ? &it->second : nullptr;
}

}  // namespace portico::dp
