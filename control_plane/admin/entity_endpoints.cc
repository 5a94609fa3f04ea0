#include "control_plane/admin/entity_endpoints.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "common/config/entity_descriptor.h"
#include "common/config/entity_json.h"
#include "common/config/utf8_fields.h"
#include "control_plane/admin/admin_responses.h"
#include "control_plane/admin/request_decoding.h"
#include "control_plane/admin/schema_endpoints.h"
#include "control_plane/store/store.h"
#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"

namespace portico::cp {
namespace {

using cp::JsonResponse;
using cp::KongError;
using cp::LuaKey;
using cp::MethodNotAllowed;
using cp::NoContent;
using cp::NotFound;
using cp::Unexpected;
using google::protobuf::Message;
using nlohmann::json;

constexpr int kMaxQueryTags = 5;

enum class WriteKind { kCreate, kPatch, kReplace };

// A finished request: the response and whether a write committed.
struct Outcome {
  HttpResponse response;
  bool committed = false;
};

// The foreign key a nested path sets from the URL: /{parents}/{p}/{kinds}.
struct ForcedParent {
  const FieldSpec* field;
  std::string id;
};

// What /{kind}/{key}/... names, decided from the path alone.
struct SubPath {
  enum Shape { kNone, kSelf, kChildren, kParent } shape = kNone;
  const EntityDescriptor* kind = nullptr;  // kChildren: the child kind; kParent: the referenced kind
  const FieldSpec* field = nullptr;        // the foreign key (of the child, or of this kind)
};

SubPath Classify(const EntityRegistry& kinds, const EntityDescriptor& kind, const std::vector<std::string>& seg) {
  const size_t n = seg.size();
  if (n == 2) return {SubPath::kSelf};
  if (n > 4) return {};
  for (const EntityRegistry::Reference& ref : kinds.ReferencesTo(kind)) {
    if (ref.kind->nested_admin_name() == seg[2]) return {SubPath::kChildren, ref.kind, ref.field};
  }
  if (n == 3) {
    const FieldSpec* fk = kind.field(seg[2]);
    if (fk != nullptr && fk->type == FieldType::kForeignKey && !fk->references.empty()) {
      return {SubPath::kParent, kinds.Find(fk->references), fk};
    }
  }
  return {};
}

bool IsReadOrWrite(const std::string& method) {
  return method == "GET" || method == "PATCH" || method == "PUT" || method == "DELETE";
}

// GET/PATCH of a row whose stored entity cannot be parsed: a 500 that names it and says how to
// repair it. `id` is printed C-escaped when it is not UTF-8.
HttpResponse CorruptEntity(const EntityDescriptor& kind, const std::string& id) {
  const std::string shown = IsValidUtf8(id) ? id : absl::CHexEscape(id);
  const std::string& plural = kind.admin_name();
  return cp::Message(500, absl::StrCat("the ", plural, " entity '", shown,
                                          "' is stored corrupt and cannot be read (a string that is not UTF-8, "
                                          "or damaged bytes); delete it with DELETE /", plural, "/", shown,
                                          " or replace it with PUT /", plural, "/", shown));
}

HttpResponse ForeignKeyMissing(const FieldSpec& fk, absl::string_view key_field, absl::string_view value) {
  return KongError(400, 4, "foreign key violation",
                   absl::StrCat("the foreign key '", LuaKey(key_field, value), "' does not reference an existing '",
                                fk.references, "' entity."),
                   json{{fk.name, {{std::string(key_field), std::string(value)}}}});
}

// Kong's code 13 for a foreign key given by a unique field that names nothing:
// {"service":{"name":"nope"}}.
HttpResponse ForeignKeyUnresolved(const FieldSpec& fk, absl::string_view key_field, absl::string_view value) {
  const std::string reason = absl::StrCat("the foreign key cannot be resolved with '", LuaKey(key_field, value),
                                          "' for an existing '", fk.references, "' entity");
  return KongError(400, 13, "foreign keys unresolved",
                   absl::StrCat("foreign key unresolved (", fk.name, ".", key_field, ": ", reason, ")"),
                   json{{fk.name, {{std::string(key_field), reason}}}});
}

HttpResponse Referenced(absl::string_view child, const EntityDescriptor& parent) {
  return KongError(400, 4, "foreign key violation",
                   absl::StrCat("an existing '", child, "' entity references this '", parent.name(), "' entity"),
                   json{{"@referenced_by", std::string(child)}});
}

class Handler {
 public:
  Handler(Store& store, const HttpRequest& request) : store_(store), kinds_(store.kinds()), request_(request) {}

  Outcome Dispatch(const EntityDescriptor& kind, const std::vector<std::string>& seg);
  // Kong's POST /schemas/{entity}/validate: the body checked as a create would check it (types,
  // defaults, rules, references), nothing stored.
  HttpResponse Validate(const EntityDescriptor& kind);

