// basic-auth (Kong 3.x kong/plugins/basic-auth/schema.lua): a request is identified by the
// username and password of an `Authorization` (or `Proxy-Authorization`) Basic header, checked
// against the consumer's basic-auth credential. Data planes hold salted hashes, never passwords.
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  f.String("anonymous", std::nullopt);
  f.Boolean("hide_credentials", false);
  f.String("realm", std::string("service"));
  return f.Finish();
}

}  // namespace

const PluginSchema& BasicAuthSchema() {
  static const PluginSchema schema{"basic-auth", 1100, &Normalize, /*no_consumer=*/true};
  return schema;
}

}  // namespace portico::plugins
