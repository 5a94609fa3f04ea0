#include "common/declarative/declarative.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/sha256.h"
#include "common/base/uuid.h"
#include "common/config/basic_auth_password.h"
#include "common/config/entity_json.h"
#include "common/config/validate.h"
#include "common/declarative/yaml_document.h"
#include "common/snapshot/snapshot.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/message_differencer.h"

namespace portico {
namespace {

using json = nlohmann::json;
using google::protobuf::Message;

constexpr absl::string_view kSep = "\x1f";

// One (collection, index) step of where an entity sits in the document.
struct Step {
  std::string collection;
  size_t index = 0;
};

struct Entry {
  const EntityDescriptor* kind = nullptr;
  json body;                     // the entity's fields (nested lists taken out)
  std::vector<Step> location;    // where it is in the document
  int parent = -1;               // the entry it is nested in
  const FieldSpec* parent_fk = nullptr;
  std::string id;
  bool derived_id = true;  // the document gave no id
  FieldErrors errors;
  std::unique_ptr<Message> entity;
};

std::string LocationText(const std::vector<Step>& location) {
  std::string out;
  for (const Step& step : location) {
    if (!out.empty()) out += '.';
    absl::StrAppend(&out, step.collection, "[", step.index, "]");
  }
  return out;
}

std::string Singular(absl::string_view kind_name) {
  if (absl::EndsWith(kind_name, "s")) kind_name.remove_suffix(1);
  return std::string(kind_name);
}

// The slot of `location` in Kong's nested error object: objects by collection, arrays by index
// (padded with null).
json& ElementSlot(json& root, const std::vector<Step>& location) {
  json* node = &root;
  for (const Step& step : location) {
    if (!node->is_object()) *node = json::object();
    json& list = (*node)[step.collection];
    if (!list.is_array()) list = json::array();
    while (list.size() <= step.index) list.push_back(nullptr);
    node = &list[step.index];
  }
  return *node;
}

// The same slot as an object, for an entity's field errors.
json& ErrorSlot(json& root, const std::vector<Step>& location) {
  json& node = ElementSlot(root, location);
  if (!node.is_object()) node = json::object();
  return node;
}

// Sorts a kind's entities (with their derived_ids) by id, reading each id once: reading one
// through reflection copies it.
void SortById(DeclarativeConfig::KindEntities* list) {
  const EntityDescriptor& kind = *list->kind;
  std::vector<std::pair<std::string, size_t>> order;
  for (size_t i = 0; i < list->entities.size(); ++i) order.emplace_back(kind.Id(*list->entities[i]), i);
  std::sort(order.begin(), order.end());
  std::vector<std::unique_ptr<Message>> entities;
  std::vector<bool> derived;
  for (const auto& [id, i] : order) {
    entities.push_back(std::move(list->entities[i]));
    if (!list->derived_ids.empty()) derived.push_back(list->derived_ids[i]);
  }
  list->entities = std::move(entities);
  list->derived_ids = std::move(derived);
}

// The ConfigSet (the CP's form) of `kinds`; false when an entity does not parse back.
bool BuildConfigSet(const std::vector<DeclarativeConfig::KindEntities>& kinds, ConfigSet* out) {
  *out = ConfigSet{};
  for (const DeclarativeConfig::KindEntities& list : kinds) {
    if (!list.kind->exported()) continue;
    for (const auto& entity : list.entities) {
      if (!list.kind->AppendToConfig(out, entity->SerializeAsString())) return false;
    }
  }
  return true;
}

void MergeInto(json& target, const json& source) {
  if (!source.is_object() || !target.is_object()) {
    target = source;
    return;
  }
  for (const auto& [key, value] : source.items()) {
    if (target.contains(key) && target[key].is_object() && value.is_object()) {
      MergeInto(target[key], value);
    } else {
      target[key] = value;
    }
  }
}

// Kong's 3.0 route path migration (migrate_regex_280_300): a path of a 1.1/2.1 document that is
// not plain text was a regex; 3.0 marks regexes with a leading "~".
bool PlainPath(absl::string_view path) {
  for (char c : path) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) continue;
    if (c == '.' || c == '-' || c == '_' || c == '~' || c == '/' || c == '%') continue;
    return false;
  }
  return true;
}

// The endpoint key's value may name an entity in messages unless it is a credential.
bool ShowsEndpointKey(const EntityDescriptor& kind) {
  return !kind.endpoint_key().empty() && !kind.field(kind.endpoint_key())->secret;
}

