#pragma once
// The schemas of the bundled plugins, one file each (request_termination.cc, ...). Listed in
// BundledPluginSchemas (plugin_schema.cc).
#include "common/plugins/plugin_schema.h"

namespace portico::plugins {

const PluginSchema& AclSchema();
const PluginSchema& BasicAuthSchema();
const PluginSchema& CorrelationIdSchema();
const PluginSchema& CorsSchema();
const PluginSchema& FileLogSchema();
const PluginSchema& HttpLogSchema();
const PluginSchema& IpRestrictionSchema();
const PluginSchema& JwtSchema();
const PluginSchema& KeyAuthSchema();
const PluginSchema& OpentelemetrySchema();
const PluginSchema& PrometheusSchema();
const PluginSchema& RateLimitingSchema();
const PluginSchema& RequestSizeLimitingSchema();
const PluginSchema& RequestTerminationSchema();
const PluginSchema& RequestTransformerSchema();
const PluginSchema& ResponseTransformerSchema();

}  // namespace portico::plugins
