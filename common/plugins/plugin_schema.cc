#include "common/plugins/plugin_schema.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/config/utf8_fields.h"
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

using nlohmann::json;

// Set while DescribePluginConfig runs a schema; claimed by the first ConfigFields made.
thread_local json* describe_sink = nullptr;

// Whole numbers as integers (Kong shows `"minute":5`, not 5.0).
json NumberJson(double d) {
  if (std::floor(d) == d && std::fabs(d) < 9.0e15) return json(static_cast<int64_t>(d));
  return json(d);
}

}  // namespace

json DescribePluginConfig(const PluginSchema& schema) {
  json fields = json::array();
  describe_sink = &fields;
  FieldErrors ignored;  // an empty config may break entity rules: irrelevant here
  schema.normalize(json::object(), &ignored);
  describe_sink = nullptr;
  return fields;
}

void ConfigFields::Describe(const char* name, json description) {
  if (describe_ != nullptr) describe_->push_back(json{{name, std::move(description)}});
}

const std::vector<const PluginSchema*>& BundledPluginSchemas() {
  static const std::vector<const PluginSchema*>* const all = [] {
    auto* v = new std::vector<const PluginSchema*>{
        &AclSchema(),           &BasicAuthSchema(),          &CorrelationIdSchema(),       &CorsSchema(),
        &IpRestrictionSchema(), &JwtSchema(),                &KeyAuthSchema(),             &OpentelemetrySchema(),       &PrometheusSchema(),
        &RateLimitingSchema(),
        &RequestSizeLimitingSchema(), &RequestTerminationSchema(), &RequestTransformerSchema(),
        &ResponseTransformerSchema(), &FileLogSchema(), &HttpLogSchema()};
    std::sort(v->begin(), v->end(), [](const PluginSchema* a, const PluginSchema* b) {
      return std::strcmp(a->name, b->name) < 0;
    });
    return v;
  }();
  return *all;
}

const PluginSchema* FindPluginSchema(absl::string_view name) {
  for (const PluginSchema* schema : BundledPluginSchemas()) {
    if (name == schema->name) return schema;
  }
  return nullptr;
}

json NormalizePluginConfig(const PluginSchema& schema, const json& config, FieldErrors* errors) {
  if (!config.is_object()) {
    errors->Add("config", "expected a record");
    return nullptr;
  }
  FieldErrors nested;
  json out = schema.normalize(config, &nested);
  for (const auto& [path, message] : nested.errors()) {
    errors->Add(path.empty() ? std::string("config") : absl::StrCat("config.", path), message);
  }
  return out;
}

std::string PluginNotEnabledMessage(absl::string_view name) {
  return absl::StrCat("plugin '", name, "' not enabled; add it to the 'plugins' configuration property");
}

ConfigFields::ConfigFields(const json& config, FieldErrors* errors) : in_(config), errors_(errors) {
  describe_ = describe_sink;
  describe_sink = nullptr;
  if (!config.is_null() && !config.is_object()) {
    errors_->Add("", "expected a record");
    not_object_ = true;
  }
}

