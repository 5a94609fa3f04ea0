#pragma once
// Entity descriptors: one per entity kind, the single declaration from which Portico derives the
// Kong JSON codec (entity_json.h), the SQL storage (control_plane/store), the Admin API routes
// (control_plane/admin) and, later, the declarative format. A kind is one proto message
// (proto/portico/config/v1/config.proto), one descriptor (entities.cc, which also lists it in the
// default registry) and its own validation rules (validate.cc). docs/architecture.md "How to add
// an entity kind" walks through it.
//
// Generic code reads and writes entities through protobuf reflection here. That is for the
// Admin API and the store; the DP's hot paths (ValidateConfigSet, snapshot apply) stay typed and
// never go through a descriptor. Descriptors and registries are immutable once built:
// thread-safe.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/config/field_errors.h"
#include "nlohmann/json_fwd.hpp"

namespace google::protobuf {
class Descriptor;
class FieldDescriptor;
class Message;
}  // namespace google::protobuf

namespace portico {

struct ConfigSet;

// Kong's type of a field: its JSON shape, how a form value is coerced, and the words of its
// type errors. The proto field behind it must have the matching shape (checked when the
// descriptor is built).
enum class FieldType {
  kId,              // the primary key: UUID text, lowercased; the store generates one when empty
  kTimestamp,       // created_at / updated_at: int64 seconds stamped by the store
  kString,          // string; `optional` in the proto when it is nullable
  kInteger,         // int32 (values beyond it: "value out of range") or int64
  kBoolean,         // bool; `optional` when nullable
  kArray,           // strings, "expected an array": a StringList wrapper (null when unset) or a
                    // `repeated string` (never null)
  kSet,             // the same shapes; Kong's messages say "expected a set"
  kStringArrayMap,  // name -> array of strings: a wrapper message whose `values` is a
                    // map<string, StringList> (route headers)
  kRecordSet,       // records of scalars: a wrapper whose `values` is a repeated message
                    // (route sources: CidrPortList of CidrPort); a record field that is null
                    // stays unset
  kForeignKey,      // {"id": "<uuid>"} or null; the proto field is `optional string <name>_id`
  kJsonRecord,      // a JSON object kept as its JSON text in a `string` (a plugin's config); a body's
                    // object is merged into the current one (PATCH merges, as Kong's records do);
                    // the kind's `normalize` checks and completes it
};

// What deleting a referenced entity does to the entities that reference it (Kong's on_delete).
enum class OnDelete { kRestrict, kCascade };

struct FieldSpec {
  std::string name;                    // Kong's JSON name (and the proto field's, but see kForeignKey)
  FieldType type = FieldType::kString;
  // Kong's default as a JSON literal ("5", "\"http\"", "[\"http\",\"https\"]", "true"); "" = none
  // (the field is null, or zero/empty when the proto field has no presence). A JSON null in a
  // body resets the field to this (kId and kTimestamp ignore null).
  std::string default_json;
  bool required = false;    // Kong's `required`: the kind's rules report "required field missing"
  bool unique = false;      // no two entities of the kind share a value (kString only; a UNIQUE column)
  // A credential (a key-auth key, a password, a private key): its value never goes into logs or
  // into messages that may be logged (the declarative loader's error lines name the entity by
  // its position instead).
  bool secret = false;
  bool lowercase_keys = false;  // kStringArrayMap: map keys are lowercased (header names)
  // kForeignKey: the referenced kind ("services"), which must be registered before this one.
  // "" = a reference to a kind Portico does not have yet: the id is shown and kept, but it is
  // not stored as a key nor checked to exist.
  // kArray: every element is the id of an entity of that kind (a service's ca_certificates): not
  // a stored key; the Admin API checks the ids exist on writes and refuses to delete an entity
  // still listed (Kong's 400 "referenced by others"); ValidateConfigSet checks sets.
  std::string references;
  OnDelete on_delete = OnDelete::kRestrict;
  // kJsonRecord: how a body's object merges into the current value (null: one level, each member
  // of the body replacing the current one, null resetting it; plugin configs). Upstreams'
  // healthchecks merge nested records as Kong does.
  void (*merge)(nlohmann::json* current, const nlohmann::json& patch) = nullptr;

