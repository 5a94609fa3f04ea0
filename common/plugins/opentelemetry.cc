// opentelemetry (Kong 3.x kong/plugins/opentelemetry/schema.lua): W3C trace context propagated to
// the upstream, and spans exported over OTLP/HTTP with JSON encoding. Kong's field names; what
// Portico cannot do (https, logs_endpoint, header formats other than w3c) is refused by name.
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

constexpr int64_t kMaxTimeout = 2147483646;

// An http:// URL with a host; empty when it is one, else the problem.
std::string EndpointProblem(absl::string_view url) {
  if (absl::StartsWithIgnoreCase(url, "https://")) return "https endpoints are not supported by Portico yet (use http)";
  if (!absl::StartsWithIgnoreCase(url, "http://")) return "expected an http:// URL";
  absl::string_view rest = url.substr(7);
  if (absl::StrContains(url, '#')) return "a fragment ('#') is not allowed in the url";
  const size_t end = rest.find_first_of("/?");
  const absl::string_view authority = rest.substr(0, end);
  if (authority.empty() || absl::StrContains(authority, '@')) return "missing host in url";
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return "invalid url: contains a space or control character";
  }
  const size_t colon = authority.rfind(':');
  if (colon != absl::string_view::npos && authority.back() != ']') {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(authority.substr(colon + 1), &port) || port == 0 || port > 65535) return "invalid port in url";
  }
  return "";
}

// A map of string -> string (Kong's `headers` and `resource_attributes` of this plugin).
void CheckStringMap(const nlohmann::json& value, const char* name, FieldErrors* errors) {
  if (!value.is_object()) return;  // null, or already reported as not a record
  for (const auto& [key, item] : value.items()) {
    if (key.empty()) errors->Add(name, "length must be at least 1");
    if (!item.is_string()) errors->Add(absl::StrCat(name, ".", key), "expected a string");
  }
}

// A control character other than horizontal tab (RFC 9110 field values allow HTAB).
bool HasControlCharacter(absl::string_view text) {
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return true;
  }
  return false;
}

std::string W3cOnly(absl::string_view format) {
  if (format == "w3c") return "";
  return absl::StrCat("'", format, "' is not supported by Portico yet (w3c only)");
}

std::string ExtractFormatOk(absl::string_view format) {
  static const char* const kKong[] = {"aws", "b3", "datadog", "gcp", "instana", "jaeger", "ot", "w3c"};
  for (const char* known : kKong) {
    if (format == known) return W3cOnly(format);
  }
  return "expected one of: aws, b3, datadog, gcp, instana, jaeger, ot, w3c";
}

std::string InjectFormatOk(absl::string_view format) {
  if (format == "preserve") return "";
  static const char* const kKong[] = {"aws", "b3", "b3-single", "datadog", "gcp", "instana", "jaeger", "ot", "w3c"};
  for (const char* known : kKong) {
    if (format == known) return W3cOnly(format);
  }
  return "expected one of: preserve, aws, b3, b3-single, datadog, gcp, instana, jaeger, ot, w3c";
}

std::string HeaderNameOk(absl::string_view name) {
  if (name.empty()) return "length must be at least 1";
  for (char c : name) {
    const bool token = absl::ascii_isalnum(static_cast<unsigned char>(c)) || absl::StrContains("!#$%&'*+-.^_`|~", c);
    if (!token) return absl::StrCat("bad header name '", name, "', allowed characters are A-Z, a-z, 0-9, '_', and '-'");
  }
  return "";
}

nlohmann::json NormalizePropagation(const nlohmann::json& record, FieldErrors* errors) {
  ConfigFields f(record, errors);
  f.StringArray("extract", std::nullopt, &ExtractFormatOk);
  f.StringArray("clear", std::nullopt, &HeaderNameOk);
  f.StringArray("inject", std::nullopt, &InjectFormatOk);
  const std::optional<std::string> format = f.String(
      "default_format", std::string("w3c"), {"aws", "b3", "b3-single", "datadog", "gcp", "instana", "jaeger", "ot", "w3c"});
  nlohmann::json out = f.Finish();
  if (format && *format != "w3c") errors->Add("default_format", W3cOnly(*format));
  return out;
}

