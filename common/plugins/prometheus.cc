// prometheus (Kong 3.x kong/plugins/prometheus/schema.lua): which traffic metrics the data plane
// records for the requests the plugin applies to. Every family is opt-in, as in Kong (all false by
// default); the node-level series (connections, config hash, ...) are on /metrics regardless.
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  f.Boolean("per_consumer", false);
  f.Boolean("status_code_metrics", false);
  f.Boolean("ai_metrics", false);  // accepted for compatibility; Portico has no AI proxy
  f.Boolean("latency_metrics", false);
  f.Boolean("bandwidth_metrics", false);
  f.Boolean("upstream_health_metrics", false);
  f.Boolean("wasm_metrics", false);  // accepted for compatibility; Portico runs no Proxy-Wasm
  return f.Finish();
}

}  // namespace

const PluginSchema& PrometheusSchema() {
  static const PluginSchema schema{"prometheus", 13, &Normalize};
  return schema;
}

}  // namespace portico::plugins
