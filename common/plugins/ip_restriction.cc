// ip-restriction (Kong 3.x kong/plugins/ip-restriction/schema.lua): `allow` and `deny` lists of IP
// addresses or CIDR blocks (IPv4 and IPv6), at least one of them; `status` and `message` of the
// refusal (403 and "IP address not allowed: <ip>" when null).
#include "common/config/validate.h"
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

std::string CheckIpOrCidr(absl::string_view text) {
  return IsValidIpOrCidr(text) ? "" : "invalid ip or cidr range: '" + std::string(text) + "'";
}

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  const auto allow = f.StringArray("allow", std::nullopt, &CheckIpOrCidr);
  const auto deny = f.StringArray("deny", std::nullopt, &CheckIpOrCidr);
  f.Integer("status", std::nullopt, 100, 599);
  f.String("message", std::nullopt);
  nlohmann::json out = f.Finish();
  if (errors->empty() && (!allow || allow->empty()) && (!deny || deny->empty())) {
    errors->Add("@entity", "at least one of these fields must be non-empty: 'config.allow', 'config.deny'");
  }
  return out;
}

}  // namespace

const PluginSchema& IpRestrictionSchema() {
  static const PluginSchema schema{"ip-restriction", 990, &Normalize};
  return schema;
}

}  // namespace portico::plugins
