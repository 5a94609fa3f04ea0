#include "common/config/entity_json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/uuid.h"
#include "common/config/entities.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace portico {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using nlohmann::json;

constexpr char kExpectedString[] = "expected a string";
constexpr char kExpectedInteger[] = "expected an integer";
constexpr char kExpectedBoolean[] = "expected a boolean";
constexpr char kExpectedUuid[] = "expected a valid UUID";
constexpr char kUnknownField[] = "unknown field";

// The `values` field of a list wrapper message (StringList, HeaderMatch, CidrPortList).
const FieldDescriptor* ValuesOf(const FieldDescriptor* wrapper) {
  return wrapper->message_type()->FindFieldByName("values");
}

// --- Entity -> JSON ---

// A singular scalar; null when the field has presence and is unset.
json ScalarToJson(const Message& m, const FieldDescriptor* f) {
  const Reflection* r = m.GetReflection();
  if (f->has_presence() && !r->HasField(m, f)) return nullptr;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: return r->GetString(m, f);
    case FieldDescriptor::CPPTYPE_INT32: return r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64: return r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_BOOL: return r->GetBool(m, f);
    default: return nullptr;
  }
}

// The strings of a `repeated string` field.
json StringsToJson(const Message& m, const FieldDescriptor* f) {
  const Reflection* r = m.GetReflection();
  json out = json::array();
  for (int i = 0; i < r->FieldSize(m, f); ++i) out.push_back(r->GetRepeatedString(m, f, i));
  return out;
}

json FieldToJson(const FieldSpec& spec, const Message& m) {
  const FieldDescriptor* f = spec.proto;
  const Reflection* r = m.GetReflection();
  switch (spec.type) {
    case FieldType::kArray:
    case FieldType::kSet:
      if (f->is_repeated()) return StringsToJson(m, f);
      if (!r->HasField(m, f)) return nullptr;
      return StringsToJson(r->GetMessage(m, f), ValuesOf(f));
    case FieldType::kStringArrayMap: {
      if (!r->HasField(m, f)) return nullptr;
      const Message& map_holder = r->GetMessage(m, f);
      const FieldDescriptor* map = ValuesOf(f);
      const Reflection* mr = map_holder.GetReflection();
      json out = json::object();  // keys sorted: protobuf maps have no stable order
      for (int i = 0; i < mr->FieldSize(map_holder, map); ++i) {
        const Message& entry = mr->GetRepeatedMessage(map_holder, map, i);
        const FieldDescriptor* key = map->message_type()->map_key();
        const FieldDescriptor* value = map->message_type()->map_value();
        const Message& list = entry.GetReflection()->GetMessage(entry, value);
        out[entry.GetReflection()->GetString(entry, key)] = StringsToJson(list, ValuesOf(value));
      }
      return out;
    }
    case FieldType::kRecordSet: {
      if (!r->HasField(m, f)) return nullptr;
      const Message& holder = r->GetMessage(m, f);
      const FieldDescriptor* records = ValuesOf(f);
      const Reflection* hr = holder.GetReflection();
      json out = json::array();
      for (int i = 0; i < hr->FieldSize(holder, records); ++i) {
        const Message& record = hr->GetRepeatedMessage(holder, records, i);
        json item = json::object();
        for (int k = 0; k < record.GetDescriptor()->field_count(); ++k) {
          const FieldDescriptor* rf = record.GetDescriptor()->field(k);
          item[rf->name()] = ScalarToJson(record, rf);
        }
        out.push_back(std::move(item));
      }
      return out;
    }
    case FieldType::kForeignKey:
      if (!r->HasField(m, f)) return nullptr;
      return json{{"id", r->GetString(m, f)}};
    case FieldType::kJsonRecord: {
      const std::string& text = r->GetString(m, f);
      if (text.empty()) return json::object();
      json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
      return value.is_discarded() ? json(nullptr) : value;
    }
    default:
      return ScalarToJson(m, f);
  }
}

// --- JSON -> entity: readers that record Kong's type errors ---

