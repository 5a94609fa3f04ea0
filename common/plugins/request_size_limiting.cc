// request-size-limiting (Kong 3.x kong/plugins/request-size-limiting/schema.lua): refuses request
// bodies over `allowed_payload_size` `size_unit`s.
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  f.Integer("allowed_payload_size", 128, 0, INT64_MAX / (1 << 20));
  f.String("size_unit", std::string("megabytes"), {"megabytes", "kilobytes", "bytes"});
  f.Boolean("require_content_length", false);
  return f.Finish();
}

}  // namespace

const PluginSchema& RequestSizeLimitingSchema() {
  static const PluginSchema schema{"request-size-limiting", 951, &Normalize};
  return schema;
}

}  // namespace portico::plugins
