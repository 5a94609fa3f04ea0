// key-auth (Kong 3.x kong/plugins/key-auth/schema.lua): a request is identified by a key in a
// header, query argument or (key_in_body) request body field named in `key_names`; the consumer is the owner of the matching
// key-auth credential. Data planes compare digests, never keys (docs/plugins.md).
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

std::string CheckHeaderName(absl::string_view name) {
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) {
      return "bad header name '" + std::string(name) + "', allowed characters are A-Z, a-z, 0-9, '_', and '-'";
    }
  }
  return name.empty() ? "length must be at least 1" : "";
}

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  const auto names = f.StringArray("key_names", std::vector<std::string>{"apikey"}, &CheckHeaderName);
  f.Boolean("hide_credentials", false);
  f.String("anonymous", std::nullopt);
  f.Boolean("key_in_header", true);
  f.Boolean("key_in_query", true);
  f.Boolean("key_in_body", false);
  f.Boolean("run_on_preflight", true);
  f.String("realm", std::nullopt);
  nlohmann::json out = f.Finish();
  if (names && names->empty()) errors->Add("key_names", "length must be at least 1");
  return out;
}

}  // namespace

const PluginSchema& KeyAuthSchema() {
  static const PluginSchema schema{"key-auth", 1250, &Normalize, /*no_consumer=*/true};
  return schema;
}

}  // namespace portico::plugins