bool ReadString(const json& v, absl::string_view path, FieldErrors* errors, std::string* out) {
  if (!v.is_string()) {
    errors->Add(path, kExpectedString);
    return false;
  }
  *out = v.get<std::string>();
  return true;
}

bool ReadInt64(const json& v, absl::string_view path, FieldErrors* errors, int64_t* out) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      errors->Add(path, kExpectedInteger);
      return false;
    }
    *out = v.get<int64_t>();
    return true;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15) {
      *out = static_cast<int64_t>(d);
      return true;
    }
  }
  errors->Add(path, kExpectedInteger);
  return false;
}

// int32 fields: range errors of the field's own bounds are the validator's business.
bool ReadInt32(const json& v, absl::string_view path, FieldErrors* errors, int32_t* out) {
  int64_t wide = 0;
  if (!ReadInt64(v, path, errors, &wide)) return false;
  if (wide < std::numeric_limits<int32_t>::min() || wide > std::numeric_limits<int32_t>::max()) {
    errors->Add(path, "value out of range");
    return false;
  }
  *out = static_cast<int32_t>(wide);
  return true;
}

bool ReadBool(const json& v, absl::string_view path, FieldErrors* errors, bool* out) {
  if (!v.is_boolean()) {
    errors->Add(path, kExpectedBoolean);
    return false;
  }
  *out = v.get<bool>();
  return true;
}

// Arrays and sets of strings. `kind` is "an array" or "a set" for the message.
bool ReadStrings(const json& v, absl::string_view path, absl::string_view kind, FieldErrors* errors,
                 std::vector<std::string>* out) {
  if (!v.is_array()) {
    errors->Add(path, absl::StrCat("expected ", kind));
    return false;
  }
  std::vector<std::string> list;
  bool ok = true;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) {
      errors->Add(absl::StrCat(path, ".", i + 1), kExpectedString);
      ok = false;
      continue;
    }
    list.push_back(v[i].get<std::string>());
  }
  if (ok) *out = std::move(list);
  return ok;
}

// {"id": "<uuid>"} foreign-key record.
bool ReadForeignId(const json& v, absl::string_view path, FieldErrors* errors, std::string* id) {
  if (!v.is_object()) {
    errors->Add(path, "expected a record");
    return false;
  }
  bool ok = true;
  for (const auto& [key, value] : v.items()) {
    if (key != "id") {
      errors->Add(absl::StrCat(path, ".", key), kUnknownField);
      ok = false;
    }
  }
  auto it = v.find("id");
  if (it == v.end() || it->is_null()) {
    errors->Add(absl::StrCat(path, ".id"), "required field missing");
    return false;
  }
  if (!it->is_string() || !IsUuid(it->get<std::string>())) {
    errors->Add(absl::StrCat(path, ".id"), kExpectedUuid);
    return false;
  }
  *id = absl::AsciiStrToLower(it->get<std::string>());
  return ok;
}

// Sets a singular scalar field of `m` from `v`; false (error recorded) on a type error.
bool ReadScalarInto(const json& v, absl::string_view path, const FieldDescriptor* f, Message* m, FieldErrors* errors) {
  const Reflection* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string text;
      if (!ReadString(v, path, errors, &text)) return false;
      r->SetString(m, f, std::move(text));
      return true;
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t n = 0;
      if (!ReadInt32(v, path, errors, &n)) return false;
      r->SetInt32(m, f, n);
      return true;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t n = 0;
      if (!ReadInt64(v, path, errors, &n)) return false;
      r->SetInt64(m, f, n);
      return true;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool flag = false;
      if (!ReadBool(v, path, errors, &flag)) return false;
      r->SetBool(m, f, flag);
      return true;
    }
    default:
      errors->Add(path, kUnknownField);
      return false;
  }
}

void SetStrings(Message* m, const FieldDescriptor* f, const std::vector<std::string>& values) {
  const Reflection* r = m->GetReflection();
  r->ClearField(m, f);
  for (const std::string& value : values) r->AddString(m, f, value);
}

