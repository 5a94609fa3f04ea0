#pragma once
// How the Admin API reads what a request carries (docs/admin-api.md "Conventions"): percent-
// decoding of URL segments, query strings and form bodies; form bodies turned into the JSON they
// stand for; JSON bodies parsed with a nesting cap. Pure functions, thread-safe; fuzzed
// (tests/fuzz/admin_decode_fuzz.cc). Nothing here validates entities: decoded strings may be any
// bytes, and the validator (common/config/validate.h) refuses what is not UTF-8.
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "common/config/entity_json.h"
#include "common/http/message.h"
#include "nlohmann/json.hpp"

namespace portico::cp {

// Deepest JSON nesting accepted (lua-cjson's decode_max_depth, which Kong's Admin API uses).
inline constexpr int kMaxJsonDepth = 1000;

// %XX (hex in any case) becomes the byte; a '%' not followed by two hex digits stays as is; '+'
// becomes a space when `plus_is_space` (query strings and forms, not paths).
std::string PercentDecode(absl::string_view in, bool plus_is_space);
// Every byte but unreserved ones as %XX (uppercase hex).
std::string PercentEncode(absl::string_view in);

// "a=1&b&c=%20" -> {("a","1"), ("b",""), ("c"," ")}: split on '&' (empty parts skipped), then on
// the first '=', each side percent-decoded with '+' as space.
std::vector<std::pair<std::string, std::string>> ParseQuery(absl::string_view query);

// True when `text` nests arrays/objects more than kMaxJsonDepth deep, counting `[` and `{`
// outside strings. Linear and allocation-free: it runs before the parser, so a 100k-deep body
// costs a scan instead of a 100k-node tree. (Malformed text is left to the parser.)
bool JsonTooDeep(absl::string_view text);
// json::parse without exceptions, refusing nesting deeper than kMaxJsonDepth (then `too_deep`
// is set and the result is discarded).
nlohmann::json ParseJsonCapped(absl::string_view text, bool* too_deep = nullptr);

// How a form value of a top-level field is coerced: FormFieldKind of the entity's descriptor
// (or the typed ServiceFieldKind / RouteFieldKind), entity_json.h.
using FieldKindOf = absl::FunctionRef<FieldKind(absl::string_view field)>;

// Form fields (name=x, paths[]=/a, paths=/a, service.id=..., headers.x-foo=a) as the JSON body
// they stand for, coerced with the entity's field kinds.
nlohmann::json FormToJson(absl::string_view body, FieldKindOf kind_of);

// A request body as a JSON object: {} when empty; application/json (capped depth, an object) or
// application/x-www-form-urlencoded (FormToJson). Otherwise `error_status` (400, 415) and
// `error_message` say why, for a {"message": ...} answer.
struct DecodedBody {
  int error_status = 0;
  std::string error_message;
  nlohmann::json value = nlohmann::json::object();
};
DecodedBody DecodeBody(const HttpRequest& request, FieldKindOf kind_of);

}  // namespace portico::cp
