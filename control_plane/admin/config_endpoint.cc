#include "control_plane/admin/config_endpoint.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/log.h"
#include "common/base/memory.h"
#include "common/config/entity_json.h"
#include "common/declarative/declarative.h"
#include "common/declarative/yaml_document.h"
#include "control_plane/admin/admin_responses.h"
#include "control_plane/admin/request_decoding.h"
#include "control_plane/store/store.h"

namespace portico::cp {
namespace {

using json = nlohmann::json;

bool Flag(const QueryParams& params, absl::string_view name) {
  const std::string* value = QueryParam(params, name);
  return value != nullptr && (*value == "1" || absl::EqualsIgnoreCase(*value, "true"));
}

// The `boundary` parameter of a multipart content type ("" when it has none or it is longer than
// RFC 2046's 70 characters: a long one would make the search for it slow).
std::string MultipartBoundary(absl::string_view content_type) {
  for (absl::string_view param : absl::StrSplit(content_type, ';')) {
    param = absl::StripAsciiWhitespace(param);
    if (!absl::StartsWithIgnoreCase(param, "boundary=")) continue;
    param.remove_prefix(9);
    if (param.size() >= 2 && param.front() == '"' && param.back() == '"') param = param.substr(1, param.size() - 2);
    if (param.size() > 70) return "";
    return std::string(param);
  }
  return "";
}

// The content of the multipart/form-data part named `name` (curl -F config=@kong.yml), or
// nullopt. Only what Kong's form needs: parts delimited by the boundary, their headers, no nesting.
std::optional<std::string> MultipartField(absl::string_view body, absl::string_view boundary, absl::string_view name) {
  if (boundary.empty()) return std::nullopt;
  const std::string delimiter = absl::StrCat("--", boundary);
  size_t at = body.find(delimiter);
  while (at != absl::string_view::npos) {
    size_t part = at + delimiter.size();
    if (body.substr(part, 2) == "--") return std::nullopt;  // the closing delimiter
    if (body.substr(part, 2) == "\r\n") part += 2;
    const size_t head_end = body.find("\r\n\r\n", part);
    if (head_end == absl::string_view::npos) return std::nullopt;
    const size_t next = body.find(absl::StrCat("\r\n", delimiter), head_end + 4);
    if (next == absl::string_view::npos) return std::nullopt;
    const std::string head = absl::AsciiStrToLower(body.substr(part, head_end - part));
    for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
      if (!absl::StartsWith(line, "content-disposition:")) continue;
      for (absl::string_view param : absl::StrSplit(line, ';')) {
        param = absl::StripAsciiWhitespace(param);
        if (param == absl::StrCat("name=\"", name, "\"") || param == absl::StrCat("name=", name)) {
          return std::string(body.substr(head_end + 4, next - head_end - 4));
        }
      }
    }
    at = next + 2;
  }
  return std::nullopt;
}

// The declarative text of a POST /config body: {"config": "<text>"} as JSON, a form or a
// multipart form (curl -F config=@kong.yml), or the body itself (a YAML or JSON document).
// InvalidArgument when a multipart body has no `config` part.
absl::StatusOr<std::string> DocumentText(const HttpRequest& request) {
  const std::string* type = request.Header("content-type");
  const std::string content_type = type == nullptr ? "" : absl::AsciiStrToLower(*type);
  if (absl::StartsWith(content_type, "application/x-www-form-urlencoded")) {
    for (auto& [key, value] : ParseQuery(request.body)) {
      if (key == "config") return value;
    }
    return "";
  }
  if (absl::StartsWith(content_type, "multipart/form-data")) {
    // The boundary keeps its case: take it from the header as sent.
    const std::string boundary = MultipartBoundary(*type);
    if (boundary.empty()) {
      return absl::InvalidArgumentError("a multipart/form-data body needs a boundary of 1 to 70 characters");
    }
    std::optional<std::string> field = MultipartField(request.body, boundary, "config");
    if (!field) {
      return absl::InvalidArgumentError(
          "the multipart/form-data body has no complete 'config' part (CRLF line ends, a closing delimiter)");
    }
    return *std::move(field);
  }
  // A JSON object whose only member is a string `config` wraps the document.
  const absl::string_view body = absl::StripLeadingAsciiWhitespace(request.body);
  if (absl::StartsWith(body, "{")) {
    bool too_deep = false;
    json parsed = ParseJsonCapped(body, &too_deep);
    if (!too_deep && parsed.is_object() && parsed.size() == 1 && parsed.contains("config") &&
        parsed["config"].is_string()) {
      return parsed["config"].get<std::string>();
    }
  }
  return request.body;
}

}  // namespace

