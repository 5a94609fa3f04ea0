#include "common/config/entity_descriptor.h"

#include <cstdio>
#include <cstdlib>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/config/entity_json.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"

namespace portico {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

[[noreturn]] void Die(absl::string_view what, const absl::Status& status) {
  std::fprintf(stderr, "portico: %s: %s\n", std::string(what).c_str(), status.ToString().c_str());
  std::abort();
}

// The proto field a declared field lives in: `<name>_id` for foreign keys, else `<name>`.
std::string ProtoFieldName(const FieldSpec& spec) {
  return spec.type == FieldType::kForeignKey ? spec.name + "_id" : spec.name;
}

bool IsSingular(const FieldDescriptor* f, FieldDescriptor::CppType type) {
  return !f->is_repeated() && f->cpp_type() == type;
}

// A wrapper message whose only field is `values`, with `values_ok` true for it.
template <typename Pred>
bool IsWrapper(const FieldDescriptor* f, Pred values_ok) {
  if (!IsSingular(f, FieldDescriptor::CPPTYPE_MESSAGE)) return false;
  const Descriptor* d = f->message_type();
  return d->field_count() == 1 && d->field(0)->name() == "values" && values_ok(d->field(0));
}

bool IsRepeatedString(const FieldDescriptor* f) {
  return f->is_repeated() && !f->is_map() && f->cpp_type() == FieldDescriptor::CPPTYPE_STRING;
}

bool IsScalar(const FieldDescriptor* f) {
  if (f->is_repeated()) return false;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_BOOL: return true;
    default: return false;
  }
}

// Whether proto field `f` can hold a value of Kong type `type`.
bool ShapeFits(FieldType type, const FieldDescriptor* f) {
  switch (type) {
    case FieldType::kId:
    case FieldType::kString: return IsSingular(f, FieldDescriptor::CPPTYPE_STRING);
    case FieldType::kTimestamp: return IsSingular(f, FieldDescriptor::CPPTYPE_INT64);
    case FieldType::kInteger:
      return IsSingular(f, FieldDescriptor::CPPTYPE_INT32) || IsSingular(f, FieldDescriptor::CPPTYPE_INT64);
    case FieldType::kBoolean: return IsSingular(f, FieldDescriptor::CPPTYPE_BOOL);
    case FieldType::kArray:
    case FieldType::kSet: return IsRepeatedString(f) || IsWrapper(f, IsRepeatedString);
    case FieldType::kStringArrayMap:
      return IsWrapper(f, [](const FieldDescriptor* values) {
        if (!values->is_map()) return false;
        const FieldDescriptor* key = values->message_type()->map_key();
        const FieldDescriptor* value = values->message_type()->map_value();
        return key->cpp_type() == FieldDescriptor::CPPTYPE_STRING && IsWrapper(value, IsRepeatedString);
      });
    case FieldType::kRecordSet:
      return IsWrapper(f, [](const FieldDescriptor* values) {
        if (!values->is_repeated() || values->is_map() || values->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
          return false;
        }
        const Descriptor* record = values->message_type();
        for (int i = 0; i < record->field_count(); ++i) {
          if (!IsScalar(record->field(i))) return false;
        }
        return true;
      });
    case FieldType::kForeignKey:
      return IsSingular(f, FieldDescriptor::CPPTYPE_STRING) && f->has_presence();
    case FieldType::kJsonRecord:
      return IsSingular(f, FieldDescriptor::CPPTYPE_STRING) && !f->has_presence();
  }
  return false;
}

// The fields every kind has, ahead of its declared ones.
std::vector<FieldSpec> WithImpliedFields(const std::vector<FieldSpec>& declared) {
  std::vector<FieldSpec> fields = {{.name = "id", .type = FieldType::kId},
                                   {.name = "created_at", .type = FieldType::kTimestamp},
                                   {.name = "updated_at", .type = FieldType::kTimestamp}};
  fields.insert(fields.end(), declared.begin(), declared.end());
  return fields;
}

const FieldSpec* FindField(const std::vector<FieldSpec>& fields, absl::string_view name) {
  for (const FieldSpec& spec : fields) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

}  // namespace

