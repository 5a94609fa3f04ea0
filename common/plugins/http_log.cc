// http-log (Kong 3.x kong/plugins/http-log/schema.lua and the shared queue schema
// kong/tools/queue_schema.lua): sends each request's log entry (Kong's log serializer) to
// `http_endpoint`, batched by the queue parameters. Times in `queue` are seconds, as in Kong;
// `timeout` and `keepalive` are milliseconds. Only http:// endpoints are sent to (https is refused
// here, so the error reaches the Admin API). The deprecated retry_count, queue_size and
// flush_timeout are accepted and ignored; custom_fields_by_lua (Lua) is refused when set.
#include "absl/strings/match.h"
#include "common/base/http_url.h"
#include "common/plugins/bundled.h"
#include "common/plugins/log_plugins.h"

namespace portico::plugins {
namespace {

nlohmann::json NormalizeQueue(const nlohmann::json& record, FieldErrors* errors) {
  ConfigFields f(record, errors);
  f.Integer("max_batch_size", 1, 1, 1000000);
  f.Number("max_coalescing_delay", 1.0, 0, 3600);
  f.Integer("max_entries", 10000, 1, 1000000);
  f.Integer("max_bytes", std::nullopt, 1, 1LL << 40);
  f.Number("max_retry_time", 60.0, 0, 1e9);
  f.Number("initial_retry_delay", 0.01, 0.001, 1000000);
  f.Number("max_retry_delay", 60.0, 0.001, 1000000);
  std::optional<int64_t> concurrency = f.Integer("concurrency_limit", 1, -1, 1);
  nlohmann::json out = f.Finish();
  if (concurrency && *concurrency == 0) errors->Add("concurrency_limit", "expected one of: -1, 1");
  return out;
}

bool IsToken(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    absl::StrContains("!#$%&'*+-.^_`|~", c);
    if (!ok) return false;
  }
  return true;
}

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  const std::optional<std::string> endpoint = f.String("http_endpoint", std::nullopt, {}, 2048);
  f.String("method", std::string("POST"), {"POST", "PUT", "PATCH"});
  f.String("content_type", std::string("application/json"),
           {"application/json", "application/json; charset=utf-8"});
  f.Integer("timeout", 10000, 1, 2147483646);  // 0 would never deliver
  f.Integer("keepalive", 60000, 0, 2147483646);
  f.Integer("retry_count", std::nullopt, 0, 2147483646);
  f.Integer("queue_size", std::nullopt, 1, 2147483646);
  f.Number("flush_timeout", std::nullopt, 0, 3600);
  f.Record("headers");
  f.Record("queue", &NormalizeQueue);
  f.Record("custom_fields_by_lua");
  nlohmann::json out = f.Finish();
  if (!endpoint) {
    errors->Add("http_endpoint", "required field missing");
  } else if (absl::StartsWithIgnoreCase(*endpoint, "https://")) {
    errors->Add("http_endpoint", "https endpoints are not supported by Portico yet; use http://");
  } else if (absl::StatusOr<HttpUrl> url = ParseHttpUrl(*endpoint); !url.ok()) {
    errors->Add("http_endpoint", std::string(url.status().message()));  // what the DP's sender would refuse
  }
  if (auto it = out.find("headers"); it != out.end() && !it->is_null()) {
    if (!it->is_object()) {
      errors->Add("headers", "expected a map");
    } else {
      for (const auto& [name, value] : it->items()) {
        if (!IsToken(name)) {
          errors->Add("headers", "invalid header name: " + name);
        } else if (!value.is_string() ||
                   value.get_ref<const std::string&>().find_first_of("\r\n") != std::string::npos) {
          errors->Add("headers." + name, "expected a string without line breaks");
        }
      }
    }
  }
  RefuseCustomFieldsByLua(out, errors);
  return out;
}

}  // namespace

const PluginSchema& HttpLogSchema() {
  static const PluginSchema schema{"http-log", 12, &Normalize};
  return schema;
}

}  // namespace portico::plugins
