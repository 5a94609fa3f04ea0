#include "control_plane/admin/request_decoding.h"

#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace portico::cp {

using nlohmann::json;

std::string PercentDecode(absl::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    int hi = 0, lo = 0;
    auto hex = [](char h, int* v) {
      if (h >= '0' && h <= '9') *v = h - '0';
      else if (h >= 'a' && h <= 'f') *v = h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') *v = h - 'A' + 10;
      else return false;
      return true;
    };
    if (c == '%' && i + 2 < in.size() + 0 && hex(in[i + 1], &hi) && hex(in[i + 2], &lo)) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string PercentEncode(absl::string_view in) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

bool JsonTooDeep(absl::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

json ParseJsonCapped(absl::string_view text, bool* too_deep) {
  if (JsonTooDeep(text)) {
    if (too_deep) *too_deep = true;
    return json(json::value_t::discarded);
  }
  return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

std::vector<std::pair<std::string, std::string>> ParseQuery(absl::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    size_t eq = part.find('=');
    absl::string_view key = part.substr(0, eq);
    absl::string_view value = eq == absl::string_view::npos ? "" : part.substr(eq + 1);
    out.emplace_back(PercentDecode(key, true), PercentDecode(value, true));
  }
  return out;
}

json FormToJson(absl::string_view body, FieldKindOf kind_of) {
  json out = json::object();
  for (const auto& [raw_key, value] : ParseQuery(body)) {
    std::string key = raw_key;
    const bool array_item = absl::EndsWith(key, "[]");
    if (array_item) key.resize(key.size() - 2);
    std::string sub;
    if (size_t dot = key.find('.'); dot != std::string::npos) {
      sub = key.substr(dot + 1);
      key.resize(dot);
    }
    FieldKind kind = kind_of(key);
    if (!sub.empty()) {
      json& parent = out[key];
      if (!parent.is_object()) parent = json::object();
      if (kind == FieldKind::kStringMap) {
        parent[sub].push_back(value);
        continue;
      }
      // A record's nested records: "healthchecks.active.healthy.interval=5".
      json* leaf_parent = &parent;
      std::vector<std::string> path = absl::StrSplit(sub, '.');
      if (kind == FieldKind::kRecord) {
        for (size_t i = 0; i + 1 < path.size(); ++i) {
          json& next = (*leaf_parent)[path[i]];
          if (!next.is_object()) next = json::object();
          leaf_parent = &next;
        }
      } else {
        path = {sub};
      }
      json& leaf = (*leaf_parent)[path.back()];
      if (array_item) {
        if (!leaf.is_array()) leaf = json::array();
        if (!value.empty()) leaf.push_back(value);
      } else {
        leaf = value.empty() ? json(nullptr) : json(value);
      }
      continue;
    }
    switch (kind) {
      case FieldKind::kArray:
      case FieldKind::kRecordArray: {
        json& array = out[key];
        if (!array.is_array()) array = json::array();
        if (!value.empty()) array.push_back(value);
        break;
      }
      case FieldKind::kInteger: {
        int64_t n = 0;
        if (value.empty()) out[key] = nullptr;
        else if (absl::SimpleAtoi(value, &n)) out[key] = n;
        else out[key] = value;
        break;
      }
      case FieldKind::kBoolean:
        if (value == "true") out[key] = true;
        else if (value == "false") out[key] = false;
        else if (value.empty()) out[key] = nullptr;
        else out[key] = value;
        break;
      default:
        out[key] = value.empty() ? json(nullptr) : json(value);
    }
  }
  return out;
}

DecodedBody DecodeBody(const HttpRequest& request, FieldKindOf kind_of) {
  DecodedBody result;
  auto fail = [&result](int status, std::string message) {
    result.error_status = status;
    result.error_message = std::move(message);
    return result;
  };
  if (request.HeaderCount("Content-Type") > 1) {
    return fail(400, "Bad request: multiple Content-Type headers");
  }
  if (absl::StripAsciiWhitespace(request.body).empty()) return result;
  const std::string* content_type = request.Header("Content-Type");
  std::string media = content_type ? absl::AsciiStrToLower(absl::StripAsciiWhitespace(
                                         absl::string_view(*content_type).substr(0, content_type->find(';'))))
                                   : "";
  if (media == "application/json") {
    bool too_deep = false;
    json parsed = ParseJsonCapped(request.body, &too_deep);
    if (too_deep) {
      return fail(400, absl::StrCat("Cannot parse JSON body: nested deeper than ", kMaxJsonDepth, " levels"));
    }
    if (parsed.is_discarded() || !parsed.is_object()) {
      return fail(400, "Cannot parse JSON body");
    }
    result.value = std::move(parsed);
  } else if (media == "application/x-www-form-urlencoded") {
    result.value = FormToJson(request.body, kind_of);
  } else {
    return fail(415, "Unsupported Content-Type");
  }
  return result;
}

}  // namespace portico::cp