class Loader {
 public:
  Loader(const EntityRegistry& kinds, const ConfigSet* previous, DeclarativeErrors* errors)
      : kinds_(kinds), errors_(*errors) {
    if (previous != nullptr) {
      for (const config::v1::BasicAuthCredential& old : previous->basicauth_credentials) {
        previous_passwords_.emplace(old.id(), old.password());
      }
    }
  }

  absl::StatusOr<DeclarativeConfig> Load(const json& document);

 private:
  void DocumentError(const std::string& key, const std::string& message) {
    errors_.fields[key] = message;
    errors_.lines.push_back(absl::StrCat(key, ": ", message));
    FlatError(nullptr, "field", key, message);
  }
  // A flattened_errors entry for a problem that is not one entity's (a document key, a list
  // element that is not a record).
  void FlatError(const EntityDescriptor* kind, const std::string& type, const std::string& field,
                 const std::string& message) {
    json error = {{"type", type}, {"message", message}};
    if (type == "field") error["field"] = field;
    errors_.flattened.push_back({{"entity_type", kind != nullptr ? json(Singular(kind->name())) : json(nullptr)},
                                 {"entity_name", nullptr},
                                 {"entity_id", nullptr},
                                 {"entity_tags", nullptr},
                                 {"entity", nullptr},
                                 {"errors", json::array({std::move(error)})}});
  }
  void LocationError(const std::vector<Step>& location, const std::string& message) {
    ElementSlot(errors_.fields, location) = message;  // Kong reports it in the element's slot
    errors_.lines.push_back(absl::StrCat(LocationText(location), ": ", message));
    FlatError(kinds_.Find(location.back().collection), "entity", "", message);
  }
  // The kind nested under `parent` by `key`, and its foreign key to the parent; null when `key`
  // is not a nested list there.
  std::pair<const EntityDescriptor*, const FieldSpec*> NestedKind(const EntityDescriptor& parent,
                                                                  const std::string& key) const;
  void Collect(const EntityDescriptor& kind, const json& list, int parent, const FieldSpec* parent_fk,
               const std::vector<Step>& prefix, const std::string& collection);
  void AssignIdentityIds();
  void ResolveReferences(Entry& entry);
  std::optional<std::string> Resolve(const EntityDescriptor& target, const json& value, bool* well_formed) const;
  void Build(Entry& entry);
  void CheckUniqueness();
  std::string Label(const Entry& entry) const;
  void Report(const Entry& entry);

  const EntityRegistry& kinds_;
  // Basic-auth credential id -> stored (hashed) password of the config being replaced.
  std::map<std::string, std::string> previous_passwords_;
  DeclarativeErrors& errors_;
  bool transform_ = true;
  bool migrate_paths_ = false;
  std::vector<Entry> entries_;
  // Per kind: id -> entry, endpoint key -> id (kinds with an unscoped endpoint key).
  std::map<const EntityDescriptor*, std::map<std::string, int>> ids_;
  std::map<const EntityDescriptor*, std::map<std::string, std::string>> keys_;
};

std::pair<const EntityDescriptor*, const FieldSpec*> Loader::NestedKind(const EntityDescriptor& parent,
                                                                        const std::string& key) const {
  const bool child_keys = !parent.child_keys_field().empty() && key == parent.child_keys_field();
  if (parent.field(key) != nullptr && !child_keys) return {nullptr, nullptr};
  const EntityDescriptor* child = kinds_.Find(child_keys ? parent.child_keys_kind() : key);
  if (child == nullptr) return {nullptr, nullptr};
  for (const FieldSpec* fk : child->stored_foreign_keys()) {
    if (fk->references == parent.name()) return {child, fk};
  }
  return {nullptr, nullptr};
}

