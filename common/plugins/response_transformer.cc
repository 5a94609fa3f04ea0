// response-transformer (Kong 3.x kong/plugins/response-transformer/schema.lua): edits the
// response headers on their way to the client, in Kong's order: remove, rename, replace, add,
// append. "name:value" items (rename: "old:new"). JSON body transformations are refused until
// the proxy can buffer a response body (docs/plugins.md).
#include "absl/strings/str_cat.h"
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

std::string CheckHeaderName(absl::string_view name) {
  if (name.empty()) return "length must be at least 1";
  for (char c : name) {
    const bool token = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
    if (!token) return absl::StrCat("invalid header name '", name, "'");
  }
  return "";
}

// "name:value" with a valid header name (the value may be empty).
std::string CheckColonPair(absl::string_view item) {
  const size_t colon = item.find(':');
  if (colon == absl::string_view::npos || colon == 0) return absl::StrCat("invalid value: ", item);
  return CheckHeaderName(item.substr(0, colon));
}

// "old:new", both header names.
std::string CheckRename(absl::string_view item) {
  const size_t colon = item.find(':');
  if (colon == absl::string_view::npos || colon == 0) return absl::StrCat("invalid value: ", item);
  std::string problem = CheckHeaderName(item.substr(0, colon));
  return problem.empty() ? CheckHeaderName(item.substr(colon + 1)) : problem;
}

// The json lists are accepted empty only.
void JsonNotSupported(ConfigFields& f, bool with_types) {
  const auto json = f.StringArray("json", std::vector<std::string>{});
  if (json && !json->empty()) f.errors()->Add("json", "not supported by Portico yet (no response body transformations)");
  if (with_types) f.StringArray("json_types", std::vector<std::string>{});
}

nlohmann::json Remove(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonNotSupported(f, false);
  f.StringArray("headers", std::vector<std::string>{}, &CheckHeaderName);
  return f.Finish();
}

nlohmann::json Rename(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonNotSupported(f, false);
  f.StringArray("headers", std::vector<std::string>{}, &CheckRename);
  return f.Finish();
}

nlohmann::json PairsWithJson(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  JsonNotSupported(f, true);
  f.StringArray("headers", std::vector<std::string>{}, &CheckColonPair);
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
