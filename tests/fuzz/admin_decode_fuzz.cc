// Fuzz target: what the Admin API does with the bytes of a write before the store sees them.
// The body is decoded (DecodeBody: JSON with the depth cap, or a form), applied onto Kong's
// defaults (ApplyServiceJson / ApplyRouteJson) and validated (the one validator); a URL segment
// is percent-decoded and, as `PUT /services/{name}` does, becomes the entity's name. Every entity
// the validator accepts must be one the store can write AND read back: that is the property whose
// absence let a form body with `%ff` brick the control plane.
//
// Input: byte 0 = flags (bit 0: route, else service; bit 1: form body, else JSON; bit 2: the
// bytes up to the first '\n' are a URL segment naming the entity), then the body.
//
// Invariants (ids as printed):
//   round-trip   an accepted entity serializes and parses back to the same entity
//   utf8         every string of an accepted entity is UTF-8 (CheckUtf8Fields finds nothing)
//   json-out     the entity's Admin API JSON parses back as JSON (nothing the output cannot carry)
//   json-depth   a JSON body accepted by DecodeBody nests at most kMaxJsonDepth levels
//   percent      PercentDecode(PercentEncode(x)) == x, and PercentEncode's output is unreserved
//                characters and %XX only
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/config/entity_json.h"
#include "common/config/utf8_fields.h"
#include "common/config/validate.h"
#include "control_plane/admin/request_decoding.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_check.h"

namespace {

using nlohmann::json;
using portico::fuzz::Show;

// Depth of a parsed value, without recursion (the cap is 1000 levels).
size_t Depth(const json& root) {
  size_t deepest = 0;
  std::vector<std::pair<const json*, size_t>> stack = {{&root, 1}};
  while (!stack.empty()) {
    auto [node, depth] = stack.back();
    stack.pop_back();
    if (!node->is_structured()) continue;
    deepest = std::max(deepest, depth);
    for (const json& child : *node) stack.emplace_back(&child, depth + 1);
  }
  return deepest;
}

// Map entries serialize in no fixed order; deterministic serialization sorts them.
std::string Canonical(const google::protobuf::Message& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

template <typename Entity>
void CheckAccepted(const Entity& entity) {
  const std::string bytes = Canonical(entity);
  Entity back;
  if (!FUZZ_CHECK(back.ParseFromString(bytes), "round-trip",
                  absl::StrCat("an accepted entity does not parse back: ", Show(entity.ShortDebugString())))) {
    return;
  }
  FUZZ_CHECK(Canonical(back) == bytes, "round-trip", Show(entity.ShortDebugString()));
  portico::FieldErrors utf8;
  portico::CheckUtf8Fields(entity, &utf8);
  FUZZ_CHECK(utf8.empty(), "utf8", utf8.KongMessage());
}

template <typename Entity>
void Decode(const portico::HttpRequest& request, const std::string* url_name,
            portico::FieldKind (*kind_of)(absl::string_view), Entity (*defaults)(),
            void (*apply)(const json&, Entity*, portico::FieldErrors*),
            portico::FieldErrors (*validate)(const Entity&), json (*to_json)(const Entity&)) {
  portico::cp::DecodedBody body = portico::cp::DecodeBody(request, kind_of);
  if (body.error_status != 0) return;
  if (absl::StrContains(request.Header("Content-Type") ? *request.Header("Content-Type") : "", "json")) {
    FUZZ_CHECK(Depth(body.value) <= static_cast<size_t>(portico::cp::kMaxJsonDepth), "json-depth",
               absl::StrCat(Depth(body.value), " levels"));
  }
  Entity entity = defaults();
  portico::FieldErrors errors;
  apply(body.value, &entity, &errors);
  if (url_name != nullptr) entity.set_name(*url_name);  // PUT /{kind}/{name}
  const portico::FieldErrors validation = validate(entity);
  if (!errors.empty() || !validation.empty()) return;
  CheckAccepted(entity);
  const std::string out = to_json(entity).dump(-1, ' ', false, json::error_handler_t::replace);
  FUZZ_CHECK(!json::parse(out, nullptr, false).is_discarded(), "json-out", Show(out));
}

void CheckPercent(absl::string_view bytes) {
  const std::string encoded = portico::cp::PercentEncode(bytes);
  for (size_t i = 0; i < encoded.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(encoded[i]);
    const bool unreserved = absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
    if (!FUZZ_CHECK(unreserved || c == '%', "percent", Show(encoded))) return;
  }
  FUZZ_CHECK(portico::cp::PercentDecode(encoded, false) == bytes, "percent", Show(bytes));
  FUZZ_CHECK(portico::cp::PercentDecode(encoded, true) == bytes, "percent", Show(bytes));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  absl::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string url_name;
  const bool named = (flags & 4) != 0;
  if (named) {
    const size_t newline = rest.find('\n');
    const absl::string_view segment = rest.substr(0, newline);
    url_name = portico::cp::PercentDecode(segment, /*plus_is_space=*/false);
    rest = newline == absl::string_view::npos ? absl::string_view() : rest.substr(newline + 1);
    CheckPercent(segment);
  }
  portico::HttpRequest request;
  request.method = named ? "PUT" : "POST";
  request.headers.emplace_back("Content-Type",
                               (flags & 2) ? "application/x-www-form-urlencoded" : "application/json");
  request.body = std::string(rest);
  if (flags & 1) {
    Decode<portico::config::v1::Route>(request, named ? &url_name : nullptr, &portico::RouteFieldKind,
                                       &portico::DefaultRoute, &portico::ApplyRouteJson,
                                       &portico::ValidateRouteFields, &portico::RouteToJson);
  } else {
    Decode<portico::config::v1::Service>(request, named ? &url_name : nullptr, &portico::ServiceFieldKind,
                                         &portico::DefaultService, &portico::ApplyServiceJson,
                                         &portico::ValidateServiceFields, &portico::ServiceToJson);
  }
  if (flags & 2) (void)portico::cp::ParseQuery(rest);  // the query-string path (tags, size, offset)
  return 0;
}