// Sets field `f` of `entity` to its value in `defaults` (unset when it has none there).
void ResetToDefault(const Message& defaults, const FieldDescriptor* f, Message* entity) {
  const Reflection* r = entity->GetReflection();
  const Reflection* dr = defaults.GetReflection();
  r->ClearField(entity, f);
  if (f->is_repeated()) {
    for (int i = 0; i < dr->FieldSize(defaults, f); ++i) r->AddString(entity, f, dr->GetRepeatedString(defaults, f, i));
    return;
  }
  if (f->has_presence() && !dr->HasField(defaults, f)) return;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_MESSAGE: r->MutableMessage(entity, f)->CopyFrom(dr->GetMessage(defaults, f)); break;
    case FieldDescriptor::CPPTYPE_STRING: r->SetString(entity, f, dr->GetString(defaults, f)); break;
    case FieldDescriptor::CPPTYPE_INT32: r->SetInt32(entity, f, dr->GetInt32(defaults, f)); break;
    case FieldDescriptor::CPPTYPE_INT64: r->SetInt64(entity, f, dr->GetInt64(defaults, f)); break;
    case FieldDescriptor::CPPTYPE_BOOL: r->SetBool(entity, f, dr->GetBool(defaults, f)); break;
    default: break;
  }
}

void ApplyStringArrayMap(const FieldSpec& spec, const json& v, Message* entity, FieldErrors* errors) {
  if (!v.is_object()) {
    errors->Add(spec.name, "expected a map");
    return;
  }
  // Later keys win when two fold to the same lowercase name.
  std::map<std::string, std::vector<std::string>> values;
  bool ok = true;
  for (const auto& [name, list] : v.items()) {
    std::vector<std::string> strings;
    if (!ReadStrings(list, absl::StrCat(spec.name, ".", name), "an array", errors, &strings)) {
      ok = false;
      continue;
    }
    values[spec.lowercase_keys ? absl::AsciiStrToLower(name) : name] = std::move(strings);
  }
  if (!ok) return;
  Message* holder = entity->GetReflection()->MutableMessage(entity, spec.proto);
  holder->Clear();
  const FieldDescriptor* map = ValuesOf(spec.proto);
  const FieldDescriptor* key = map->message_type()->map_key();
  const FieldDescriptor* value = map->message_type()->map_value();
  for (const auto& [name, strings] : values) {
    Message* entry = holder->GetReflection()->AddMessage(holder, map);
    entry->GetReflection()->SetString(entry, key, name);
    Message* list = entry->GetReflection()->MutableMessage(entry, value);
    SetStrings(list, ValuesOf(value), strings);
  }
}

void ApplyRecordSet(const FieldSpec& spec, const json& v, Message* entity, FieldErrors* errors) {
  if (!v.is_array()) {
    errors->Add(spec.name, "expected a set");
    return;
  }
  const Reflection* r = entity->GetReflection();
  std::unique_ptr<Message> holder(r->GetMessage(*entity, spec.proto).New());
  const FieldDescriptor* records = ValuesOf(spec.proto);
  bool ok = true;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string item_path = absl::StrCat(spec.name, ".", i + 1);
    const json& item = v[i];
    if (!item.is_object()) {
      errors->Add(item_path, "expected a record");
      ok = false;
      continue;
    }
    Message* record = holder->GetReflection()->AddMessage(holder.get(), records);
    for (const auto& [key, value] : item.items()) {
      const std::string field_path = absl::StrCat(item_path, ".", key);
      const FieldDescriptor* rf = record->GetDescriptor()->FindFieldByName(key);
      if (rf == nullptr) {
        errors->Add(field_path, kUnknownField);
        ok = false;
      } else if (!value.is_null() && !ReadScalarInto(value, field_path, rf, record, errors)) {
        ok = false;
      }
    }
  }
  if (ok) r->MutableMessage(entity, spec.proto)->CopyFrom(*holder);
}

