#pragma once
// Kong's tag endpoints (docs/admin-api.md "Tags"):
//
//   GET /tags          every (tag, entity) pair: {"data":[{"entity_name","entity_id","tag"}],
//                      "offset","next"}, ordered by entity id, then the tag's position
//   GET /tags/{tag}    the same, only that tag
//
// Paged with size (1-1000, default 100) and an opaque offset (Kong's 400s for bad ones). Reads
// the store only (Store::ListTagged). Thread-safe. Private to control_plane/admin.
#include <optional>
#include <string>

#include "common/http/message.h"

namespace portico::cp {

class Store;

// `tag` null: GET /tags; else GET /tags/{tag} (percent-decoded).
HttpResponse TagsResponse(Store& store, const HttpRequest& request, const std::string* tag);

}  // namespace portico::cp