void Loader::Collect(const EntityDescriptor& kind, const json& list, int parent, const FieldSpec* parent_fk,
                     const std::vector<Step>& prefix, const std::string& collection) {
  for (size_t i = 0; i < list.size(); ++i) {
    std::vector<Step> location = prefix;
    location.push_back({collection, i});
    json item = list[i];
    // certificates[].snis may list names (the Admin API's form) as well as records.
    if (item.is_string() && !kind.endpoint_key().empty() && parent_fk != nullptr &&
        kinds_.Find(parent_fk->references)->child_keys_kind() == kind.name()) {
      item = json{{kind.endpoint_key(), item}};
    }
    if (!item.is_object()) {
      LocationError(location, "expected a record");
      continue;
    }
    Entry entry;
    entry.kind = &kind;
    entry.location = location;
    entry.parent = parent;
    entry.parent_fk = parent_fk;
    std::vector<std::pair<std::string, const json*>> nested;
    for (const auto& [key, value] : item.items()) {
      if (NestedKind(kind, key).first != nullptr) {
        nested.emplace_back(key, &value);
      } else {
        entry.body[key] = value;
      }
    }
    if (entry.body.is_null()) entry.body = json::object();
    if (migrate_paths_ && kind.name() == "routes" && entry.body.contains("paths") && entry.body["paths"].is_array()) {
      for (json& path : entry.body["paths"]) {
        if (path.is_string() && !PlainPath(path.get<std::string>())) path = absl::StrCat("~", path.get<std::string>());
      }
    }
    const int index = static_cast<int>(entries_.size());
    entries_.push_back(std::move(entry));
    for (const auto& [key, value] : nested) {
      auto [child, fk] = NestedKind(kind, key);
      if (value->is_null()) continue;
      if (!value->is_array()) {
        std::vector<Step> at = location;
        ErrorSlot(errors_.fields, at)[key] = "expected an array";
        errors_.lines.push_back(absl::StrCat(LocationText(at), ".", key, ": expected an array"));
        FlatError(&kind, "field", key, "expected an array");
        continue;
      }
      Collect(*child, *value, index, fk, location, key);
    }
  }
}