const json* ConfigFields::Take(const char* name) {
  seen_.emplace_back(name);
  if (not_object_ || !in_.is_object()) return nullptr;
  auto it = in_.find(name);
  if (it == in_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<int64_t> ConfigFields::Integer(const char* name, std::optional<int64_t> fallback, int64_t min,
                                             int64_t max) {
  const json* v = Take(name);
  std::optional<int64_t> value = fallback;
  if (v != nullptr) {
    int64_t n = 0;
    bool ok = false;
    if (v->is_number_integer() && !(v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX)) {
      n = v->get<int64_t>();
      ok = true;
    } else if (v->is_number_float()) {
      const double d = v->get<double>();
      ok = std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15;
      n = ok ? static_cast<int64_t>(d) : 0;
    } else if (v->is_string()) {
      ok = absl::SimpleAtoi(v->get<std::string>(), &n);
    }
    if (!ok) {
      errors_->Add(name, "expected an integer");
      return fallback;
    }
    if (n < min || n > max) {
      errors_->Add(name, absl::StrCat("value should be between ", min, " and ", max));
      return fallback;
    }
    value = n;
  }
  Put(name, value ? json(*value) : json(nullptr));
  if (describe_ != nullptr) {
    Describe(name, {{"type", "integer"}, {"default", fallback ? json(*fallback) : json(nullptr)}, {"between", {min, max}}});
  }
  return value;
}

std::optional<double> ConfigFields::Number(const char* name, std::optional<double> fallback, double min, double max) {
  const json* v = Take(name);
  std::optional<double> value = fallback;
  if (v != nullptr) {
    double d = 0;
    bool ok = false;
    if (v->is_number()) {
      d = v->get<double>();
      ok = std::isfinite(d);
    } else if (v->is_string()) {
      ok = absl::SimpleAtod(v->get<std::string>(), &d) && std::isfinite(d);
    }
    if (!ok) {
      errors_->Add(name, "expected a number");
      return fallback;
    }
    if (d < min || d > max) {
      // Whole bounds are written as integers ("31536000", not "3.1536e+07").
      auto text = [](double b) {
        return std::floor(b) == b && std::fabs(b) < 9.0e15 ? absl::StrCat(static_cast<int64_t>(b)) : absl::StrCat(b);
      };
      errors_->Add(name, absl::StrCat("value should be between ", text(min), " and ", text(max)));
      return fallback;
    }
    value = d;
  }
  Put(name, value ? NumberJson(*value) : json(nullptr));
  if (describe_ != nullptr) {
    Describe(name, {{"type", "number"},
                    {"default", fallback ? NumberJson(*fallback) : json(nullptr)},
                    {"between", {NumberJson(min), NumberJson(max)}}});
  }
  return value;
}

bool ConfigFields::Boolean(const char* name, bool fallback) {
  const json* v = Take(name);
  bool value = fallback;
  if (v != nullptr) {
    if (v->is_boolean()) {
      value = v->get<bool>();
    } else if (v->is_string() && (*v == "true" || *v == "false")) {
      value = *v == "true";
    } else {
      errors_->Add(name, "expected a boolean");
    }
  }
  Put(name, value);
  if (describe_ != nullptr) Describe(name, {{"type", "boolean"}, {"default", fallback}, {"required", true}});
  return value;
}

std::optional<std::string> ConfigFields::String(const char* name, std::optional<std::string> fallback,
                                                const std::vector<std::string>& one_of, size_t max_length) {
  const json* v = Take(name);
  std::optional<std::string> value = fallback;
  if (v != nullptr) {
    if (!v->is_string()) {
      errors_->Add(name, "expected a string");
      return fallback;
    }
    std::string s = v->get<std::string>();
    if (!IsValidUtf8(s)) {
      errors_->Add(name, "invalid utf-8");
      return fallback;
    }
    if (s.empty()) {
      errors_->Add(name, "length must be at least 1");
      return fallback;
    }
    if (s.size() > max_length) {
      errors_->Add(name, absl::StrCat("length must be at most ", max_length));
      return fallback;
    }
    if (!one_of.empty() && std::find(one_of.begin(), one_of.end(), s) == one_of.end()) {
      std::string list;
      for (const std::string& o : one_of) absl::StrAppend(&list, list.empty() ? "" : ", ", o);
      errors_->Add(name, absl::StrCat("expected one of: ", list));
      return fallback;
    }
    value = std::move(s);
  }
  Put(name, value ? json(*value) : json(nullptr));
  if (describe_ != nullptr) {
    json d = {{"type", "string"}, {"default", fallback ? json(*fallback) : json(nullptr)}, {"len_max", max_length}};
    if (!one_of.empty()) d["one_of"] = one_of;
    Describe(name, std::move(d));
  }
  return value;
}

std::optional<std::vector<std::string>> ConfigFields::StringArray(
    const char* name, std::optional<std::vector<std::string>> fallback, std::string (*item_ok)(absl::string_view)) {
  const json* v = Take(name);
  std::optional<std::vector<std::string>> value = fallback;
  if (v != nullptr) {
    json items = v->is_string() ? json::array({*v}) : *v;
    if (!items.is_array()) {
      errors_->Add(name, "expected an array");
      return fallback;
    }
    std::vector<std::string> strings;
    bool ok = true;
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string path = absl::StrCat(name, ".", i + 1);
      if (!items[i].is_string()) {
        errors_->Add(path, "expected a string");
        ok = false;
        continue;
      }
      std::string s = items[i].get<std::string>();
      std::string problem = !IsValidUtf8(s) ? "invalid utf-8" : item_ok != nullptr ? item_ok(s) : "";
      if (!problem.empty()) {
        errors_->Add(path, problem);
        ok = false;
        continue;
      }
      strings.push_back(std::move(s));
    }
    if (!ok) return fallback;
    value = std::move(strings);
  }
  Put(name, value ? json(*value) : json(nullptr));
  if (describe_ != nullptr) {
    Describe(name, {{"type", "array"}, {"elements", {{"type", "string"}}}, {"default", fallback ? json(*fallback) : json(nullptr)}});
  }
  return value;
}

std::optional<std::vector<int64_t>> ConfigFields::IntegerArray(const char* name,
                                                               std::optional<std::vector<int64_t>> fallback,
                                                               int64_t min, int64_t max) {
  const json* v = Take(name);
  std::optional<std::vector<int64_t>> value = fallback;
  if (v != nullptr) {
    const json items = v->is_array() ? *v : json::array({*v});
    if (v->is_object() || v->is_boolean()) {
      errors_->Add(name, "expected an array");
      return fallback;
    }
    std::vector<int64_t> numbers;
    bool ok = true;
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string path = absl::StrCat(name, ".", i + 1);
      const json& item = items[i];
      int64_t n = 0;
      bool is_integer = false;
      if (item.is_number_integer() && !(item.is_number_unsigned() && item.get<uint64_t>() > INT64_MAX)) {
        n = item.get<int64_t>();
        is_integer = true;
      } else if (item.is_number_float()) {
        const double d = item.get<double>();
        is_integer = std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15;
        n = is_integer ? static_cast<int64_t>(d) : 0;
      } else if (item.is_string()) {
        is_integer = absl::SimpleAtoi(item.get<std::string>(), &n);
      }
      if (!is_integer) {
        errors_->Add(path, "expected an integer");
        ok = false;
      } else if (n < min || n > max) {
        errors_->Add(path, absl::StrCat("value should be between ", min, " and ", max));
        ok = false;
      } else {
        numbers.push_back(n);
      }
    }
    if (!ok) return fallback;
    value = std::move(numbers);
  }
  Put(name, value ? json(*value) : json(nullptr));
  if (describe_ != nullptr) {
    Describe(name, {{"type", "array"},
                    {"elements", {{"type", "integer"}, {"between", {min, max}}}},
                    {"default", fallback ? json(*fallback) : json(nullptr)}});
  }
  return value;
}

