// Every plugin the data plane can run, one line each.
#include "data_plane/plugins/acl/acl.h"
#include "data_plane/plugins/basic_auth/basic_auth.h"
#include "data_plane/plugins/correlation_id/correlation_id.h"
#include "data_plane/plugins/cors/cors.h"
#include "data_plane/plugins/file_log/file_log.h"
#include "data_plane/plugins/http_log/http_log.h"
#include "data_plane/plugins/ip_restriction/ip_restriction.h"
#include "data_plane/plugins/jwt/jwt.h"
#include "data_plane/plugins/key_auth/key_auth.h"
#include "data_plane/plugins/opentelemetry/opentelemetry.h"
#include "data_plane/plugins/plugin.h"
#include "data_plane/plugins/prometheus/prometheus.h"
#include "data_plane/plugins/rate_limiting/rate_limiting.h"
#include "data_plane/plugins/request_size_limiting/request_size_limiting.h"
#include "data_plane/plugins/request_termination/request_termination.h"
#include "data_plane/plugins/request_transformer/request_transformer.h"
#include "data_plane/plugins/response_transformer/response_transformer.h"

namespace portico::dp::plugins {

namespace {

const PluginFactory kFactories[] = {
  {"acl", &CompileAcl},
  {"basic-auth", &CompileBasicAuth},
  {"correlation-id", &CompileCorrelationId},
  {"cors", &CompileCors},
  {"file-log", &CompileFileLog},
  {"http-log", &CompileHttpLog},
  {"ip-restriction", &CompileIpRestriction},
  {"jwt", &CompileJwt},
  {"key-auth", &CompileKeyAuth},
  {"opentelemetry", &CompileOpentelemetry},
  {"prometheus", &CompilePrometheus},
  {"rate-limiting", &CompileRateLimiting},
  {"request-size-limiting", &CompileRequestSizeLimiting},
  {"request-termination", &CompileRequestTermination},
  {"request-transformer", &CompileRequestTransformer},
  {"response-transformer", &CompileResponseTransformer},
};

}  // namespace

const PluginFactory* FindPluginFactory(absl::string_view name) {
  for (const PluginFactory& factory : kFactories) {
    if (name == factory.name) return &factory;
  }
  return nullptr;
}

std::vector<std::string> RunnablePluginNames() {
  std::vector<std::string> names;
  for (const PluginFactory& factory : kFactories) names.emplace_back(factory.name);
  return names;
}

}  // namespace portico::dp::plugins
