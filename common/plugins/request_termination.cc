// request-termination (Kong 3.x kong/plugins/request-termination/schema.lua): answers every request
// itself with `status_code` and either `message` (Kong's {"message": ...}) or `body` with
// `content_type`, or with `echo` the request itself as JSON; with `trigger`, only requests carrying
// that header or query argument.
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  f.Integer("status_code", 503, 100, 599);
  const std::optional<std::string> message = f.String("message", std::nullopt);
  const std::optional<std::string> body = f.String("body", std::nullopt, {}, 1 << 20);
  const std::optional<std::string> content_type = f.String("content_type", std::nullopt);
  f.Boolean("echo", false);
  f.String("trigger", std::nullopt);
  nlohmann::json out = f.Finish();
  if (errors->empty() && message && body) errors->Add("@entity", "'message' and 'body' are mutually exclusive");
  if (errors->empty() && content_type && !body) errors->Add("@entity", "'content_type' requires 'body'");
  return out;
}

}  // namespace

const PluginSchema& RequestTerminationSchema() {
  static const PluginSchema schema{"request-termination", 2, &Normalize};
  return schema;
}

}  // namespace portico::plugins