absl::Status EntityDescriptor::Check(const EntityKindDeclaration& decl, const Message& prototype) {
  const Descriptor* type = prototype.GetDescriptor();
  auto fail = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("entity kind '", decl.name, "' (", type->full_name(), "): ", why));
  };
  if (decl.name.empty()) return fail("no name");
  if (decl.validate == nullptr) return fail("no validate function");
  for (const FieldSpec& spec : decl.fields) {
    if (spec.type == FieldType::kId || spec.type == FieldType::kTimestamp) {
      return fail(absl::StrCat("field '", spec.name, "': id, created_at and updated_at are implied, not declared"));
    }
  }
  const std::vector<FieldSpec> fields = WithImpliedFields(decl.fields);
  std::set<std::string> seen, proto_fields;
  for (const FieldSpec& spec : fields) {
    if (!seen.insert(spec.name).second) return fail(absl::StrCat("field '", spec.name, "' declared twice"));
    const std::string proto_name = ProtoFieldName(spec);
    const FieldDescriptor* f = type->FindFieldByName(proto_name);
    if (f == nullptr) return fail(absl::StrCat("field '", spec.name, "' has no proto field '", proto_name, "'"));
    if (!ShapeFits(spec.type, f)) {
      return fail(absl::StrCat("field '", spec.name, "': proto field '", proto_name, "' does not fit its type"));
    }
    proto_fields.insert(proto_name);
    if (spec.unique && spec.type != FieldType::kString) return fail(absl::StrCat("unique field '", spec.name, "' is not a string"));
    if (spec.lowercase_keys && spec.type != FieldType::kStringArrayMap) {
      return fail(absl::StrCat("field '", spec.name, "': lowercase_keys is for string-array maps"));
    }
    if (!spec.references.empty() && spec.type != FieldType::kForeignKey && spec.type != FieldType::kArray) {
      return fail(absl::StrCat("field '", spec.name, "' references a kind but is not a foreign key or an array"));
    }
    if (!spec.default_json.empty()) {
      nlohmann::json value = nlohmann::json::parse(spec.default_json, nullptr, /*allow_exceptions=*/false);
      if (value.is_discarded() || value.is_null()) {
        return fail(absl::StrCat("field '", spec.name, "': default is not a JSON value: ", spec.default_json));
      }
    }
  }
  for (int i = 0; i < type->field_count(); ++i) {
    if (proto_fields.count(type->field(i)->name()) == 0) {
      return fail(absl::StrCat("proto field '", type->field(i)->name(), "' is not declared"));
    }
  }
  if (const FieldSpec* tags = FindField(fields, "tags"); tags && tags->type != FieldType::kSet) {
    return fail("'tags' must be a set");
  }
  for (const std::string& name : decl.cache_key_fields) {
    const FieldSpec* f = FindField(fields, name);
    if (f == nullptr || (f->type != FieldType::kString && f->type != FieldType::kForeignKey)) {
      return fail(absl::StrCat("cache key field '", name, "' is not a string or foreign key field"));
    }
  }
  if (decl.child_keys_field.empty() != decl.child_keys_kind.empty()) {
    return fail("child_keys_field and child_keys_kind go together");
  }
  if (!decl.child_keys_field.empty() && (FindField(fields, decl.child_keys_field) != nullptr ||
                                         type->FindFieldByName(decl.child_keys_field) != nullptr)) {
    return fail(absl::StrCat("child keys field '", decl.child_keys_field, "' is also a field"));
  }
  if (!decl.endpoint_key_scope.empty()) {
    const FieldSpec* scope = FindField(fields, decl.endpoint_key_scope);
    if (scope == nullptr || scope->type != FieldType::kForeignKey || scope->references.empty()) {
      return fail("the endpoint key scope must be a foreign key to a registered kind");
    }
    const std::set<std::string> pair = {decl.endpoint_key_scope, decl.endpoint_key};
    if (decl.endpoint_key.empty() || std::set<std::string>(decl.cache_key_fields.begin(), decl.cache_key_fields.end()) != pair ||
        decl.cache_key_fields.size() != 2) {
      return fail("a scoped endpoint key and its scope must be the cache key fields");
    }
  } else if (!decl.endpoint_key.empty()) {
    const FieldSpec* key = FindField(fields, decl.endpoint_key);
    if (key == nullptr || !key->unique) return fail("the endpoint key must be a unique field");
  }
  for (const FieldSpec& spec : fields) {
    if (spec.merge != nullptr && spec.type != FieldType::kJsonRecord) {
      return fail(absl::StrCat("field '", spec.name, "': merge is for JSON records"));
    }
  }
  for (const ShorthandSpec& shorthand : decl.shorthands) {
    if (seen.count(shorthand.name) || shorthand.apply == nullptr) {
      return fail(absl::StrCat("shorthand '", shorthand.name, "' collides with a field or has no apply"));
    }
  }
  return absl::OkStatus();
}

