#include "data_plane/health/health_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace portico::dp {
namespace {

using nlohmann::json;

// Reads the fields of one record; the first error wins. No exceptions: every access checks the
// type first (nlohmann's get<> throws on a mismatch).
class Reader {
 public:
  Reader(const json& record, std::string path, absl::Status* error)
      : record_(record), path_(std::move(path)), error_(error) {}

  // A sub-record; a missing or null one reads as {}.
  Reader Record(const char* name) {
    static const json kEmpty = json::object();
    const json* value = Find(name);
    if (value != nullptr && !value->is_object()) {
      Fail(name, "expected a record");
      value = nullptr;
    }
    return Reader(value != nullptr ? *value : kEmpty, Path(name), error_);
  }
  void Number(const char* name, double min, double max, double* out) {
    const json* value = Find(name);
    if (value == nullptr) return;
    if (!value->is_number()) return Fail(name, "expected a number");
    const double v = value->get<double>();
    if (!std::isfinite(v) || v < min || v > max) {
      return Fail(name, absl::StrCat("value should be between ", min, " and ", max));
    }
    *out = v;
  }
  void Integer(const char* name, int64_t min, int64_t max, int64_t* out) {
    const json* value = Find(name);
    if (value == nullptr) return;
    if (!value->is_number_integer() && !(value->is_number_float() && IsWhole(value->get<double>()))) {
      return Fail(name, "expected an integer");
    }
    const double v = value->get<double>();
    if (v < static_cast<double>(min) || v > static_cast<double>(max)) {
      return Fail(name, absl::StrCat("value should be between ", min, " and ", max));
    }
    *out = static_cast<int64_t>(v);
  }
  void Count(const char* name, uint32_t* out) {  // Kong's 0..255 counters
    int64_t v = *out;
    Integer(name, 0, 255, &v);
    *out = static_cast<uint32_t>(v);
  }
  void Bool(const char* name, bool* out) {
    const json* value = Find(name);
    if (value == nullptr) return;
    if (!value->is_boolean()) return Fail(name, "expected a boolean");
    *out = value->get<bool>();
  }
  void String(const char* name, std::string* out) {
    const json* value = Find(name);
    if (value == nullptr) return;
    if (!value->is_string()) return Fail(name, "expected a string");
    *out = value->get<std::string>();
  }
  void Type(const char* name, HealthCheckType* out) {
    std::string text;
    const json* value = Find(name);
    if (value == nullptr) return;
    String(name, &text);
    if (text == "tcp") {
      *out = HealthCheckType::kTcp;
    } else if (text == "http") {
      *out = HealthCheckType::kHttp;
    } else if (text == "https") {
      *out = HealthCheckType::kHttps;
    } else if (text == "grpc") {
      *out = HealthCheckType::kGrpc;
    } else if (text == "grpcs") {
      *out = HealthCheckType::kGrpcs;
    } else if (value->is_string()) {
      Fail(name, "expected one of: tcp, http, https, grpc, grpcs");
    }
  }
  void Statuses(const char* name, StatusSet* out) {
    const json* value = Find(name);
    if (value == nullptr) return;
    if (!value->is_array()) return Fail(name, "expected an array");
    StatusSet set;
    for (const json& item : *value) {
      if (!item.is_number_integer() || item.get<int64_t>() < 100 || item.get<int64_t>() > 999) {
        return Fail(name, "expected integers between 100 and 999");
      }
      set.Add(static_cast<int>(item.get<int64_t>()));
    }
    *out = set;
  }
  // Kong's `headers`: {name: [values]} (a single string value is accepted too).
  void Headers(const char* name, std::vector<std::pair<std::string, std::string>>* out) {
    const json* value = Find(name);
    if (value == nullptr) return;
    if (!value->is_object()) return Fail(name, "expected a map");
    for (const auto& [header, values] : value->items()) {
      if (values.is_string()) {
        out->emplace_back(header, values.get<std::string>());
        continue;
      }
      if (!values.is_array()) return Fail(name, absl::StrCat("'", header, "': expected an array of strings"));
      for (const json& v : values) {
        if (!v.is_string()) return Fail(name, absl::StrCat("'", header, "': expected an array of strings"));
        out->emplace_back(header, v.get<std::string>());
      }
    }
  }

