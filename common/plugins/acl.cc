// acl (Kong 3.x kong/plugins/acl/schema.lua): lets a consumer through when it is in one of the
// `allow` groups, or in none of the `deny` groups (exactly one of the two lists); the consumer's
// groups go upstream in X-Consumer-Groups unless `hide_groups_header`.
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  const auto allow = f.StringArray("allow", std::nullopt);
  const auto deny = f.StringArray("deny", std::nullopt);
  f.Boolean("hide_groups_header", false);
  f.Boolean("always_use_authenticated_groups", false);
  const bool consumer_groups = f.Boolean("include_consumer_groups", false);
  nlohmann::json out = f.Finish();
  if (consumer_groups) errors->Add("include_consumer_groups", "not supported by Portico yet (no consumer groups)");
  if (!errors->empty()) return out;
  const bool has_allow = allow && !allow->empty();
  const bool has_deny = deny && !deny->empty();
  if (has_allow && has_deny) {
    errors->Add("@entity", "only one of these fields must be non-empty: 'config.allow', 'config.deny'");
  } else if (!has_allow && !has_deny) {
    errors->Add("@entity", "at least one of these fields must be non-empty: 'config.allow', 'config.deny'");
  }
  return out;
}

}  // namespace

const PluginSchema& AclSchema() {
  static const PluginSchema schema{"acl", 950, &Normalize, /*no_consumer=*/true};
  return schema;
}

}  // namespace portico::plugins