void ApplyField(const EntityDescriptor& kind, const FieldSpec& spec, const json& v, Message* entity,
                FieldErrors* errors) {
  const FieldDescriptor* f = spec.proto;
  const Reflection* r = entity->GetReflection();
  if (v.is_null()) {
    if (spec.type != FieldType::kId && spec.type != FieldType::kTimestamp) ResetToDefault(kind.defaults(), f, entity);
    return;
  }
  switch (spec.type) {
    case FieldType::kId:
      if (!v.is_string() || !IsUuid(v.get<std::string>())) {
        errors->Add(spec.name, kExpectedUuid);
      } else {
        r->SetString(entity, f, absl::AsciiStrToLower(v.get<std::string>()));
      }
      return;
    case FieldType::kArray:
    case FieldType::kSet: {
      const char* what = spec.type == FieldType::kSet ? "a set" : "an array";
      std::vector<std::string> strings;
      if (f->is_repeated()) {
        if (ReadStrings(v, spec.name, what, errors, &strings)) SetStrings(entity, f, strings);
        return;
      }
      Message* list = r->MutableMessage(entity, f);  // present even when the value is refused
      if (ReadStrings(v, spec.name, what, errors, &strings)) SetStrings(list, ValuesOf(f), strings);
      return;
    }
    case FieldType::kStringArrayMap:
      ApplyStringArrayMap(spec, v, entity, errors);
      return;
    case FieldType::kRecordSet:
      ApplyRecordSet(spec, v, entity, errors);
      return;
    case FieldType::kForeignKey: {
      std::string id;
      if (ReadForeignId(v, spec.name, errors, &id)) r->SetString(entity, f, std::move(id));
      return;
    }
    case FieldType::kJsonRecord: {
      if (!v.is_object()) {
        errors->Add(spec.name, "expected a record");
        return;
      }
      json current = json::parse(r->GetString(*entity, f), nullptr, /*allow_exceptions=*/false);
      if (!current.is_object()) current = json::object();
      if (spec.merge != nullptr) {
        spec.merge(&current, v);
        r->SetString(entity, f, current.dump(-1, ' ', false, json::error_handler_t::replace));
        return;
      }
      for (const auto& [key, value] : v.items()) {
        // One level of merge, as Kong merges a PATCHed record; null resets the field to its default.
        if (value.is_null()) {
          current.erase(key);
        } else if (value.is_object() && current.contains(key) && current[key].is_object()) {
          current[key].update(value);
        } else {
          current[key] = value;
        }
      }
      r->SetString(entity, f, current.dump(-1, ' ', false, json::error_handler_t::replace));
      return;
    }
    default:
      ReadScalarInto(v, spec.name, f, entity, errors);
      return;
  }
}

FieldKind FormKindOf(FieldType type) {
  switch (type) {
    case FieldType::kId:
    case FieldType::kString: return FieldKind::kString;
    case FieldType::kTimestamp:
    case FieldType::kInteger: return FieldKind::kInteger;
    case FieldType::kBoolean: return FieldKind::kBoolean;
    case FieldType::kArray:
    case FieldType::kSet: return FieldKind::kArray;
    case FieldType::kStringArrayMap: return FieldKind::kStringMap;
    case FieldType::kRecordSet: return FieldKind::kRecordArray;
    case FieldType::kForeignKey:
    case FieldType::kJsonRecord: return FieldKind::kRecord;
  }
  return FieldKind::kUnknown;
}

}  // namespace

json EntityToJson(const EntityDescriptor& kind, const Message& entity) {
  json j = json::object();
  for (const FieldSpec& spec : kind.fields()) j[spec.name] = FieldToJson(spec, entity);
  return j;
}

void ApplyEntityJson(const EntityDescriptor& kind, const json& given_body, Message* entity, FieldErrors* errors) {
  if (!given_body.is_object()) {
    errors->AddEntity("expected a record");
    return;
  }
  json rewritten;
  if (kind.rewrites_body()) {
    rewritten = given_body;
    kind.RewriteBody(&rewritten);
  }
  const json& body = kind.rewrites_body() ? rewritten : given_body;
  for (const auto& [key, value] : body.items()) {
    if (const FieldSpec* spec = kind.field(key)) {
      ApplyField(kind, *spec, value, entity, errors);
    } else if (const ShorthandSpec* shorthand = kind.shorthand(key)) {
      if (!value.is_null()) shorthand->apply(body, value, entity, errors);
    } else {
      errors->Add(key, kUnknownField);
    }
  }
}

