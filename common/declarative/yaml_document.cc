#include "common/declarative/yaml_document.h"

#include <yaml.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace portico {
namespace {

using nlohmann::json;

constexpr absl::string_view kYamlTagPrefix = "tag:yaml.org,2002:";

// ---------------------------------------------------------------------------------------------
// Positions and messages

// `s` with each invalid UTF-8 sequence replaced by U+FFFD (libyaml refuses invalid UTF-8).
std::string ValidUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char lead = static_cast<unsigned char>(s[i]);
    size_t length = 0;
    uint32_t min = 0;
    uint32_t code = 0;
    if (lead < 0x80) {
      length = 1;
      code = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, min = 0x80, code = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, min = 0x800, code = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, min = 0x10000, code = lead & 0x07;
    }
    bool valid = length > 0 && i + length <= s.size();
    for (size_t k = 1; valid && k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(s[i + k]);
      valid = (next & 0xC0) == 0x80;
      code = (code << 6) | (next & 0x3F);
    }
    valid = valid && code >= min && code <= 0x10FFFF && !(code >= 0xD800 && code <= 0xDFFF);
    if (valid) {
      out.append(s.data() + i, length);
      i += length;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

bool IsValidUtf8(absl::string_view s) { return ValidUtf8(s) == s; }

struct TextPosition {
  size_t line = 1;    // 1-based
  size_t column = 1;  // 1-based, in characters (code points), as libyaml counts
};

TextPosition PositionOfMark(const yaml_mark_t& mark) { return {mark.line + 1, mark.column + 1}; }

// The position of byte `offset` of `text` (columns count UTF-8 lead bytes, so characters).
TextPosition PositionOfOffset(absl::string_view text, size_t offset) {
  TextPosition position;
  offset = std::min(offset, text.size());
  for (size_t i = 0; i < offset; ++i) {
    const unsigned char byte = static_cast<unsigned char>(text[i]);
    if (byte == '\n') {
      ++position.line;
      position.column = 1;
    } else if ((byte & 0xC0) != 0x80) {
      ++position.column;
    }
  }
  return position;
}

// Messages are valid UTF-8 whatever the input, so that they can go into a JSON error body.
absl::Status ErrorAt(const TextPosition& position, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("line ", position.line, ", column ", position.column, ": ", ValidUtf8(what)));
}

absl::Status ErrorAt(const yaml_mark_t& mark, absl::string_view what) { return ErrorAt(PositionOfMark(mark), what); }

// User text quoted for a message: at most 100 bytes (cut on a character boundary), escaped.
std::string Quoted(absl::string_view text) {
  constexpr size_t kMax = 100;
  std::string suffix;
  if (text.size() > kMax) {
    size_t cut = kMax;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text = text.substr(0, cut);
    suffix = "...";
  }
  return absl::StrCat("\"", absl::Utf8SafeCEscape(text), suffix, "\"");
}

// "!!str" for "tag:yaml.org,2002:str", the tag itself otherwise.
std::string ShowTag(absl::string_view tag) {
  if (absl::StartsWith(tag, kYamlTagPrefix)) return Quoted(absl::StrCat("!!", tag.substr(kYamlTagPrefix.size())));
  return Quoted(tag);
}

// ---------------------------------------------------------------------------------------------
// Scalar resolution (YAML 1.2 core schema for plain scalars)

enum class PlainKind { kNull, kBool, kInt, kFloat, kNonFinite, kString };

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsOctalDigit(char c) { return c >= '0' && c <= '7'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool AllOf(absl::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}

bool IsNullText(absl::string_view s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }
bool IsTrueText(absl::string_view s) { return s == "true" || s == "True" || s == "TRUE"; }
bool IsFalseText(absl::string_view s) { return s == "false" || s == "False" || s == "FALSE"; }

bool IsIntText(absl::string_view s) {
  if (absl::StartsWith(s, "0x")) return AllOf(s.substr(2), IsHexDigit);
  if (absl::StartsWith(s, "0o")) return AllOf(s.substr(2), IsOctalDigit);
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return AllOf(s, IsDigit);
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsFloatText(absl::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && IsDigit(s[i])) ++i;
    return i - start;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  } else {
    if (digits() == 0) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

// [-+]?\.(inf|Inf|INF) and \.(nan|NaN|NAN): YAML's infinities and NaN, which JSON cannot hold.
bool IsNonFiniteText(absl::string_view s) {
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return true;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return s == ".inf" || s == ".Inf" || s == ".INF";
}

PlainKind ClassifyPlain(absl::string_view s) {
  if (IsNullText(s)) return PlainKind::kNull;
  if (IsTrueText(s) || IsFalseText(s)) return PlainKind::kBool;
  if (IsIntText(s)) return PlainKind::kInt;
  if (IsFloatText(s)) return PlainKind::kFloat;
  if (IsNonFiniteText(s)) return PlainKind::kNonFinite;
  return PlainKind::kString;
}

// An integer of IsIntText's forms; nullopt when it does not fit int64.
std::optional<int64_t> ParseIntText(absl::string_view s) {
  bool negative = false;
  int base = 10;
  if (absl::StartsWith(s, "0x")) {
    base = 16;
    s.remove_prefix(2);
  } else if (absl::StartsWith(s, "0o")) {
    base = 8;
    s.remove_prefix(2);
  } else if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  const uint64_t limit = negative ? uint64_t{1} << 63 : static_cast<uint64_t>(INT64_MAX);
  uint64_t magnitude = 0;
  for (char c : s) {
    const uint64_t digit = IsDigit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
    if (magnitude > (limit - digit) / base) return std::nullopt;
    magnitude = magnitude * base + digit;
  }
  if (!negative) return static_cast<int64_t>(magnitude);
  return magnitude == (uint64_t{1} << 63) ? INT64_MIN : -static_cast<int64_t>(magnitude);
}

// A finite double of IsFloatText's form; nullopt when it overflows. Underflow gives 0 or a
// subnormal, as strtod does.
std::optional<double> ParseFloatText(absl::string_view s) {
  double value = 0;
  if (!absl::SimpleAtod(s, &value) || !std::isfinite(value)) return std::nullopt;
  return value;
}

// The value of a scalar event's text, by its tag (empty: untagged) and whether it was plain.
absl::StatusOr<json> ResolveScalar(absl::string_view text, absl::string_view tag, bool plain,
                                   const yaml_mark_t& mark) {
  absl::string_view type;
  if (tag.empty()) {
    if (!plain) return json(std::string(text));
  } else if (tag == "!") {
    return json(std::string(text));  // the non-specific tag: a string
  } else if (absl::StartsWith(tag, kYamlTagPrefix)) {
    type = tag.substr(kYamlTagPrefix.size());
  } else {
    return ErrorAt(mark, absl::StrCat("unsupported tag ", ShowTag(tag)));
  }
  if (type == "str") return json(std::string(text));
  if (type == "map" || type == "seq") {
    return ErrorAt(mark, absl::StrCat("tag ", ShowTag(tag), " on a scalar"));
  }
  if (!type.empty() && type != "null" && type != "bool" && type != "int" && type != "float") {
    return ErrorAt(mark, absl::StrCat("unsupported tag ", ShowTag(tag)));
  }
  const PlainKind kind = ClassifyPlain(text);
  if (kind == PlainKind::kNonFinite) {
    return ErrorAt(mark, "infinity and NaN have no JSON representation");
  }
  if (type.empty()) {  // plain and untagged
    switch (kind) {
      case PlainKind::kNull:
        return json(nullptr);
      case PlainKind::kBool:
        return json(IsTrueText(text));
      case PlainKind::kString:
        return json(std::string(text));
      case PlainKind::kInt:
      case PlainKind::kFloat:
      case PlainKind::kNonFinite:
        break;
    }
  } else if (type == "null") {
    if (kind == PlainKind::kNull) return json(nullptr);
    return ErrorAt(mark, "the value is not a null (!!null)");
  } else if (type == "bool") {
    if (kind == PlainKind::kBool) return json(IsTrueText(text));
    return ErrorAt(mark, "the value is not a boolean (!!bool takes true or false)");
  } else if (type == "int" && kind != PlainKind::kInt) {
    return ErrorAt(mark, "the value is not an integer (!!int)");
  } else if (type == "float" && kind != PlainKind::kInt && kind != PlainKind::kFloat) {
    return ErrorAt(mark, "the value is not a number (!!float)");
  }
  if (kind == PlainKind::kInt && type != "float") {
    std::optional<int64_t> value = ParseIntText(text);
    if (!value) return ErrorAt(mark, "integer out of range (64-bit signed)");
    return json(*value);
  }
  // A float, or an integer under !!float (through int64 when it fits, so hex and octal work too).
  if (kind == PlainKind::kInt) {
    if (std::optional<int64_t> value = ParseIntText(text)) return json(static_cast<double>(*value));
    if (absl::StartsWith(text, "0x") || absl::StartsWith(text, "0o")) {
      return ErrorAt(mark, "number out of range");
    }
  }
  std::optional<double> value = ParseFloatText(text);
  if (!value) return ErrorAt(mark, "number out of range (64-bit float)");
  return json(*value);
}

// ---------------------------------------------------------------------------------------------
// YAML: libyaml events -> json tree (iterative, so nesting never grows the C++ stack)

class YamlParser {
 public:
  YamlParser() { initialized_ = yaml_parser_initialize(&parser_) != 0; }
  ~YamlParser() {
    if (initialized_) yaml_parser_delete(&parser_);
  }
  YamlParser(const YamlParser&) = delete;
  YamlParser& operator=(const YamlParser&) = delete;
  bool initialized() const { return initialized_; }
  yaml_parser_t* get() { return &parser_; }

 private:
  yaml_parser_t parser_;
  bool initialized_ = false;
};

class YamlEvent {
 public:
  YamlEvent() = default;
  ~YamlEvent() { Clear(); }
  YamlEvent(const YamlEvent&) = delete;
  YamlEvent& operator=(const YamlEvent&) = delete;
  // The next event; false when libyaml reports an error (the parser holds it).
  bool Next(yaml_parser_t* parser) {
    Clear();
    has_ = yaml_parser_parse(parser, &event_) != 0;
    return has_;
  }
  const yaml_event_t& operator*() const { return event_; }
  const yaml_event_t* operator->() const { return &event_; }

 private:
  void Clear() {
    if (has_) yaml_event_delete(&event_);
    has_ = false;
  }
  yaml_event_t event_{};
  bool has_ = false;
};

absl::string_view CString(const yaml_char_t* s) {
  return s == nullptr ? absl::string_view() : absl::string_view(reinterpret_cast<const char*>(s));
}

// libyaml's own error (reader, scanner, parser) as a positioned InvalidArgument.
absl::Status LibyamlError(const yaml_parser_t& parser, absl::string_view text) {
  if (parser.error == YAML_MEMORY_ERROR) return absl::ResourceExhaustedError("YAML parser out of memory");
  absl::string_view problem = parser.problem != nullptr ? parser.problem : "syntax error";
  if (parser.error == YAML_READER_ERROR) {
    // Invalid UTF-8 or a control character: libyaml gives the byte offset, not a mark.
    std::string what(problem);
    if (parser.problem_value != -1) {
      absl::StrAppend(&what, " (#", absl::Hex(parser.problem_value, absl::kZeroPad2), ")");
    }
    return ErrorAt(PositionOfOffset(text, parser.problem_offset), what);
  }
  std::string what(problem);
  if (parser.context != nullptr) {
    const TextPosition context = PositionOfMark(parser.context_mark);
    absl::StrAppend(&what, " (", parser.context, " at line ", context.line, ", column ", context.column, ")");
  }
  return ErrorAt(parser.problem_mark, what);
}

class TreeBuilder {
 public:
  TreeBuilder(absl::string_view text, const DocumentLimits& limits) : text_(text), limits_(limits) {}

  // The text's YAML grammar was refused (as opposed to a value or a limit).
  bool syntax_error() const { return syntax_error_; }

  absl::StatusOr<json> Build() {
    YamlParser parser;
    if (!parser.initialized()) return absl::ResourceExhaustedError("YAML parser out of memory");
    yaml_parser_set_input_string(parser.get(), reinterpret_cast<const unsigned char*>(text_.data()), text_.size());
    yaml_parser_set_encoding(parser.get(), YAML_UTF8_ENCODING);
    YamlEvent event;
    enum class Phase { kStream, kDocument, kContent, kAfterDocument } phase = Phase::kStream;
    while (true) {
      if (!event.Next(parser.get())) {
        syntax_error_ = true;
        return LibyamlError(*parser.get(), text_);
      }
      switch (event->type) {
        case YAML_STREAM_START_EVENT:
          phase = Phase::kDocument;
          break;
        case YAML_DOCUMENT_START_EVENT:
          if (phase == Phase::kAfterDocument) {
            return ErrorAt(event->start_mark, "a second document (only one document is allowed)");
          }
          phase = Phase::kContent;
          break;
        case YAML_DOCUMENT_END_EVENT:
          phase = Phase::kAfterDocument;
          break;
        case YAML_STREAM_END_EVENT:
          if (phase != Phase::kAfterDocument) return absl::InvalidArgumentError("empty document");
          if (!root_) return absl::InternalError("YAML document without a value");
          return std::move(*root_);
        case YAML_SCALAR_EVENT:
          if (absl::Status s = OnScalar(*event); !s.ok()) return s;
          break;
        case YAML_ALIAS_EVENT:
          if (absl::Status s = OnAlias(*event); !s.ok()) return s;
          break;
        case YAML_SEQUENCE_START_EVENT:
          if (absl::Status s = OnContainerStart(*event, /*mapping=*/false); !s.ok()) return s;
          break;
        case YAML_MAPPING_START_EVENT:
          if (absl::Status s = OnContainerStart(*event, /*mapping=*/true); !s.ok()) return s;
          break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
          if (absl::Status s = OnContainerEnd(*event); !s.ok()) return s;
          break;
        case YAML_NO_EVENT:
          return absl::InternalError("YAML parser produced no event");
      }
    }
  }

 private:
  // A completed anchored node, copied on each alias.
  struct Anchor {
    json value;
    size_t nodes = 0;  // values in `value`, itself included
    size_t bytes = 0;  // string bytes in `value`, keys included
    int height = 0;    // container nesting inside `value` (a scalar: 0)
    // For a scalar: its text, so an alias used as a mapping key gives the text.
    bool is_scalar = false;
    std::string scalar_text;
    // An anchored mapping key whose text does not resolve as a value: what an alias to it as a
    // value gives.
    absl::Status value_error;
  };

  // An open sequence or mapping.
  struct Frame {
    bool mapping = false;
    json value;
    std::string anchor;
    yaml_mark_t start{};
    size_t nodes_before = 0;  // nodes_ before this container was counted
    size_t bytes_before = 0;  // bytes_ then
    int child_height = 0;
    // Mapping only: the key waiting for its value.
    bool has_key = false;
    std::string key;
    yaml_mark_t key_mark{};
    bool key_is_merge = false;
    bool seen_merge = false;
    std::vector<json> merge_sources;  // values of `<<`, in order (mappings only)
  };

  size_t depth() const { return stack_.size(); }

  // Tags a mapping key may carry: none, "!", or a YAML scalar type (the key is its text anyway).
  static bool IsScalarKeyTag(absl::string_view tag) {
    if (tag.empty() || tag == "!") return true;
    if (!absl::StartsWith(tag, kYamlTagPrefix)) return false;
    absl::string_view type = tag.substr(kYamlTagPrefix.size());
    return type == "str" || type == "int" || type == "float" || type == "bool" || type == "null";
  }
  bool ExpectingKey() const { return !stack_.empty() && stack_.back().mapping && !stack_.back().has_key; }

  // A value read from the text, holding `bytes` of string.
  absl::Status CountTextNode(size_t bytes, const yaml_mark_t& mark) {
    if (nodes_ + 1 > limits_.max_nodes) {
      return ErrorAt(mark, absl::StrCat("the document has more than ", limits_.max_nodes, " values (the limit)"));
    }
    ++nodes_;
    ++text_nodes_;
    bytes_ += bytes;
    return absl::OkStatus();
  }

  static size_t Budget(size_t base, size_t per_unit, size_t units) {
    if (per_unit != 0 && units > (std::numeric_limits<size_t>::max() - base) / per_unit) {
      return std::numeric_limits<size_t>::max();
    }
    return base + per_unit * units;
  }

  // Copies (alias expansions, and the copy an anchor keeps of its node) may hold at most
  // alias_nodes_base + alias_nodes_per_text_node * (values read from the text) values and
  // alias_bytes_base + alias_nodes_per_text_node * (the text's size) string bytes. Counts the copy.
  absl::Status CountCopy(size_t nodes, size_t bytes, absl::string_view what, const yaml_mark_t& mark) {
    const size_t allowed_nodes =
        Budget(limits_.alias_nodes_base, limits_.alias_nodes_per_text_node, text_nodes_);
    if (copied_nodes_ + nodes > allowed_nodes) {
      return ErrorAt(mark, absl::StrCat(what, " ", allowed_nodes, " nodes (", limits_.alias_nodes_base, " + ",
                                        limits_.alias_nodes_per_text_node, " per value written in the text)"));
    }
    const size_t allowed_bytes = Budget(limits_.alias_bytes_base, limits_.alias_nodes_per_text_node, text_.size());
    if (copied_bytes_ + bytes > allowed_bytes) {
      return ErrorAt(mark, absl::StrCat(what, " ", allowed_bytes, " bytes of strings (",
                                        limits_.alias_bytes_base, " + ", limits_.alias_nodes_per_text_node,
                                        " per byte of the text)"));
    }
    copied_nodes_ += nodes;
    copied_bytes_ += bytes;
    return absl::OkStatus();
  }

  absl::Status OnScalar(const yaml_event_t& event) {
    const auto& scalar = event.data.scalar;
    absl::string_view text(reinterpret_cast<const char*>(scalar.value), scalar.length);
    absl::string_view tag = CString(scalar.tag);
    const bool plain = scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (ExpectingKey()) {
      if (!IsScalarKeyTag(tag)) {
        return ErrorAt(event.start_mark, absl::StrCat("unsupported tag ", ShowTag(tag), " on a mapping key"));
      }
      if (absl::string_view anchor = CString(scalar.anchor); !anchor.empty()) {
        // Aliased as a value, an anchored key resolves as a value would.
        absl::Status counted = CountCopy(1, text.size(), "anchored values exceed", event.start_mark);
        if (!counted.ok()) return counted;
        Anchor saved{json(nullptr), 1, text.size(), 0, true, std::string(text), absl::OkStatus()};
        absl::StatusOr<json> value = ResolveScalar(text, tag, plain, event.start_mark);
        if (value.ok()) {
          saved.value = *std::move(value);
        } else {
          saved.value_error = value.status();
        }
        anchors_.insert_or_assign(std::string(anchor), std::move(saved));
      }
      return OnKey(std::string(text), /*merge_candidate=*/plain && tag.empty() && text == "<<", event.start_mark);
    }
    absl::StatusOr<json> value = ResolveScalar(text, tag, plain, event.start_mark);
    if (!value.ok()) return value.status();
    const size_t bytes = value->is_string() ? text.size() : 0;
    if (absl::Status s = CountTextNode(bytes, event.start_mark); !s.ok()) return s;
    if (absl::string_view anchor = CString(scalar.anchor); !anchor.empty()) {
      if (absl::Status s = CountCopy(1, bytes, "anchored values exceed", event.start_mark); !s.ok()) return s;
      anchors_.insert_or_assign(std::string(anchor),
                                Anchor{*value, 1, bytes, 0, true, std::string(text), absl::OkStatus()});
    }
    return Deliver(*std::move(value), 0, event.start_mark);
  }

  absl::Status OnKey(std::string key, bool merge_candidate, const yaml_mark_t& mark) {
    Frame& frame = stack_.back();
    if (merge_candidate ? frame.seen_merge : frame.value.contains(key)) {
      return ErrorAt(mark, absl::StrCat("duplicate key ", Quoted(key)));
    }
    bytes_ += key.size();
    frame.has_key = true;
    frame.key = std::move(key);
    frame.key_mark = mark;
    frame.key_is_merge = merge_candidate;
    if (merge_candidate) frame.seen_merge = true;
    return absl::OkStatus();
  }

  absl::Status OnAlias(const yaml_event_t& event) {
    absl::string_view name = CString(event.data.alias.anchor);
    auto it = anchors_.find(name);
    if (it == anchors_.end()) {
      return ErrorAt(event.start_mark, absl::StrCat("unknown alias *", absl::Utf8SafeCEscape(name)));
    }
    const Anchor& anchor = it->second;
    if (ExpectingKey()) {
      if (!anchor.is_scalar) return ErrorAt(event.start_mark, "a mapping key must be a scalar (the alias is not)");
      return OnKey(anchor.scalar_text, /*merge_candidate=*/false, event.start_mark);
    }
    if (!anchor.value_error.ok()) return anchor.value_error;
    if (absl::Status s = CheckAliasExpansion(anchor, event.start_mark); !s.ok()) return s;
    nodes_ += anchor.nodes;
    bytes_ += anchor.bytes;
    return Deliver(json(anchor.value), anchor.height, event.start_mark);
  }

  // Refuses, before anything is copied, an expansion that would pass a limit.
  absl::Status CheckAliasExpansion(const Anchor& anchor, const yaml_mark_t& mark) {
    if (static_cast<size_t>(anchor.height) + depth() > static_cast<size_t>(std::max(limits_.max_depth, 0))) {
      return ErrorAt(mark, absl::StrCat("alias expansion exceeds the nesting depth limit of ", limits_.max_depth));
    }
    if (nodes_ + anchor.nodes > limits_.max_nodes) {
      return ErrorAt(mark, absl::StrCat("alias expansion exceeds the limit of ", limits_.max_nodes,
                                        " nodes in a document"));
    }
    return CountCopy(anchor.nodes, anchor.bytes, "alias expansion exceeds", mark);
  }

  absl::Status OnContainerStart(const yaml_event_t& event, bool mapping) {
    if (ExpectingKey()) return ErrorAt(event.start_mark, "a mapping key must be a scalar");
    absl::string_view tag = mapping ? CString(event.data.mapping_start.tag) : CString(event.data.sequence_start.tag);
    absl::string_view anchor =
        mapping ? CString(event.data.mapping_start.anchor) : CString(event.data.sequence_start.anchor);
    if (!tag.empty() && tag != "!" && tag != absl::StrCat(kYamlTagPrefix, mapping ? "map" : "seq")) {
      return ErrorAt(event.start_mark, absl::StrCat("unsupported tag ", ShowTag(tag), " on a ",
                                                    mapping ? "mapping" : "sequence"));
    }
    if (depth() + 1 > static_cast<size_t>(std::max(limits_.max_depth, 0))) {
      return ErrorAt(event.start_mark, absl::StrCat("nesting exceeds the depth limit of ", limits_.max_depth));
    }
    Frame frame;
    frame.mapping = mapping;
    frame.value = mapping ? json::object() : json::array();
    frame.anchor = std::string(anchor);
    frame.start = event.start_mark;
    frame.nodes_before = nodes_;
    frame.bytes_before = bytes_;
    if (absl::Status s = CountTextNode(0, event.start_mark); !s.ok()) return s;
    stack_.push_back(std::move(frame));
    return absl::OkStatus();
  }

  absl::Status OnContainerEnd(const yaml_event_t& event) {
    if (stack_.empty()) return absl::InternalError("YAML container end without a start");
    Frame frame = std::move(stack_.back());
    stack_.pop_back();
    if (frame.mapping) {
      // Explicit keys win over merged ones; earlier merged mappings win over later ones.
      for (json& source : frame.merge_sources) {
        for (auto& [key, value] : source.items()) {
          if (!frame.value.contains(key)) frame.value[key] = std::move(value);
        }
      }
      frame.merge_sources.clear();
    }
    const int height = frame.child_height + 1;
    if (!frame.anchor.empty()) {
      const size_t nodes = nodes_ - frame.nodes_before;
      const size_t bytes = bytes_ - frame.bytes_before;
      if (absl::Status s = CountCopy(nodes, bytes, "anchored values exceed", frame.start); !s.ok()) return s;
      anchors_.insert_or_assign(frame.anchor, Anchor{frame.value, nodes, bytes, height, false, {}, absl::OkStatus()});
    }
    return Deliver(std::move(frame.value), height, event.start_mark);
  }

  // A completed value goes into the open container (or becomes the document).
  absl::Status Deliver(json value, int height, const yaml_mark_t& mark) {
    if (stack_.empty()) {
      root_ = std::move(value);
      return absl::OkStatus();
    }
    Frame& frame = stack_.back();
    frame.child_height = std::max(frame.child_height, height);
    if (!frame.mapping) {
      frame.value.push_back(std::move(value));
      return absl::OkStatus();
    }
    if (!frame.has_key) return absl::InternalError("YAML mapping value without a key");
    frame.has_key = false;
    if (frame.key_is_merge) {
      bool mappings_only = value.is_object();
      if (value.is_array()) {
        mappings_only = std::all_of(value.begin(), value.end(), [](const json& v) { return v.is_object(); });
      }
      if (!mappings_only) {
        return ErrorAt(frame.key_mark, "a merge key (<<) takes a mapping or a sequence of mappings");
      }
      if (value.is_object()) {
        frame.merge_sources.push_back(std::move(value));
      } else {
        for (json& source : value) frame.merge_sources.push_back(std::move(source));
      }
      return absl::OkStatus();
    }
    frame.value[std::move(frame.key)] = std::move(value);
    return absl::OkStatus();
  }

  absl::string_view text_;
  const DocumentLimits& limits_;
  std::vector<Frame> stack_;
  std::optional<json> root_;
  absl::flat_hash_map<std::string, Anchor> anchors_;
  size_t nodes_ = 0;         // values in the tree, alias copies included
  size_t bytes_ = 0;         // string bytes in the tree (values and keys), alias copies included
  size_t text_nodes_ = 0;    // values read from the text
  size_t copied_nodes_ = 0;  // values copied: by alias expansion, and kept by anchors
  size_t copied_bytes_ = 0;  // string bytes copied
  bool syntax_error_ = false;
};

// ---------------------------------------------------------------------------------------------
// JSON: nlohmann's SAX parser (libyaml rejects JSON's surrogate-pair escapes), same limits

// A const char* iterator that records the furthest byte the JSON lexer has read, so errors found
// in SAX callbacks (which get no position) can name one.
class TrackingIterator {
 public:
  using iterator_category = std::forward_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackingIterator() = default;
  TrackingIterator(const char* p, const char* begin, size_t* furthest) : p_(p), begin_(begin), furthest_(furthest) {}
  reference operator*() const {
    if (furthest_ != nullptr) *furthest_ = std::max(*furthest_, static_cast<size_t>(p_ - begin_));
    return *p_;
  }
  TrackingIterator& operator++() {
    ++p_;
    return *this;
  }
  TrackingIterator operator++(int) {
    TrackingIterator old = *this;
    ++p_;
    return old;
  }
  bool operator==(const TrackingIterator& other) const { return p_ == other.p_; }
  bool operator!=(const TrackingIterator& other) const { return p_ != other.p_; }

 private:
  const char* p_ = nullptr;
  const char* begin_ = nullptr;
  size_t* furthest_ = nullptr;
};

class JsonTreeSax {
 public:
  JsonTreeSax(absl::string_view text, const DocumentLimits& limits, const size_t* furthest)
      : text_(text), limits_(limits), furthest_(furthest) {}

  bool null() { return Value(json(nullptr)); }
  bool boolean(bool value) { return Value(json(value)); }
  bool number_integer(json::number_integer_t value) { return Value(json(value)); }
  bool number_unsigned(json::number_unsigned_t value) {
    if (value > static_cast<json::number_unsigned_t>(INT64_MAX)) {
      return Fail("integer out of range (64-bit signed)");
    }
    return Value(json(static_cast<int64_t>(value)));
  }
  bool number_float(json::number_float_t value, const std::string& literal) {
    if (literal.find_first_of(".eE") == std::string::npos) {
      return Fail("integer out of range (64-bit signed)");
    }
    if (!std::isfinite(value)) return Fail("number out of range (64-bit float)");
    return Value(json(value));
  }
  bool string(std::string& value) { return Value(json(std::move(value))); }
  bool binary(json::binary_t&) { return Fail("binary values are not JSON"); }
  bool start_object(std::size_t) { return Open(json::object()); }
  bool start_array(std::size_t) { return Open(json::array()); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }
  bool key(std::string& key) {
    if (stack_.back()->contains(key)) return Fail(absl::StrCat("duplicate key ", Quoted(key)));
    key_ = std::move(key);
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& error) {
    // what(): "[json.exception.parse_error.101] parse error at line 1, column 7: <what>; last read:
    // '<input>'; expected ...". Keep <what> and "expected ...", not the input it quotes.
    absl::string_view message = error.what();
    if (size_t column = message.find("column "); column != absl::string_view::npos) {
      if (size_t at = message.find(": ", column); at != absl::string_view::npos) message.remove_prefix(at + 2);
    } else if (absl::StartsWith(message, "[json.exception.")) {
      message.remove_prefix(std::min(message.size(), message.find("] ") + 2));
    }
    const size_t last_read = message.find("; last read");
    std::string what(message.substr(0, last_read));
    // nlohmann ends with "; expected <token name>"; the quoted input before it may hold the same
    // words, so only a known token name counts.
    static constexpr absl::string_view kTokenNames[] = {
        "true literal", "false literal", "null literal", "string literal", "number literal", "'['", "'{'", "']'",
        "'}'", "':'", "','", "end of input", "'[', '{', or a literal", "unknown token"};
    if (size_t expected = message.rfind("; expected "); expected != absl::string_view::npos && expected > last_read &&
                                                        last_read != absl::string_view::npos) {
      absl::string_view name = message.substr(expected + 11);
      if (std::find(std::begin(kTokenNames), std::end(kTokenNames), name) != std::end(kTokenNames)) {
        absl::StrAppend(&what, "; expected ", name);
      }
    }
    status_ = ErrorAt(PositionOfOffset(text_, position > 0 ? position - 1 : 0), what);
    syntax_error_ = true;
    return false;
  }
  // The text is not JSON (as opposed to JSON refused for a limit, a duplicate key or a number).
  bool syntax_error() const { return syntax_error_; }

  absl::StatusOr<json> Take() {
    if (!status_.ok()) return status_;
    if (!root_) return absl::InternalError("JSON parser produced no value");
    return std::move(*root_);
  }
  const absl::Status& status() const { return status_; }

 private:
  bool Fail(absl::string_view what) {
    status_ = ErrorAt(PositionOfOffset(text_, *furthest_), what);
    return false;
  }

  bool Count() {
    if (++nodes_ > limits_.max_nodes) {
      return Fail(absl::StrCat("the document has more than ", limits_.max_nodes, " values (the limit)"));
    }
    return true;
  }

  // Adds a value to the open container; returns where it went.
  json* Place(json value) {
    if (stack_.empty()) {
      root_ = std::move(value);
      return &*root_;
    }
    json& container = *stack_.back();
    if (container.is_array()) {
      container.push_back(std::move(value));
      return &container.back();
    }
    json& slot = container[key_];
    slot = std::move(value);
    return &slot;
  }

  bool Value(json value) {
    if (!Count()) return false;
    Place(std::move(value));
    return true;
  }

  bool Open(json container) {
    if (stack_.size() + 1 > static_cast<size_t>(std::max(limits_.max_depth, 0))) {
      return Fail(absl::StrCat("nesting exceeds the depth limit of ", limits_.max_depth));
    }
    if (!Count()) return false;
    // The parent does not grow while this child is open, so the pointer stays valid.
    stack_.push_back(Place(std::move(container)));
    return true;
  }

  bool Close() {
    stack_.pop_back();
    return true;
  }

  absl::string_view text_;
  const DocumentLimits& limits_;
  const size_t* furthest_;
  std::vector<json*> stack_;
  std::optional<json> root_;
  std::string key_;
  size_t nodes_ = 0;
  absl::Status status_;
  bool syntax_error_ = false;
};

// `syntax_error` tells whether a failure was JSON's grammar refusing the text.
absl::StatusOr<json> ParseJson(absl::string_view text, const DocumentLimits& limits, bool* syntax_error) {
  size_t furthest = 0;
  JsonTreeSax sax(text, limits, &furthest);
  TrackingIterator begin(text.data(), text.data(), &furthest);
  TrackingIterator end(text.data() + text.size(), text.data(), nullptr);
  const bool ok = json::sax_parse(begin, end, &sax, json::input_format_t::json, /*strict=*/true);
  *syntax_error = sax.syntax_error();
  if (!ok && sax.status().ok()) return absl::InvalidArgumentError("JSON parse failed");
  return sax.Take();
}

bool LooksLikeJson(absl::string_view text) {
  if (absl::StartsWith(text, "\xEF\xBB\xBF")) text.remove_prefix(3);  // a UTF-8 BOM
  const size_t first = text.find_first_not_of(" \t\r\n");
  return first != absl::string_view::npos && (text[first] == '{' || text[first] == '[');
}

// ---------------------------------------------------------------------------------------------
// Emitter


// A double as the shortest text that parses back to it, still looking like a float ("1.0").
// Plain text that a YAML 1.1 reader (decK's go-yaml v2, Kong's lyaml, PyYAML) would not read as
// a string: its booleans (yes/no/on/off/y/n), the merge and value keys (<<, =), timestamps
// (2001-12-14T21:59:43Z) and number-like text such as 1_000, 0b101 or 1:20. Written quoted so
// that an export means the same to every reader.
bool ImplicitInYaml11(absl::string_view s) {
  static constexpr absl::string_view kWords[] = {"y",  "Y",  "yes", "Yes", "YES", "n",  "N",   "no",  "No",
                                                 "NO", "on", "On",  "ON",  "off", "Off", "OFF", "<<",  "="};
  for (absl::string_view word : kWords) {
    if (s == word) return true;
  }
  if (s.size() >= 8 && AllOf(s.substr(0, 4), IsDigit) && s[4] == '-') return true;  // a date or timestamp
  if (s.empty() || !(IsDigit(s[0]) || s[0] == '+' || s[0] == '-' || s[0] == '.')) return false;
  for (char c : s) {
    if (!(IsHexDigit(c) || c == '_' || c == ':' || c == '.' || c == '+' || c == '-' || c == 'x' || c == 'X' ||
          c == 'o' || c == 'O' || c == 'b' || c == 'B')) {
      return false;
    }
  }
  return true;
}

std::string FloatText(double value) {
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, error == std::errc() ? end : buffer);
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

class YamlWriter {
 public:
  YamlWriter() {
    ok_ = yaml_emitter_initialize(&emitter_) != 0;
    if (!ok_) return;
    yaml_emitter_set_output(&emitter_, &YamlWriter::Write, this);
    yaml_emitter_set_encoding(&emitter_, YAML_UTF8_ENCODING);
    yaml_emitter_set_unicode(&emitter_, 1);
    yaml_emitter_set_indent(&emitter_, 2);
    yaml_emitter_set_width(&emitter_, -1);  // never fold long lines
    yaml_emitter_set_break(&emitter_, YAML_LN_BREAK);
  }
  ~YamlWriter() { yaml_emitter_delete(&emitter_); }
  YamlWriter(const YamlWriter&) = delete;
  YamlWriter& operator=(const YamlWriter&) = delete;

  // The document, or nullopt when libyaml failed.
  std::optional<std::string> Document(const json& value) {
    yaml_event_t event;
    Emit(yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING), event);
    Emit(yaml_document_start_event_initialize(&event, nullptr, nullptr, nullptr, /*implicit=*/1), event);
    Node(value);
    Emit(yaml_document_end_event_initialize(&event, /*implicit=*/1), event);
    Emit(yaml_stream_end_event_initialize(&event), event);
    if (ok_) ok_ = yaml_emitter_flush(&emitter_) != 0;
    if (!ok_) return std::nullopt;
    return std::move(out_);
  }

 private:
  static int Write(void* data, unsigned char* buffer, size_t size) {
    try {
      static_cast<YamlWriter*>(data)->out_.append(reinterpret_cast<const char*>(buffer), size);
      return 1;
    } catch (...) {
      return 0;
    }
  }

  // `initialized` is the event initializer's result; the emitter owns the event either way.
  void Emit(int initialized, yaml_event_t& event) {
    if (!initialized) {
      ok_ = false;
      return;
    }
    if (!ok_) {
      yaml_event_delete(&event);
      return;
    }
    ok_ = yaml_emitter_emit(&emitter_, &event) != 0;
  }

  // A string scalar (a key or a value): plain only when this parser and YAML 1.1 readers would
  // both read it back as this string; literal block when it has several lines.
  void String(absl::string_view raw) {
    const std::string text = ValidUtf8(raw);
    if (text.size() > static_cast<size_t>(INT_MAX)) {
      ok_ = false;
      return;
    }
    // Keys too: a YAML 1.1 reader would turn a header named `on` or `1` into a boolean or a number.
    const bool plain_ok = ClassifyPlain(text) == PlainKind::kString && !ImplicitInYaml11(text);
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    // Characters YAML reads as line breaks besides LF (CR, NEL, LS, PS) only survive escaped.
    const bool other_breaks = text.find('\r') != std::string::npos || text.find("\xC2\x85") != std::string::npos ||
                              text.find("\xE2\x80\xA8") != std::string::npos ||
                              text.find("\xE2\x80\xA9") != std::string::npos;
    if (other_breaks) {
      style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    } else if (text.find('\n') != std::string::npos) {
      style = YAML_LITERAL_SCALAR_STYLE;  // libyaml falls back to double quotes where a block cannot say it
    }
    yaml_event_t event;
    Emit(yaml_scalar_event_initialize(&event, nullptr, nullptr, reinterpret_cast<const yaml_char_t*>(text.data()),
                                      static_cast<int>(text.size()), plain_ok ? 1 : 0, /*quoted_implicit=*/1, style),
         event);
  }

  void Plain(const std::string& text) {
    yaml_event_t event;
    Emit(yaml_scalar_event_initialize(&event, nullptr, nullptr, reinterpret_cast<const yaml_char_t*>(text.data()),
                                      static_cast<int>(text.size()), 1, 1, YAML_PLAIN_SCALAR_STYLE),
         event);
  }

  // Recursive: the caller bounds the nesting (values from ParseYamlDocument nest at most max_depth).
  void Node(const json& value) {
    if (!ok_) return;
    yaml_event_t event;
    switch (value.type()) {
      case json::value_t::object:
        Emit(yaml_mapping_start_event_initialize(&event, nullptr, nullptr, 1, YAML_BLOCK_MAPPING_STYLE), event);
        for (const auto& [key, member] : value.items()) {
          String(key);
          Node(member);
        }
        Emit(yaml_mapping_end_event_initialize(&event), event);
        break;
      case json::value_t::array:
        Emit(yaml_sequence_start_event_initialize(&event, nullptr, nullptr, 1, YAML_BLOCK_SEQUENCE_STYLE), event);
        for (const json& element : value) Node(element);
        Emit(yaml_sequence_end_event_initialize(&event), event);
        break;
      case json::value_t::string:
        String(value.get_ref<const std::string&>());
        break;
      case json::value_t::boolean:
        Plain(value.get<bool>() ? "true" : "false");
        break;
      case json::value_t::number_integer:
        Plain(absl::StrCat(value.get<int64_t>()));
        break;
      case json::value_t::number_unsigned:
        Plain(absl::StrCat(value.get<uint64_t>()));
        break;
      case json::value_t::number_float: {
        const double number = value.get<double>();
        Plain(std::isfinite(number) ? FloatText(number) : "null");
        break;
      }
      case json::value_t::null:
      case json::value_t::discarded:
      case json::value_t::binary:
        Plain("null");
        break;
    }
  }

  yaml_emitter_t emitter_;
  std::string out_;
  bool ok_ = false;
};

}  // namespace

absl::StatusOr<json> ParseYamlDocument(absl::string_view text, const DocumentLimits& limits) {
  try {
    if (LooksLikeJson(text)) {
      bool syntax_error = false;
      absl::StatusOr<json> parsed = ParseJson(text, limits, &syntax_error);
      if (parsed.ok() || !syntax_error) return parsed;
      // Flow-style YAML also starts with { or [: when JSON's grammar refuses the text, YAML gets a
      // try. A text neither grammar accepts gets JSON's error; valid YAML refused for a value or a
      // limit gets YAML's.
      if (!IsValidUtf8(text)) return parsed;
      TreeBuilder yaml(text, limits);
      absl::StatusOr<json> as_yaml = yaml.Build();
      if (as_yaml.ok() || !yaml.syntax_error()) return as_yaml;
      return parsed;
    }
    return TreeBuilder(text, limits).Build();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while parsing the document");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("document parser: ", e.what()));
  } catch (...) {
    return absl::InternalError("document parser: unknown exception");
  }
}

std::string ToYamlDocument(const json& value) {
  try {
    YamlWriter writer;
    if (std::optional<std::string> text = writer.Document(value)) return *std::move(text);
  } catch (...) {
  }
  return {};
}

}  // namespace portico
