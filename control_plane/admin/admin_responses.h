#pragma once
// Kong-shaped Admin API answers (KONG-REFERENCE.md §2.1) and list pagination, shared by the
// entity endpoints and the other Admin API endpoints. Pure functions, thread-safe. Private to
// control_plane/admin.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/config/field_errors.h"
#include "common/http/message.h"
#include "nlohmann/json.hpp"

namespace portico::cp {

inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;

using QueryParams = std::vector<std::pair<std::string, std::string>>;

std::string Dump(const nlohmann::json& j);  // invalid UTF-8 replaced, never throws
HttpResponse JsonResponse(int status, const nlohmann::json& body);
HttpResponse Message(int status, absl::string_view message);  // {"message": ...}
HttpResponse NotFound();
HttpResponse MethodNotAllowed();
HttpResponse Unexpected();  // 500 "An unexpected error occurred" (log the cause first)
// A store call failed with `cause`: 503 {"message": "the datastore is unavailable"} when it is
// Unavailable (the database cannot be reached, or is busy; nothing was written; the cause is
// logged as a warning, never sent), else Unexpected().
HttpResponse Unexpected(const absl::Status& cause);
HttpResponse NoContent();
// Kong's error body {"code","name","message","fields"} (no "fields" when null).
HttpResponse KongError(int http_status, int code, absl::string_view name, absl::string_view message,
                       nlohmann::json fields);
HttpResponse SchemaViolation(const FieldErrors& errors);
// Lua-table rendering of a key as Kong prints it: {name="foo"}.
std::string LuaKey(absl::string_view field, absl::string_view value);

const std::string* QueryParam(const QueryParams& params, absl::string_view name);

// Kong's `size` and `offset` list arguments.
struct PageArguments {
  int size = kDefaultPageSize;
  std::string after_id;     // decoded offset: list entries after this id
  std::string next_suffix;  // "&size=N" when size was given, repeated in `next`
};
// Fills `page` from the query, or returns Kong's 400 for a bad size (code 9) or offset (code 7).
std::optional<HttpResponse> ParsePageArguments(const QueryParams& params, PageArguments* page);
// A list body: data, and `offset`/`next` when more entries follow `last_id`.
nlohmann::json ListBody(nlohmann::json data, const std::string& path, bool has_more, absl::string_view last_id,
                        absl::string_view next_suffix);

}  // namespace portico::cp
