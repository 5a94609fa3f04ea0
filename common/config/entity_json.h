#pragma once
// Entity <-> JSON in Kong 3.x's Admin API shape (KONG-REFERENCE.md §2.2): every field present,
// unset nullable fields as null, timestamps as integer seconds, a route's service as
// {"id": "..."} or null, headers as {"x-foo": ["a", "b"]}.
#include <string>

#include "absl/strings/string_view.h"
#include "common/config/field_errors.h"
#include "nlohmann/json.hpp"
#include "portico/config/v1/config.pb.h"

namespace portico {

nlohmann::json ServiceToJson(const config::v1::Service& service);
nlohmann::json RouteToJson(const config::v1::Route& route);

// Entities with Kong's defaults and no id/timestamps. Required fields without default
// (service host) stay empty so that validation reports them missing.
config::v1::Service DefaultService();
config::v1::Route DefaultRoute();

// Overwrites the fields of `entity` that appear in `body` (a JSON object), leaving the other
// fields untouched: POST/PUT apply the body onto Default*(), PATCH onto the stored entity.
// Type errors, unknown fields and explicit nulls on non-nullable fields go to `errors`.
// Accepted inputs beyond the output shape:
//  - service `url` ("https://h:8443/p"): sets protocol/host/port/path; an error if combined
//    with any of those four fields.
//  - route `service`: {"id": "<uuid>"} or null. (The Admin API resolves {"name": ...} first.)
//  - `id` must be a UUID; `created_at`/`updated_at` are integers.
// Header names are lowercased.
void ApplyServiceJson(const nlohmann::json& body, config::v1::Service* service, FieldErrors* errors);
void ApplyRouteJson(const nlohmann::json& body, config::v1::Route* route, FieldErrors* errors);

// Kong's nested `fields` object: "a.b" -> {"a":{"b":msg}}, numeric segments ("paths.2") ->
// arrays padded with null, "@entity" -> {"@entity":[msg, ...]}.
nlohmann::json FieldErrorsToJson(const FieldErrors& errors);

// What the form decoder needs to coerce strings: how a top-level field of an entity is typed.
enum class FieldKind { kUnknown, kString, kInteger, kBoolean, kArray, kStringMap, kRecord, kRecordArray };
FieldKind ServiceFieldKind(absl::string_view field);
FieldKind RouteFieldKind(absl::string_view field);

}  // namespace portico