void ConfigFields::StringArrayMap(const char* name, std::string (*key_ok)(absl::string_view)) {
  const json* v = Take(name);
  json out = nullptr;
  if (v != nullptr) {
    if (!v->is_object()) {
      errors_->Add(name, "expected a map");
    } else {
      out = json::object();
      for (const auto& [key, values] : v->items()) {
        const std::string problem = !IsValidUtf8(key) ? "invalid utf-8" : key_ok != nullptr ? key_ok(key) : "";
        if (!problem.empty()) {
          errors_->Add(name, problem);
          continue;
        }
        const std::string path = absl::StrCat(name, ".", key);
        const json items = values.is_string() ? json::array({values}) : values;
        if (!items.is_array()) {
          errors_->Add(path, "expected an array");
          continue;
        }
        json strings = json::array();
        for (size_t i = 0; i < items.size(); ++i) {
          if (!items[i].is_string()) {
            errors_->Add(absl::StrCat(path, ".", i + 1), "expected a string");
          } else if (!IsValidUtf8(items[i].get<std::string>())) {
            errors_->Add(absl::StrCat(path, ".", i + 1), "invalid utf-8");
          } else {
            strings.push_back(items[i]);
          }
        }
        out[key] = std::move(strings);
      }
    }
  }
  Put(name, std::move(out));
  if (describe_ != nullptr) {
    Describe(name, {{"type", "map"},
                    {"keys", {{"type", "string"}}},
                    {"values", {{"type", "array"}, {"elements", {{"type", "string"}}}}}});
  }
}

void ConfigFields::Record(const char* name) {
  const json* v = Take(name);
  if (v != nullptr && !v->is_object()) {
    errors_->Add(name, "expected a record");
    Put(name, nullptr);
    return;
  }
  Put(name, v != nullptr ? *v : json(nullptr));
  if (describe_ != nullptr) Describe(name, {{"type", "record"}, {"default", nullptr}});
}

json ConfigFields::Record(const char* name, json (*normalize)(const json& record, FieldErrors* errors)) {
  const json* v = Take(name);
  if (v != nullptr && !v->is_object()) {
    errors_->Add(name, "expected a record");
    Put(name, nullptr);
    return nullptr;
  }
  json fields = json::array();
  if (describe_ != nullptr) describe_sink = &fields;  // the nested reader describes itself
  FieldErrors nested;
  json out = normalize(v != nullptr ? *v : json::object(), &nested);
  describe_sink = nullptr;
  errors_->Merge(name, nested);
  if (describe_ != nullptr) Describe(name, {{"type", "record"}, {"required", true}, {"fields", std::move(fields)}});
  Put(name, out);
  return out;
}

json ConfigFields::Finish() {
  if (!not_object_ && in_.is_object()) {
    for (const auto& [key, unused] : in_.items()) {
      if (std::find(seen_.begin(), seen_.end(), key) == seen_.end()) {
        errors_->Add(IsValidUtf8(key) ? key : std::string("?"), "unknown field");
      }
    }
  }
  return std::move(out_);
}

}  // namespace portico::plugins