EntityDescriptor::EntityDescriptor(EntityKindDeclaration declaration, const Message& prototype)
    : decl_(std::move(declaration)), prototype_(prototype) {
  if (absl::Status s = Check(decl_, prototype_); !s.ok()) Die("bad entity descriptor", s);
  decl_.fields = WithImpliedFields(decl_.fields);
  for (FieldSpec& spec : decl_.fields) {
    spec.proto = prototype_.GetDescriptor()->FindFieldByName(ProtoFieldName(spec));
  }
  id_ = field("id");
  created_at_ = field("created_at");
  updated_at_ = field("updated_at");
  tags_ = field("tags");
  for (const std::string& name : decl_.cache_key_fields) cache_key_fields_.push_back(field(name));
  // Defaults go through the codec, so they mean exactly what the same JSON in a body means.
  nlohmann::json body = nlohmann::json::object();
  for (const FieldSpec& spec : decl_.fields) {
    if (!spec.default_json.empty()) body[spec.name] = nlohmann::json::parse(spec.default_json);
  }
  defaults_.reset(prototype_.New());
  FieldErrors errors;
  ApplyEntityJson(*this, body, defaults_.get(), &errors);
  if (!errors.empty()) Die(absl::StrCat("defaults of entity kind '", decl_.name, "'"), errors.ToStatus());
}

EntityDescriptor::~EntityDescriptor() = default;

const Descriptor* EntityDescriptor::message_type() const { return prototype_.GetDescriptor(); }

std::string EntityDescriptor::CacheKey(const Message& entity) const {
  std::string key;
  for (const FieldSpec* f : cache_key_fields_) {
    if (!key.empty()) key.push_back('\x1f');
    std::optional<std::string> value = Text(entity, *f);
    key += value ? *value : std::string("\x1e");
  }
  return key;
}

const FieldSpec* EntityDescriptor::field(absl::string_view name) const { return FindField(decl_.fields, name); }