 private:
  // Name-or-id lookup: a UUID key is an id, anything else the endpoint key. NotFound when absent.
  absl::StatusOr<EntityPtr> Find(const EntityDescriptor& kind, absl::string_view key);
  // The same under /{parents}/{p}/{kinds}/{key}: a scoped endpoint key (Kong's targets) is looked
  // up under `parent`.
  absl::StatusOr<EntityPtr> FindChild(const EntityDescriptor& kind, absl::string_view key, const ForcedParent& parent);
  Outcome OnEntity(const EntityDescriptor& kind, absl::string_view key, absl::StatusOr<EntityPtr>& found);
  Outcome OnChildren(const SubPath& sub, const std::vector<std::string>& seg, const std::string& parent_id);
  Outcome OnParent(const SubPath& sub, const EntityDescriptor& kind, const Message& entity);
  HttpResponse List(const EntityDescriptor& kind, const ForcedParent* parent);
  // `corrupt_id`: the URL names a corrupt row (no `existing`); a replace keeps its id.
  // `validate_only`: stop after the checks, answering 200 "schema validation successful".
  Outcome Write(const EntityDescriptor& kind, WriteKind write, absl::string_view key, const Message* existing,
                const ForcedParent* parent, const std::string* corrupt_id = nullptr, bool validate_only = false);
  Outcome Delete(const EntityDescriptor& kind, absl::string_view id);
  // /{kind}/{key} naming a corrupt row: DELETE and PUT repair it, GET and PATCH explain it.
  Outcome OnCorruptRow(const EntityDescriptor& kind, absl::string_view key, const std::string& id);
  // Replaces {"<fk>":{"<endpoint key>":"x"}} by {"<fk>":{"id":...}}; an error response if unknown.
  std::optional<HttpResponse> ResolveReference(const FieldSpec& fk, json* body);
  HttpResponse StoreError(const EntityDescriptor& kind, const absl::Status& status, const Message& entity);
  // EntityToJson plus the kind's child keys field (Kong's certificates.snis), sorted.
  json ToJson(const EntityDescriptor& kind, const Message& entity);
  // The child kind and its foreign key behind kind.child_keys_field().
  std::optional<EntityRegistry::Reference> ChildKeysReference(const EntityDescriptor& kind) const;
  // Every child entity of `parent_id` through `ref`. Corrupt rows are skipped (the store logs them).
  absl::StatusOr<std::vector<EntityPtr>> Children(const EntityRegistry::Reference& ref, const std::string& parent_id);
  // A write's child keys (body[kind.child_keys_field()], taken out of `body`): nullopt when the
  // body has none; type and name errors go to `errors`.
  std::optional<std::vector<std::string>> TakeChildKeys(const EntityDescriptor& kind, json* body, FieldErrors* errors);
  // Kong's checks of a child keys list for `parent_id`: no duplicate, none held by another parent.
  std::optional<HttpResponse> CheckChildKeys(const EntityRegistry::Reference& ref, const std::vector<std::string>& keys,
                                             const std::string& parent_id);
  // The write and the child inserts/deletes that make the children exactly `keys`, in one batch.
  Outcome WriteWithChildren(const EntityDescriptor& kind, const Message& entity, WriteMode mode, bool created,
                            const std::vector<std::string>& keys);
  // Every id in `entity`'s arrays of ids (FieldSpec::references on kArray) exists, else Kong's 400.
  std::optional<HttpResponse> CheckArrayReferences(const EntityDescriptor& kind, const Message& entity);
  // Kong's 400 "referenced by others" when an array of ids of another entity still lists `id`.
  std::optional<HttpResponse> CheckNotListed(const EntityDescriptor& kind, absl::string_view id);

