#include "data_plane/plugins/prometheus/prometheus.h"

#include <string>

#include "absl/container/flat_hash_map.h"
#include "data_plane/plugins/prometheus/traffic_metrics.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

class Prometheus final : public PluginHandler {
 public:
  struct Options {
    bool per_consumer = false;
    bool status_codes = false;
    bool latencies = false;
    bool bandwidth = false;
  };
  Prometheus(TrafficMetrics* store, Options options,
             absl::flat_hash_map<const config::v1::Route*, uint32_t> route_ids,
             absl::flat_hash_map<const config::v1::Consumer*, uint32_t> consumer_ids)
      : store_(store), options_(options), route_ids_(std::move(route_ids)), consumer_ids_(std::move(consumer_ids)) {}

  StepStatus Access(RequestContext&) const override { return StepStatus::kContinue; }
  bool logs() const override {
    return options_.status_codes || options_.latencies || options_.bandwidth;
  }

  void Log(const RequestContext& request, int status) const override {
    if (!request.match.has_value() || request.match->service == nullptr) return;  // Kong: no service, no stats
    const auto route = route_ids_.find(request.match->route);
    if (route == route_ids_.end() || route->second == 0) return;
    const uint32_t route_id = route->second;
    uint32_t consumer_id = 0;
    if (options_.per_consumer && request.consumer != nullptr) {
      if (auto c = consumer_ids_.find(request.consumer); c != consumer_ids_.end()) consumer_id = c->second;
    }
    const int worker = request.worker_index;
    if (options_.status_codes) {
      store_->CountRequest(worker, route_id, consumer_id, status,
                           request.upstream_status != 0 && !request.response_is_local);
    }
    if (options_.bandwidth) {
      store_->AddBandwidth(worker, route_id, consumer_id, RequestSizeBytes(request), request.response_bytes);
    }
    if (options_.latencies) {
      const RequestLatencies latencies = ComputeLatencies(request);
      store_->ObserveLatency(worker, route_id, LatencyKind::kRequest, latencies.request_ms);
      store_->ObserveLatency(worker, route_id, LatencyKind::kKong, latencies.kong_ms);
      // Kong's proxy latency is -1 (not observed) when no upstream answered.
      if (request.upstream_head_ns != 0) {
        store_->ObserveLatency(worker, route_id, LatencyKind::kUpstream, latencies.proxy_ms);
      }
    }
  }

 private:
  TrafficMetrics* const store_;
  const Options options_;
  const absl::flat_hash_map<const config::v1::Route*, uint32_t> route_ids_;
  const absl::flat_hash_map<const config::v1::Consumer*, uint32_t> consumer_ids_;
};

}  // namespace

std::string ServiceLabel(const config::v1::Service& service) {
  return service.name().empty() ? service.host() : service.name();
}

std::string RouteLabel(const config::v1::Route& route) { return route.name().empty() ? route.id() : route.name(); }

std::string ConsumerLabel(const config::v1::Consumer& consumer) {
  return consumer.username().empty() ? consumer.custom_id() : consumer.username();
}

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompilePrometheusInto(const PluginCompileContext& context,
                                                                         TrafficMetrics* store) {
  const nlohmann::json& config = context.config;
  Prometheus::Options options;
  options.per_consumer = config.value("per_consumer", false);
  options.status_codes = config.value("status_code_metrics", false);
  options.latencies = config.value("latency_metrics", false);
  options.bandwidth = config.value("bandwidth_metrics", false);
  if (config.value("upstream_health_metrics", false)) store->EnableUpstreamHealth();

  absl::flat_hash_map<std::string, const config::v1::Service*> services;
  for (const config::v1::Service& service : context.snapshot.services) services.emplace(service.id(), &service);
  const config::v1::Plugin& plugin = context.plugin;
  absl::flat_hash_map<const config::v1::Route*, uint32_t> route_ids;
  if (options.status_codes || options.latencies || options.bandwidth) {
    for (const config::v1::Route& route : context.snapshot.routes) {
      if (plugin.has_route_id() && route.id() != plugin.route_id()) continue;
      if (plugin.has_service_id() && route.service_id() != plugin.service_id()) continue;
      auto service = services.find(route.service_id());
      if (service == services.end()) continue;  // never recorded: no service
      route_ids.emplace(&route, store->InternRoute(ServiceLabel(*service->second), RouteLabel(route)));
    }
  }
  absl::flat_hash_map<const config::v1::Consumer*, uint32_t> consumer_ids;
  if (options.per_consumer) {
    for (const config::v1::Consumer& consumer : context.snapshot.consumers) {
      if (plugin.has_consumer_id() && consumer.id() != plugin.consumer_id()) continue;
      consumer_ids.emplace(&consumer, store->InternConsumer(ConsumerLabel(consumer)));
    }
  }
  return std::make_unique<const Prometheus>(store, options, std::move(route_ids), std::move(consumer_ids));
}

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompilePrometheus(const PluginCompileContext& context) {
  return CompilePrometheusInto(context, &TrafficMetrics::Process());
}

}  // namespace portico::dp::plugins
