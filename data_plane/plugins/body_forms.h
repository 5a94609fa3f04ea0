#pragma once
// Request and response bodies as Kong's plugins read and write them (request-transformer,
// response-transformer, key-auth, request-termination's echo): form-urlencoded arguments as
// ngx.decode_args reads them and Kong's set_body writes them, which body a Content-Type names, and
// the edits Kong's transformers make on a decoded JSON object (with Lua's truthiness: cjson's null
// is a value, only an absent member or `false` is falsy). These run only on requests whose plugins
// need a body and allocate freely.
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {

// One value of a form argument; `flag`: the argument had no '=' (Kong's `true`).
struct FormValue {
  std::string text;
  bool flag = false;
};

struct FormArgument {
  std::string name;
  std::vector<FormValue> values;  // never empty
};

// Arguments in the order their names first appear; repeated names collect their values in order.
using FormArguments = std::vector<FormArgument>;

// ngx.decode_args: '&'-separated pairs, names and values percent-decoded ('+' is a space), pairs
// with an empty name skipped. (Kong stops at 100 arguments; Portico keeps every one.)
FormArguments DecodeForm(absl::string_view body);
FormArgument* FindFormArgument(FormArguments& args, absl::string_view name);
const FormArgument* FindFormArgument(const FormArguments& args, absl::string_view name);
void EraseFormArgument(FormArguments& args, absl::string_view name);
// Kong's append_value on a form argument: a single string value becomes [value, new], several
// values get `new` added, and a lone flag or an absent argument become [new].
void AppendFormValue(FormArguments& args, absl::string_view name, absl::string_view value);
// As Kong's kong.service.request.set_body encodes a form: each argument as ngx.encode_args writes
// it ("a=1&a=2", "flag"; escaped as ngx.escape_uri: all but A-Z a-z 0-9 - . _ ~), the pieces
// sorted, joined by '&'.
std::string EncodeFormSorted(const FormArguments& args);

// The request body as the plugins so far left it: the body an earlier plugin set for the upstream,
// else the client's (Kong's get_raw_body after set_raw_body). REQUIRES: ReadRequestBody returned
// true.
inline absl::string_view CurrentRequestBody(const std::string& request_body, const std::string& upstream_body,
                                            bool upstream_body_set) {
  return upstream_body_set ? absl::string_view(upstream_body) : absl::string_view(request_body);
}

enum class BodyType { kOther, kJson, kForm, kMultipart };
// kong.request.get_body's choice (key-auth, request-termination): the media type (lowercase, before
// any ';') starting with application/x-www-form-urlencoded, application/json or
// multipart/form-data. Null (no Content-Type): kOther.
BodyType RequestBodyType(const std::string* content_type);
// request-transformer's choice: the lowercase Content-Type containing application/json, else
// multipart/form-data, else application/x-www-form-urlencoded.
BodyType TransformerBodyType(const std::string* content_type);

// A request body as kong.request.get_body returns it: a JSON document that is an object or an
// array (cjson decodes both to tables), or form arguments; nullopt when Kong's get_body fails
// (no or another Content-Type, invalid JSON or a JSON scalar, a body too large to hold, and, a
// Portico deviation, multipart/form-data).
struct ParsedBody {
  BodyType type = BodyType::kOther;
  nlohmann::json json;  // kJson
  FormArguments form;   // kForm
};
std::optional<ParsedBody> ParseRequestBody(const std::string* content_type, absl::string_view body,
                                           bool body_too_large);

// Lua's truth of object[name] on a decoded JSON object: false when absent or `false`.
bool JsonMemberTruthy(const nlohmann::json& object, const std::string& name);
// Kong's append_value(object[name], value) on a decoded JSON object: a string becomes [string,
// value]; an array gets value at its end; a non-empty object gets it as member "1" (Lua's
// table.insert on a table without array part, which cjson writes as an object), an empty one
// becomes [value]; anything else (absent, number, boolean, null) becomes [value].
void JsonAppendValue(nlohmann::json& object, const std::string& name, nlohmann::json value);
// The transformers' rename: object[to] = object[from]; object[from] = nil (so a rename of an
// absent member removes `to`, and a rename to itself removes the member).
void JsonRenameMember(nlohmann::json& object, const std::string& from, const std::string& to);
// Serialises without throwing: compact, invalid UTF-8 replaced by U+FFFD. Object members come out
// sorted by name (cjson writes them in hash order) and numbers and escapes as nlohmann writes them.
std::string DumpJson(const nlohmann::json& value);

}  // namespace portico::dp::plugins