nlohmann::json NormalizeQueue(const nlohmann::json& record, FieldErrors* errors) {
  ConfigFields f(record, errors);
  f.Integer("max_batch_size", 200, 1, 1000000);
  f.Number("max_coalescing_delay", 1.0, 0, 3600);
  f.Integer("max_entries", 10000, 1, 1000000);
  f.Integer("max_bytes", std::nullopt, 0, INT64_C(1) << 40);
  f.Number("max_retry_time", 60.0, 0, 1e9);
  f.Number("initial_retry_delay", 0.01, 0.001, 1000000);
  f.Number("max_retry_delay", 60.0, 0.001, 1000000);
  const std::optional<int64_t> concurrency = f.Integer("concurrency_limit", 1, -1, 1);
  nlohmann::json out = f.Finish();
  if (concurrency && *concurrency == 0) errors->Add("concurrency_limit", "expected one of: -1, 1");
  return out;
}

nlohmann::json Normalize(const nlohmann::json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  std::optional<std::string> traces_endpoint = f.String("traces_endpoint", std::nullopt);
  std::optional<std::string> endpoint = f.String("endpoint", std::nullopt);  // Kong < 3.8's name
  const std::optional<std::string> logs_endpoint = f.String("logs_endpoint", std::nullopt);
  f.Record("headers");
  f.Record("resource_attributes");
  nlohmann::json queue = f.Record("queue", &NormalizeQueue);
  const std::optional<int64_t> batch_span_count = f.Integer("batch_span_count", std::nullopt, 1, 1000000);
  const std::optional<int64_t> batch_flush_delay = f.Integer("batch_flush_delay", std::nullopt, 0, 3600);
  f.Integer("connect_timeout", 1000, 0, kMaxTimeout);
  f.Integer("send_timeout", 5000, 0, kMaxTimeout);
  f.Integer("read_timeout", 5000, 0, kMaxTimeout);
  const std::optional<std::string> response_header = f.String("http_response_header_for_traceid", std::nullopt);
  const std::optional<std::string> header_type = f.String(
      "header_type", std::string("preserve"),
      {"preserve", "ignore", "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp", "datadog", "instana"});
  f.Number("sampling_rate", std::nullopt, 0, 1);
  f.Record("propagation", &NormalizePropagation);
  nlohmann::json out = f.Finish();

  CheckStringMap(out["headers"], "headers", errors);
  CheckStringMap(out["resource_attributes"], "resource_attributes", errors);
  if (out["headers"].is_object()) {
    for (const auto& [key, value] : out["headers"].items()) {
      if (std::string problem = HeaderNameOk(key); !problem.empty()) {
        errors->Add("headers", problem);
      } else if (value.is_string() && HasControlCharacter(value.get_ref<const std::string&>())) {
        // Sent as `name: value` lines to the collector: a line break would inject headers.
        errors->Add(absl::StrCat("headers.", key), "must not contain control characters (such as CR or LF)");
      }
    }
  }
  if (logs_endpoint) errors->Add("logs_endpoint", "exporting logs is not supported by Portico yet");
  if (response_header) {
    if (std::string problem = HeaderNameOk(*response_header); !problem.empty()) {
      errors->Add("http_response_header_for_traceid", problem);
    }
  }
  if (header_type && *header_type != "preserve" && *header_type != "w3c" && *header_type != "ignore") {
    errors->Add("header_type", absl::StrCat("'", *header_type, "' is not supported by Portico yet (preserve, w3c, ignore)"));
  }
  // Kong 3.8 renamed endpoint to traces_endpoint: either is accepted, both are stored.
  if (traces_endpoint && endpoint && *traces_endpoint != *endpoint) {
    errors->Add("endpoint", "must be the same as traces_endpoint when both are given");
  }
  const std::optional<std::string>& url = traces_endpoint ? traces_endpoint : endpoint;
  if (!url) {
    errors->Add("traces_endpoint", "required field missing");
  } else if (std::string problem = EndpointProblem(*url); !problem.empty()) {
    errors->Add(traces_endpoint ? "traces_endpoint" : "endpoint", problem);
  } else {
    out["traces_endpoint"] = *url;
    out["endpoint"] = *url;
  }
  // The older batch fields, when given, set the queue's (as Kong translates them).
  if (queue.is_object()) {
    if (batch_span_count) queue["max_batch_size"] = *batch_span_count;
    if (batch_flush_delay) queue["max_coalescing_delay"] = static_cast<double>(*batch_flush_delay);
    out["queue"] = queue;
  }
  return out;
}

}  // namespace

const PluginSchema& OpentelemetrySchema() {
  static const PluginSchema schema{"opentelemetry", 14, &Normalize};
  return schema;
}

}  // namespace portico::plugins
