#pragma once
// The schemas of the bundled plugins, one file each (request_termination.cc, ...). Listed in
// BundledPluginSchemas (plugin_schema.cc).
#include "common/plugins/plugin_schema.h"

namespace portico::plugins {

const PluginSchema& CorrelationIdSchema();
const PluginSchema& CorsSchema();
const PluginSchema& IpRestrictionSchema();
const PluginSchema& KeyAuthSchema();
const PluginSchema& RateLimitingSchema();
const PluginSchema& RequestSizeLimitingSchema();
const PluginSchema& RequestTerminationSchema();
const PluginSchema& RequestTransformerSchema();

}  // namespace portico::plugins
