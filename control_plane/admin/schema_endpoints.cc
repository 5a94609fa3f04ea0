#include "control_plane/admin/schema_endpoints.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/config/utf8_fields.h"
#include "common/plugins/plugin_schema.h"
#include "control_plane/admin/admin_responses.h"
#include "google/protobuf/descriptor.h"

namespace portico::cp {
namespace {

using google::protobuf::FieldDescriptor;
using nlohmann::json;

// Kong's type of a JSON value found in a default.
const char* JsonType(const json& value) {
  if (value.is_boolean()) return "boolean";
  if (value.is_number_integer()) return "integer";
  if (value.is_number()) return "number";
  if (value.is_array()) return "array";
  if (value.is_object()) return "record";
  return "string";
}

// A record's fields described from its default object: each member with the type of its value
// and that value as its default; nested objects become nested records. Members whose default is
// null are left out (their type cannot be told from the default).
json FieldsFromDefault(const json& object) {
  json fields = json::array();
  for (const auto& [name, value] : object.items()) {
    if (value.is_null()) continue;
    json field;
    if (value.is_object()) {
      field = {{"type", "record"}, {"fields", FieldsFromDefault(value)}};
    } else {
      field = {{"type", JsonType(value)}, {"default", value}};
      if (value.is_array() && !value.empty()) field["elements"] = {{"type", JsonType(value.front())}};
    }
    fields.push_back({{name, std::move(field)}});
  }
  return fields;
}

// The record of a kRecordSet element (route sources: {ip, port}), from the wrapper's proto.
json RecordSetElement(const FieldSpec& spec) {
  json fields = json::array();
  const google::protobuf::Descriptor* wrapper = spec.proto != nullptr ? spec.proto->message_type() : nullptr;
  const FieldDescriptor* values = wrapper != nullptr ? wrapper->FindFieldByName("values") : nullptr;
  const google::protobuf::Descriptor* record = values != nullptr ? values->message_type() : nullptr;
  for (int i = 0; record != nullptr && i < record->field_count(); ++i) {
    const FieldDescriptor* f = record->field(i);
    const bool integer = f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 || f->cpp_type() == FieldDescriptor::CPPTYPE_INT64 ||
                         f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 || f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64;
    const char* type = integer ? "integer" : f->cpp_type() == FieldDescriptor::CPPTYPE_BOOL ? "boolean" : "string";
    fields.push_back({{std::string(f->name()), {{"type", type}}}});
  }
  return {{"type", "record"}, {"fields", std::move(fields)}};
}

json DescribeField(const FieldSpec& spec) {
  json out;
  switch (spec.type) {
    case FieldType::kId:
      out = {{"type", "string"}, {"uuid", true}, {"auto", true}};
      break;
    case FieldType::kTimestamp:
      out = {{"type", "integer"}, {"timestamp", true}, {"auto", true}};
      break;
    case FieldType::kString:
      out = {{"type", "string"}};
      break;
    case FieldType::kInteger:
      out = {{"type", "integer"}};
      break;
    case FieldType::kBoolean:
      out = {{"type", "boolean"}};
      break;
    case FieldType::kArray:
    case FieldType::kSet: {
      json elements = {{"type", "string"}};
      if (!spec.references.empty()) elements["uuid"] = true;  // ids of another kind (ca_certificates)
      out = {{"type", spec.type == FieldType::kSet ? "set" : "array"}, {"elements", std::move(elements)}};
      break;
    }
    case FieldType::kStringArrayMap:
      out = {{"type", "map"},
             {"keys", {{"type", "string"}}},
             {"values", {{"type", "array"}, {"elements", {{"type", "string"}}}}}};
      break;
    case FieldType::kRecordSet:
      out = {{"type", "set"}, {"elements", RecordSetElement(spec)}};
      break;
    case FieldType::kForeignKey:
      out = {{"type", "foreign"}};
      if (!spec.references.empty()) out["reference"] = spec.references;
      if (spec.on_delete == OnDelete::kCascade) out["on_delete"] = "cascade";
      break;
    case FieldType::kJsonRecord:
      out = {{"type", "record"}};
      break;
  }
  if (spec.required) out["required"] = true;
  if (spec.unique) out["unique"] = true;
  if (!spec.default_json.empty()) {
    json value = json::parse(spec.default_json, nullptr, false);
    if (!value.is_discarded()) {
      if (spec.type == FieldType::kJsonRecord && value.is_object()) out["fields"] = FieldsFromDefault(value);
      out["default"] = std::move(value);
    }
  }
  return out;
}

}  // namespace

json EntitySchemaJson(const EntityDescriptor& kind) {
  json fields = json::array();
  for (const FieldSpec& spec : kind.fields()) fields.push_back({{spec.name, DescribeField(spec)}});
  return json{{"fields", std::move(fields)}};
}

HttpResponse NoEntityNamed(absl::string_view name) {
  return Message(404, absl::StrCat("No entity named '", IsValidUtf8(name) ? name : "?", "'"));
}

HttpResponse EntitySchemaResponse(const EntityRegistry& kinds, const std::string& name) {
  const EntityDescriptor* kind = kinds.Find(name);
  if (kind == nullptr) return NoEntityNamed(name);
  return JsonResponse(200, EntitySchemaJson(*kind));
}

HttpResponse PluginSchemaResponse(const std::string& name) {
  const plugins::PluginSchema* schema = plugins::FindPluginSchema(name);
  if (schema == nullptr) {
    return Message(404, absl::StrCat("No plugin named '", IsValidUtf8(name) ? name : "?", "'"));
  }
  auto foreign = [](const char* kind) {
    return json{{"type", "foreign"}, {"reference", kind}, {"default", nullptr}, {"on_delete", "cascade"}};
  };
  json consumer = foreign("consumers");
  if (schema->no_consumer) consumer["eq"] = nullptr;
  json protocols = {{"type", "set"},
                    {"required", true},
                    {"elements", {{"type", "string"}, {"one_of", {"grpc", "grpcs", "http", "https"}}}},
                    {"default", {"grpc", "grpcs", "http", "https"}}};
  json fields = json::array({
      {{"id", {{"type", "string"}, {"uuid", true}, {"auto", true}}}},
      {{"name", {{"type", "string"}, {"required", true}}}},
      {{"instance_name", {{"type", "string"}}}},
      {{"created_at", {{"type", "integer"}, {"timestamp", true}, {"auto", true}}}},
      {{"updated_at", {{"type", "integer"}, {"timestamp", true}, {"auto", true}}}},
      {{"route", foreign("routes")}},
      {{"service", foreign("services")}},
      {{"consumer", std::move(consumer)}},
      {{"protocols", std::move(protocols)}},
      {{"enabled", {{"type", "boolean"}, {"default", true}}}},
      {{"tags", {{"type", "set"}, {"elements", {{"type", "string"}}}}}},
      {{"config", {{"type", "record"}, {"required", true}, {"fields", plugins::DescribePluginConfig(*schema)}}}},
  });
  return JsonResponse(200, json{{"fields", std::move(fields)}});
}

}  // namespace portico::cp