std::optional<std::string> FieldText(const json& body, const std::string& field) {
  auto it = body.find(field);
  if (it == body.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return std::nullopt;
  return it->get<std::string>();
}

void Loader::AssignIdentityIds() {
  for (Entry& entry : entries_) {
    const EntityDescriptor& kind = *entry.kind;
    auto id = entry.body.find("id");
    if (id != entry.body.end() && !id->is_null()) {
      entry.derived_id = false;
      if (id->is_string() && IsUuid(id->get<std::string>())) entry.id = absl::AsciiStrToLower(id->get<std::string>());
      continue;  // a malformed id is reported by the field reader
    }
    // Identities that need no reference resolved; the others (a key scoped by a parent, a cache
    // key) are derived once the entity is built.
    // A credential's key never identifies it: ids are shown where keys are not.
    if (ShowsEndpointKey(kind) && kind.endpoint_key_scope().empty()) {
      if (std::optional<std::string> key = FieldText(entry.body, kind.endpoint_key())) {
        entry.id = DeclarativeEntityId(absl::StrCat(kind.name(), kSep, kind.endpoint_key(), kSep, *key));
        continue;
      }
    }
    if (kind.name() == "certificates" || kind.name() == "ca_certificates") {
      if (std::optional<std::string> cert = FieldText(entry.body, "cert")) {
        // A certificate's key is part of its identity (two entries may share a certificate).
        entry.id = DeclarativeEntityId(absl::StrCat(kind.name(), kSep, "cert", kSep, *cert, kSep,
                                                    FieldText(entry.body, "key").value_or("")));
        continue;
      }
    }
    if (kind.has_cache_key() || !kind.endpoint_key_scope().empty()) continue;
    entry.id = DeclarativeEntityId(absl::StrCat(kind.name(), kSep, "@", kSep, LocationText(entry.location)));
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& entry = entries_[i];
    if (entry.id.empty()) continue;
    ids_[entry.kind].emplace(entry.id, static_cast<int>(i));
    const EntityDescriptor& kind = *entry.kind;
    if (!kind.endpoint_key().empty() && kind.endpoint_key_scope().empty()) {
      if (std::optional<std::string> key = FieldText(entry.body, kind.endpoint_key())) {
        keys_[entry.kind].emplace(*key, entry.id);
      }
    }
  }
}

std::optional<std::string> Loader::Resolve(const EntityDescriptor& target, const json& value,
                                           bool* well_formed) const {
  *well_formed = true;
  std::string text;
  bool by_id = false;
  if (value.is_string()) {
    text = value.get<std::string>();
    by_id = IsUuid(text);
  } else if (value.is_object() && value.contains("id") && value["id"].is_string()) {
    text = value["id"].get<std::string>();
    by_id = true;
  } else if (value.is_object() && !target.endpoint_key().empty() && value.contains(target.endpoint_key()) &&
             value[target.endpoint_key()].is_string()) {
    text = value[target.endpoint_key()].get<std::string>();
  } else {
    *well_formed = false;
    return std::nullopt;
  }
  if (by_id) {
    text = absl::AsciiStrToLower(text);
    auto kind_ids = ids_.find(&target);
    if (kind_ids != ids_.end() && kind_ids->second.count(text)) return text;
    if (!value.is_string()) return std::nullopt;
    // A UUID-shaped name is still a name.
  }
  auto kind_keys = keys_.find(&target);
  if (kind_keys == keys_.end()) return std::nullopt;
  auto it = kind_keys->second.find(value.is_string() ? value.get<std::string>() : text);
  if (it == kind_keys->second.end()) return std::nullopt;
  return it->second;
}

std::string ReferenceText(const std::string& field, const json& value) {
  if (value.is_string()) return absl::StrCat(field, ": ", value.get<std::string>());
  if (value.is_object() && value.size() == 1 && value.begin()->is_string()) {
    return absl::StrCat(field, ".", value.begin().key(), ": ", value.begin()->get<std::string>());
  }
  return absl::StrCat(field, ": ", value.dump());
}

void Loader::ResolveReferences(Entry& entry) {
  const EntityDescriptor& kind = *entry.kind;
  for (const FieldSpec* fk : kind.stored_foreign_keys()) {
    if (fk == entry.parent_fk) {
      const Entry& parent = entries_[entry.parent];
      if (parent.id.empty()) {
        entry.errors.Add(fk->name, "the entity it is nested in has no valid id");
      } else {
        entry.body[fk->name] = json{{"id", parent.id}};
      }
      continue;
    }
    auto it = entry.body.find(fk->name);
    if (it == entry.body.end() || it->is_null()) continue;
    const EntityDescriptor* target = kinds_.Find(fk->references);
    bool well_formed = true;
    std::optional<std::string> id = Resolve(*target, *it, &well_formed);
    if (!well_formed) {
      entry.errors.Add(fk->name, absl::StrCat("expected the id or the ", target->endpoint_key().empty() ? "id" : target->endpoint_key(),
                                              " of an entry in '", target->name(), "'"));
      entry.body.erase(it);
      continue;
    }
    if (!id) {
      entry.errors.Add(fk->name, absl::StrCat("invalid reference '", ReferenceText(fk->name, *it),
                                              "' (no such entry in '", target->name(), "')"));
      entry.body.erase(it);
      continue;
    }
    *it = json{{"id", *id}};
  }
  // Arrays of ids (a service's ca_certificates) must name entries of the document too.
  for (const FieldSpec& field : kind.fields()) {
    if (field.type != FieldType::kArray || field.references.empty()) continue;
    auto it = entry.body.find(field.name);
    if (it == entry.body.end() || !it->is_array()) continue;
    const EntityDescriptor* target = kinds_.Find(field.references);
    for (size_t i = 0; i < it->size(); ++i) {
      json& element = (*it)[i];
      if (!element.is_string() || !IsUuid(element.get<std::string>())) continue;  // the field reader says why
      const std::string id = absl::AsciiStrToLower(element.get<std::string>());
      auto kind_ids = ids_.find(target);
      if (kind_ids == ids_.end() || !kind_ids->second.count(id)) {
        entry.errors.Add(absl::StrCat(field.name, ".", i + 1),
                         absl::StrCat("invalid reference '", field.name, ": ", id, "' (no such entry in '",
                                      target->name(), "')"));
      }
      element = id;
    }
  }
}

void Loader::Build(Entry& entry) {
  const EntityDescriptor& kind = *entry.kind;
  std::unique_ptr<Message> entity = kind.NewDefault();
  FieldErrors errors = entry.errors;
  ApplyEntityJson(kind, entry.body, entity.get(), &errors);
  if (!entry.id.empty()) kind.SetId(entity.get(), entry.id);
  // `_transform: false`: passwords are already in the stored (hashed) form.
  if (!transform_ && kind.name() == "basicauth_credentials") {
    if (const FieldSpec* password = kind.field("password")) {
      std::optional<std::string> text = kind.Text(*entity, *password);
      if (text && !text->empty() && !IsHashedBasicAuthPassword(*text)) {
        errors.Add("password", "expected a hashed password (the document has _transform: false)");
      }
    }
  }
  if (transform_ && !previous_passwords_.empty() && kind.name() == "basicauth_credentials") {
    auto* credential = static_cast<config::v1::BasicAuthCredential*>(entity.get());
    auto old = previous_passwords_.find(credential->id());
    if (old != previous_passwords_.end() && !IsHashedBasicAuthPassword(credential->password()) &&
        BasicAuthPasswordMatches(old->second, credential->password())) {
      credential->set_password(old->second);
    }
  }
  if (errors.empty()) kind.Normalize(entity.get(), &errors);
  // Expiry is not checked: an expired certificate is served as Kong serves it, and a stored one
  // (the Admin API refused it only when it was written) must not keep GET /config from loading back.
  const FieldErrors validation = kind.ValidateAtRest(*entity);
  bool field_errors = !errors.empty();
  for (const auto& [path, message] : validation.errors()) field_errors |= path != FieldErrors::kEntity;
  for (const auto& [path, message] : validation.errors()) {
    if (path == FieldErrors::kEntity && field_errors) continue;
    errors.Add(path, message);
  }
  entry.errors = std::move(errors);
  if (!entry.errors.empty()) return;
  if (kind.Id(*entity).empty()) {
    // Identities that depend on references: a key unique under its parent (a target in its
    // upstream), or Kong's cache key (a plugin's name and scope, an ACL's consumer and group).
    std::string identity;
    if (!kind.endpoint_key_scope().empty()) {
      const FieldSpec* scope = kind.field(kind.endpoint_key_scope());
      identity = absl::StrCat(kind.name(), kSep, kind.Text(*entity, *scope).value_or(""), kSep,
                              kind.Text(*entity, *kind.field(kind.endpoint_key())).value_or(""));
    } else if (kind.has_cache_key()) {
      identity = absl::StrCat(kind.name(), kSep, "cache_key", kSep, kind.CacheKey(*entity));
    } else {
      identity = absl::StrCat(kind.name(), kSep, "@", kSep, LocationText(entry.location));
    }
    kind.SetId(entity.get(), DeclarativeEntityId(identity));
  }
  entry.id = kind.Id(*entity);
  entry.entity = std::move(entity);
}

std::string Loader::Label(const Entry& entry) const {
  std::string label = LocationText(entry.location);
  const EntityDescriptor& kind = *entry.kind;
  if (ShowsEndpointKey(kind)) {
    if (std::optional<std::string> key = FieldText(entry.body, kind.endpoint_key())) {
      absl::StrAppend(&label, " (", kind.endpoint_key(), " '", *key, "')");
    }
  }
  return label;
}

void Loader::CheckUniqueness() {
  // Per kind: every unique value seen, by (field, value) -> first entry.
  std::map<std::tuple<const EntityDescriptor*, std::string, std::string>, int> seen;
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& entry = entries_[i];
    if (!entry.entity) continue;
    const EntityDescriptor& kind = *entry.kind;
    auto claim = [&](const std::string& what, const std::string& value, const std::string& shown) {
      auto [it, inserted] = seen.emplace(std::make_tuple(&kind, what, value), static_cast<int>(i));
      if (!inserted) {
        entry.errors.AddEntity(absl::StrCat("uniqueness violation: '", kind.name(), "' entity with ", shown,
                                            " already declared"));
      }
    };
    claim("id", entry.id, absl::StrCat("primary key set to '", entry.id, "'"));
    for (const FieldSpec* field : kind.unique_fields()) {
      if (std::optional<std::string> value = kind.Text(*entry.entity, *field); value && !value->empty()) {
        claim(field->name, *value,
              field->secret ? absl::StrCat("the same ", field->name)
                            : absl::StrCat(field->name, " set to '", *value, "'"));
      }
    }
    if (kind.has_cache_key()) {
      std::vector<std::string> parts;
      for (const FieldSpec* field : kind.cache_key_fields()) {
        parts.push_back(absl::StrCat(field->name, "=", kind.Text(*entry.entity, *field).value_or("null")));
      }
      claim("cache_key", kind.CacheKey(*entry.entity), absl::StrCat("key set to '", absl::StrJoin(parts, ","), "'"));
    }
  }
}

