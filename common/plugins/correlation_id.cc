// correlation-id (Kong 3.x kong/plugins/correlation-id/schema.lua): gives each request an id in
// `header_name`, sent upstream and, with echo_downstream, back to the client.
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  f.String("header_name", std::string("Kong-Request-ID"));
  f.String("generator", std::string("uuid#counter"), {"uuid", "uuid#counter", "tracker"});
  f.Boolean("echo_downstream", false);
  return f.Finish();
}

}  // namespace

const PluginSchema& CorrelationIdSchema() {
  static const PluginSchema schema{"correlation-id", 100001, &Normalize};
  return schema;
}

}  // namespace portico::plugins
