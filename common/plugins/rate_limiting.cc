// rate-limiting (Kong 3.x kong/plugins/rate-limiting/schema.lua): limits per second, minute, hour,
// day, month and year, counted per identifier (limit_by) in fixed calendar windows (UTC). Only the
// `local` policy is implemented (counters in the data plane's memory, shared by its workers).
#include <cmath>
#include <cstdio>

#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

constexpr const char* kPeriods[] = {"second", "minute", "hour", "day", "month", "year"};

std::string Number(double d) {
  char buf[64];
  if (std::floor(d) == d && std::fabs(d) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", d);
  } else {
    std::snprintf(buf, sizeof(buf), "%g", d);
  }
  return buf;
}

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  std::optional<double> limits[6];
  for (int i = 0; i < 6; ++i) {
    limits[i] = f.Number(kPeriods[i], std::nullopt, 0, 1e15);
    if (limits[i] && *limits[i] <= 0) errors->Add(kPeriods[i], "value must be greater than 0");
  }
  const std::optional<std::string> limit_by =
      f.String("limit_by", std::string("consumer"), {"consumer", "credential", "ip", "service", "header", "path"});
  const std::optional<std::string> header_name = f.String("header_name", std::nullopt);
  const std::optional<std::string> path = f.String("path", std::nullopt);
  const std::optional<std::string> policy = f.String("policy", std::string("local"), {"local", "cluster", "redis"});
  f.Boolean("fault_tolerant", true);
  f.Boolean("hide_client_headers", false);
  f.Integer("error_code", 429, 0, 999);
  f.String("error_message", std::string("API rate limit exceeded"));
  f.Number("sync_rate", -1, -1, 1e9);
  f.Record("redis");
  nlohmann::json out = f.Finish();
  if (policy && *policy != "local") errors->Add("policy", "only 'local' is supported by Portico yet");
  if (limit_by && *limit_by == "header" && !header_name) errors->Add("header_name", "required field missing");
  if (limit_by && *limit_by == "path" && !path) errors->Add("path", "required field missing");
  if (path && (*path)[0] != '/') errors->Add("path", "should start with: /");
  if (!errors->empty()) return out;
  bool any = false;
  for (const auto& l : limits) any |= l.has_value();
  if (!any) {
    errors->Add("@entity",
                "at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', "
                "'config.day', 'config.month', 'config.year'");
    return out;
  }
  // A longer period may not have a lower limit than a shorter one.
  for (int longer = 1; longer < 6; ++longer) {
    if (!limits[longer]) continue;
    for (int shorter = longer - 1; shorter >= 0; --shorter) {
      if (!limits[shorter]) continue;
      if (*limits[longer] < *limits[shorter]) {
        errors->Add("@entity", std::string("The limit for ") + kPeriods[longer] + "(" + Number(*limits[longer]) +
                                   ") cannot be lower than the limit for " + kPeriods[shorter] + "(" +
                                   Number(*limits[shorter]) + ")");
      }
      break;
    }
  }
  return out;
}

}  // namespace

const PluginSchema& RateLimitingSchema() {
  static const PluginSchema schema{"rate-limiting", 910, &Normalize};
  return schema;
}

}  // namespace portico::plugins
