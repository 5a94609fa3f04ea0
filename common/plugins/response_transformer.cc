// response-transformer (Kong 3.x kong/plugins/response-transformer/schema.lua): edits the
// response headers on their way to the client, in Kong's order: remove, rename, replace, add,
// append. "name:value" items (rename: "old:new"), checked as request-transformer's header entries
// are. `json` lists edit a JSON object response body in the same order: names for remove,
// "old:new" for rename, "name:value" otherwise (Kong's ^[^:]+:.*$: the value may be empty), with
// `json_types` (boolean, number, string) casting the value of the entry at the same position.
#include "common/plugins/bundled.h"
#include "common/plugins/request_transformer.h"

namespace portico::plugins {
namespace {

// Kong's ^[^:]+:.*$ for "name:value" json entries.
std::string CheckJsonPair(absl::string_view entry) {
  const size_t colon = entry.find(':');
  if (colon == absl::string_view::npos || colon == 0) return "invalid value: " + std::string(entry);
  return "";
}

std::string CheckJsonType(absl::string_view type) {
  if (type == "boolean" || type == "number" || type == "string") return "";
  return "expected one of: boolean, number, string";
}

// The json list (names when `pairs` is false), and json_types where the record has it.
void JsonLists(ConfigFields& f, bool pairs, bool with_types) {
  f.StringArray("json", std::vector<std::string>{}, pairs ? &CheckJsonPair : nullptr);
  if (with_types) f.StringArray("json_types", std::vector<std::string>{}, &CheckJsonType);
}

nlohmann::json Remove(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonLists(f, /*pairs=*/false, /*with_types=*/false);
  f.StringArray("headers", std::vector<std::string>{}, &CheckTransformerHeaderName);
  return f.Finish();
}

nlohmann::json Rename(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonLists(f, /*pairs=*/true, /*with_types=*/false);
  f.StringArray("headers", std::vector<std::string>{}, &CheckTransformerHeaderRename);
  return f.Finish();
}

nlohmann::json PairsWithJson(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonLists(f, /*pairs=*/true, /*with_types=*/true);
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