void Loader::Report(const Entry& entry) {
  const EntityDescriptor& kind = *entry.kind;
  MergeInto(ErrorSlot(errors_.fields, entry.location), FieldErrorsToJson(entry.errors));
  json flat;
  flat["entity_type"] = Singular(kind.name());
  flat["entity_name"] = nullptr;
  if (ShowsEndpointKey(kind)) {
    if (std::optional<std::string> key = FieldText(entry.body, kind.endpoint_key())) flat["entity_name"] = *key;
  }
  flat["entity_id"] = entry.id.empty() ? json(nullptr) : json(entry.id);
  flat["entity_tags"] = entry.body.contains("tags") ? entry.body["tags"] : json(nullptr);
  flat["entity"] = entry.body;
  json list = json::array();
  for (const auto& [path, message] : entry.errors.errors()) {
    if (path == FieldErrors::kEntity) {
      list.push_back({{"type", "entity"}, {"message", message}});
    } else {
      list.push_back({{"type", "field"}, {"field", path}, {"message", message}});
    }
    errors_.lines.push_back(absl::StrCat(Label(entry), ": ",
                                         path == FieldErrors::kEntity ? message : absl::StrCat(path, ": ", message)));
  }
  flat["errors"] = std::move(list);
  errors_.flattened.push_back(std::move(flat));
}

