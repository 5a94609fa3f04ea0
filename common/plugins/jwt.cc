// jwt (Kong 3.x kong/plugins/jwt/schema.lua): a request is identified by a JWT in a query
// argument, a cookie or a header, signed with a jwt credential (jwt_secrets) whose key is the
// token's `key_claim_name` claim.
#include <algorithm>

#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

std::string CheckClaim(absl::string_view claim) {
  return claim == "exp" || claim == "nbf" ? "" : "expected one of: exp, nbf";
}

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  f.StringArray("uri_param_names", std::vector<std::string>{"jwt"});
  f.StringArray("cookie_names", std::vector<std::string>{});
  f.String("key_claim_name", "iss");
  f.Boolean("secret_is_base64", false);
  const auto claims = f.StringArray("claims_to_verify", std::nullopt, &CheckClaim);
  f.String("anonymous", std::nullopt);
  f.Boolean("run_on_preflight", true);
  const auto maximum_expiration = f.Number("maximum_expiration", 0, 0, 31536000);
  f.StringArray("header_names", std::vector<std::string>{"authorization"});
  f.String("realm", std::nullopt);
  nlohmann::json out = f.Finish();
  if (errors->empty() && maximum_expiration && *maximum_expiration > 0 &&
      !(claims && std::find(claims->begin(), claims->end(), "exp") != claims->end())) {
    // Kong's conditional entity check on the config.
    errors->Add("claims_to_verify", "expected to contain: exp");
    errors->Add("@entity", "failed conditional validation given value of field 'config.maximum_expiration'");
  }
  return out;
}

}  // namespace

const PluginSchema& JwtSchema() {
  static const PluginSchema schema{"jwt", 1450, &Normalize, /*no_consumer=*/true};
  return schema;
}

}  // namespace portico::plugins
