#include "control_plane/admin/admin_api.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/uuid.h"
#include "common/config/entity_json.h"
#include "common/config/utf8_fields.h"
#include "common/config/validate.h"
#include "common/metrics/metrics.h"
#include "control_plane/admin/request_decoding.h"
#include "control_plane/cluster_status.h"
#include "control_plane/store/store.h"
#include "nlohmann/json.hpp"

namespace portico {
namespace {

using config::v1::Route;
using config::v1::Service;
using nlohmann::json;

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr int kMaxQueryTags = 5;
constexpr int64_t kDataPlanePurgeDelay = 1209600;  // Kong's cluster_data_plane_purge_delay

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse JsonResponse(int status, const json& body) { return HttpResponse::Json(status, Dump(body)); }

HttpResponse Message(int status, absl::string_view message) {
  return JsonResponse(status, json{{"message", std::string(message)}});
}

HttpResponse NotFound() { return Message(404, "Not found"); }
HttpResponse MethodNotAllowed() { return Message(405, "Method not allowed"); }
HttpResponse Unexpected() { return Message(500, "An unexpected error occurred"); }

HttpResponse NoContent() {
  HttpResponse r;
  r.status = 204;
  return r;
}

// Kong's error body {"code","name","message","fields"}.
HttpResponse KongError(int http_status, int code, absl::string_view name, absl::string_view message,
                       json fields) {
  json body = {{"code", code}, {"name", std::string(name)}, {"message", std::string(message)}};
  if (!fields.is_null()) body["fields"] = std::move(fields);
  return JsonResponse(http_status, body);
}

HttpResponse SchemaViolation(const FieldErrors& errors) {
  return KongError(400, 2, "schema violation", errors.KongMessage(), FieldErrorsToJson(errors));
}

// Lua-table rendering of a key as Kong prints it: {name="foo"}.
std::string LuaKey(absl::string_view field, absl::string_view value) {
  return absl::StrCat("{", field, "=\"", value, "\"}");
}

HttpResponse ForeignKeyMissing(absl::string_view field, absl::string_view value) {
  return KongError(400, 4, "foreign key violation",
                   absl::StrCat("the foreign key '", LuaKey(field, value),
                                "' does not reference an existing 'services' entity."),
                   json{{"service", {{std::string(field), std::string(value)}}}});
}

HttpResponse Referenced() {
  return KongError(400, 4, "foreign key violation",
                   "an existing 'routes' entity references this 'services' entity",
                   json{{"@referenced_by", "routes"}});
}

// GET/PATCH of a row whose stored entity cannot be parsed: a 500 that names it and says how to
// repair it. `id` is printed C-escaped when it is not UTF-8.
HttpResponse CorruptEntity(absl::string_view plural, const std::string& id) {
  const std::string shown = IsValidUtf8(id) ? id : absl::CHexEscape(id);
  return Message(500, absl::StrCat("the ", plural, " entity '", shown,
                                   "' is stored corrupt and cannot be read (a string that is not UTF-8, "
                                   "or damaged bytes); delete it with DELETE /", plural, "/", shown,
                                   " or replace it with PUT /", plural, "/", shown));
}

const std::string* QueryParam(const std::vector<std::pair<std::string, std::string>>& params,
                              absl::string_view name) {
  for (const auto& [k, v] : params) {
    if (k == name) return &v;
  }
  return nullptr;
}

std::string EncodeOffset(absl::string_view last_id) {
  return absl::Base64Escape(Dump(json::array({std::string(last_id)})));
}

// Keyset cursor from `offset`; nullopt when malformed.
std::optional<std::string> DecodeOffset(absl::string_view offset) {
  std::string decoded;
  if (!absl::Base64Unescape(offset, &decoded)) return std::nullopt;
  json parsed = ParseJsonCapped(decoded);
  if (parsed.is_discarded() || !parsed.is_array() || parsed.size() != 1 || !parsed[0].is_string()) {
    return std::nullopt;
  }
  return parsed[0].get<std::string>();
}

// Per-kind operations for the generic CRUD handlers.
struct ServiceKind {
  using Entity = Service;
  static constexpr const char* kPlural = "services";
  static FieldKind FieldKindOf(absl::string_view f) { return ServiceFieldKind(f); }
  static Entity Default() { return DefaultService(); }
  static void Apply(const json& b, Entity* e, FieldErrors* errs) { ApplyServiceJson(b, e, errs); }
  static FieldErrors Validate(const Entity& e) { return ValidateServiceFields(e); }
  static json ToJson(const Entity& e) { return ServiceToJson(e); }
  static absl::StatusOr<Entity> Get(Store& s, absl::string_view id) { return s.GetService(id); }
  static absl::StatusOr<Entity> GetByName(Store& s, absl::string_view n) { return s.GetServiceByName(n); }
  static absl::StatusOr<Entity> Insert(Store& s, Entity e) { return s.InsertService(std::move(e)); }
  static absl::StatusOr<Entity> Update(Store& s, Entity e) { return s.UpdateService(std::move(e)); }
  static absl::StatusOr<Entity> Upsert(Store& s, Entity e) { return s.UpsertService(std::move(e)); }
  static absl::StatusOr<bool> Delete(Store& s, absl::string_view id) { return s.DeleteService(id); }
};

struct RouteKind {
  using Entity = Route;
  static constexpr const char* kPlural = "routes";
  static FieldKind FieldKindOf(absl::string_view f) { return RouteFieldKind(f); }
  static Entity Default() { return DefaultRoute(); }
  static void Apply(const json& b, Entity* e, FieldErrors* errs) { ApplyRouteJson(b, e, errs); }
  static FieldErrors Validate(const Entity& e) { return ValidateRouteFields(e); }
  static json ToJson(const Entity& e) { return RouteToJson(e); }
  static absl::StatusOr<Entity> Get(Store& s, absl::string_view id) { return s.GetRoute(id); }
  static absl::StatusOr<Entity> GetByName(Store& s, absl::string_view n) { return s.GetRouteByName(n); }
  static absl::StatusOr<Entity> Insert(Store& s, Entity e) { return s.InsertRoute(std::move(e)); }
  static absl::StatusOr<Entity> Update(Store& s, Entity e) { return s.UpdateRoute(std::move(e)); }
  static absl::StatusOr<Entity> Upsert(Store& s, Entity e) { return s.UpsertRoute(std::move(e)); }
  static absl::StatusOr<bool> Delete(Store& s, absl::string_view id) { return s.DeleteRoute(id); }
};

enum class WriteKind { kCreate, kPatch, kReplace };

// Kong's `size` and `offset` list arguments.
struct PageArguments {
  int size = kDefaultPageSize;
  std::string after_id;     // decoded offset: list entries after this id
  std::string next_suffix;  // "&size=N" when size was given, repeated in `next`
};

// Fills `page` from the query, or returns Kong's 400 for a bad size or offset.
std::optional<HttpResponse> ParsePageArguments(const std::vector<std::pair<std::string, std::string>>& params,
                                               PageArguments* page) {
  if (const std::string* size = QueryParam(params, "size")) {
    int parsed = 0;
    if (!absl::SimpleAtoi(*size, &parsed)) {
      return KongError(400, 9, "invalid size", "size must be a number", nullptr);
    }
    if (parsed < 1 || parsed > kMaxPageSize) {
      return KongError(400, 9, "invalid size",
                       absl::StrCat("size must be an integer between 1 and ", kMaxPageSize), nullptr);
    }
    page->size = parsed;
    page->next_suffix = absl::StrCat("&size=", parsed);
  }
  if (const std::string* offset = QueryParam(params, "offset")) {
    std::optional<std::string> after = DecodeOffset(*offset);
    if (!after) {
      return KongError(400, 7, "invalid offset",
                       absl::StrCat("'", *offset, "' is not a valid offset: bad base64 encoding"), nullptr);
    }
    page->after_id = *after;
  }
  return std::nullopt;
}

// A list body: data, and `offset`/`next` when more entries follow `last_id`.
json ListBody(json data, const std::string& path, bool has_more, absl::string_view last_id,
              absl::string_view next_suffix) {
  json body = {{"data", std::move(data)}, {"next", nullptr}};
  if (has_more) {
    std::string offset = EncodeOffset(last_id);
    body["next"] = absl::StrCat(path, "?offset=", PercentEncode(offset), next_suffix);
    body["offset"] = std::move(offset);
  }
  return body;
}

}  // namespace

class AdminApi::Impl {
 public:
  Impl(Store* store, const DataPlaneStatusSource* data_planes, AdminOptions options,
       std::function<void()> on_config_change, const Clock& clock)
      : store_(*store),
        data_planes_(data_planes),
        options_(std::move(options)),
        on_config_change_(std::move(on_config_change)),
        clock_(clock) {}

