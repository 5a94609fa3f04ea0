#pragma once
// Entity <-> JSON in Kong 3.x's Admin API shape (KONG-REFERENCE.md §2.2), for any kind, driven by
// its descriptor (entity_descriptor.h): every field present, unset nullable fields as null,
// timestamps as integer seconds, foreign keys as {"id": "..."} or null, header maps as
// {"x-foo": ["a", "b"]}.
#include <string>

#include "absl/strings/string_view.h"
#include "common/config/entity_descriptor.h"
#include "common/config/field_errors.h"
#include "nlohmann/json.hpp"
#include "portico/config/v1/config.pb.h"

namespace portico {

// Every declared field of `entity` (a `kind` entity) under its Kong name.
nlohmann::json EntityToJson(const EntityDescriptor& kind, const google::protobuf::Message& entity);

// Overwrites the fields of `entity` that appear in `body` (a JSON object), leaving the other
// fields untouched: POST/PUT apply the body onto kind.NewDefault(), PATCH onto the stored
// entity. Type errors, unknown fields and bad ids go to `errors` (Kong's words and paths).
//  - null resets a field to its default (unset when it has none); null on id/timestamps and
//    on shorthands is ignored;
//  - `id` and foreign keys must be UUIDs (lowercased); timestamps are integers;
//  - a foreign key is {"id": "<uuid>"} (the Admin API resolves {"<endpoint key>": ...} first);
//  - shorthands (a service's `url`) apply through their hook.
void ApplyEntityJson(const EntityDescriptor& kind, const nlohmann::json& body, google::protobuf::Message* entity,
                     FieldErrors* errors);

// Kong's nested `fields` object: "a.b" -> {"a":{"b":msg}}, numeric segments ("paths.2") ->
// arrays padded with null, "@entity" -> {"@entity":[msg, ...]}.
nlohmann::json FieldErrorsToJson(const FieldErrors& errors);

// What the form decoder needs to coerce strings: how a top-level field of an entity is typed.
enum class FieldKind { kUnknown, kString, kInteger, kBoolean, kArray, kStringMap, kRecord, kRecordArray };
FieldKind FormFieldKind(const EntityDescriptor& kind, absl::string_view field);

// Typed shorthands for the built-in kinds (services, routes), over the functions above; used by
// tests and the fuzz target. Generic code takes a descriptor instead.
nlohmann::json ServiceToJson(const config::v1::Service& service);
nlohmann::json RouteToJson(const config::v1::Route& route);
// Kong's defaults, no id/timestamps. Required fields without default (service host) stay empty
// so that validation reports them missing.
config::v1::Service DefaultService();
config::v1::Route DefaultRoute();
void ApplyServiceJson(const nlohmann::json& body, config::v1::Service* service, FieldErrors* errors);
void ApplyRouteJson(const nlohmann::json& body, config::v1::Route* route, FieldErrors* errors);
FieldKind ServiceFieldKind(absl::string_view field);
FieldKind RouteFieldKind(absl::string_view field);

}  // namespace portico
