#include "data_plane/plugins/chain.h"

#include <uv.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/plugins/plugin_schema.h"
#include "data_plane/plugins/plugin.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using config::v1::Consumer;
using config::v1::Plugin;
using config::v1::Route;

struct Compiled {
  const Plugin* entity;
  int priority;
  std::unique_ptr<const PluginHandler> handler;
};

// One plugin name in a resolved list: the instance without a consumer scope that wins for the
// route (null if none), and, when consumer-scoped instances exist, the winner per consumer. The
// consumer is the one an earlier plugin (an auth plugin) identified when this entry is reached.
struct ChainEntry {
  int priority;
  std::string name;
  const PluginHandler* without_consumer = nullptr;
  absl::flat_hash_map<const Consumer*, const PluginHandler*> by_consumer;
};
using ChainList = std::vector<ChainEntry>;

class PluginChainStep final : public RequestStep {
 public:
  PluginChainStep(std::vector<std::unique_ptr<Compiled>> owned, absl::flat_hash_map<const Route*, ChainList> by_route,
                  ChainList global, bool times_plugins)
      : owned_(std::move(owned)), by_route_(std::move(by_route)), global_(std::move(global)),
        times_plugins_(times_plugins) {}

  // Run again after a plugin waited for the request body (RequestContext::ReadRequestBody): from
  // that plugin on.
  StepStatus OnRequest(RequestContext& request) const override {
    const bool resuming = request.plugin_chain == this;
    return Run(request, resuming ? request.plugin_position : 0, resuming);
  }

  void OnCancel(RequestContext& request) const override {
    const ChainList& chain = ListFor(request);
    if (request.plugin_position < chain.size()) {
      if (const PluginHandler* handler = HandlerFor(chain[request.plugin_position], request)) handler->OnCancel(request);
    }
    request.plugin_chain = nullptr;
  }

  // Runs the request's plugins from position `from`: kSuspend leaves the suspended plugin's
  // position in the context (set before each plugin runs, as it may resume before returning).
  // `resuming`: the plugin at `from` suspended and runs again (its timing entry is extended).
  StepStatus Run(RequestContext& request, size_t from, bool resuming = false) const {
    const ChainList& chain = ListFor(request);
    for (size_t i = from; i < chain.size(); ++i) {
      const PluginHandler* handler = HandlerFor(chain[i], request);
      if (handler == nullptr) continue;
      request.plugin_chain = this;
      request.plugin_position = static_cast<uint32_t>(i);
      const StepStatus status = times_plugins_ ? TimedAccess(*handler, chain[i].name, request, resuming && i == from)
                                               : handler->Access(request);
      if (status == StepStatus::kSuspend) return status;
      if (status == StepStatus::kStop) {
        request.plugin_chain = nullptr;
        return status;
      }
    }
    request.plugin_chain = nullptr;
    return StepStatus::kContinue;
  }

  // The header_filter, body_filter and log phases of the same list (the consumer is the one
  // identified by then).
  void RunHeaderFilters(RequestContext& request, int status) const {
    for (const ChainEntry& entry : ListFor(request)) {
      const PluginHandler* handler = HandlerFor(entry, request);
      if (handler != nullptr && handler->filters_headers()) handler->HeaderFilter(request, status);
    }
  }
  void RunBodyFilters(RequestContext& request, int status) const {
    for (const ChainEntry& entry : ListFor(request)) {
      const PluginHandler* handler = HandlerFor(entry, request);
      if (handler != nullptr && handler->filters_body()) handler->BodyFilter(request, status);
    }
  }
  void RunLog(const RequestContext& request, int status) const {
    for (const ChainEntry& entry : ListFor(request)) {
      const PluginHandler* handler = HandlerFor(entry, request);
      if (handler != nullptr && handler->logs()) handler->Log(request, status);
    }
  }

 private:
  // The list for the request's route (resolved again on resume: the same route, the same list).
  const ChainList& ListFor(const RequestContext& request) const {
    if (!by_route_.empty() && request.match.has_value()) {
      auto it = by_route_.find(request.match->route);
      if (it != by_route_.end()) return it->second;
    }
    return global_;
  }

  // Access, its time recorded in request.plugin_timings (while there is room).
  static StepStatus TimedAccess(const PluginHandler& handler, absl::string_view name, RequestContext& request,
                                bool resumed) {
    const uint64_t started = uv_hrtime();
    const StepStatus status = handler.Access(request);
    // A resumed plugin's entry is its last one (the same name, the chain's own storage).
    RequestContext::PluginTiming* last =
        request.plugin_timing_count != 0 ? &request.plugin_timings[request.plugin_timing_count - 1] : nullptr;
    if (resumed && last != nullptr && last->name.data() == name.data()) {
      last->ended_ns = uv_hrtime();
    } else if (request.plugin_timing_count < RequestContext::kMaxPluginTimings) {
      request.plugin_timings[request.plugin_timing_count++] = {name, started, uv_hrtime()};
    }
    return status;
  }

