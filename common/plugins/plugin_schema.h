#pragma once
// The plugins Portico knows, as their config schemas: what the CP validates (and fills with Kong's
// defaults) when a plugin is written, and what a DP checks again before it compiles a snapshot's
// plugins (data_plane/plugins/). One schema per plugin, in its own file of common/plugins/;
// docs/plugins.md "How to add a plugin".
//
// A plugin's `config` is a JSON object. Normalize() reads it field by field: unknown fields,
// type errors and rule violations are reported with paths relative to `config` ("status_code",
// "allow.2"); missing fields get Kong's defaults; the result is the complete config that is
// stored, shown by the Admin API and sent to data planes. Normalize(Normalize(x)) == Normalize(x).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/config/field_errors.h"
#include "nlohmann/json.hpp"

namespace portico::plugins {

struct PluginSchema {
  const char* name;  // Kong's plugin name, e.g. "request-termination"
  int priority;      // Kong's PRIORITY: higher runs first (KONG-REFERENCE.md §6.1)
  // `config` (an object; null counts as {}) -> the normalized config, or errors (then the result
  // is meaningless).
  nlohmann::json (*normalize)(const nlohmann::json& config, FieldErrors* errors);
  bool no_consumer = false;  // Kong's no_consumer: an auth plugin cannot be scoped to a consumer
};

// The bundled plugins, by name (sorted). Null when `name` is not one of them.
const PluginSchema* FindPluginSchema(absl::string_view name);
const std::vector<const PluginSchema*>& BundledPluginSchemas();

// `schema.normalize` on a plugin's `config`, with every error path under "config" (as the
// Admin API and a NACK report them). A config that is not an object: "config: expected a record".
nlohmann::json NormalizePluginConfig(const PluginSchema& schema, const nlohmann::json& config, FieldErrors* errors);

// Kong's error for an unknown plugin name.
std::string PluginNotEnabledMessage(absl::string_view name);

// The schema of `schema`'s config as Kong's GET /schemas/plugins/{name} shows a record's fields:
// [{"<field>": {"type": ..., "default": ..., "between"/"one_of"/"elements": ...}}, ...], in the
// order the schema reads them. Made by running the schema's normalize function once in a
// describing mode (ConfigFields records what each accessor is asked for).
nlohmann::json DescribePluginConfig(const PluginSchema& schema);

// Reads the fields of one config object for a schema's normalize function. Each accessor
// consumes one field, reports its errors and returns the value to store (the default when the
// field is absent or null). Finish() reports every field no accessor asked for.
//
// Lenience: a string that parses as the wanted integer/number/boolean, and a single string where
// an array of strings is wanted, are accepted (form-encoded Admin API bodies carry only strings).
class ConfigFields {
 public:
  ConfigFields(const nlohmann::json& config, FieldErrors* errors);

  // An integer in [min, max]; `fallback` when absent (nullopt: stays null).
  std::optional<int64_t> Integer(const char* name, std::optional<int64_t> fallback, int64_t min, int64_t max);
  std::optional<double> Number(const char* name, std::optional<double> fallback, double min, double max);
  bool Boolean(const char* name, bool fallback);
  // A string (UTF-8, at most `max_length` bytes); `one_of` non-empty restricts the values.
  std::optional<std::string> String(const char* name, std::optional<std::string> fallback,
                                    const std::vector<std::string>& one_of = {}, size_t max_length = 4096);
  // An array of strings; `item_ok` (may be null) checks each item and returns an error text or "".
  std::optional<std::vector<std::string>> StringArray(const char* name,
                                                      std::optional<std::vector<std::string>> fallback,
                                                      std::string (*item_ok)(absl::string_view) = nullptr);

  // An array of integers, each in [min, max] (Kong's http_statuses); a single integer or numeric
  // string counts as a one-item array.
  std::optional<std::vector<int64_t>> IntegerArray(const char* name, std::optional<std::vector<int64_t>> fallback,
                                                   int64_t min, int64_t max);
  // A map of name -> array of strings (Kong's typedefs.headers); stays null when absent.
  // `key_ok` (may be null) checks each name and returns an error text (reported at `name`) or "".
  void StringArrayMap(const char* name, std::string (*key_ok)(absl::string_view) = nullptr);

  // A nested record kept as given (an object, or null when absent): fields Portico accepts for
  // compatibility but does not use yet.
  void Record(const char* name);
  // A nested record read by `normalize` (its errors under "<name>.<field>"). Absent or null reads
  // as {}, so the record's defaults are filled in as Kong fills a record. Returns what is stored.
  nlohmann::json Record(const char* name, nlohmann::json (*normalize)(const nlohmann::json& record, FieldErrors* errors));

  // Reports unknown fields; returns the normalized object built by the accessors.
  nlohmann::json Finish();
  FieldErrors* errors() { return errors_; }

 private:
  const nlohmann::json* Take(const char* name);  // nullptr when absent or null
  void Put(const char* name, nlohmann::json value) { out_[name] = std::move(value); }

  const nlohmann::json& in_;
  FieldErrors* errors_;
  std::vector<std::string> seen_;
  nlohmann::json out_ = nlohmann::json::object();
  bool not_object_ = false;
  // DescribePluginConfig: the field descriptions go here (the outermost ConfigFields only).
  nlohmann::json* describe_ = nullptr;
  void Describe(const char* name, nlohmann::json description);
};

}  // namespace portico::plugins