template <auto Member>
void CollectMember(const ConfigSet& config, const google::protobuf::Descriptor* type,
                   std::vector<std::unique_ptr<Message>>* out) {
  using List = std::remove_cvref_t<decltype(config.*Member)>;
  using Entity = typename List::value_type;
  if (Entity::descriptor() != type) return;
  for (const Entity& entity : config.*Member) out->push_back(std::make_unique<Entity>(entity));
}

// The entities of `kind` held by `config`.
std::vector<std::unique_ptr<Message>> EntitiesOf(const ConfigSet& config, const EntityDescriptor& kind) {
  std::vector<std::unique_ptr<Message>> out;
  const google::protobuf::Descriptor* type = kind.message_type();
  CollectMember<&ConfigSet::services>(config, type, &out);
  CollectMember<&ConfigSet::routes>(config, type, &out);
  CollectMember<&ConfigSet::plugins>(config, type, &out);
  CollectMember<&ConfigSet::consumers>(config, type, &out);
  CollectMember<&ConfigSet::keyauth_credentials>(config, type, &out);
  CollectMember<&ConfigSet::basicauth_credentials>(config, type, &out);
  CollectMember<&ConfigSet::acls>(config, type, &out);
  CollectMember<&ConfigSet::jwt_secrets>(config, type, &out);
  CollectMember<&ConfigSet::upstreams>(config, type, &out);
  CollectMember<&ConfigSet::targets>(config, type, &out);
  CollectMember<&ConfigSet::certificates>(config, type, &out);
  CollectMember<&ConfigSet::snis>(config, type, &out);
  CollectMember<&ConfigSet::ca_certificates>(config, type, &out);
  return out;
}

absl::StatusOr<DeclarativeConfig> Loader::Load(const json& document) {
  const absl::Status refused = absl::InvalidArgumentError("invalid declarative configuration");
  if (!document.is_object()) {
    errors_.syntax = "the document must be a record (a mapping of _format_version and entity lists)";
    return refused;
  }
  DeclarativeConfig out;
  auto version = document.find("_format_version");
  if (version == document.end() || version->is_null()) {
    DocumentError("_format_version", "required field missing");
  } else if (!version->is_string()) {
    DocumentError("_format_version", "expected a string");
  } else {
    out.format_version = version->get<std::string>();
    if (out.format_version != "3.0" && out.format_version != "2.1" && out.format_version != "1.1") {
      DocumentError("_format_version", "expected one of: 1.1, 2.1, 3.0");
    }
    migrate_paths_ = out.format_version == "1.1" || out.format_version == "2.1";
  }
  if (auto transform = document.find("_transform"); transform != document.end() && !transform->is_null()) {
    if (!transform->is_boolean()) {
      DocumentError("_transform", "expected a boolean");
    } else {
      transform_ = transform->get<bool>();
    }
  }
  if (auto comment = document.find("_comment"); comment != document.end() && !comment->is_null() &&
                                                 !comment->is_string()) {
    DocumentError("_comment", "expected a string");
  }
  for (const auto& [key, value] : document.items()) {
    if (key == "_format_version" || key == "_transform" || key == "_comment" || key == "_workspace") continue;
    const EntityDescriptor* kind = kinds_.Find(key);
    if (kind == nullptr) {
      DocumentError(key, "unknown field");
      continue;
    }
    if (value.is_null()) continue;
    if (!value.is_array()) {
      DocumentError(key, "expected an array");
      continue;
    }
    Collect(*kind, value, -1, nullptr, {}, key);
  }
  AssignIdentityIds();
  for (Entry& entry : entries_) ResolveReferences(entry);
  // Parents before children: a nested entry's parent is earlier in entries_.
  for (Entry& entry : entries_) Build(entry);
  CheckUniqueness();
  for (const Entry& entry : entries_) {
    if (!entry.errors.empty()) Report(entry);
  }
  if (!errors_.empty()) return refused;

  for (const EntityDescriptor* kind : kinds_.kinds()) {
    DeclarativeConfig::KindEntities list;
    list.kind = kind;
    for (Entry& entry : entries_) {
      if (entry.kind != kind) continue;
      list.entities.push_back(std::move(entry.entity));
      list.derived_ids.push_back(entry.derived_id);
    }
    SortById(&list);
    out.kinds.push_back(std::move(list));
  }
  if (!BuildConfigSet(out.kinds, &out.config)) {
    errors_.syntax = "internal error: an entity does not serialize back";
    return refused;
  }
  // The checks across entities that the CP runs before it publishes, and a DP before it applies.
  if (absl::Status set = ValidateConfigSet(ExportableConfig(out.config)); !set.ok()) {
    errors_.fields["@entity"].push_back(std::string(set.message()));
    errors_.lines.push_back(std::string(set.message()));
    FlatError(nullptr, "entity", "", std::string(set.message()));
    return refused;
  }
  return out;
}

