// Every plugin the data plane can run, one line each.
#include "data_plane/plugins/correlation_id/correlation_id.h"
#include "data_plane/plugins/ip_restriction/ip_restriction.h"
#include "data_plane/plugins/key_auth/key_auth.h"
#include "data_plane/plugins/plugin.h"
#include "data_plane/plugins/rate_limiting/rate_limiting.h"
#include "data_plane/plugins/request_size_limiting/request_size_limiting.h"
#include "data_plane/plugins/request_termination/request_termination.h"

namespace portico::dp::plugins {

const PluginFactory* FindPluginFactory(absl::string_view name) {
  static const PluginFactory kFactories[] = {
      {"correlation-id", &CompileCorrelationId},
      {"ip-restriction", &CompileIpRestriction},
      {"key-auth", &CompileKeyAuth},
      {"rate-limiting", &CompileRateLimiting},
      {"request-size-limiting", &CompileRequestSizeLimiting},
      {"request-termination", &CompileRequestTermination},
  };
  for (const PluginFactory& factory : kFactories) {
    if (name == factory.name) return &factory;
  }
  return nullptr;
}

}  // namespace portico::dp::plugins
