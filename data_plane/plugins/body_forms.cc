#include "data_plane/plugins/body_forms.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "data_plane/pipeline/query_arguments.h"

namespace portico::dp::plugins {
namespace {

// The lowercase media type of a Content-Type (what precedes ';').
std::string MediaType(const std::string& content_type) {
  std::string lower = absl::AsciiStrToLower(content_type);
  if (const size_t semicolon = lower.find(';'); semicolon != std::string::npos) lower.resize(semicolon);
  return lower;
}

}  // namespace

FormArguments DecodeForm(absl::string_view body) {
  FormArguments args;
  std::string name;
  ForEachQueryArgument(body, [&](absl::string_view raw_name, absl::string_view raw_value, absl::string_view pair) {
    DecodeQueryValue(raw_name, &name);
    if (name.empty()) return;
    FormValue value;
    value.flag = pair.find('=') == absl::string_view::npos;
    if (!value.flag) DecodeQueryValue(raw_value, &value.text);
    FormArgument* arg = FindFormArgument(args, name);
    if (arg == nullptr) {
      arg = &args.emplace_back();
      arg->name = name;
    }
    arg->values.push_back(std::move(value));
  });
  return args;
}

FormArgument* FindFormArgument(FormArguments& args, absl::string_view name) {
  for (FormArgument& arg : args) {
    if (arg.name == name) return &arg;
  }
  return nullptr;
}

const FormArgument* FindFormArgument(const FormArguments& args, absl::string_view name) {
  for (const FormArgument& arg : args) {
    if (arg.name == name) return &arg;
  }
  return nullptr;
}

void EraseFormArgument(FormArguments& args, absl::string_view name) {
  args.erase(std::remove_if(args.begin(), args.end(), [name](const FormArgument& a) { return a.name == name; }),
             args.end());
}

void AppendFormValue(FormArguments& args, absl::string_view name, absl::string_view value) {
  FormArgument* arg = FindFormArgument(args, name);
  if (arg == nullptr) {
    arg = &args.emplace_back();
    arg->name = std::string(name);
  } else if (arg->values.size() == 1 && arg->values[0].flag) {
    arg->values.clear();  // Lua's `true` is neither a string nor a table: replaced
  }
  arg->values.push_back(FormValue{std::string(value), false});
}

std::string EncodeFormSorted(const FormArguments& args) {
  std::vector<std::string> pieces;
  pieces.reserve(args.size());
  for (const FormArgument& arg : args) {
    std::string piece;
    for (size_t i = 0; i < arg.values.size(); ++i) {
      if (i > 0) piece.push_back('&');
      AppendEscaped(&piece, arg.name);
      if (arg.values[i].flag) continue;
      piece.push_back('=');
      AppendEscaped(&piece, arg.values[i].text);
    }
    pieces.push_back(std::move(piece));
  }
  std::sort(pieces.begin(), pieces.end());
  std::string out;
  for (const std::string& piece : pieces) {
    if (!out.empty()) out.push_back('&');
    out.append(piece);
  }
  return out;
}

BodyType RequestBodyType(const std::string* content_type) {
  if (content_type == nullptr) return BodyType::kOther;
  const std::string media = MediaType(*content_type);
  if (absl::StartsWith(media, "application/x-www-form-urlencoded")) return BodyType::kForm;
  if (absl::StartsWith(media, "application/json")) return BodyType::kJson;
  if (absl::StartsWith(media, "multipart/form-data")) return BodyType::kMultipart;
  return BodyType::kOther;
}

BodyType TransformerBodyType(const std::string* content_type) {
  if (content_type == nullptr) return BodyType::kOther;
  const std::string lower = absl::AsciiStrToLower(*content_type);
  if (absl::StrContains(lower, "application/json")) return BodyType::kJson;
  if (absl::StrContains(lower, "multipart/form-data")) return BodyType::kMultipart;
  if (absl::StrContains(lower, "application/x-www-form-urlencoded")) return BodyType::kForm;
  return BodyType::kOther;
}

std::optional<ParsedBody> ParseRequestBody(const std::string* content_type, absl::string_view body,
                                           bool body_too_large) {
  if (body_too_large) return std::nullopt;
  ParsedBody parsed;
  parsed.type = RequestBodyType(content_type);
  switch (parsed.type) {
    case BodyType::kForm:
      parsed.form = DecodeForm(body);
      return parsed;
    case BodyType::kJson:
      parsed.json = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
      if (!parsed.json.is_object() && !parsed.json.is_array()) return std::nullopt;  // incl. discarded
      return parsed;
    default:
      return std::nullopt;
  }
}

bool JsonMemberTruthy(const nlohmann::json& object, const std::string& name) {
  auto it = object.find(name);
  return it != object.end() && !(it->is_boolean() && !it->get<bool>());
}

void JsonAppendValue(nlohmann::json& object, const std::string& name, nlohmann::json value) {
  auto it = object.find(name);
  if (it == object.end()) {
    object[name] = nlohmann::json::array({std::move(value)});
  } else if (it->is_string()) {
    *it = nlohmann::json::array({std::move(*it), std::move(value)});
  } else if (it->is_array()) {
    it->push_back(std::move(value));
  } else if (it->is_object() && !it->empty()) {
    (*it)["1"] = std::move(value);
  } else {
    *it = nlohmann::json::array({std::move(value)});
  }
}

void JsonRenameMember(nlohmann::json& object, const std::string& from, const std::string& to) {
  auto it = object.find(from);
  if (it == object.end()) {
    object.erase(to);
    return;
  }
  nlohmann::json value = std::move(*it);
  object.erase(it);
  if (from != to) object[to] = std::move(value);
}

std::string DumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace portico::dp::plugins
