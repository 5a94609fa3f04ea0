#include "control_plane/admin/tag_endpoints.h"

#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "control_plane/admin/admin_responses.h"
#include "control_plane/admin/request_decoding.h"
#include "control_plane/store/store.h"
#include "nlohmann/json.hpp"

namespace portico::cp {
namespace {

using nlohmann::json;

// The cursor is base64 of [entity_id, ordinality, entity_name] (Kong's is [entity_id, ordinality];
// the kind breaks ties between entities of two kinds given the same id).
std::string EncodeTagOffset(const TaggedEntity& last) {
  return absl::Base64Escape(Dump(json::array({last.entity_id, last.ordinality, last.entity_name})));
}

bool DecodeTagOffset(const std::string& offset, TagQuery* query) {
  std::string decoded;
  if (!absl::Base64Unescape(offset, &decoded)) return false;
  const json parsed = ParseJsonCapped(decoded);
  if (!parsed.is_array() || parsed.size() != 3 || !parsed[0].is_string() || !parsed[1].is_number_integer() ||
      !parsed[2].is_string()) {
    return false;
  }
  query->after_entity_id = parsed[0].get<std::string>();
  query->after_ordinality = parsed[1].get<int>();
  query->after_entity_name = parsed[2].get<std::string>();
  return true;
}

}  // namespace

HttpResponse TagsResponse(Store& store, const HttpRequest& request, const std::string* tag) {
  if (request.method != "GET") return MethodNotAllowed();
  QueryParams params = ParseQuery(request.query);
  TagQuery query;
  if (const std::string* offset = QueryParam(params, "offset")) {
    if (!DecodeTagOffset(*offset, &query)) {
      return KongError(400, 7, "invalid offset", absl::StrCat("'", *offset, "' is not a valid offset: bad base64 encoding"),
                       nullptr);
    }
  }
  // size is checked as every list checks it; the offset above is this endpoint's own.
  std::erase_if(params, [](const auto& param) { return param.first == "offset"; });
  PageArguments page;
  if (std::optional<HttpResponse> bad = ParsePageArguments(params, &page)) return *std::move(bad);
  query.size = page.size;
  if (tag != nullptr) query.tag = *tag;
  absl::StatusOr<ListPage<TaggedEntity>> listed = store.ListTagged(query);
  if (!listed.ok()) {
    PORTICO_LOG(kError, "admin", "list tags failed: ", listed.status().ToString());
    return Unexpected(listed.status());
  }
  json data = json::array();
  for (const TaggedEntity& row : listed->items) {
    data.push_back({{"entity_name", row.entity_name}, {"entity_id", row.entity_id}, {"tag", row.tag}});
  }
  json body = {{"data", std::move(data)}, {"next", nullptr}};
  if (listed->has_more) {
    std::string offset = EncodeTagOffset(listed->items.back());
    body["next"] = absl::StrCat(request.path, "?offset=", PercentEncode(offset), page.next_suffix);
    body["offset"] = std::move(offset);
  }
  return JsonResponse(200, body);
}

}  // namespace portico::cp
