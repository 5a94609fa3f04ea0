#include "data_plane/plugins/response_transformer/response_transformer.h"

#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "common/plugins/request_transformer.h"
#include "data_plane/plugins/body_forms.h"
#include "nlohmann/json.hpp"

namespace portico::dp::plugins {
namespace {

struct HeaderEdit {
  std::string name;
  std::string name_lower;
  std::string value;  // rename: the new name
};

// One json edit: the member's name and, but for remove, the value (rename: the new name) as Kong's
// json_value makes it from the entry (cast per json_types), worked out once per snapshot.
struct JsonEdit {
  std::string name;
  std::string new_name;                // rename; empty: Kong skips the entry
  std::optional<nlohmann::json> value;  // replace/add/append; nullopt: Kong's nil, skipped
};

// The value of a header as the client will get it: set by a plugin, else the upstream's unless
// dropped. Null when absent.
const std::string* EffectiveResponseHeader(const RequestContext& request, absl::string_view lower_name) {
  for (const auto& [name, value] : request.response_headers.items()) {
    if (absl::EqualsIgnoreCase(name, lower_name)) return &value;
  }
  if (request.response_head == nullptr) return nullptr;
  for (absl::string_view d : request.response_headers_removed) {
    if (d == lower_name) return nullptr;
  }
  return request.response_head->Find(lower_name);
}

class ResponseTransformer final : public PluginHandler {
 public:
  StepStatus Access(RequestContext&) const override { return StepStatus::kContinue; }
  bool filters_headers() const override { return true; }
  bool filters_body() const override { return has_json_; }

  // Kong's body_filter: the JSON object body edited in Kong's order and written again (even when
  // no edit applied). Anything else (not JSON, not an object) goes through unchanged.
  void BodyFilter(RequestContext& request, int) const override {
    if (!has_json_ || !EditsBody(request)) return;
    const std::string& body = request.response_body;
    nlohmann::json object = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (!object.is_object()) return;
    for (const JsonEdit& e : remove_json_) object.erase(e.name);
    for (const JsonEdit& e : rename_json_) {
      if (!e.new_name.empty() && object.contains(e.name)) JsonRenameMember(object, e.name, e.new_name);
    }
    for (const JsonEdit& e : replace_json_) {
      if (e.value && JsonMemberTruthy(object, e.name)) object[e.name] = *e.value;
    }
    for (const JsonEdit& e : add_json_) {
      if (e.value && !JsonMemberTruthy(object, e.name)) object[e.name] = *e.value;
    }
    for (const JsonEdit& e : append_json_) {
      if (e.value) JsonAppendValue(object, e.name, *e.value);
    }
    request.response_body = DumpJson(object);
  }

  void HeaderFilter(RequestContext& request, int status) const override {
    EditHeaders(request);
    if (has_json_ && EditsBody(request)) request.buffer_response_body = true;
  }

  std::vector<JsonEdit> remove_json_, rename_json_, replace_json_, add_json_, append_json_;
  bool has_json_ = false;

 private:
  // An upstream response whose Content-Type (as the client gets it) contains application/json
  // (any case) and whose body is not encoded (no Content-Encoding, or identity).
  static bool EditsBody(const RequestContext& request) {
    if (request.response_head == nullptr) return false;
    const std::string* type = EffectiveResponseHeader(request, "content-type");
    if (type == nullptr || !absl::StrContains(absl::AsciiStrToLower(*type), "application/json")) return false;
    const std::string* encoding = EffectiveResponseHeader(request, "content-encoding");
    return encoding == nullptr || absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(*encoding), "identity");
  }

 public:
  void EditHeaders(RequestContext& request) const {
    for (const HeaderEdit& e : remove_) Drop(request, e);
    for (const HeaderEdit& e : rename_) {
      if (!Exists(request, e)) continue;
      if (request.response_head != nullptr && !Dropped(request, e)) {
        for (const auto& [name, value] : request.response_head->headers) {
          if (absl::EqualsIgnoreCase(name, e.name)) request.response_headers.Add(e.value, value);
        }
        request.response_headers_removed.push_back(e.name_lower);
      }
      request.response_headers.Rename(e.name, e.value);
    }
    for (const HeaderEdit& e : replace_) {
      if (!Exists(request, e)) continue;
      Drop(request, e);
      request.response_headers.Add(e.name, e.value);
    }
    for (const HeaderEdit& e : add_) {
      if (!Exists(request, e)) request.response_headers.Add(e.name, e.value);
    }
    for (const HeaderEdit& e : append_) request.response_headers.Add(e.name, e.value);
  }

  std::vector<HeaderEdit> remove_, rename_, replace_, add_, append_;