  static const PluginHandler* HandlerFor(const ChainEntry& entry, const RequestContext& request) {
    if (request.consumer != nullptr && !entry.by_consumer.empty()) {
      auto it = entry.by_consumer.find(request.consumer);
      if (it != entry.by_consumer.end()) return it->second;
    }
    return entry.without_consumer;
  }

  std::vector<std::unique_ptr<Compiled>> owned_;
  absl::flat_hash_map<const Route*, ChainList> by_route_;
  ChainList global_;
  const bool times_plugins_;
};

// The chain's header_filter phase as a response-head step.
class PluginHeaderFilterStep final : public ResponseHeadStep {
 public:
  explicit PluginHeaderFilterStep(std::shared_ptr<const PluginChainStep> chain) : chain_(std::move(chain)) {}
  void OnResponseHead(RequestContext& request, int status) const override { chain_->RunHeaderFilters(request, status); }

 private:
  std::shared_ptr<const PluginChainStep> chain_;
};

// The chain's body_filter phase as a buffered-body step.
class PluginBodyFilterStep final : public BufferedResponseBodyStep {
 public:
  explicit PluginBodyFilterStep(std::shared_ptr<const PluginChainStep> chain) : chain_(std::move(chain)) {}
  void OnBufferedResponseBody(RequestContext& request, int status) const override {
    chain_->RunBodyFilters(request, status);
  }

 private:
  std::shared_ptr<const PluginChainStep> chain_;
};

// The chain's log phase as a log step.
class PluginLogStep final : public LogStep {
 public:
  explicit PluginLogStep(std::shared_ptr<const PluginChainStep> chain) : chain_(std::move(chain)) {}
  void OnLog(const RequestContext& request, int status) const override { chain_->RunLog(request, status); }

 private:
  std::shared_ptr<const PluginChainStep> chain_;
};

// The instances of a snapshot by scope (Kong's cache key): at most one per name in each.
struct Scopes {
  // key: "<route>|<service>|<consumer>" with empty parts for "any"
  absl::flat_hash_map<std::string, std::vector<const Compiled*>> by_key;
  absl::flat_hash_set<std::string> routes, services, consumers;  // ids that scope an instance

  const std::vector<const Compiled*>* Find(absl::string_view route, absl::string_view service,
                                           absl::string_view consumer) const {
    auto it = by_key.find(absl::StrCat(route, "|", service, "|", consumer));
    return it == by_key.end() ? nullptr : &it->second;
  }
};

// Kong's precedence for one route (`route`/`service` empty for the global list), per plugin name:
// route+service+consumer, route+consumer, service+consumer, route+service, consumer, route,
// service, global.
ChainList Resolve(const Scopes& scopes, absl::string_view route, absl::string_view service,
                  const absl::flat_hash_map<std::string, const Consumer*>& consumers) {
  std::map<std::string, ChainEntry> entries;  // by name
  auto entry_for = [&entries](const Compiled* c) -> ChainEntry& {
    ChainEntry& e = entries[c->entity->name()];
    e.priority = c->priority;
    e.name = c->entity->name();
    return e;
  };
  // Without a consumer: the most specific of route+service, route, service, global.
  const std::vector<const Compiled*>* tiers[] = {
      route.empty() || service.empty() ? nullptr : scopes.Find(route, service, ""),
      route.empty() ? nullptr : scopes.Find(route, "", ""),
      service.empty() ? nullptr : scopes.Find("", service, ""),
      scopes.Find("", "", ""),
  };
  for (const auto* tier : tiers) {
    if (tier == nullptr) continue;
    for (const Compiled* c : *tier) {
      ChainEntry& e = entry_for(c);
      if (e.without_consumer == nullptr) e.without_consumer = c->handler.get();
    }
  }
  // With a consumer: the most specific of route+service+consumer, route+consumer,
  // service+consumer, consumer (each beats every scope without a consumer).
  if (!scopes.consumers.empty()) {
    for (const auto& [consumer_id, consumer] : consumers) {
      const std::vector<const Compiled*>* consumer_tiers[] = {
          route.empty() || service.empty() ? nullptr : scopes.Find(route, service, consumer_id),
          route.empty() ? nullptr : scopes.Find(route, "", consumer_id),
          service.empty() ? nullptr : scopes.Find("", service, consumer_id),
          scopes.Find("", "", consumer_id),
      };
      for (const auto* tier : consumer_tiers) {
        if (tier == nullptr) continue;
        for (const Compiled* c : *tier) entry_for(c).by_consumer.emplace(consumer, c->handler.get());
      }
    }
  }
  ChainList out;
  for (auto& [name, entry] : entries) out.push_back(std::move(entry));
  // Kong's order: higher priority first; equal priority by name descending.
  std::sort(out.begin(), out.end(), [](const ChainEntry& a, const ChainEntry& b) {
    return a.priority != b.priority ? a.priority > b.priority : a.name > b.name;
  });
  return out;
}

}  // namespace