  Store& store_;
  const EntityRegistry& kinds_;
  const HttpRequest& request_;
};

Outcome Handler::Dispatch(const EntityDescriptor& kind, const std::vector<std::string>& seg) {
  const std::string& method = request_.method;
  if (seg.size() == 1) {
    if (method == "GET") return {List(kind, nullptr)};
    if (method == "POST") return Write(kind, WriteKind::kCreate, "", nullptr, nullptr);
    return {MethodNotAllowed()};
  }
  const SubPath sub = Classify(kinds_, kind, seg);
  absl::StatusOr<EntityPtr> found = Find(kind, seg[1]);
  if (std::optional<std::string> corrupt = CorruptRowId(found.status())) {
    if (sub.shape == SubPath::kSelf) return OnCorruptRow(kind, seg[1], *corrupt);
    return {sub.shape == SubPath::kNone ? NotFound() : CorruptEntity(kind, *corrupt)};
  }
  if (!found.ok() && !absl::IsNotFound(found.status())) return {Unexpected(found.status())};
  switch (sub.shape) {
    case SubPath::kSelf:
      return OnEntity(kind, seg[1], found);
    case SubPath::kChildren:
      if (!found.ok()) return {NotFound()};
      return OnChildren(sub, seg, kind.Id(**found));
    case SubPath::kParent:
      if (method == "DELETE" || method == "POST") return {MethodNotAllowed()};
      if (method != "GET" && method != "PATCH" && method != "PUT") return {MethodNotAllowed()};
      if (!found.ok()) return {NotFound()};
      return OnParent(sub, kind, **found);
    case SubPath::kNone:
      break;
  }
  return {NotFound()};
}

absl::StatusOr<EntityPtr> Handler::Find(const EntityDescriptor& kind, absl::string_view key) {
  if (IsUuid(key)) return store_.GetEntity(kind, absl::AsciiStrToLower(key));
  if (kind.endpoint_key().empty() || !kind.endpoint_key_scope().empty()) {
    return absl::NotFoundError("not a UUID, and the kind has no endpoint key unique in the kind");
  }
  return store_.GetEntityByField(kind, kind.endpoint_key(), key);
}

absl::StatusOr<EntityPtr> Handler::FindChild(const EntityDescriptor& kind, absl::string_view key,
                                             const ForcedParent& parent) {
  if (IsUuid(key) || kind.endpoint_key_scope() != parent.field->name) return Find(kind, key);
  // The key is unique under its parent: look the pair up by the cache key they form.
  EntityPtr probe = kind.New();
  kind.SetText(probe.get(), *parent.field, parent.id);
  kind.SetText(probe.get(), *kind.field(kind.endpoint_key()), std::string(key));
  return store_.GetEntityByField(kind, "cache_key", kind.CacheKey(*probe));
}

Outcome Handler::OnEntity(const EntityDescriptor& kind, absl::string_view key, absl::StatusOr<EntityPtr>& found) {
  const std::string& method = request_.method;
  const Message* existing = found.ok() ? found->get() : nullptr;
  if (method == "GET") return {existing ? JsonResponse(200, ToJson(kind, *existing)) : NotFound()};
  if (method == "PATCH") {
    if (!existing) return {NotFound()};
    return Write(kind, WriteKind::kPatch, key, existing, nullptr);
  }
  if (method == "PUT") return Write(kind, WriteKind::kReplace, key, existing, nullptr);
  if (method == "DELETE") return existing ? Delete(kind, kind.Id(*existing)) : Outcome{NoContent()};
  return {MethodNotAllowed()};
}

Outcome Handler::OnChildren(const SubPath& sub, const std::vector<std::string>& seg, const std::string& parent_id) {
  const std::string& method = request_.method;
  const EntityDescriptor& child_kind = *sub.kind;
  const ForcedParent parent{sub.field, parent_id};
  if (seg.size() == 3) {
    if (method == "GET") return {List(child_kind, &parent)};
    if (method == "POST") return Write(child_kind, WriteKind::kCreate, "", nullptr, &parent);
    return {MethodNotAllowed()};
  }
  const bool scoped = child_kind.endpoint_key_scope() == sub.field->name;
  if (scoped && seg[3] == "all") {
    // Kong's /upstreams/{u}/targets/all: every target of the upstream, as a list.
    return {method == "GET" ? List(child_kind, &parent) : MethodNotAllowed()};
  }
  absl::StatusOr<EntityPtr> child = FindChild(child_kind, seg[3], parent);
  // Whose child a corrupt row is cannot be told here: it is repaired at /{kinds}/{id}.
  if (std::optional<std::string> corrupt = CorruptRowId(child.status())) return {CorruptEntity(child_kind, *corrupt)};
  if (!child.ok() && !absl::IsNotFound(child.status())) return {Unexpected(child.status())};
  const Message* existing = child.ok() ? child->get() : nullptr;
  if (existing && child_kind.Text(*existing, *sub.field) != parent_id) {
    return {IsReadOrWrite(method) ? NotFound() : MethodNotAllowed()};
  }
  if (method == "GET") return {existing ? JsonResponse(200, ToJson(child_kind, *existing)) : NotFound()};
  if (method == "PATCH") {
    if (!existing) return {NotFound()};
    return Write(child_kind, WriteKind::kPatch, seg[3], existing, &parent);
  }
  // Kong's target endpoints answer 404 for a target the upstream does not have.
  if (scoped && !existing && (method == "PUT" || method == "DELETE")) return {NotFound()};
  if (method == "PUT") return Write(child_kind, WriteKind::kReplace, seg[3], existing, &parent);
  if (method == "DELETE") return existing ? Delete(child_kind, child_kind.Id(*existing)) : Outcome{NoContent()};
  return {MethodNotAllowed()};
}

Outcome Handler::OnParent(const SubPath& sub, const EntityDescriptor& kind, const Message& entity) {
  std::optional<std::string> parent_id = kind.Text(entity, *sub.field);
  if (!parent_id) return {NotFound()};
  const EntityDescriptor& parent_kind = *sub.kind;
  absl::StatusOr<EntityPtr> parent = store_.GetEntity(parent_kind, *parent_id);
  if (std::optional<std::string> corrupt = CorruptRowId(parent.status())) {
    return {CorruptEntity(parent_kind, *corrupt)};
  }
  if (!parent.ok()) return {absl::IsNotFound(parent.status()) ? NotFound() : Unexpected(parent.status())};
  if (request_.method == "GET") return {JsonResponse(200, ToJson(parent_kind, **parent))};
  const WriteKind write = request_.method == "PATCH" ? WriteKind::kPatch : WriteKind::kReplace;
  return Write(parent_kind, write, *parent_id, parent->get(), nullptr);
}

HttpResponse Handler::List(const EntityDescriptor& kind, const ForcedParent* parent) {
  const cp::QueryParams params = ParseQuery(request_.query);
  cp::PageArguments page;
  if (std::optional<HttpResponse> bad = cp::ParsePageArguments(params, &page)) return *std::move(bad);
  ListQuery query;
  query.size = page.size;
  query.after_id = page.after_id;
  if (parent) {
    query.parent_field = parent->field->name;
    query.parent_id = parent->id;
  }
  std::string next_suffix = page.next_suffix;  // the other query arguments, repeated in `next`
  if (const std::string* tags = cp::QueryParam(params, "tags")) {
    const bool has_and = absl::StrContains(*tags, ','), has_or = absl::StrContains(*tags, '/');
    auto invalid = [](absl::string_view why) {
      HttpResponse r = KongError(400, 11, "invalid options", absl::StrCat("invalid option (tags: ", why, ")"), nullptr);
      json body = json::parse(r.body);
      body["options"] = {{"tags", std::string(why)}};
      return JsonResponse(400, body);
    };
    // Stored tags are UTF-8 (the validator checks every string), so a query tag that is not
    // could match nothing: refused rather than echoed.
    if (!IsValidUtf8(*tags)) return invalid("expected valid UTF-8");
    if (has_and && has_or) return invalid("invalid filter syntax");
    query.tags = absl::StrSplit(*tags, has_or ? '/' : ',', absl::SkipEmpty());
    query.tags_any = has_or;
    if (query.tags.size() > static_cast<size_t>(kMaxQueryTags)) return invalid("cannot query more than 5 tags");
    absl::StrAppend(&next_suffix, "&tags=", PercentEncode(*tags));
  }
  absl::StatusOr<ListPage<EntityPtr>> listed = store_.ListEntities(kind, query);
  if (!listed.ok()) {
    if (!absl::IsUnavailable(listed.status())) {  // Unexpected logs an unavailable datastore
      PORTICO_LOG(kError, "admin", "list ", kind.name(), " failed: ", listed.status().ToString());
    }
    return Unexpected(listed.status());
  }
  json data = json::array();
  for (const EntityPtr& e : listed->items) data.push_back(ToJson(kind, *e));
  const std::string last_id = listed->items.empty() ? "" : kind.Id(*listed->items.back());
  return JsonResponse(200, cp::ListBody(std::move(data), request_.path, listed->has_more, last_id, next_suffix));
}

std::optional<HttpResponse> Handler::ResolveReference(const FieldSpec& fk, json* body) {
  auto it = body->find(fk.name);
  if (it == body->end() || !it->is_object() || it->contains("id")) return std::nullopt;
  const EntityDescriptor* parent_kind = kinds_.Find(fk.references);
  if (parent_kind == nullptr || parent_kind->endpoint_key().empty()) return std::nullopt;
  const std::string& key_field = parent_kind->endpoint_key();
  auto key = it->find(key_field);
  if (key == it->end() || !key->is_string()) return std::nullopt;
  const std::string value = key->get<std::string>();
  absl::StatusOr<EntityPtr> parent = store_.GetEntityByField(*parent_kind, key_field, value);
  if (std::optional<std::string> corrupt = CorruptRowId(parent.status())) {
    return CorruptEntity(*parent_kind, *corrupt);  // repair the referenced entity first
  }
  if (!parent.ok()) return absl::IsNotFound(parent.status()) ? ForeignKeyUnresolved(fk, key_field, value) : Unexpected(parent.status());
  *it = json{{"id", parent_kind->Id(**parent)}};
  return std::nullopt;
}

HttpResponse Handler::StoreError(const EntityDescriptor& kind, const absl::Status& status, const Message& entity) {
  const std::string subject = StoreConflictSubject(status);
  switch (GetStoreConflict(status)) {
    case StoreConflict::kUniqueName: {
      if (subject == "cache_key" && kind.has_cache_key()) {
        // Kong: UNIQUE violation detected on '{consumer=null,name="x",route={id="..."},service=null}'
        std::vector<std::string> parts;
        json fields = json::object();
        for (const FieldSpec* f : kind.cache_key_fields()) {
          const std::optional<std::string> value = kind.Text(entity, *f);
          const bool fk = f->type == FieldType::kForeignKey;
          parts.push_back(absl::StrCat(f->name, "=", !value ? "null" : fk ? LuaKey("id", *value) : absl::StrCat("\"", *value, "\"")));
          fields[f->name] = !value ? json(nullptr) : fk ? json{{"id", *value}} : json(*value);
        }
        return KongError(409, 5, "unique constraint violation",
                         absl::StrCat("UNIQUE violation detected on '{", absl::StrJoin(parts, ","), "}'"), fields);
      }
      const FieldSpec* field = kind.field(subject);
      if (field == nullptr && !kind.unique_fields().empty()) field = kind.unique_fields().front();
      if (field == nullptr) break;
      const std::string value = kind.Text(entity, *field).value_or("");
      return KongError(409, 5, "unique constraint violation",
                       absl::StrCat("UNIQUE violation detected on '", LuaKey(field->name, value), "'"),
                       json{{field->name, value}});
    }
    case StoreConflict::kPrimaryKey: {
      const std::string id = kind.Id(entity);
      return KongError(400, 3, "primary key violation",
                       absl::StrCat("primary key violation on key '", LuaKey("id", id), "'"), json{{"id", id}});
    }
    case StoreConflict::kForeignKeyMissing: {
      const FieldSpec* fk = kind.field(subject);
      if (fk == nullptr && !kind.stored_foreign_keys().empty()) fk = kind.stored_foreign_keys().front();
      if (fk == nullptr) break;
      return ForeignKeyMissing(*fk, "id", kind.Text(entity, *fk).value_or(""));
    }
    case StoreConflict::kReferenced:
      return Referenced(subject, kind);
    case StoreConflict::kNone:
      break;
  }
  if (absl::IsNotFound(status)) return NotFound();
  if (absl::IsInvalidArgument(status)) {
    // A key column the datastore cannot hold (PostgreSQL: text with a NUL character).
    auto has_nul = [](absl::string_view v) { return v.find('\0') != absl::string_view::npos; };
    FieldErrors errors;
    const char kNul[] = "must not contain a NUL character";
    if (has_nul(kind.Id(entity))) errors.Add("id", kNul);
    for (const std::vector<const FieldSpec*>& fields : {kind.unique_fields(), kind.stored_foreign_keys()}) {
      for (const FieldSpec* f : fields) {
        if (std::optional<std::string> v = kind.Text(entity, *f); v && has_nul(*v)) errors.Add(f->name, kNul);
      }
    }
    for (const std::string& tag : kind.Tags(entity)) {
      if (has_nul(tag)) {
        errors.Add("tags", kNul);
        break;
      }
    }
    if (!errors.empty()) return SchemaViolation(errors);
  }
  // Unavailable is logged where the 503 is made; Aborted is a stale attempt the caller runs again.
  if (!absl::IsUnavailable(status) && !absl::IsAborted(status)) {
    PORTICO_LOG(kError, "admin", "store write failed: ", status.ToString());
  }
  return Unexpected(status);
}

HttpResponse Handler::Validate(const EntityDescriptor& kind) {
  if (request_.method != "POST") return MethodNotAllowed();
  return Write(kind, WriteKind::kCreate, "", nullptr, nullptr, nullptr, /*validate_only=*/true).response;
}

Outcome Handler::Write(const EntityDescriptor& kind, WriteKind write, absl::string_view key, const Message* existing,
                       const ForcedParent* parent, const std::string* corrupt_id, bool validate_only) {
  // A URL key that is neither an id nor an endpoint key names nothing.
  if (write == WriteKind::kReplace && !IsUuid(key) && kind.endpoint_key().empty()) return {NotFound()};
  DecodedBody body = DecodeBody(request_, [&kind](absl::string_view field) {
    return !kind.child_keys_field().empty() && field == kind.child_keys_field() ? FieldKind::kArray
                                                                               : FormFieldKind(kind, field);
  });
  if (body.error_status != 0) return {cp::Message(body.error_status, body.error_message)};
  FieldErrors errors;
  const std::optional<std::vector<std::string>> child_keys = TakeChildKeys(kind, &body.value, &errors);
  if (parent) body.value[parent->field->name] = json{{"id", parent->id}};
  for (const FieldSpec* fk : kind.stored_foreign_keys()) {
    if (std::optional<HttpResponse> error = ResolveReference(*fk, &body.value)) return {*std::move(error)};
  }

  EntityPtr entity = write == WriteKind::kPatch ? kind.New() : kind.NewDefault();
  if (write == WriteKind::kPatch) entity->CopyFrom(*existing);
  ApplyEntityJson(kind, body.value, entity.get(), &errors);
  if (write != WriteKind::kCreate) {
    // The URL names the entity: its id stays, and a key that is not a UUID becomes the
    // endpoint key (Kong's upsert by endpoint key). Timestamps are the store's business.
    if (existing) {
      kind.SetId(entity.get(), kind.Id(*existing));
    } else if (corrupt_id) {
      kind.SetId(entity.get(), *corrupt_id);
    } else if (IsUuid(key)) {
      kind.SetId(entity.get(), absl::AsciiStrToLower(key));
    } else {
      kind.SetId(entity.get(), NewUuid());
    }
    if (write == WriteKind::kReplace && !IsUuid(key)) {
      kind.SetText(entity.get(), *kind.field(kind.endpoint_key()), std::string(key));
    }
    kind.SetCreatedAt(entity.get(), existing ? kind.CreatedAt(*existing) : 0);
  }
  if (errors.empty()) kind.Normalize(entity.get(), &errors);  // e.g. a plugin's config defaults
  // Field rules are reported together with type errors; entity-level rules (which combine
  // several fields) only when every field is valid, as Kong does.
  const FieldErrors validation = kind.Validate(*entity);
  bool field_errors = !errors.empty();
  for (const auto& [path, message] : validation.errors()) field_errors |= path != FieldErrors::kEntity;
  for (const auto& [path, message] : validation.errors()) {
    if (path == FieldErrors::kEntity && field_errors) continue;
    errors.Add(path, message);
  }
  if (!errors.empty()) return {cp::SchemaViolation(errors)};
  if (std::optional<HttpResponse> missing = CheckArrayReferences(kind, *entity)) return {*std::move(missing)};
  if (validate_only) return {JsonResponse(200, json{{"message", "schema validation successful"}})};

  const WriteMode mode = write == WriteKind::kCreate  ? WriteMode::kInsert
                         : write == WriteKind::kPatch ? WriteMode::kUpdate
                                                      : WriteMode::kUpsert;
  if (child_keys.has_value()) {
    return WriteWithChildren(kind, *entity, mode, write == WriteKind::kCreate, *child_keys);
  }
  absl::StatusOr<EntityPtr> stored = store_.WriteEntity(kind, *entity, mode);
  if (!stored.ok()) return {StoreError(kind, stored.status(), *entity)};
  return {JsonResponse(write == WriteKind::kCreate ? 201 : 200, ToJson(kind, **stored)), true};
}

json Handler::ToJson(const EntityDescriptor& kind, const Message& entity) {
  json out = EntityToJson(kind, entity);
  std::optional<EntityRegistry::Reference> ref = ChildKeysReference(kind);
  if (!ref) return out;
  json keys = json::array();
  absl::StatusOr<std::vector<EntityPtr>> children = Children(*ref, kind.Id(entity));
  if (!children.ok()) {
    // Shown as unknown (null), never as an empty list.
    PORTICO_LOG(kError, "admin", "listing the ", ref->kind->name(), " of ", kind.name(), " ", kind.Id(entity),
                " failed: ", children.status().ToString());
    keys = nullptr;
  } else {
    std::vector<std::string> names;
    const FieldSpec& key_field = *ref->kind->field(ref->kind->endpoint_key());
    for (const EntityPtr& child : *children) names.push_back(ref->kind->Text(*child, key_field).value_or(""));
    std::sort(names.begin(), names.end());
    for (std::string& name : names) keys.push_back(std::move(name));
  }
  out[kind.child_keys_field()] = std::move(keys);
  return out;
}

std::optional<EntityRegistry::Reference> Handler::ChildKeysReference(const EntityDescriptor& kind) const {
  if (kind.child_keys_kind().empty()) return std::nullopt;
  for (const EntityRegistry::Reference& ref : kinds_.ReferencesTo(kind)) {
    if (ref.kind->name() == kind.child_keys_kind()) return ref;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<EntityPtr>> Handler::Children(const EntityRegistry::Reference& ref,
                                                         const std::string& parent_id) {
  std::vector<EntityPtr> out;
  ListQuery query;
  query.size = cp::kMaxPageSize;
  query.parent_field = ref.field->name;
  query.parent_id = parent_id;
  while (true) {
    absl::StatusOr<ListPage<EntityPtr>> page = store_.ListEntities(*ref.kind, query);
    if (!page.ok()) return page.status();
    for (EntityPtr& e : page->items) out.push_back(std::move(e));
    if (!page->has_more || out.empty()) break;
    query.after_id = ref.kind->Id(*out.back());
  }
  return out;
}

std::optional<std::vector<std::string>> Handler::TakeChildKeys(const EntityDescriptor& kind, json* body,
                                                               FieldErrors* errors) {
  const std::string& field = kind.child_keys_field();
  if (field.empty() || !body->is_object()) return std::nullopt;
  auto it = body->find(field);
  if (it == body->end()) return std::nullopt;
  const json value = std::move(*it);
  body->erase(it);
  std::vector<std::string> keys;
  if (value.is_null()) return keys;  // Kong: null removes every child
  if (!value.is_array()) {
    errors->Add(field, "expected an array");
    return keys;
  }
  std::optional<EntityRegistry::Reference> ref = ChildKeysReference(kind);
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string path = absl::StrCat(field, ".", i + 1);
    if (!value[i].is_string()) {
      errors->Add(path, "expected a string");
      continue;
    }
    // Each name as the child kind normalizes and checks it (its own field rules only).
    EntityPtr child = ref->kind->NewDefault();
    ref->kind->SetText(child.get(), *ref->kind->field(ref->kind->endpoint_key()), value[i].get<std::string>());
    FieldErrors child_errors;
    ref->kind->Normalize(child.get(), &child_errors);
    const FieldErrors child_rules = ref->kind->Validate(*child);
    for (const auto& [child_path, message] : child_rules.errors()) {
      if (child_path == ref->kind->endpoint_key()) errors->Add(path, message);
    }
    keys.push_back(ref->kind->Text(*child, *ref->kind->field(ref->kind->endpoint_key())).value_or(""));
  }
  return keys;
}

std::optional<HttpResponse> Handler::CheckChildKeys(const EntityRegistry::Reference& ref,
                                                    const std::vector<std::string>& keys,
                                                    const std::string& parent_id) {
  const std::string& field = kinds_.Find(ref.field->references)->child_keys_field();
  std::set<std::string> seen;
  for (const std::string& key : keys) {
    FieldErrors errors;
    if (!seen.insert(key).second) {
      errors.Add(field, absl::StrCat(key, " is duplicated"));
      return cp::SchemaViolation(errors);
    }
    absl::StatusOr<EntityPtr> holder = store_.GetEntityByField(*ref.kind, ref.kind->endpoint_key(), key);
    if (std::optional<std::string> corrupt = CorruptRowId(holder.status())) return CorruptEntity(*ref.kind, *corrupt);
    if (absl::IsNotFound(holder.status())) continue;
    if (!holder.ok()) return Unexpected(holder.status());
    const std::string holder_parent = ref.kind->Text(**holder, *ref.field).value_or("");
    if (holder_parent != parent_id) {
      errors.Add(field, absl::StrCat(key, " already associated with existing certificate '", holder_parent, "'"));
      return cp::SchemaViolation(errors);
    }
  }
  return std::nullopt;
}

Outcome Handler::WriteWithChildren(const EntityDescriptor& kind, const Message& input, WriteMode mode, bool created,
                                   const std::vector<std::string>& keys) {
  const EntityRegistry::Reference ref = *ChildKeysReference(kind);
  EntityPtr entity = kind.New();
  entity->CopyFrom(input);
  if (kind.Id(*entity).empty()) kind.SetId(entity.get(), NewUuid());
  const std::string id = kind.Id(*entity);
  if (std::optional<HttpResponse> refused = CheckChildKeys(ref, keys, created ? std::string() : id)) {
    return {*std::move(refused)};
  }
  std::vector<Store::BatchStep> steps = {{.kind = &kind, .entity = entity.get(), .mode = mode}};
  const FieldSpec& key_field = *ref.kind->field(ref.kind->endpoint_key());
  std::set<std::string> wanted(keys.begin(), keys.end());
  std::set<std::string> kept;
  if (!created) {
    absl::StatusOr<std::vector<EntityPtr>> current = Children(ref, id);
    if (!current.ok()) {
      if (!absl::IsUnavailable(current.status())) {
        PORTICO_LOG(kError, "admin", "listing the ", ref.kind->name(), " of ", id, " failed: ", current.status().ToString());
      }
      return {Unexpected(current.status())};
    }
    for (const EntityPtr& child : *current) {
      const std::string name = ref.kind->Text(*child, key_field).value_or("");
      if (wanted.count(name) != 0) {
        kept.insert(name);
      } else {
        steps.push_back({.kind = ref.kind, .entity = nullptr, .mode = WriteMode::kUpsert, .delete_id = ref.kind->Id(*child)});
      }
    }
  }
  std::vector<EntityPtr> new_children;
  for (const std::string& name : wanted) {
    if (kept.count(name) != 0) continue;
    EntityPtr child = ref.kind->NewDefault();
    ref.kind->SetText(child.get(), key_field, name);
    ref.kind->SetText(child.get(), *ref.field, id);
    new_children.push_back(std::move(child));
    steps.push_back({.kind = ref.kind, .entity = new_children.back().get(), .mode = WriteMode::kInsert});
  }
  absl::StatusOr<std::vector<EntityPtr>> stored = store_.WriteBatch(steps);
  if (!stored.ok()) return {StoreError(kind, stored.status(), *entity)};
  json out = EntityToJson(kind, *stored->front());
  out[kind.child_keys_field()] = json(std::vector<std::string>(wanted.begin(), wanted.end()));
  return {JsonResponse(created ? 201 : 200, out), true};
}

std::optional<HttpResponse> Handler::CheckArrayReferences(const EntityDescriptor& kind, const Message& entity) {
  json shown;
  for (const FieldSpec& field : kind.fields()) {
    if (field.type != FieldType::kArray || field.references.empty()) continue;
    if (shown.is_null()) shown = EntityToJson(kind, entity);
    const json& ids = shown[field.name];
    if (!ids.is_array()) continue;
    const EntityDescriptor* referenced = kinds_.Find(field.references);
    for (const json& id : ids) {
      if (!id.is_string()) continue;
      absl::StatusOr<EntityPtr> found = store_.GetEntity(*referenced, id.get<std::string>());
      if (absl::IsNotFound(found.status())) return ForeignKeyMissing(field, "id", id.get<std::string>());
      if (!found.ok() && !CorruptRowId(found.status())) return Unexpected(found.status());
    }
  }
  return std::nullopt;
}

std::optional<HttpResponse> Handler::CheckNotListed(const EntityDescriptor& kind, absl::string_view id) {
  for (const EntityRegistry::Reference& ref : kinds_.ArrayReferencesTo(kind)) {
    ListQuery query;
    query.size = cp::kMaxPageSize;
    while (true) {
      absl::StatusOr<ListPage<EntityPtr>> page = store_.ListEntities(*ref.kind, query);
      if (!page.ok()) {
        if (!absl::IsUnavailable(page.status())) {
          PORTICO_LOG(kError, "admin", "list ", ref.kind->name(), " failed: ", page.status().ToString());
        }
        return Unexpected(page.status());
      }
      for (const EntityPtr& e : page->items) {
        const json ids = EntityToJson(*ref.kind, *e)[ref.field->name];
        if (!ids.is_array() || std::find(ids.begin(), ids.end(), json(std::string(id))) == ids.end()) continue;
        // Kong: "ca certificate <id> is still referenced by services (id = <id>)".
        std::string singular = absl::StrReplaceAll(kind.name(), {{"_", " "}});
        if (absl::EndsWith(singular, "s")) singular.pop_back();
        return KongError(400, 19, "referenced by others",
                         absl::StrCat(singular, " ", id, " is still referenced by ", ref.kind->name(), " (id = ",
                                      ref.kind->Id(*e), ")"),
                         nullptr);
      }
      if (!page->has_more || page->items.empty()) break;
      query.after_id = ref.kind->Id(*page->items.back());
    }
  }
  return std::nullopt;
}

Outcome Handler::OnCorruptRow(const EntityDescriptor& kind, absl::string_view key, const std::string& id) {
  const std::string& method = request_.method;
  if (method == "GET" || method == "PATCH") return {CorruptEntity(kind, id)};
  if (method != "DELETE" && method != "PUT") return {MethodNotAllowed()};
  Outcome outcome =
      method == "DELETE" ? Delete(kind, id) : Write(kind, WriteKind::kReplace, key, nullptr, nullptr, &id);
  if (outcome.committed) {
    PORTICO_LOG(kWarn, "admin", method == "DELETE" ? "deleted" : "replaced", " the corrupt ", kind.name(), " row ",
                absl::CHexEscape(id));
  }
  return outcome;
}

Outcome Handler::Delete(const EntityDescriptor& kind, absl::string_view id) {
  if (std::optional<HttpResponse> listed = CheckNotListed(kind, id)) return {*std::move(listed)};
  absl::StatusOr<bool> deleted = store_.DeleteEntity(kind, id);
  if (!deleted.ok()) {
    if (GetStoreConflict(deleted.status()) == StoreConflict::kReferenced) {
      std::string child = StoreConflictSubject(deleted.status());
      if (child.empty()) {
        const auto refs = kinds_.ReferencesTo(kind);
        child = refs.empty() ? std::string("?") : refs.front().kind->name();
      }
      return {Referenced(child, kind)};
    }
    if (!absl::IsUnavailable(deleted.status()) && !absl::IsAborted(deleted.status())) {
      PORTICO_LOG(kError, "admin", "delete failed: ", deleted.status().ToString());
    }
    return {Unexpected(deleted.status())};
  }
  return {NoContent(), *deleted};
}

}  // namespace

std::optional<HttpResponse> EntityEndpoints::Handle(const HttpRequest& request, const std::vector<std::string>& segments,
                                                    bool* committed) {
  if (segments.size() == 3 && segments[0] == "schemas" && segments[2] == "validate") {
    const EntityDescriptor* kind = store_.kinds().Find(segments[1]);
    if (kind == nullptr) return request.method == "POST" ? NoEntityNamed(segments[1]) : MethodNotAllowed();
    return Handler(store_, request).Validate(*kind);
  }
  const EntityDescriptor* kind = store_.kinds().FindByAdminName(segments[0]);
  if (kind == nullptr || !kind->top_level_endpoints()) return std::nullopt;
  Outcome outcome = Handler(store_, request).Dispatch(*kind, segments);
  *committed = outcome.committed;
  return std::move(outcome.response);
}

}  // namespace portico::cp
