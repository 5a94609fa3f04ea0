#pragma once
// The data plane's compiled, immutable configuration: the router, the compiled services (with
// their destinations), the request pipeline and the TLS listener's certificate store, built once per snapshot off the worker threads by
// RuntimeConfig::Compile and handed to every worker as shared_ptr<const RuntimeConfig>; each
// request pins the instance it started with until it ends.
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config/config_set.h"
#include "data_plane/balancer/destinations.h"
#include "data_plane/balancer/upstream_tls.h"
#include "data_plane/dns/dns_cache.h"
#include "data_plane/health/health_registry.h"
#include "data_plane/pipeline/builtin_steps.h"
#include "data_plane/pipeline/pipeline.h"
#include "data_plane/router/router.h"
#include "data_plane/tls/certificate_store.h"

namespace portico {
class ChangedEntities;
}

namespace portico::dp {

// What Compile adds to a snapshot's pipeline besides the built-in steps (plugins; tests).
struct PipelineExtensions {
  std::vector<std::pair<dp::Phase, std::shared_ptr<const dp::RequestStep>>> request_steps;
  std::vector<std::shared_ptr<const dp::ResponseHeadStep>> response_head_steps;
  std::vector<std::shared_ptr<const dp::ResponseBodyStep>> response_body_steps;
  std::vector<std::shared_ptr<const dp::BufferedResponseBodyStep>> buffered_body_steps;
  std::vector<std::shared_ptr<const dp::LogStep>> log_steps;
  // Log steps made for each snapshot (after log_steps), e.g. the access log with the snapshot's
  // credential names to redact.
  std::vector<std::function<std::shared_ptr<const dp::LogStep>(const ConfigSet&)>> log_step_factories;
};

class RuntimeConfig {
 public:
  // Builds the router, the services and the pipeline (built-in steps, the plugin chain, then
  // `extensions` in their phases). Fails (and nothing changes for the caller) when the router
  // cannot be built, a service is unusable (bad port, empty host), an upstream's healthchecks
  // record is invalid, a plugin does not compile, or a certificate does not load. `health`: the
  // DP's target health records (outlives every config compiled with it; null: balancers ignore
  // health). `upstream_tls`: the DP's upstream TLS defaults (https services).
  // `previous` and `changes`, when both are given and `changes` lists every delete (a delta's
  // ChangedEntities): `config` is previous's config with these changes, and the router is layered
  // on previous's (Router::BuildOn) instead of built whole.
  static absl::StatusOr<std::shared_ptr<const RuntimeConfig>> Compile(std::shared_ptr<const ConfigSet> config,
                                                                      ConfigVersion version,
                                                                      const PipelineExtensions& extensions = {},
                                                                      int worker_slots = 1,
                                                                      dp::HealthRegistry* health = nullptr,
                                                                      const dp::UpstreamTlsOptions& upstream_tls = {},
                                                                      const RuntimeConfig* previous = nullptr,
                                                                      const ChangedEntities* changes = nullptr);

  const ConfigVersion& version() const { return version_; }
  const dp::Router& router() const { return *router_; }
  const ConfigSet& config() const { return *config_; }
  const dp::Pipeline& pipeline() const { return pipeline_; }
  // The certificates served by SNI on the TLS listener (never null). A connection pins it for
  // its handshake.
  const std::shared_ptr<const CertificateStore>& certificates() const { return certificates_; }
  // The workers the balancers keep state for: a proxy with more workers must not use it.
  int worker_slots() const { return worker_slots_; }

  // Every balanced target with a health record (compiled with a registry): what to hand to
  // HealthRegistry::Install and HealthChecker::Reconfigure once this config is published.
  std::vector<dp::HealthTarget> HealthTargets() const;

  // The compiled service for a service pointer returned by this config's router().Find()
  // (pointers into config().services); nullptr for any other pointer.
  const dp::UpstreamService* FindService(const config::v1::Service* service) const;
  // The DNS names (and ports) the services and upstream targets use, each once: what a worker
  // resolves as soon as it adopts this config.
  const std::vector<dp::DnsKey>& dns_names() const { return dns_names_; }

 private:
  RuntimeConfig() = default;

  std::shared_ptr<const ConfigSet> config_;
  ConfigVersion version_;
  std::unique_ptr<const dp::Router> router_;
  int worker_slots_ = 1;
  dp::BalancerMap balancers_;  // services_ point into it
  std::unique_ptr<const dp::UpstreamTlsContexts> upstream_tls_;  // services_ point into it
  dp::ServiceMap services_;
  dp::Pipeline pipeline_;  // refers to router_ and services_
  std::vector<dp::DnsKey> dns_names_;
  std::shared_ptr<const CertificateStore> certificates_;
};

}  // namespace portico::dp

