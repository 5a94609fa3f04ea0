// cors (Kong 3.x kong/plugins/cors/schema.lua): answers CORS preflight requests and adds the CORS
// headers to every other response. `origins` are "*", plain origins or regexes (RE2 here; Kong's
// are PCRE); `methods` defaults to all nine Kong accepts.
#include <algorithm>

#include "common/config/validate.h"
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

const std::vector<std::string>& Methods() {
  static const std::vector<std::string> methods = {"GET",    "HEAD",    "PUT",   "PATCH",  "POST",
                                                   "DELETE", "OPTIONS", "TRACE", "CONNECT"};
  return methods;
}

std::string CheckOrigin(absl::string_view origin) {
  if (origin == "*" || (!origin.empty() && Re2CompileError(origin).empty())) return "";
  return "'" + std::string(origin) + "' is not a valid regex";
}

// Kong accepts any string; one with a control character would break the response head.
std::string CheckHeaderText(absl::string_view text) {
  const bool control = std::any_of(text.begin(), text.end(),
                                   [](unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; });
  return control ? "invalid header value" : "";
}

std::string CheckMethod(absl::string_view method) {
  for (const std::string& m : Methods()) {
    if (method == m) return "";
  }
  return "expected one of: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS, TRACE, CONNECT";
}

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  f.StringArray("origins", std::nullopt, &CheckOrigin);
  f.StringArray("headers", std::nullopt, &CheckHeaderText);
  f.StringArray("exposed_headers", std::nullopt, &CheckHeaderText);
  f.StringArray("methods", Methods(), &CheckMethod);
  f.Number("max_age", std::nullopt, -1e15, 1e15);
  f.Boolean("credentials", false);
  f.Boolean("private_network", false);
  f.Boolean("preflight_continue", false);
  f.Boolean("allow_origin_absent", true);
  return f.Finish();
}

}  // namespace

const PluginSchema& CorsSchema() {
  static const PluginSchema schema{"cors", 2000, &Normalize, /*no_consumer=*/true};
  return schema;
}

}  // namespace portico::plugins