// Top-level null fields dropped and foreign keys as plain ids, as Kong's db_export writes them.
json ExportEntity(const EntityDescriptor& kind, const Message& entity) {
  json full = EntityToJson(kind, entity);
  json out = json::object();
  for (auto& [key, value] : full.items()) {
    if (value.is_null()) continue;
    const FieldSpec* field = kind.field(key);
    if (field != nullptr && field->type == FieldType::kForeignKey && value.is_object() && value.contains("id")) {
      out[key] = value["id"];
    } else {
      out[key] = std::move(value);
    }
  }
  return out;
}

}  // namespace

size_t DeclarativeConfig::entity_count() const {
  size_t n = 0;
  for (const KindEntities& list : kinds) n += list.entities.size();
  return n;
}

json DeclarativeErrors::KongBody(bool flatten) const {
  json body;
  body["code"] = 14;
  body["name"] = "invalid declarative configuration";
  if (!syntax.empty()) {
    body["message"] = absl::StrCat("failed parsing declarative configuration: ", syntax);
    body["fields"] = json::object();
    if (flatten) body["flattened_errors"] = json::array();
    return body;
  }
  std::vector<std::string> shown(lines.begin(), lines.begin() + std::min<size_t>(lines.size(), 20));
  std::string message = absl::StrCat("declarative config is invalid: ", absl::StrJoin(shown, "; "));
  if (lines.size() > shown.size()) absl::StrAppend(&message, "; and ", lines.size() - shown.size(), " more");
  body["message"] = std::move(message);
  body["fields"] = fields;
  if (flatten) body["flattened_errors"] = flattened;
  return body;
}

std::string DeclarativeEntityId(absl::string_view identity) {
  static constexpr char kNamespace[] = "portico declarative id v1";
  Sha256 sha;
  sha.Update(kNamespace);
  sha.Update(absl::string_view("\0", 1));
  sha.Update(identity);
  uint8_t digest[Sha256::kDigestBytes];
  sha.Final(digest);
  digest[6] = static_cast<uint8_t>((digest[6] & 0x0f) | 0x80);  // version 8: name-based, own hash
  digest[8] = static_cast<uint8_t>((digest[8] & 0x3f) | 0x80);  // RFC 9562 variant
  const std::string hex = ToHex(absl::string_view(reinterpret_cast<const char*>(digest), 16));
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-", hex.substr(16, 4), "-",
                      hex.substr(20, 12));
}

absl::StatusOr<DeclarativeConfig> LoadDeclarativeDocument(const json& document, const DeclarativeOptions& options,
                                                          DeclarativeErrors* errors) {
  Loader loader(options.kinds != nullptr ? *options.kinds : EntityRegistry::Default(), options.previous, errors);
  return loader.Load(document);
}

absl::StatusOr<DeclarativeConfig> LoadDeclarativeText(absl::string_view text, const DeclarativeOptions& options,
                                                      DeclarativeErrors* errors) {
  if (text.size() > options.max_bytes) {
    errors->syntax = absl::StrCat("the document is ", text.size(), " bytes, over the limit of ", options.max_bytes);
    return absl::InvalidArgumentError("invalid declarative configuration");
  }
  DocumentLimits limits;
  limits.max_depth = options.max_depth;
  limits.max_nodes = options.max_nodes;
  absl::StatusOr<json> document = ParseYamlDocument(text, limits);
  if (!document.ok()) {
    errors->syntax = std::string(document.status().message());
    return absl::InvalidArgumentError("invalid declarative configuration");
  }
  return LoadDeclarativeDocument(*document, options, errors);
}

