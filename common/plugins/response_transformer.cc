// response-transformer (Kong 3.x kong/plugins/response-transformer/schema.lua): edits the
// response headers on their way to the client, in Kong's order: remove, rename, replace, add,
// append. "name:value" items (rename: "old:new"), checked as request-transformer's header entries
// are. JSON body transformations are refused until
// the proxy can buffer a response body (docs/plugins.md).
#include "common/plugins/bundled.h"
#include "common/plugins/request_transformer.h"

namespace portico::plugins {
namespace {

// The json lists are accepted empty only.
void JsonNotSupported(ConfigFields& f, bool with_types) {
  const auto json = f.StringArray("json", std::vector<std::string>{});
  if (json && !json->empty()) f.errors()->Add("json", "not supported by Portico yet (no response body transformations)");
  if (with_types) f.StringArray("json_types", std::vector<std::string>{});
}

nlohmann::json Remove(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonNotSupported(f, false);
  f.StringArray("headers", std::vector<std::string>{}, &CheckTransformerHeaderName);
  return f.Finish();
}

nlohmann::json Rename(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonNotSupported(f, false);
  f.StringArray("headers", std::vector<std::string>{}, &CheckTransformerHeaderRename);
  return f.Finish();
}

nlohmann::json PairsWithJson(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonNotSupported(f, true);
  f.StringArray("headers", std::vector<std::string>{}, &CheckTransformerHeaderPair);
  return f.Finish();
}

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  f.Record("remove", &Remove);
  f.Record("rename", &Rename);
  f.Record("replace", &PairsWithJson);
  f.Record("add", &PairsWithJson);
  f.Record("append", &PairsWithJson);
  return f.Finish();
}

}  // namespace

const PluginSchema& ResponseTransformerSchema() {
  static const PluginSchema schema{"response-transformer", 800, &Normalize};
  return schema;
}

}  // namespace portico::plugins