const ShorthandSpec* EntityDescriptor::shorthand(absl::string_view name) const {
  for (const ShorthandSpec& s : decl_.shorthands) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::vector<const FieldSpec*> EntityDescriptor::unique_fields() const {
  std::vector<const FieldSpec*> out;
  for (const FieldSpec& spec : decl_.fields) {
    if (spec.unique) out.push_back(&spec);
  }
  return out;
}

std::vector<const FieldSpec*> EntityDescriptor::stored_foreign_keys() const {
  std::vector<const FieldSpec*> out;
  for (const FieldSpec& spec : decl_.fields) {
    if (spec.type == FieldType::kForeignKey && !spec.references.empty()) out.push_back(&spec);
  }
  return out;
}

std::unique_ptr<Message> EntityDescriptor::New() const { return std::unique_ptr<Message>(prototype_.New()); }

std::unique_ptr<Message> EntityDescriptor::NewDefault() const {
  std::unique_ptr<Message> entity = New();
  entity->CopyFrom(*defaults_);
  return entity;
}

std::string EntityDescriptor::Id(const Message& entity) const {
  return entity.GetReflection()->GetString(entity, id_->proto);
}

void EntityDescriptor::SetId(Message* entity, const std::string& id) const {
  entity->GetReflection()->SetString(entity, id_->proto, id);
}

int64_t EntityDescriptor::CreatedAt(const Message& entity) const {
  return entity.GetReflection()->GetInt64(entity, created_at_->proto);
}

void EntityDescriptor::SetCreatedAt(Message* entity, int64_t seconds) const {
  entity->GetReflection()->SetInt64(entity, created_at_->proto, seconds);
}

int64_t EntityDescriptor::UpdatedAt(const Message& entity) const {
  return entity.GetReflection()->GetInt64(entity, updated_at_->proto);
}

void EntityDescriptor::SetUpdatedAt(Message* entity, int64_t seconds) const {
  entity->GetReflection()->SetInt64(entity, updated_at_->proto, seconds);
}

std::optional<std::string> EntityDescriptor::Text(const Message& entity, const FieldSpec& spec) const {
  const auto* r = entity.GetReflection();
  if (spec.proto->has_presence() && !r->HasField(entity, spec.proto)) return std::nullopt;
  return r->GetString(entity, spec.proto);
}

void EntityDescriptor::SetText(Message* entity, const FieldSpec& spec, const std::string& text) const {
  entity->GetReflection()->SetString(entity, spec.proto, text);
}

std::vector<std::string> EntityDescriptor::Tags(const Message& entity) const {
  return tags_ == nullptr ? std::vector<std::string>() : Strings(entity, *tags_);
}

std::vector<std::string> EntityDescriptor::Strings(const Message& entity, const FieldSpec& field) const {
  std::vector<std::string> out;
  const auto* r = entity.GetReflection();
  const FieldDescriptor* f = field.proto;
  const Message* holder = &entity;
  if (!f->is_repeated()) {  // a StringList wrapper
    if (!r->HasField(entity, f)) return out;
    holder = &r->GetMessage(entity, f);
    f = f->message_type()->FindFieldByName("values");
  }
  const auto* hr = holder->GetReflection();
  for (int i = 0; i < hr->FieldSize(*holder, f); ++i) out.push_back(hr->GetRepeatedString(*holder, f, i));
  return out;
}

EntityRegistry::EntityRegistry(std::vector<const EntityDescriptor*> kinds) : kinds_(std::move(kinds)) {
  std::set<std::string> earlier;
  for (const EntityDescriptor* kind : kinds_) {
    if (!earlier.insert(kind->name()).second) {
      Die("bad entity registry", absl::InvalidArgumentError(absl::StrCat("kind '", kind->name(), "' listed twice")));
    }
    for (const FieldSpec& f : kind->fields()) {
      if (f.references.empty()) continue;
      if (f.references != kind->name() && earlier.count(f.references) == 0) {
        Die("bad entity registry",
            absl::InvalidArgumentError(absl::StrCat("kind '", kind->name(), "' field '", f.name,
                                                    "' references '", f.references,
                                                    "', which is not listed before it")));
      }
    }
  }
  for (const EntityDescriptor* kind : kinds_) {
    if (kind->child_keys_kind().empty()) continue;
    const EntityDescriptor* child = Find(kind->child_keys_kind());
    bool references = false;
    if (child != nullptr) {
      for (const FieldSpec* fk : child->stored_foreign_keys()) references |= fk->references == kind->name();
    }
    if (!references || child->endpoint_key().empty()) {
      Die("bad entity registry",
          absl::InvalidArgumentError(absl::StrCat("kind '", kind->name(), "': child keys kind '",
                                                  kind->child_keys_kind(),
                                                  "' is not registered, has no endpoint key or does not reference it")));
    }
  }
}

const EntityDescriptor* EntityRegistry::FindByAdminName(absl::string_view admin_name) const {
  for (const EntityDescriptor* kind : kinds_) {
    if (kind->admin_name() == admin_name) return kind;
  }
  return nullptr;
}

const EntityDescriptor* EntityRegistry::Find(absl::string_view name) const {
  for (const EntityDescriptor* kind : kinds_) {
    if (kind->name() == name) return kind;
  }
  return nullptr;
}

const EntityDescriptor* EntityRegistry::Find(const Descriptor* message_type) const {
  for (const EntityDescriptor* kind : kinds_) {
    if (kind->message_type() == message_type) return kind;
  }
  return nullptr;
}

std::vector<EntityRegistry::Reference> EntityRegistry::ArrayReferencesTo(const EntityDescriptor& parent) const {
  std::vector<Reference> out;
  for (const EntityDescriptor* kind : kinds_) {
    for (const FieldSpec& f : kind->fields()) {
      if (f.type == FieldType::kArray && f.references == parent.name()) out.push_back({kind, &f});
    }
  }
  return out;
}

std::vector<EntityRegistry::Reference> EntityRegistry::ReferencesTo(const EntityDescriptor& parent) const {
  std::vector<Reference> out;
  for (const EntityDescriptor* kind : kinds_) {
    for (const FieldSpec* fk : kind->stored_foreign_keys()) {
      if (fk->references == parent.name()) out.push_back({kind, fk});
    }
  }
  return out;
}

}  // namespace portico