  HttpResponse Handle(const HttpRequest& request);

 private:
  // A finished write: the response and whether a commit happened.
  struct Outcome {
    HttpResponse response;
    bool committed = false;
  };

  HttpResponse Dispatch(const HttpRequest& request, const std::vector<std::string>& segments,
                        bool* committed);

  // Name-or-id lookup: a UUID key is an id, anything else a name. NotFound when absent.
  template <typename K>
  absl::StatusOr<typename K::Entity> Find(absl::string_view key) {
    if (IsUuid(key)) return K::Get(store_, absl::AsciiStrToLower(key));
    return K::GetByName(store_, key);
  }

  template <typename K>
  HttpResponse List(const HttpRequest& request, const std::optional<std::string>& service_id);

  // `corrupt_id`: the URL names a corrupt row (no `existing`); a replace keeps its id.
  template <typename K>
  Outcome Write(const HttpRequest& request, WriteKind kind, absl::string_view key,
                const std::optional<typename K::Entity>& existing, const std::string* forced_service_id,
                const std::string* corrupt_id = nullptr);

  template <typename K>
  Outcome Delete(absl::string_view id);

  // /{kind}/{key} when `key` names a corrupt row (id `id`): DELETE and PUT repair it, GET and
  // PATCH answer CorruptEntity.
  template <typename K>
  Outcome OnCorruptRow(const HttpRequest& request, absl::string_view key, const std::string& id);