  // Set when the descriptor is built: the proto field holding the value.
  const google::protobuf::FieldDescriptor* proto = nullptr;
};

// An input-only field (Kong's "shorthand"), e.g. a service's `url`: `apply` sets real fields
// from `value` (never null) and may look at the rest of `body` (e.g. to refuse a combination).
struct ShorthandSpec {
  std::string name;
  FieldType type = FieldType::kString;  // how a form value is coerced
  void (*apply)(const nlohmann::json& body, const nlohmann::json& value, google::protobuf::Message* entity,
                FieldErrors* errors) = nullptr;
};

// What a kind declares (see entities.cc for services and routes).
struct EntityKindDeclaration {
  std::string name;          // Kong's entity name = SQL table = Admin API collection ("services")
  // The Admin API's names when they differ from `name` (Kong's admin_api_name and
  // admin_api_nested_name): "/key-auths" and "/consumers/{c}/key-auth" for keyauth_credentials.
  std::string admin_name;         // "" = name
  std::string nested_admin_name;  // "" = admin_name
  std::string endpoint_key;  // a unique kString field: a URL key that is not a UUID names it; "" = ids only
  // Every other proto field, in Kong's order. Every kind has `id` (kId), `created_at` and
  // `updated_at` (kTimestamp, seconds): the descriptor adds them (its fields() start with them),
  // the proto message must have them.
  std::vector<FieldSpec> fields;
  std::vector<ShorthandSpec> shorthands;
  // The kind's own field and entity rules (validate.cc), UTF-8 first (ValidateEntityUtf8First).
  FieldErrors (*validate)(const google::protobuf::Message& entity) = nullptr;
  // Optional: the same rules without those that only hold at the time of an Admin API write (a
  // certificate's expiry: Portico refuses expired certificates on writes, Kong accepts them). The
  // declarative loader uses it, so an exported config always loads back. Null: `validate`.
  FieldErrors (*validate_at_rest)(const google::protobuf::Message& entity) = nullptr;
  // Optional: completes an entity decoded from a request before it is validated and stored
  // (a plugin's config gets its defaults); its errors are reported with the type errors. Must
  // be idempotent. Null: nothing to complete.
  void (*normalize)(google::protobuf::Message* entity, FieldErrors* errors) = nullptr;
  // For kinds data planes receive: parses one serialized entity onto the end of its list in a
  // ConfigSet; false (nothing appended) when the bytes do not parse. Null: not in a ConfigSet.
  bool (*append_to_config)(ConfigSet* config, absl::string_view serialized) = nullptr;
  bool top_level_endpoints = true;  // /{name} and /{name}/{key} exist (Kong disables them for targets)
  // Optional: Kong's cache key, the fields (kString or kForeignKey, in Kong's alphabetical order)
  // whose values together no two entities of the kind may share: a plugin's name and scope. The
  // store keeps their combination in a UNIQUE column.
  std::vector<std::string> cache_key_fields;
  // Optional: rewrites a request body before its fields are read (Kong's shorthand_fields that set
  // real fields: an upstream's `algorithm` and `hash_on` adjust each other). Must leave values it
  // does not understand for the field readers to refuse.
  void (*rewrite_body)(nlohmann::json* body) = nullptr;
  // Optional (Kong's targets): the endpoint key is unique per referenced entity of this foreign key
  // rather than in the whole kind; both fields form the cache key. The key then names an entity only
  // under /{parents}/{p}/{nested}/{key}, where PUT and DELETE of a missing entity answer 404 and
  // GET /{parents}/{p}/{nested}/all lists the parent's entities (Kong's upstreams.lua endpoints).
  std::string endpoint_key_scope;
  // Optional (Kong's certificates.snis): a transient array field of this name listing, by their
  // endpoint keys, the entities of kind `child_keys_kind` whose foreign key references this
  // entity. The Admin API shows it sorted; a write whose body has it (null = empty) makes the
  // children exactly those, in the write's transaction. `child_keys_kind` must be registered and
  // reference this kind; the field name must not be a proto field.
  std::string child_keys_field;
  std::string child_keys_kind;
};

class EntityDescriptor {
 public:
  // `prototype` is the kind's message (e.g. config::v1::Service::default_instance()); it must
  // outlive the descriptor. A declaration that does not fit it is a programming error: this
  // aborts with the reason (Check() returns it instead).
  EntityDescriptor(EntityKindDeclaration declaration, const google::protobuf::Message& prototype);
  ~EntityDescriptor();
  EntityDescriptor(const EntityDescriptor&) = delete;
  EntityDescriptor& operator=(const EntityDescriptor&) = delete;

  // OK when `declaration` fits `prototype`: every field exists with a matching shape, every proto
  // field is declared (or implied: id, created_at, updated_at), defaults parse, keys are sound.
  static absl::Status Check(const EntityKindDeclaration& declaration, const google::protobuf::Message& prototype);

  const std::string& name() const { return decl_.name; }
  const std::string& admin_name() const { return decl_.admin_name.empty() ? decl_.name : decl_.admin_name; }
  const std::string& nested_admin_name() const {
    return decl_.nested_admin_name.empty() ? admin_name() : decl_.nested_admin_name;
  }
  const std::string& endpoint_key() const { return decl_.endpoint_key; }
  const std::string& endpoint_key_scope() const { return decl_.endpoint_key_scope; }
  const std::vector<FieldSpec>& fields() const { return decl_.fields; }  // id, created_at, updated_at first
  const std::vector<ShorthandSpec>& shorthands() const { return decl_.shorthands; }
  bool top_level_endpoints() const { return decl_.top_level_endpoints; }
  bool exported() const { return decl_.append_to_config != nullptr; }
  // See EntityKindDeclaration::child_keys_field ("" when none).
  const std::string& child_keys_field() const { return decl_.child_keys_field; }
  const std::string& child_keys_kind() const { return decl_.child_keys_kind; }
  const google::protobuf::Descriptor* message_type() const;