 private:
  static bool Dropped(const RequestContext& request, const HeaderEdit& e) {
    for (absl::string_view d : request.response_headers_removed) {
      if (d == e.name_lower) return true;
    }
    return false;
  }
  static bool Exists(const RequestContext& request, const HeaderEdit& e) {
    if (request.response_headers.Contains(e.name)) return true;
    if (request.response_head == nullptr || Dropped(request, e)) return false;
    return request.response_head->Find(e.name) != nullptr;
  }
  static void Drop(RequestContext& request, const HeaderEdit& e) {
    if (request.response_head != nullptr && !Dropped(request, e)) request.response_headers_removed.push_back(e.name_lower);
    request.response_headers.Remove(e.name);
  }
};

// Lua's tonumber on a string, for decimal and 0x-hexadecimal numbers (surrounding whitespace
// allowed); nullopt when it is not one (and for inf and nan, which cjson cannot write).
std::optional<nlohmann::json> LuaToNumber(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  bool negative = false;
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  double value = 0;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    for (char c : text.substr(2)) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
      value = value * 16 + (absl::ascii_isdigit(static_cast<unsigned char>(c)) ? c - '0' : (absl::ascii_tolower(c) - 'a' + 10));
    }
  } else {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(text.front())) && text.front() != '.') return std::nullopt;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::general);
    if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  }
  if (negative) value = -value;
  if (!std::isfinite(value)) return std::nullopt;
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) return nlohmann::json(static_cast<int64_t>(value));
  return nlohmann::json(value);
}

// Kong's json_value(value, json_type): the entry's value ("null" when empty, as cjson writes nil)
// escaped as cjson writes a string, without the quotes and with \" and \/ turned back, then cast:
// number by tonumber (nullopt when not a number), boolean true only for "true".
std::optional<nlohmann::json> KongJsonValue(absl::string_view entry_value, absl::string_view json_type) {
  std::string v;
  if (entry_value.empty()) {
    v = "null";
  } else {
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : entry_value) {
      switch (c) {
        case '"': v += "\\\""; break;
        case '\\': v += "\\\\"; break;
        case '/': v += "\\/"; break;
        case '\b': v += "\\b"; break;
        case '\t': v += "\\t"; break;
        case '\n': v += "\\n"; break;
        case '\f': v += "\\f"; break;
        case '\r': v += "\\r"; break;
        default:
          if (c < 0x20 || c == 0x7f) {
            v += "\\u00";
            v.push_back(kHex[c >> 4]);
            v.push_back(kHex[c & 15]);
          } else {
            v.push_back(static_cast<char>(c));
          }
      }
    }
    v = absl::StrReplaceAll(v, {{"\\\"", "\""}});
  }
  v = absl::StrReplaceAll(v, {{"\\/", "/"}});
  if (json_type == "number") return LuaToNumber(v);
  if (json_type == "boolean") return nlohmann::json(v == "true");
  return nlohmann::json(v);
}

// The json entries of one operation, with the json_types at the same positions.
std::vector<JsonEdit> JsonEdits(const nlohmann::json& record, bool remove, bool rename) {
  std::vector<JsonEdit> out;
  const nlohmann::json* types = record.contains("json_types") ? &record["json_types"] : nullptr;
  size_t i = 0;
  for (const nlohmann::json& item : record["json"]) {
    const portico::plugins::TransformerPair pair =
        portico::plugins::SplitTransformerPair(item.get_ref<const std::string&>());
    JsonEdit& e = out.emplace_back();
    e.name = std::string(pair.name);  // remove too: Kong's iter splits every entry
    if (rename) {
      e.new_name = std::string(pair.value);
    } else if (!remove) {
      const nlohmann::json* type = types != nullptr && i < types->size() ? &(*types)[i] : nullptr;
      e.value = KongJsonValue(pair.value, type != nullptr && type->is_string() ? type->get_ref<const std::string&>()
                                                                             : std::string());
    }
    ++i;
  }
  return out;
}

// "name:value" items (remove: names only).
std::vector<HeaderEdit> Edits(const nlohmann::json& list, bool pairs) {
  std::vector<HeaderEdit> out;
  for (const nlohmann::json& item : list) {
    const portico::plugins::TransformerPair pair =
        portico::plugins::SplitTransformerPair(item.get_ref<const std::string&>());
    HeaderEdit& e = out.emplace_back();
    e.name = std::string(pair.name);
    if (pairs) e.value = std::string(pair.value);
    e.name_lower = absl::AsciiStrToLower(e.name);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<const PluginHandler>> CompileResponseTransformer(const PluginCompileContext& context) {
  const nlohmann::json& config = context.config;
  auto handler = std::make_unique<ResponseTransformer>();
  handler->remove_ = Edits(config["remove"]["headers"], false);
  handler->rename_ = Edits(config["rename"]["headers"], true);
  handler->replace_ = Edits(config["replace"]["headers"], true);
  handler->add_ = Edits(config["add"]["headers"], true);
  handler->append_ = Edits(config["append"]["headers"], true);
  handler->remove_json_ = JsonEdits(config["remove"], /*remove=*/true, false);
  handler->rename_json_ = JsonEdits(config["rename"], false, /*rename=*/true);
  handler->replace_json_ = JsonEdits(config["replace"], false, false);
  handler->add_json_ = JsonEdits(config["add"], false, false);
  handler->append_json_ = JsonEdits(config["append"], false, false);
  handler->has_json_ = !handler->remove_json_.empty() || !handler->rename_json_.empty() ||
                       !handler->replace_json_.empty() || !handler->add_json_.empty() ||
                       !handler->append_json_.empty();
  return std::unique_ptr<const PluginHandler>(std::move(handler));
}

}  // namespace portico::dp::plugins
