// request-transformer (Kong 3.x kong/plugins/request-transformer/schema.lua): changes the request
// before it goes upstream: `http_method`, then for headers and querystring, in this order,
// `remove` (names), `rename` (old:new), `replace`, `add`, `append` (name:value), and
// `replace.uri`. Each record also has `body` (entries as `querystring`'s: names for `remove`,
// "name:value" otherwise), applied to JSON and form-urlencoded request bodies. `$(...)` templates
// are refused.
#include "common/plugins/request_transformer.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/plugins/bundled.h"

namespace portico::plugins {
namespace {

using nlohmann::json;

constexpr absl::string_view kNotYet = "not supported by Portico yet";

// Kong's validate_header_name: A-Z, a-z, 0-9, '-' and '_'.
bool IsKongHeaderName(absl::string_view name) {
  return !name.empty() && name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                              absl::string_view::npos;
}

// No control characters but horizontal tab.
bool IsHeaderValue(absl::string_view value) {
  for (unsigned char c : value) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

std::string NotAHeader(absl::string_view text) { return absl::StrCat("'", text, "' is not a valid header"); }

// Kong renders "$(...)" values as Lua templates; Portico does not run Lua.
std::string CheckNoTemplate(absl::string_view value) {
  return absl::StrContains(value, "$(") ? absl::StrCat("templates ($(...)) are ", kNotYet) : "";
}

// rename/replace/add/append.querystring: "name:value" with a value.
std::string CheckPair(absl::string_view entry) {
  const TransformerPair pair = SplitTransformerPair(entry);
  if (pair.name.empty() || pair.value.empty()) return absl::StrCat("key '", pair.name, "' has no value");
  return CheckNoTemplate(pair.value);
}

// replace/add/append.headers: "Name:value" without a $(...) template.
std::string CheckHeaderPair(absl::string_view entry) {
  std::string problem = CheckTransformerHeaderPair(entry);
  return problem.empty() ? CheckNoTemplate(SplitTransformerPair(entry).value) : problem;
}

using ItemCheck = std::string (*)(absl::string_view);

// One operation's record ({body, headers, querystring}, plus `uri` for replace), read by
// ConfigFields::Record (absent or null: every list empty; errors under the operation's name).
// `body` entries are checked as `querystring` entries are.
template <ItemCheck kHeaders, ItemCheck kQuerystring, bool kWithUri>
json Operation(const json& record, FieldErrors* errors) {
  ConfigFields f(record, errors);
  const std::vector<std::string> none;
  f.StringArray("body", none, kQuerystring);
  f.StringArray("headers", none, kHeaders);
  f.StringArray("querystring", none, kQuerystring);
  if (kWithUri) {
    const std::optional<std::string> uri = f.String("uri", std::nullopt);
    // Kong accepts any string and answers 500 on each request when it does not start with '/'.
    if (uri && uri->front() != '/') errors->Add("uri", "should start with: /");
    if (uri && !CheckNoTemplate(*uri).empty()) errors->Add("uri", CheckNoTemplate(*uri));
  }
  return f.Finish();
}

// The methods Kong's kong.service.request.set_method accepts.
constexpr absl::string_view kSettableMethods[] = {"GET",      "PUT",       "POST", "DELETE", "OPTIONS",
                                                  "MKCOL",    "COPY",      "MOVE", "PROPFIND", "PROPPATCH",
                                                  "LOCK",     "UNLOCK",    "PATCH", "TRACE"};

json Normalize(const json& config, FieldErrors* errors) {
  ConfigFields f(config, errors);
  const std::optional<std::string> method = f.String("http_method", std::nullopt);
  f.Record("remove", &Operation<&CheckTransformerHeaderName, nullptr, false>);
  f.Record("rename", &Operation<&CheckTransformerHeaderRename, &CheckPair, false>);
  f.Record("replace", &Operation<&CheckHeaderPair, &CheckPair, true>);
  f.Record("add", &Operation<&CheckHeaderPair, &CheckPair, false>);
  f.Record("append", &Operation<&CheckHeaderPair, &CheckPair, false>);
  json out = f.Finish();
  if (method) {
    const bool upper = method->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") == std::string::npos;
    bool settable = false;
    for (absl::string_view m : kSettableMethods) settable |= *method == m;
    if (!upper) {
      errors->Add("http_method", absl::StrCat("invalid value: ", *method));
    } else if (*method == "HEAD") {
      // A response to HEAD has no body: the proxy would wait for the one the client's method expects.
      errors->Add("http_method", absl::StrCat("'HEAD' is ", kNotYet));
    } else if (!settable) {
      errors->Add("http_method", absl::StrCat("invalid method: ", *method));  // Kong: a 500 per request
    }
  }
  return out;
}

}  // namespace

std::string CheckTransformerHeaderName(absl::string_view entry) {
  const TransformerPair pair = SplitTransformerPair(entry);
  return IsKongHeaderName(pair.name) ? "" : NotAHeader(pair.name);
}

std::string CheckTransformerHeaderPair(absl::string_view entry) {
  const TransformerPair pair = SplitTransformerPair(entry);
  if (pair.name.empty() || !absl::StrContains(entry, ':')) return absl::StrCat("invalid value: ", entry);
  if (!IsKongHeaderName(pair.name)) return NotAHeader(pair.name);
  return IsHeaderValue(pair.value) ? "" : NotAHeader(pair.value);
}

std::string CheckTransformerHeaderRename(absl::string_view entry) {
  const TransformerPair pair = SplitTransformerPair(entry);
  if (pair.name.empty() || !absl::StrContains(entry, ':')) return absl::StrCat("invalid value: ", entry);
  if (!IsKongHeaderName(pair.name)) return NotAHeader(pair.name);
  return IsKongHeaderName(pair.value) ? "" : NotAHeader(pair.value);
}

const PluginSchema& RequestTransformerSchema() {
  static const PluginSchema schema{"request-transformer", 801, &Normalize};
  return schema;
}

}  // namespace portico::plugins