  const FieldSpec* field(absl::string_view name) const;  // null when the kind has no such field
  const ShorthandSpec* shorthand(absl::string_view name) const;
  std::vector<const FieldSpec*> unique_fields() const;
  // Foreign keys to registered kinds (kForeignKey with `references` set), in declaration order.
  std::vector<const FieldSpec*> stored_foreign_keys() const;

  // A new empty entity, and one with Kong's defaults (no id, no timestamps).
  std::unique_ptr<google::protobuf::Message> New() const;
  std::unique_ptr<google::protobuf::Message> NewDefault() const;
  const google::protobuf::Message& defaults() const { return *defaults_; }

  // The kind's field validation (its `validate`); empty = valid.
  FieldErrors Validate(const google::protobuf::Message& entity) const { return decl_.validate(entity); }
  // See EntityKindDeclaration::validate_at_rest.
  FieldErrors ValidateAtRest(const google::protobuf::Message& entity) const {
    return decl_.validate_at_rest != nullptr ? decl_.validate_at_rest(entity) : decl_.validate(entity);
  }
  // See EntityKindDeclaration::cache_key_fields.
  bool has_cache_key() const { return !cache_key_fields_.empty(); }
  const std::vector<const FieldSpec*>& cache_key_fields() const { return cache_key_fields_; }
  // The stored form: each field's text (a foreign key's id), "\x1f"-separated, "\x1e" for null.
  std::string CacheKey(const google::protobuf::Message& entity) const;
  // See EntityKindDeclaration::normalize.
  void Normalize(google::protobuf::Message* entity, FieldErrors* errors) const {
    if (decl_.normalize != nullptr) decl_.normalize(entity, errors);
  }
  // See EntityKindDeclaration::rewrite_body.
  void RewriteBody(nlohmann::json* body) const {
    if (decl_.rewrite_body != nullptr) decl_.rewrite_body(body);
  }
  bool rewrites_body() const { return decl_.rewrite_body != nullptr; }
  // See EntityKindDeclaration::append_to_config. REQUIRES: exported().
  bool AppendToConfig(ConfigSet* config, absl::string_view serialized) const {
    return decl_.append_to_config(config, serialized);
  }

  // Reflection accessors; `entity` must be of this kind.
  std::string Id(const google::protobuf::Message& entity) const;
  void SetId(google::protobuf::Message* entity, const std::string& id) const;
  int64_t CreatedAt(const google::protobuf::Message& entity) const;
  void SetCreatedAt(google::protobuf::Message* entity, int64_t seconds) const;
  int64_t UpdatedAt(const google::protobuf::Message& entity) const;
  void SetUpdatedAt(google::protobuf::Message* entity, int64_t seconds) const;
  // The text of a kId/kString field, or the referenced id of a kForeignKey; nullopt when unset.
  std::optional<std::string> Text(const google::protobuf::Message& entity, const FieldSpec& field) const;
  void SetText(google::protobuf::Message* entity, const FieldSpec& field, const std::string& text) const;
  // The `tags` field's values (empty when the kind has none or it is unset).
  std::vector<std::string> Tags(const google::protobuf::Message& entity) const;
  // The elements of a kArray or kSet field (a StringList wrapper or a repeated string; empty
  // when unset).
  std::vector<std::string> Strings(const google::protobuf::Message& entity, const FieldSpec& field) const;

 private:
  EntityKindDeclaration decl_;
  const google::protobuf::Message& prototype_;
  std::unique_ptr<google::protobuf::Message> defaults_;
  const FieldSpec* id_ = nullptr;
  const FieldSpec* created_at_ = nullptr;
  const FieldSpec* updated_at_ = nullptr;
  const FieldSpec* tags_ = nullptr;
  std::vector<const FieldSpec*> cache_key_fields_;
};

// The kinds one store and Admin API serve, parents before children.
class EntityRegistry {
 public:
  // A foreign key may reference only a kind listed before it, so tables can be created in this
  // order. A duplicate name or a dangling reference is a programming error (aborts).
  explicit EntityRegistry(std::vector<const EntityDescriptor*> kinds);

  // Portico's kinds (entities.cc): certificates, ca_certificates, snis, services, upstreams,
  // targets, routes, consumers, plugins and the credentials.
  static const EntityRegistry& Default();

  const std::vector<const EntityDescriptor*>& kinds() const { return kinds_; }
  const EntityDescriptor* Find(absl::string_view name) const;  // null when unknown
  const EntityDescriptor* FindByAdminName(absl::string_view admin_name) const;  // "/key-auths" -> kind
  const EntityDescriptor* Find(const google::protobuf::Descriptor* message_type) const;

  // A foreign key of `kind` that references another registered kind.
  struct Reference {
    const EntityDescriptor* kind;
    const FieldSpec* field;
  };
  // Every stored foreign key that references `parent`, in registry order.
  std::vector<Reference> ReferencesTo(const EntityDescriptor& parent) const;
  // Every array of ids (kArray with `references`) whose elements name `parent`'s entities.
  std::vector<Reference> ArrayReferencesTo(const EntityDescriptor& parent) const;

 private:
  std::vector<const EntityDescriptor*> kinds_;
};

}  // namespace portico
