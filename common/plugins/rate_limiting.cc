// rate-limiting (Kong 3.x kong/plugins/rate-limiting/schema.lua): limits per second, minute, hour,
// day, month and year, counted per identifier (limit_by) in fixed calendar windows (UTC), with the
// `local` policy (counters in the data plane's memory) or `redis` (counters in a Redis shared by
// the data planes; the `redis` record is Kong's kong/tools/redis/schema.lua). `cluster` needs a
// database on the data plane, which hybrid mode does not have: refused as Kong refuses it there.
#include <cmath>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config/validate.h"
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

// The deprecated flat fields Kong 3.6+ still accepts (`redis_host` for `redis.host`, ...): folded
// into the `redis` record on input, never stored.
constexpr const char* kRedisShorthands[] = {"host",       "port",        "password", "username", "ssl",
                                            "ssl_verify", "server_name", "timeout",  "database"};

// Kong's typedefs.host (a name or an IP) and typedefs.sni (a name, not an IP).
std::string HostProblem(absl::string_view host, bool sni) {
  if (!IsValidHostname(host)) return absl::StrCat("invalid value: ", host);
  if (sni && IsValidIpOrCidr(host) && !absl::StrContains(host, '/')) return "must not be an IP";
  return "";
}

nlohmann::json NormalizeRedis(const nlohmann::json& record, FieldErrors* errors) {
  // Kong's password has len_min 0: an empty one means "no AUTH", stored as null.
  nlohmann::json input = record;
  if (input.is_object() && input.contains("password") && input["password"] == "") input["password"] = nullptr;
  ConfigFields f(input, errors);
  const std::optional<std::string> host = f.String("host", std::nullopt);
  f.Integer("port", 6379, 0, 65535);
  f.Integer("timeout", 2000, 0, 2147483646);
  f.String("username", std::nullopt);
  f.String("password", std::nullopt);
  f.Integer("database", 0, 0, 2147483647);
  f.Boolean("ssl", false);
  f.Boolean("ssl_verify", false);
  const std::optional<std::string> server_name = f.String("server_name", std::nullopt);
  nlohmann::json out = f.Finish();
  if (host) {
    if (std::string problem = HostProblem(*host, false); !problem.empty()) errors->Add("host", problem);
  }
  if (server_name) {
    if (std::string problem = HostProblem(*server_name, true); !problem.empty()) errors->Add("server_name", problem);
  }
  return out;
}

nlohmann::json Normalize(const nlohmann::json& raw, FieldErrors* errors) {
  const nlohmann::json* config = &raw;
  nlohmann::json folded;
  if (raw.is_object()) {
    for (const char* name : kRedisShorthands) {
      auto it = raw.find(absl::StrCat("redis_", name));
      if (it == raw.end()) continue;
      if (config == &raw) {
        folded = raw;
        config = &folded;
      }
      nlohmann::json value = *it;
      folded.erase(absl::StrCat("redis_", name));
      if (value.is_null()) continue;
      nlohmann::json& redis = folded["redis"];
      if (redis.is_null()) redis = nlohmann::json::object();
      if (redis.is_object()) redis[name] = std::move(value);  // (not a record: reported as such below)
    }
  }
  ConfigFields f(*config, errors);
  std::optional<double> limits[6];
  for (int i = 0; i < 6; ++i) {
    limits[i] = f.Number(kPeriods[i], std::nullopt, 0, 1e15);
    if (limits[i] && *limits[i] <= 0) errors->Add(kPeriods[i], "value must be greater than 0");
  }
  const std::optional<std::string> limit_by =
      f.String("limit_by", std::string("consumer"), {"consumer", "credential", "ip", "service", "header", "path"});
  const std::optional<std::string> header_name = f.String("header_name", std::nullopt);
  const std::optional<std::string> path = f.String("path", std::nullopt);
  // Kong's one_of for a control plane in hybrid mode (no `cluster`: data planes have no database).
  const std::optional<std::string> policy = f.String("policy", std::string("local"), {"local", "redis"});
  f.Boolean("fault_tolerant", true);
  const nlohmann::json redis = f.Record("redis", &NormalizeRedis);
  f.Boolean("hide_client_headers", false);
  f.Integer("error_code", 429, 0, 999);
  f.String("error_message", std::string("API rate limit exceeded"));
  const std::optional<double> sync_rate = f.Number("sync_rate", -1, -1, 1e9);
  nlohmann::json out = f.Finish();
  if (policy && *policy == "redis" && redis.is_object()) {
    for (const char* required : {"host", "port", "timeout"}) {
      if (redis[required].is_null()) errors->Add(absl::StrCat("redis.", required), "required field missing");
    }
    if (redis["ssl"] == true) errors->Add("redis.ssl", "TLS to Redis is not supported by Portico yet");
  }
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
  if (policy && sync_rate && *sync_rate != -1) {
    if (*policy != "redis") {
      errors->Add("@entity", "sync_rate can only be used with the redis policy");
    } else if (*sync_rate < 0.02) {
      errors->Add("@entity", "sync_rate must be greater than 0.02, or -1 to disable");
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
