#include "data_plane/plugins/chain.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/plugins/plugin_schema.h"
#include "data_plane/plugins/plugin.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

using config::v1::Plugin;
using config::v1::Route;

struct Compiled {
  const Plugin* entity;
  int priority;
  std::unique_ptr<const PluginHandler> handler;
};

// Kong's order: higher priority first; equal priority by name descending.
bool RunsBefore(const Compiled* a, const Compiled* b) {
  if (a->priority != b->priority) return a->priority > b->priority;
  return a->entity->name() > b->entity->name();
}

class PluginChainStep final : public RequestStep {
 public:
  PluginChainStep(std::vector<std::unique_ptr<Compiled>> owned,
                  absl::flat_hash_map<const Route*, std::vector<const PluginHandler*>> by_route,
                  std::vector<const PluginHandler*> global)
      : owned_(std::move(owned)), by_route_(std::move(by_route)), global_(std::move(global)) {}

  StepStatus OnRequest(RequestContext& request) const override {
    const std::vector<const PluginHandler*>* handlers = &global_;
    if (!by_route_.empty() && request.match.has_value()) {
      auto it = by_route_.find(request.match->route);
      if (it != by_route_.end()) handlers = &it->second;
    }
    for (const PluginHandler* handler : *handlers) {
      if (handler->Access(request) == StepStatus::kStop) return StepStatus::kStop;
    }
    return StepStatus::kContinue;
  }

 private:
  std::vector<std::unique_ptr<Compiled>> owned_;
  absl::flat_hash_map<const Route*, std::vector<const PluginHandler*>> by_route_;
  std::vector<const PluginHandler*> global_;
};

// The winners for one scope: for each plugin name, the first candidate present in `tiers`
// (most specific first), in run order.
std::vector<const PluginHandler*> Resolve(std::initializer_list<const std::vector<const Compiled*>*> tiers) {
  std::vector<const Compiled*> winners;
  for (const std::vector<const Compiled*>* tier : tiers) {
    if (tier == nullptr) continue;
    for (const Compiled* c : *tier) {
      bool taken = false;
      for (const Compiled* w : winners) taken |= w->entity->name() == c->entity->name();
      if (!taken) winners.push_back(c);
    }
  }
  std::sort(winners.begin(), winners.end(), &RunsBefore);
  std::vector<const PluginHandler*> out;
  for (const Compiled* w : winners) out.push_back(w->handler.get());
  return out;
}

}  // namespace

absl::Status AddPluginChain(const ConfigSet& config, Pipeline* pipeline) {
  std::vector<std::unique_ptr<Compiled>> owned;
  // Scopes, by the ids the plugins name. Each holds at most one instance per plugin name (the
  // validator checks the cache key).
  std::vector<const Compiled*> global;
  absl::flat_hash_map<std::string, std::vector<const Compiled*>> by_route, by_service, by_route_and_service;
  for (const Plugin& plugin : config.plugins) {
    if (!plugin.enabled() || plugin.has_consumer_id()) continue;  // consumer scopes: not yet
    bool http = false;
    for (const std::string& p : plugin.protocols()) http |= p == "http" || p == "https";
    if (!http) continue;
    const std::string context = absl::StrCat("plugin ", plugin.id(), " (", plugin.name(), "): ");
    const PluginFactory* factory = FindPluginFactory(plugin.name());
    const portico::plugins::PluginSchema* schema = portico::plugins::FindPluginSchema(plugin.name());
    if (factory == nullptr || schema == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(context, "this data plane cannot run it"));
    }
    nlohmann::json parsed = nlohmann::json::parse(plugin.config(), nullptr, /*allow_exceptions=*/false);
    FieldErrors errors;
    // The CP stores normalized configs; normalizing again fills any field a newer schema added.
    nlohmann::json normalized = schema->normalize(parsed.is_object() ? parsed : nlohmann::json::object(), &errors);
    if (!parsed.is_object()) errors.Add("", "expected a record");
    if (!errors.empty()) {
      FieldErrors named;
      for (const auto& [path, message] : errors.errors()) {
        named.Add(path.empty() ? std::string("config") : absl::StrCat("config.", path), message);
      }
      return named.ToStatus(context);
    }
    absl::StatusOr<std::unique_ptr<const PluginHandler>> handler = factory->compile(PluginCompileContext{normalized, config, plugin});
    if (!handler.ok()) return absl::InvalidArgumentError(absl::StrCat(context, handler.status().message()));
    owned.push_back(std::make_unique<Compiled>(Compiled{&plugin, schema->priority, *std::move(handler)}));
    const Compiled* c = owned.back().get();
    if (plugin.has_route_id() && plugin.has_service_id()) {
      by_route_and_service[absl::StrCat(plugin.route_id(), "|", plugin.service_id())].push_back(c);
    } else if (plugin.has_route_id()) {
      by_route[plugin.route_id()].push_back(c);
    } else if (plugin.has_service_id()) {
      by_service[plugin.service_id()].push_back(c);
    } else {
      global.push_back(c);
    }
  }
  if (owned.empty()) return absl::OkStatus();

  auto find = [](const auto& map, const std::string& key) -> const std::vector<const Compiled*>* {
    auto it = map.find(key);
    return it == map.end() ? nullptr : &it->second;
  };
  absl::flat_hash_map<const Route*, std::vector<const PluginHandler*>> per_route;
  if (!by_route.empty() || !by_service.empty() || !by_route_and_service.empty()) {
    for (const Route& route : config.routes) {
      const std::string service_id = route.has_service_id() ? route.service_id() : std::string();
      const auto* rs = route.has_service_id() ? find(by_route_and_service, absl::StrCat(route.id(), "|", service_id))
                                              : nullptr;
      const auto* r = find(by_route, route.id());
      const auto* s = route.has_service_id() ? find(by_service, service_id) : nullptr;
      if (rs == nullptr && r == nullptr && s == nullptr) continue;  // the global list applies
      per_route.emplace(&route, Resolve({rs, r, s, &global}));
    }
  }
  std::vector<const PluginHandler*> global_handlers = Resolve({&global});
  pipeline->Add(Phase::kAccess, std::make_shared<const PluginChainStep>(std::move(owned), std::move(per_route),
                                                                         std::move(global_handlers)));
  return absl::OkStatus();
}

}  // namespace portico::dp::plugins