  // Replaces {"service":{"name":"x"}} by {"service":{"id":...}}; an error response if unknown.
  std::optional<HttpResponse> ResolveServiceReference(json* body);

  template <typename K>
  HttpResponse StoreError(const absl::Status& status, const typename K::Entity& entity);

  HttpResponse Root();
  HttpResponse Status();
  HttpResponse DataPlanes(const HttpRequest& request);
  HttpResponse ClusterStatus();
  HttpResponse Metrics();

  Store& store_;
  const DataPlaneStatusSource* data_planes_;
  const AdminOptions options_;
  const std::function<void()> on_config_change_;
  const Clock& clock_;
  std::mutex write_mu_;  // serializes the Admin API's read-modify-write sequences
};

HttpResponse AdminApi::Impl::Handle(const HttpRequest& request) {
  std::vector<std::string> segments;
  for (absl::string_view raw : absl::StrSplit(request.path, '/', absl::SkipEmpty())) {
    segments.push_back(PercentDecode(raw, false));
  }
  bool committed = false;
  HttpResponse response;
  if (request.method == "GET") {
    response = Dispatch(request, segments, &committed);
  } else {
    std::lock_guard<std::mutex> lock(write_mu_);
    response = Dispatch(request, segments, &committed);
  }
  if (committed && on_config_change_) on_config_change_();
  return response;
}

HttpResponse AdminApi::Impl::Dispatch(const HttpRequest& request, const std::vector<std::string>& seg,
                                      bool* committed) {
  const std::string& method = request.method;
  const size_t n = seg.size();
  auto finish = [committed](Outcome outcome) {
    *committed = outcome.committed;
    return std::move(outcome.response);
  };

  if (n == 0) return method == "GET" ? Root() : MethodNotAllowed();
  if (seg[0] == "status" && n == 1) return method == "GET" ? Status() : MethodNotAllowed();
  if (seg[0] == "metrics" && n == 1 && options_.metrics_text) {
    return method == "GET" ? Metrics() : MethodNotAllowed();
  }
  if (seg[0] == "clustering" && n == 2) {
    if (seg[1] == "data-planes") return method == "GET" ? DataPlanes(request) : MethodNotAllowed();
    if (seg[1] == "status") return method == "GET" ? ClusterStatus() : MethodNotAllowed();
    return NotFound();
  }

  if (seg[0] == "services") {
    if (n == 1) {
      if (method == "GET") return List<ServiceKind>(request, std::nullopt);
      if (method == "POST") return finish(Write<ServiceKind>(request, WriteKind::kCreate, "", std::nullopt, nullptr));
      return MethodNotAllowed();
    }
    absl::StatusOr<Service> service = Find<ServiceKind>(seg[1]);
    const std::optional<std::string> corrupt_service = CorruptRowId(service.status());
    if (corrupt_service) {
      if (n == 2) return finish(OnCorruptRow<ServiceKind>(request, seg[1], *corrupt_service));
      return CorruptEntity(ServiceKind::kPlural, *corrupt_service);
    }
    if (!service.ok() && !absl::IsNotFound(service.status())) return Unexpected();
    if (n == 2) {
      if (method == "GET") return service.ok() ? JsonResponse(200, ServiceToJson(*service)) : NotFound();
      if (method == "PATCH") {
        if (!service.ok()) return NotFound();
        return finish(Write<ServiceKind>(request, WriteKind::kPatch, seg[1], *service, nullptr));
      }
      if (method == "PUT") {
        std::optional<Service> existing;
        if (service.ok()) existing = *service;
        return finish(Write<ServiceKind>(request, WriteKind::kReplace, seg[1], existing, nullptr));
      }
      if (method == "DELETE") return service.ok() ? finish(Delete<ServiceKind>(service->id())) : NoContent();
      return MethodNotAllowed();
    }
    if (seg[2] != "routes" || n > 4) return NotFound();
    if (!service.ok()) return NotFound();
    const std::string& service_id = service->id();
    if (n == 3) {
      if (method == "GET") return List<RouteKind>(request, service_id);
      if (method == "POST") {
        return finish(Write<RouteKind>(request, WriteKind::kCreate, "", std::nullopt, &service_id));
      }
      return MethodNotAllowed();
    }
    absl::StatusOr<Route> route = Find<RouteKind>(seg[3]);
    // Whose route a corrupt row is cannot be told here: it is repaired at /routes/{id}.
    if (std::optional<std::string> corrupt = CorruptRowId(route.status())) {
      return CorruptEntity(RouteKind::kPlural, *corrupt);
    }
    if (!route.ok() && !absl::IsNotFound(route.status())) return Unexpected();
    const bool belongs = route.ok() && route->has_service_id() && route->service_id() == service_id;
    if (route.ok() && !belongs) {
      return (method == "GET" || method == "PATCH" || method == "PUT" || method == "DELETE")
                 ? NotFound()
                 : MethodNotAllowed();
    }
    if (method == "GET") return route.ok() ? JsonResponse(200, RouteToJson(*route)) : NotFound();
    if (method == "PATCH") {
      if (!route.ok()) return NotFound();
      return finish(Write<RouteKind>(request, WriteKind::kPatch, seg[3], *route, &service_id));
    }
    if (method == "PUT") {
      std::optional<Route> existing;
      if (route.ok()) existing = *route;
      return finish(Write<RouteKind>(request, WriteKind::kReplace, seg[3], existing, &service_id));
    }
    if (method == "DELETE") return route.ok() ? finish(Delete<RouteKind>(route->id())) : NoContent();
    return MethodNotAllowed();
  }

  if (seg[0] == "routes") {
    if (n == 1) {
      if (method == "GET") return List<RouteKind>(request, std::nullopt);
      if (method == "POST") return finish(Write<RouteKind>(request, WriteKind::kCreate, "", std::nullopt, nullptr));
      return MethodNotAllowed();
    }
    absl::StatusOr<Route> route = Find<RouteKind>(seg[1]);
    if (std::optional<std::string> corrupt = CorruptRowId(route.status())) {
      if (n == 2) return finish(OnCorruptRow<RouteKind>(request, seg[1], *corrupt));
      return n == 3 && seg[2] == "service" ? CorruptEntity(RouteKind::kPlural, *corrupt) : NotFound();
    }
    if (!route.ok() && !absl::IsNotFound(route.status())) return Unexpected();
    if (n == 2) {
      if (method == "GET") return route.ok() ? JsonResponse(200, RouteToJson(*route)) : NotFound();
      if (method == "PATCH") {
        if (!route.ok()) return NotFound();
        return finish(Write<RouteKind>(request, WriteKind::kPatch, seg[1], *route, nullptr));
      }
      if (method == "PUT") {
        std::optional<Route> existing;
        if (route.ok()) existing = *route;
        return finish(Write<RouteKind>(request, WriteKind::kReplace, seg[1], existing, nullptr));
      }
      if (method == "DELETE") return route.ok() ? finish(Delete<RouteKind>(route->id())) : NoContent();
      return MethodNotAllowed();
    }
    if (n != 3 || seg[2] != "service") return NotFound();
    if (method == "DELETE" || method == "POST") return MethodNotAllowed();
    if (method != "GET" && method != "PATCH" && method != "PUT") return MethodNotAllowed();
    if (!route.ok() || !route->has_service_id()) return NotFound();
    absl::StatusOr<Service> service = store_.GetService(route->service_id());
    if (std::optional<std::string> corrupt = CorruptRowId(service.status())) {
      return CorruptEntity(ServiceKind::kPlural, *corrupt);
    }
    if (!service.ok()) return absl::IsNotFound(service.status()) ? NotFound() : Unexpected();
    if (method == "GET") return JsonResponse(200, ServiceToJson(*service));
    const WriteKind kind = method == "PATCH" ? WriteKind::kPatch : WriteKind::kReplace;
    return finish(Write<ServiceKind>(request, kind, service->id(), *service, nullptr));
  }
  return NotFound();
}

template <typename K>
HttpResponse AdminApi::Impl::List(const HttpRequest& request, const std::optional<std::string>& service_id) {
  auto params = ParseQuery(request.query);
  PageArguments page;
  if (std::optional<HttpResponse> bad = ParsePageArguments(params, &page)) return *std::move(bad);
  ListQuery query;
  query.size = page.size;
  query.after_id = page.after_id;
  std::string next_suffix = page.next_suffix;  // the other query arguments, repeated in `next`
  if (const std::string* tags = QueryParam(params, "tags")) {
    const bool has_and = absl::StrContains(*tags, ','), has_or = absl::StrContains(*tags, '/');
    auto invalid = [](absl::string_view why) {
      return KongError(400, 11, "invalid options", absl::StrCat("invalid option (tags: ", why, ")"), nullptr);
    };
    // Stored tags are UTF-8 (the validator checks every string), so a query tag that is not
    // could match nothing: refused rather than echoed.
    const char* syntax_error = !IsValidUtf8(*tags)       ? "expected valid UTF-8"
                               : (has_and && has_or) ? "invalid filter syntax"
                                                     : nullptr;
    if (syntax_error != nullptr) {
      HttpResponse r = invalid(syntax_error);
      json body = json::parse(r.body);
      body["options"] = {{"tags", syntax_error}};
      return JsonResponse(400, body);
    }
    query.tags = absl::StrSplit(*tags, has_or ? '/' : ',', absl::SkipEmpty());
    query.tags_any = has_or;
    if (query.tags.size() > static_cast<size_t>(kMaxQueryTags)) {
      HttpResponse r = invalid("cannot query more than 5 tags");
      json body = json::parse(r.body);
      body["options"] = {{"tags", "cannot query more than 5 tags"}};
      return JsonResponse(400, body);
    }
    absl::StrAppend(&next_suffix, "&tags=", PercentEncode(*tags));
  }

  json data = json::array();
  bool has_more = false;
  std::string last_id;
  if constexpr (std::is_same_v<K, ServiceKind>) {
    auto page = store_.ListServices(query);
    if (!page.ok()) return Unexpected();
    for (const auto& e : page->items) data.push_back(K::ToJson(e));
    has_more = page->has_more;
    if (!page->items.empty()) last_id = page->items.back().id();
  } else {
    auto page = service_id ? store_.ListRoutesOfService(*service_id, query) : store_.ListRoutes(query);
    if (!page.ok()) return Unexpected();
    for (const auto& e : page->items) data.push_back(K::ToJson(e));
    has_more = page->has_more;
    if (!page->items.empty()) last_id = page->items.back().id();
  }
  return JsonResponse(200, ListBody(std::move(data), request.path, has_more, last_id, next_suffix));
}

std::optional<HttpResponse> AdminApi::Impl::ResolveServiceReference(json* body) {
  auto it = body->find("service");
  if (it == body->end() || !it->is_object() || it->contains("id")) return std::nullopt;
  auto name = it->find("name");
  if (name == it->end() || !name->is_string()) return std::nullopt;
  const std::string service_name = name->get<std::string>();
  absl::StatusOr<Service> service = store_.GetServiceByName(service_name);
  if (std::optional<std::string> corrupt = CorruptRowId(service.status())) {
    return CorruptEntity(ServiceKind::kPlural, *corrupt);  // repair the service first
  }
  if (!service.ok()) {
    return absl::IsNotFound(service.status()) ? ForeignKeyMissing("name", service_name) : Unexpected();
  }
  *it = json{{"id", service->id()}};
  return std::nullopt;
}

template <typename K>
HttpResponse AdminApi::Impl::StoreError(const absl::Status& status, const typename K::Entity& entity) {
  switch (GetStoreConflict(status)) {
    case StoreConflict::kUniqueName:
      return KongError(409, 5, "unique constraint violation",
                       absl::StrCat("UNIQUE violation detected on '", LuaKey("name", entity.name()), "'"),
                       json{{"name", entity.name()}});
    case StoreConflict::kPrimaryKey:
      return KongError(400, 3, "primary key violation",
                       absl::StrCat("primary key violation on key '", LuaKey("id", entity.id()), "'"),
                       json{{"id", entity.id()}});
    case StoreConflict::kForeignKeyMissing:
      if constexpr (std::is_same_v<K, RouteKind>) return ForeignKeyMissing("id", entity.service_id());
      break;
    case StoreConflict::kReferenced:
      return Referenced();
    case StoreConflict::kNone:
      break;
  }
  if (absl::IsNotFound(status)) return NotFound();
  PORTICO_LOG(kError, "admin", "store write failed: ", status.ToString());
  return Unexpected();
}

template <typename K>
AdminApi::Impl::Outcome AdminApi::Impl::Write(const HttpRequest& request, WriteKind kind, absl::string_view key,
                                              const std::optional<typename K::Entity>& existing,
                                              const std::string* forced_service_id,
                                              const std::string* corrupt_id) {
  using Entity = typename K::Entity;
  DecodedBody body = DecodeBody(request, &K::FieldKindOf);
  if (body.error_status != 0) return {Message(body.error_status, body.error_message)};
  if constexpr (std::is_same_v<K, RouteKind>) {
    if (forced_service_id) body.value["service"] = json{{"id", *forced_service_id}};
    if (auto error = ResolveServiceReference(&body.value)) return {std::move(*error)};
  }

  Entity entity;
  if (kind == WriteKind::kPatch) {
    entity = *existing;
  } else {
    entity = K::Default();
  }
  FieldErrors errors;
  K::Apply(body.value, &entity, &errors);
  if (kind != WriteKind::kCreate) {
    // The URL names the entity: its id stays, and a name key becomes the name (Kong's upsert
    // by endpoint key). Timestamps are the store's business.
    if (existing) {
      entity.set_id(existing->id());
    } else if (corrupt_id) {
      entity.set_id(*corrupt_id);
    } else if (IsUuid(key)) {
      entity.set_id(absl::AsciiStrToLower(key));
    } else {
      entity.set_id(NewUuid());
    }
    if (kind == WriteKind::kReplace && !IsUuid(key)) entity.set_name(std::string(key));
    entity.set_created_at(existing ? existing->created_at() : 0);
  }
  // Field rules are reported together with type errors; entity-level rules (which combine
  // several fields) only when every field is valid, as Kong does.
  const FieldErrors validation = K::Validate(entity);
  bool field_errors = !errors.empty();
  for (const auto& [path, message] : validation.errors()) field_errors |= path != FieldErrors::kEntity;
  for (const auto& [path, message] : validation.errors()) {
    if (path == FieldErrors::kEntity && field_errors) continue;
    errors.Add(path, message);
  }
  if (!errors.empty()) return {SchemaViolation(errors)};

  absl::StatusOr<Entity> stored;
  switch (kind) {
    case WriteKind::kCreate: stored = K::Insert(store_, entity); break;
    case WriteKind::kPatch: stored = K::Update(store_, entity); break;
    case WriteKind::kReplace: stored = K::Upsert(store_, entity); break;
  }
  if (!stored.ok()) return {StoreError<K>(stored.status(), entity)};
  return {JsonResponse(kind == WriteKind::kCreate ? 201 : 200, K::ToJson(*stored)), true};
}

template <typename K>
AdminApi::Impl::Outcome AdminApi::Impl::OnCorruptRow(const HttpRequest& request, absl::string_view key,
                                                     const std::string& id) {
  const std::string& method = request.method;
  if (method == "GET" || method == "PATCH") return {CorruptEntity(K::kPlural, id)};
  if (method != "DELETE" && method != "PUT") return {MethodNotAllowed()};
  Outcome outcome = method == "DELETE"
                        ? Delete<K>(id)
                        : Write<K>(request, WriteKind::kReplace, key, std::nullopt, nullptr, &id);
  if (outcome.committed) {
    PORTICO_LOG(kWarn, "admin", method == "DELETE" ? "deleted" : "replaced", " the corrupt ", K::kPlural,
                " row ", absl::CHexEscape(id));
  }
  return outcome;
}

template <typename K>
AdminApi::Impl::Outcome AdminApi::Impl::Delete(absl::string_view id) {
  absl::StatusOr<bool> deleted = K::Delete(store_, id);
  if (!deleted.ok()) {
    if (GetStoreConflict(deleted.status()) == StoreConflict::kReferenced) return {Referenced()};
    PORTICO_LOG(kError, "admin", "delete failed: ", deleted.status().ToString());
    return {Unexpected()};
  }
  return {NoContent(), *deleted};
}

HttpResponse AdminApi::Impl::Root() {
  json body = {
      {"version", PORTICO_VERSION},
      {"node_id", options_.node_id},
      {"hostname", options_.hostname},
      {"tagline", "Welcome to portico"},
      {"configuration",
       {{"role", "control_plane"},
        {"database", "sqlite"},
        {"database_path", options_.database_path},
        {"admin_listen", json::array({options_.admin_listen})},
        {"cluster_listen", json::array({options_.cluster_listen})},
        {"router_flavor", "traditional_compatible"}}},
      {"plugins", {{"available_on_server", json::object()}, {"enabled_in_cluster", json::array()}}},
      {"config_version", store_.CurrentVersion()},
  };
  return JsonResponse(200, body);
}

HttpResponse AdminApi::Impl::Status() {
  const bool reachable = store_.Ping().ok();
  json body = {
      {"database", {{"reachable", reachable}}},
      {"configuration_version", store_.CurrentVersion()},
      {"epoch", ToHex(store_.Epoch())},
      {"data_planes", data_planes_ ? data_planes_->ListDataPlanes().size() : 0},
  };
  const ConfigBuildStatus build = data_planes_ ? data_planes_->BuildStatus() : ConfigBuildStatus{};
  if (build.known) {
    json corrupt = json::array();
    for (const CorruptRow& row : build.corrupt_rows) {
      corrupt.push_back({{"entity", row.kind},
                         {"id", IsValidUtf8(row.id) ? row.id : absl::CHexEscape(row.id)},
                         {"error", row.error}});
    }
    auto or_null = [](bool present, json value) { return present ? std::move(value) : json(nullptr); };
    body["config_build"] = {
        {"ok", !build.failing},
        {"store_version", build.store_version},
        {"published_version", or_null(build.published, build.published_version)},
        {"reason", or_null(build.failing, build.reason)},
        {"error", or_null(build.failing, build.error)},
        {"failing_since", or_null(build.failing, build.failing_since)},
        {"corrupt_row_count", build.corrupt_row_count},
        {"corrupt_rows", std::move(corrupt)},
    };
  }
  return JsonResponse(200, body);
}

HttpResponse AdminApi::Impl::DataPlanes(const HttpRequest& request) {
  PageArguments page;
  if (std::optional<HttpResponse> bad = ParsePageArguments(ParseQuery(request.query), &page)) return *std::move(bad);
  const int size = page.size;
  const std::string& after = page.after_id;
  std::vector<DataPlaneStatus> all;
  if (data_planes_) all = data_planes_->ListDataPlanes();
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  const int64_t now = clock_.NowSeconds();
  json data = json::array();
  std::string last_id;
  bool has_more = false;
  for (const DataPlaneStatus& dp : all) {
    if (!after.empty() && dp.id <= after) continue;
    if (static_cast<int>(data.size()) == size) {
      has_more = true;
      break;
    }
    json labels = json::object();
    for (const auto& [k, v] : dp.labels) labels[k] = v;
    data.push_back({
        {"id", dp.id},
        {"hostname", dp.hostname},
        {"ip", dp.ip},
        {"version", dp.version},
        {"config_hash", dp.config_hash},
        {"last_seen", dp.last_seen},
        {"updated_at", dp.last_seen},
        {"ttl", std::max<int64_t>(0, kDataPlanePurgeDelay - (now - dp.last_seen))},
        {"sync_status", dp.sync_status.empty() ? "unknown" : dp.sync_status},
        {"labels", std::move(labels)},
        {"cert_details", {{"expiry_timestamp", dp.cert_expiry ? json(dp.cert_expiry) : json(nullptr)}}},
        {"config_version", dp.config_version},
        {"state", dp.state},
        {"last_error", dp.last_error.empty() ? json(nullptr) : json(dp.last_error)},
        {"lag_versions", dp.lag_versions},
        {"lag_seconds", dp.lag_seconds},
        {"connected_since", dp.connected_since ? json(dp.connected_since) : json(nullptr)},
        {"nack_count", dp.nack_count},
    });
    last_id = dp.id;
  }
  return JsonResponse(200, ListBody(std::move(data), request.path, has_more, last_id, page.next_suffix));
}

HttpResponse AdminApi::Impl::ClusterStatus() {
  json body = json::object();
  if (data_planes_) {
    for (const DataPlaneStatus& dp : data_planes_->ListDataPlanes()) {
      body[dp.id] = {{"config_hash", dp.config_hash},
                     {"hostname", dp.hostname},
                     {"ip", dp.ip},
                     {"last_seen", dp.last_seen}};
    }
  }
  HttpResponse response = JsonResponse(200, body);
  response.headers.emplace_back("Deprecation", "true");
  return response;
}

HttpResponse AdminApi::Impl::Metrics() {
  HttpResponse response;
  response.status = 200;
  response.headers.emplace_back("Content-Type", metrics::kTextContentType);
  response.body = options_.metrics_text();
  return response;
}

AdminApi::AdminApi(Store* store, const DataPlaneStatusSource* data_planes, AdminOptions options,
                   std::function<void()> on_config_change, const Clock& clock)
    : impl_(std::make_unique<Impl>(store, data_planes, std::move(options), std::move(on_config_change), clock)) {}

AdminApi::~AdminApi() = default;

HttpResponse AdminApi::Handle(const HttpRequest& request) { return impl_->Handle(request); }

}  // namespace portico