void ResumePluginChain(RequestContext& request, StepStatus status) {
  const auto* chain = static_cast<const PluginChainStep*>(request.plugin_chain);
  if (status == StepStatus::kContinue) status = chain->Run(request, request.plugin_position + 1);
  if (status == StepStatus::kSuspend) {
    // A later plugin suspended: on I/O it resumes the chain itself; waiting for the request body,
    // the exchange must start reading it (and runs the chain again once it is read).
    if (request.reading_request_body()) request.Resume(StepStatus::kSuspend);
    return;
  }
  request.plugin_chain = nullptr;
  request.Resume(status);
}

absl::Status AddPluginChain(const ConfigSet& config, Pipeline* pipeline) {
  std::vector<std::unique_ptr<Compiled>> owned;
  Scopes scopes;
  for (const Plugin& plugin : config.plugins) {
    if (!plugin.enabled()) continue;
    bool http = false;
    for (const std::string& p : plugin.protocols()) http |= p == "http" || p == "https";
    if (!http) continue;
    const std::string context = absl::StrCat("plugin ", plugin.id(), " (", plugin.name(), "): ");
    const PluginFactory* factory = FindPluginFactory(plugin.name());
    const portico::plugins::PluginSchema* schema = portico::plugins::FindPluginSchema(plugin.name());
    if (factory == nullptr || schema == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(context, "this data plane cannot run it"));
    }
    // The CP stores normalized configs; normalizing again fills any field a newer schema added.
    FieldErrors errors;
    const nlohmann::json normalized = portico::plugins::NormalizePluginConfig(
        *schema, nlohmann::json::parse(plugin.config(), nullptr, /*allow_exceptions=*/false), &errors);
    if (!errors.empty()) return errors.ToStatus(context);
    absl::StatusOr<std::unique_ptr<const PluginHandler>> handler =
        factory->compile(PluginCompileContext{normalized, config, plugin});
    if (!handler.ok()) return absl::InvalidArgumentError(absl::StrCat(context, handler.status().message()));
    owned.push_back(std::make_unique<Compiled>(Compiled{&plugin, schema->priority, *std::move(handler)}));
    scopes.by_key[absl::StrCat(plugin.route_id(), "|", plugin.service_id(), "|", plugin.consumer_id())].push_back(
        owned.back().get());
    if (plugin.has_route_id()) scopes.routes.insert(plugin.route_id());
    if (plugin.has_service_id()) scopes.services.insert(plugin.service_id());
    if (plugin.has_consumer_id()) scopes.consumers.insert(plugin.consumer_id());
  }
  if (owned.empty()) return absl::OkStatus();

  absl::flat_hash_map<std::string, const Consumer*> consumers;  // those that scope an instance
  for (const Consumer& c : config.consumers) {
    if (scopes.consumers.contains(c.id())) consumers.emplace(c.id(), &c);
  }
  absl::flat_hash_map<const Route*, ChainList> per_route;
  if (!scopes.routes.empty() || !scopes.services.empty()) {
    for (const Route& route : config.routes) {
      const std::string service = route.has_service_id() ? route.service_id() : std::string();
      if (!scopes.routes.contains(route.id()) && (service.empty() || !scopes.services.contains(service))) {
        continue;  // the global list applies
      }
      per_route.emplace(&route, Resolve(scopes, route.id(), service, consumers));
    }
  }
  ChainList global = Resolve(scopes, "", "", consumers);
  bool filters_headers = false, filters_body = false, logs = false, times_plugins = false;
  for (const auto& compiled : owned) {
    filters_headers |= compiled->handler->filters_headers();
    filters_body |= compiled->handler->filters_body();
    logs |= compiled->handler->logs();
    times_plugins |= compiled->handler->times_plugins();
  }
  auto chain = std::make_shared<const PluginChainStep>(std::move(owned), std::move(per_route), std::move(global),
                                                       times_plugins);
  pipeline->Add(Phase::kAccess, chain);
  if (filters_headers) pipeline->AddResponseHead(std::make_shared<const PluginHeaderFilterStep>(chain));
  if (filters_body) pipeline->AddBufferedResponseBody(std::make_shared<const PluginBodyFilterStep>(chain));
  if (logs) pipeline->AddLog(std::make_shared<const PluginLogStep>(chain));
  return absl::OkStatus();
}

}  // namespace portico::dp::plugins