FieldKind FormFieldKind(const EntityDescriptor& kind, absl::string_view field) {
  if (const FieldSpec* spec = kind.field(field)) return FormKindOf(spec->type);
  if (const ShorthandSpec* shorthand = kind.shorthand(field)) return FormKindOf(shorthand->type);
  return FieldKind::kUnknown;
}

namespace {

bool AllKeysNumeric(const json& object) {
  if (!object.is_object() || object.empty()) return false;
  for (const auto& [key, value] : object.items()) {
    int index = 0;
    if (!absl::SimpleAtoi(key, &index) || index < 1) return false;
  }
  return true;
}

// Nulls that ArraysFromNumericObjects may add across one error body. Indices come from paths that
// a client controls ("a.99999999" as an unknown key), so the padding needs a bound: past it, a
// numeric object stays an object.
constexpr size_t kMaxArrayPadding = 65'536;

// Turns {"1": x, "3": y} into [x, null, y], recursively, while `*padding_left` allows.
json ArraysFromNumericObjects(const json& node, size_t* padding_left) {
  if (!node.is_object()) return node;
  if (AllKeysNumeric(node)) {
    size_t highest = 0;
    for (const auto& [key, value] : node.items()) {
      int index = 0;
      (void)absl::SimpleAtoi(key, &index);
      highest = std::max(highest, static_cast<size_t>(index));
    }
    const size_t padding = highest - node.size();
    if (padding <= *padding_left) {
      *padding_left -= padding;
      json array = json::array();
      array.get_ref<json::array_t&>().resize(highest, nullptr);
      for (const auto& [key, value] : node.items()) {
        int index = 0;
        (void)absl::SimpleAtoi(key, &index);
        array[index - 1] = ArraysFromNumericObjects(value, padding_left);
      }
      return array;
    }
  }
  json out = json::object();
  for (const auto& [key, value] : node.items()) out[key] = ArraysFromNumericObjects(value, padding_left);
  return out;
}

}  // namespace

json FieldErrorsToJson(const FieldErrors& errors) {
  json out = json::object();
  for (const auto& [path, message] : errors.errors()) {
    if (path == FieldErrors::kEntity) {
      out["@entity"].push_back(message);
      continue;
    }
    std::vector<std::string> segments = absl::StrSplit(path, '.');
    json* node = &out;
    for (size_t i = 0; i + 1 < segments.size(); ++i) {
      json& child = (*node)[segments[i]];
      if (!child.is_object()) child = json::object();
      node = &child;
    }
    if (segments.back() == FieldErrors::kEntity) {
      (*node)[segments.back()].push_back(message);  // a nested record's entity errors (plugin config)
    } else {
      (*node)[segments.back()] = message;
    }
  }
  size_t padding_left = kMaxArrayPadding;
  return ArraysFromNumericObjects(out, &padding_left);
}

json ServiceToJson(const config::v1::Service& service) { return EntityToJson(ServicesKind(), service); }
json RouteToJson(const config::v1::Route& route) { return EntityToJson(RoutesKind(), route); }

config::v1::Service DefaultService() {
  return static_cast<const config::v1::Service&>(ServicesKind().defaults());
}
config::v1::Route DefaultRoute() { return static_cast<const config::v1::Route&>(RoutesKind().defaults()); }

void ApplyServiceJson(const json& body, config::v1::Service* service, FieldErrors* errors) {
  ApplyEntityJson(ServicesKind(), body, service, errors);
}
void ApplyRouteJson(const json& body, config::v1::Route* route, FieldErrors* errors) {
  ApplyEntityJson(RoutesKind(), body, route, errors);
}

FieldKind ServiceFieldKind(absl::string_view field) { return FormFieldKind(ServicesKind(), field); }
FieldKind RouteFieldKind(absl::string_view field) { return FormFieldKind(RoutesKind(), field); }

}  // namespace portico