std::optional<HttpResponse> ConfigEndpoint::Handle(const HttpRequest& request, const std::vector<std::string>& segments,
                                                   bool* committed) {
  if (segments.size() != 1 || segments[0] != "config") return std::nullopt;
  if (request.method == "GET") return Export();
  if (request.method == "POST") {
    HttpResponse response = Replace(request, committed);
    ReleaseFreedMemory();  // the document, its entities and the config read to compare are freed
    return response;
  }
  return MethodNotAllowed();
}

HttpResponse ConfigEndpoint::Export() {
  absl::StatusOr<StoredConfig> stored = store_.ReadConfig();
  if (!stored.ok()) {
    PORTICO_LOG(kError, "admin", "GET /config: reading the store failed: ", stored.status().ToString());
    return Unexpected(stored.status());
  }
  if (!stored->corrupt.empty()) {
    std::vector<std::string> rows;
    for (const CorruptRow& row : stored->corrupt) rows.push_back(absl::StrCat(row.kind, " ", row.id));
    return Message(500, absl::StrCat("the store holds rows that cannot be read (", absl::StrJoin(rows, ", "),
                                     "); repair or delete them first"));
  }
  std::string yaml = ExportDeclarativeYaml(EntitiesByKind(stored->config, store_.kinds()));
  if (yaml.empty()) {  // the YAML writer failed (never seen; a document is never empty)
    PORTICO_LOG(kError, "admin", "GET /config: writing the config as YAML failed");
    return Unexpected();
  }
  return JsonResponse(200, json{{"config", std::move(yaml)}});
}

HttpResponse ConfigEndpoint::Replace(const HttpRequest& request, bool* committed) {
  const QueryParams params = ParseQuery(request.query);
  const bool flatten = Flag(params, "flatten_errors");
  absl::StatusOr<StoredConfig> stored = store_.ReadConfig();
  if (!stored.ok()) {
    PORTICO_LOG(kError, "admin", "POST /config: reading the store failed: ", stored.status().ToString());
    return Unexpected(stored.status());
  }
  DeclarativeOptions options;
  options.kinds = &store_.kinds();
  options.previous = &stored->config;
  DeclarativeErrors errors;
  absl::StatusOr<std::string> text = DocumentText(request);
  if (!text.ok()) {
    errors.syntax = std::string(text.status().message());
    return JsonResponse(400, errors.KongBody(flatten));
  }
  absl::StatusOr<DeclarativeConfig> loaded = LoadDeclarativeText(*text, options, &errors);
  if (!loaded.ok()) return JsonResponse(400, errors.KongBody(flatten));
  const bool unchanged = CarryOverStoredTimestamps(stored->config, &*loaded) && stored->corrupt.empty();
  if (unchanged && Flag(params, "check_hash")) {
    HttpResponse response;
    response.status = 304;
    return response;
  }
  std::vector<Store::KindRows> rows;
  for (const DeclarativeConfig::KindEntities& list : loaded->kinds) {
    Store::KindRows kind_rows;
    kind_rows.kind = list.kind;
    for (const auto& entity : list.entities) kind_rows.entities.push_back(entity.get());
    rows.push_back(std::move(kind_rows));
  }
  absl::StatusOr<std::vector<EntityPtr>> written = store_.ReplaceConfig(rows);
  if (!written.ok()) {
    // The loader checked keys and references; a refusal here is a store problem.
    const absl::Status& s = written.status();
    if (!absl::IsAborted(s)) PORTICO_LOG(kError, "admin", "POST /config: replacing the config failed: ", s.ToString());
    if (GetStoreConflict(s) != StoreConflict::kNone || absl::IsInvalidArgument(s)) {
      return KongError(400, 14, "invalid declarative configuration",
                       absl::StrCat("declarative config is invalid: ", s.message()), json::object());
    }
    return Unexpected(s);
  }
  *committed = true;
  PORTICO_LOG(kInfo, "admin", "POST /config: configuration replaced (", loaded->entity_count(), " entities)");
  // Kong answers with the loaded entities, by kind and id, as stored (timestamps set).
  json body = json::object();
  size_t next = 0;
  for (const DeclarativeConfig::KindEntities& list : loaded->kinds) {
    if (list.entities.empty()) continue;
    json& by_id = body[list.kind->name()];
    by_id = json::object();
    for (size_t i = 0; i < list.entities.size(); ++i, ++next) {
      const google::protobuf::Message& stored = *(*written)[next];
      by_id[list.kind->Id(stored)] = EntityToJson(*list.kind, stored);
    }
  }
  return JsonResponse(201, body);
}

}  // namespace portico::cp