 private:
  static bool IsWhole(double v) { return std::isfinite(v) && std::floor(v) == v; }
  const json* Find(const char* name) const {
    auto it = record_.find(name);
    if (it == record_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string Path(const char* name) const { return absl::StrCat(path_, ".", name); }
  void Fail(const char* name, absl::string_view what) {
    if (error_->ok()) *error_ = absl::InvalidArgumentError(absl::StrCat(Path(name), ": ", what));
  }

  const json& record_;
  std::string path_;
  absl::Status* error_;
};

absl::Duration Seconds(double s) { return absl::Milliseconds(std::llround(s * 1000)); }

}  // namespace

absl::string_view HealthCheckTypeName(HealthCheckType type) {
  switch (type) {
    case HealthCheckType::kTcp:
      return "tcp";
    case HealthCheckType::kHttp:
      return "http";
    case HealthCheckType::kHttps:
      return "https";
    case HealthCheckType::kGrpc:
      return "grpc";
    case HealthCheckType::kGrpcs:
      return "grpcs";
  }
  return "?";
}

absl::StatusOr<std::shared_ptr<const HealthConfig>> ParseHealthConfig(absl::string_view json_text) {
  auto config = std::make_shared<HealthConfig>();
  if (json_text.empty()) return std::shared_ptr<const HealthConfig>(std::move(config));
  const json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError("healthchecks: not valid JSON");
  if (root.is_null()) return std::shared_ptr<const HealthConfig>(std::move(config));
  if (!root.is_object()) return absl::InvalidArgumentError("healthchecks: expected a record");

  absl::Status error;
  Reader top(root, "healthchecks", &error);
  top.Number("threshold", 0, 100, &config->threshold);

  ActiveHealthConfig& a = config->active;
  Reader active = top.Record("active");
  active.Type("type", &a.type);
  double timeout = 1;
  active.Number("timeout", 0, 65535, &timeout);
  a.timeout = Seconds(timeout);
  int64_t concurrency = a.concurrency;
  active.Integer("concurrency", 1, int64_t{1} << 31, &concurrency);
  a.concurrency = static_cast<int>(std::min<int64_t>(concurrency, 1 << 30));
  active.String("http_path", &a.http_path);
  active.String("https_sni", &a.https_sni);
  active.Bool("https_verify_certificate", &a.https_verify_certificate);
  active.Headers("headers", &a.headers);
  Reader ah = active.Record("healthy");
  double interval = 0;
  ah.Number("interval", 0, 65535, &interval);
  a.healthy_interval = Seconds(interval);
  ah.Statuses("http_statuses", &a.healthy_statuses);
  ah.Count("successes", &a.limits.successes);
  Reader au = active.Record("unhealthy");
  interval = 0;
  au.Number("interval", 0, 65535, &interval);
  a.unhealthy_interval = Seconds(interval);
  au.Statuses("http_statuses", &a.unhealthy_statuses);
  au.Count("tcp_failures", &a.limits.tcp_failures);
  au.Count("timeouts", &a.limits.timeouts);
  au.Count("http_failures", &a.limits.http_failures);

  PassiveHealthConfig& p = config->passive;
  Reader passive = top.Record("passive");
  passive.Type("type", &p.type);
  Reader ph = passive.Record("healthy");
  ph.Statuses("http_statuses", &p.healthy_statuses);
  ph.Count("successes", &p.limits.successes);
  Reader pu = passive.Record("unhealthy");
  pu.Statuses("http_statuses", &p.unhealthy_statuses);
  pu.Count("tcp_failures", &p.limits.tcp_failures);
  pu.Count("timeouts", &p.limits.timeouts);
  pu.Count("http_failures", &p.limits.http_failures);

  if (!error.ok()) return error;
  if (a.http_path.empty() || a.http_path.front() != '/') {
    return absl::InvalidArgumentError("healthchecks.active.http_path: should start with: /");
  }
  return std::shared_ptr<const HealthConfig>(std::move(config));
}

}  // namespace portico::dp
