#include "control_plane/admin/admin_responses.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/config/entity_json.h"
#include "control_plane/admin/request_decoding.h"

namespace portico::cp {

using nlohmann::json;

namespace {

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

}  // namespace

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse JsonResponse(int status, const json& body) { return HttpResponse::Json(status, Dump(body)); }

HttpResponse Message(int status, absl::string_view message) {
  return JsonResponse(status, json{{"message", std::string(message)}});
}

HttpResponse NotFound() { return Message(404, "Not found"); }
HttpResponse MethodNotAllowed() { return Message(405, "Method not allowed"); }
HttpResponse Unexpected() { return Message(500, "An unexpected error occurred"); }
HttpResponse Unexpected(const absl::Status& cause) {
  if (absl::IsUnavailable(cause)) {
    // The cause names hosts, addresses and users: for the log, not for the client.
    PORTICO_LOG(kWarn, "admin", "the datastore is unavailable: ", cause.message());
    return Message(503, "the datastore is unavailable");
  }
  return Unexpected();
}

HttpResponse NoContent() {
  HttpResponse r;
  r.status = 204;
  return r;
}

HttpResponse KongError(int http_status, int code, absl::string_view name, absl::string_view message, json fields) {
  json body = {{"code", code}, {"name", std::string(name)}, {"message", std::string(message)}};
  if (!fields.is_null()) body["fields"] = std::move(fields);
  return JsonResponse(http_status, body);
}

HttpResponse SchemaViolation(const FieldErrors& errors) {
  return KongError(400, 2, "schema violation", errors.KongMessage(), FieldErrorsToJson(errors));
}

std::string LuaKey(absl::string_view field, absl::string_view value) {
  return absl::StrCat("{", field, "=\"", value, "\"}");
}

const std::string* QueryParam(const QueryParams& params, absl::string_view name) {
  for (const auto& [k, v] : params) {
    if (k == name) return &v;
  }
  return nullptr;
}

std::optional<HttpResponse> ParsePageArguments(const QueryParams& params, PageArguments* page) {
  if (const std::string* size = QueryParam(params, "size")) {
    int parsed = 0;
    if (!absl::SimpleAtoi(*size, &parsed)) {
      return KongError(400, 9, "invalid size", "size must be a number", nullptr);
    }
    if (parsed < 1 || parsed > kMaxPageSize) {
      return KongError(400, 9, "invalid size", absl::StrCat("size must be an integer between 1 and ", kMaxPageSize),
                       nullptr);
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

}  // namespace portico::cp