json ExportDeclarativeDocument(const std::vector<DeclarativeConfig::KindEntities>& kinds) {
  json document = json::object();
  document["_format_version"] = "3.0";
  document["_transform"] = false;
  for (const DeclarativeConfig::KindEntities& list : kinds) {
    if (list.entities.empty()) continue;
    json entities = json::array();
    for (const auto& entity : list.entities) entities.push_back(ExportEntity(*list.kind, *entity));
    document[list.kind->name()] = std::move(entities);
  }
  return document;
}

namespace {

// See CarryOverStoredTimestamps: derived ids of secret-keyed credentials become the stored ids.
void AdoptStoredIds(const ConfigSet& stored, DeclarativeConfig::KindEntities* list) {
  const EntityDescriptor& kind = *list->kind;
  if (kind.endpoint_key().empty() || ShowsEndpointKey(kind) || list->derived_ids.size() != list->entities.size()) {
    return;
  }
  const FieldSpec& key_field = *kind.field(kind.endpoint_key());
  std::map<std::string, std::string> stored_ids;  // key -> id
  for (const std::unique_ptr<Message>& entity : EntitiesOf(stored, kind)) {
    if (std::optional<std::string> key = kind.Text(*entity, key_field)) stored_ids.emplace(*key, kind.Id(*entity));
  }
  std::set<std::string> taken;
  for (const auto& entity : list->entities) taken.insert(kind.Id(*entity));
  bool changed = false;
  for (size_t i = 0; i < list->entities.size(); ++i) {
    if (!list->derived_ids[i]) continue;
    std::optional<std::string> key = kind.Text(*list->entities[i], key_field);
    if (!key) continue;
    auto old = stored_ids.find(*key);
    if (old == stored_ids.end() || taken.count(old->second)) continue;
    taken.erase(kind.Id(*list->entities[i]));
    kind.SetId(list->entities[i].get(), old->second);
    taken.insert(old->second);
    changed = true;
  }
  if (changed) SortById(list);
}

}  // namespace

bool CarryOverStoredTimestamps(const ConfigSet& stored, DeclarativeConfig* loaded) {
  bool unchanged = true;
  for (DeclarativeConfig::KindEntities& list : loaded->kinds) {
    AdoptStoredIds(stored, &list);
    const EntityDescriptor& kind = *list.kind;
    std::map<std::string, std::unique_ptr<Message>> by_id;
    for (std::unique_ptr<Message>& entity : EntitiesOf(stored, kind)) {
      std::string id = kind.Id(*entity);
      by_id.emplace(std::move(id), std::move(entity));
    }
    if (by_id.size() != list.entities.size()) unchanged = false;
    for (std::unique_ptr<Message>& entity : list.entities) {
      auto old = by_id.find(kind.Id(*entity));
      if (old == by_id.end()) {
        unchanged = false;
        continue;
      }
      if (kind.CreatedAt(*entity) == 0) kind.SetCreatedAt(entity.get(), kind.CreatedAt(*old->second));
      const int64_t updated_at = kind.UpdatedAt(*entity);
      if (updated_at == 0) kind.SetUpdatedAt(entity.get(), kind.UpdatedAt(*old->second));
      if (!google::protobuf::util::MessageDifferencer::Equals(*entity, *old->second)) {
        unchanged = false;
        kind.SetUpdatedAt(entity.get(), updated_at);  // changed: stamped when written
      }
    }
  }
  // The ConfigSet view follows the entities (they parsed back when they were loaded).
  BuildConfigSet(loaded->kinds, &loaded->config);
  return unchanged;
}

std::vector<DeclarativeConfig::KindEntities> EntitiesByKind(const ConfigSet& config, const EntityRegistry& kinds) {
  std::vector<DeclarativeConfig::KindEntities> out;
  for (const EntityDescriptor* kind : kinds.kinds()) {
    DeclarativeConfig::KindEntities list;
    list.kind = kind;
    list.entities = EntitiesOf(config, *kind);
    out.push_back(std::move(list));
  }
  return out;
}

std::string ExportDeclarativeYaml(const std::vector<DeclarativeConfig::KindEntities>& kinds) {
  return ToYamlDocument(ExportDeclarativeDocument(kinds));
}

}  // namespace portico
