#pragma once
// Kong's schema endpoints (docs/admin-api.md "Schemas"):
//
//   GET /schemas/{entity}           the kind's fields in Kong's shape, derived from its descriptor
//                                   (type, default, required, unique, foreign reference and
//                                   on_delete, elements of arrays and sets, map keys and values)
//   GET /schemas/plugins/{name}     the plugin entity with `config` described by the plugin's schema
//
// ({entity} is Kong's entity name: services, keyauth_credentials, targets, ...). The validate
// endpoints (POST /schemas/{entity}/validate, /schemas/plugins/validate) are the entity
// endpoints' (entity_endpoints.h). Pure functions, thread-safe. Private to control_plane/admin.
#include <string>

#include "absl/strings/string_view.h"
#include "common/config/entity_descriptor.h"
#include "common/http/message.h"
#include "nlohmann/json.hpp"

namespace portico::cp {

// {"fields":[{"<name>":{"type":...}}, ...]}: every field of the descriptor, in its order.
nlohmann::json EntitySchemaJson(const EntityDescriptor& kind);

// GET /schemas/{name}: 200 with EntitySchemaJson, or Kong's 404 NoEntityNamed.
HttpResponse EntitySchemaResponse(const EntityRegistry& kinds, const std::string& name);

// GET /schemas/plugins/{name}: 200, or 404 {"message":"No plugin named '<name>'"}.
HttpResponse PluginSchemaResponse(const std::string& name);

// Kong's 404 {"message":"No entity named '<name>'"} (a name that is not UTF-8 shows as '?').
HttpResponse NoEntityNamed(absl::string_view name);

}  // namespace portico::cp
