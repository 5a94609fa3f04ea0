#include "data_plane/plugins/jwt/jwt_token.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "common/config/jwt_algorithms.h"

namespace portico::dp::plugins::jwt {
namespace {

constexpr int kMaxDepth = 1000;  // cjson's decode_max_depth

int Base64Value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of the 4 hex digits at `p` (REQUIRES: 4 characters), or -1.
int Hex4(const char* p) {
  int value = 0;
  for (int i = 0; i < 4; ++i) {
    const int digit = HexValue(p[i]);
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

// Feeds the decoded bytes of a scanned (so well-formed) JSON string body to `sink(char)`.
template <typename Sink>
void Unescape(absl::string_view raw, Sink&& sink) {
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\\') {
      sink(raw[i]);
      continue;
    }
    const char c = raw[++i];
    switch (c) {
      case 'b': sink('\b'); break;
      case 'f': sink('\f'); break;
      case 'n': sink('\n'); break;
      case 'r': sink('\r'); break;
      case 't': sink('\t'); break;
      case 'u': {
        uint32_t code = static_cast<uint32_t>(Hex4(raw.data() + i + 1));
        i += 4;
        if (code >= 0xD800 && code <= 0xDBFF) {  // a pair (the scanner checked it)
          code = 0x10000 + ((code - 0xD800) << 10) + (static_cast<uint32_t>(Hex4(raw.data() + i + 3)) - 0xDC00);
          i += 6;
        }
        if (code < 0x80) {
          sink(static_cast<char>(code));
        } else if (code < 0x800) {
          sink(static_cast<char>(0xC0 | (code >> 6)));
          sink(static_cast<char>(0x80 | (code & 0x3F)));
        } else if (code < 0x10000) {
          sink(static_cast<char>(0xE0 | (code >> 12)));
          sink(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
          sink(static_cast<char>(0x80 | (code & 0x3F)));
        } else {
          sink(static_cast<char>(0xF0 | (code >> 18)));
          sink(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
          sink(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
          sink(static_cast<char>(0x80 | (code & 0x3F)));
        }
        break;
      }
      default: sink(c); break;  // '"', '\\', '/'
    }
  }
}

// A strict JSON (RFC 8259) scanner over one document. Reports the top-level members of an object.
class JsonScanner {
 public:
  explicit JsonScanner(absl::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  // `on_member(const JsonMember& name, const JsonMember& value)` for each top-level member.
  template <typename OnMember>
  bool Document(OnMember&& on_member) {
    SkipSpace();
    bool ok = p_ < end_ && *p_ == '{' ? Object(1, on_member) : Value(0, nullptr);
    SkipSpace();
    return ok && p_ == end_;
  }

 private:
  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }
  bool Literal(absl::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() || absl::string_view(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }

  // At '"': the string's body.
  bool String(JsonMember* out) {
    const char* start = ++p_;
    bool escaped = false;
    while (p_ < end_) {
      const unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        out->type = JsonMember::kString;
        out->raw = absl::string_view(start, static_cast<size_t>(p_ - start));
        out->escaped = escaped;
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c != '\\') {
        ++p_;
        continue;
      }
      escaped = true;
      if (end_ - p_ < 2) return false;
      const char e = p_[1];
      if (e != 'u') {
        if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't') return false;
        p_ += 2;
        continue;
      }
      if (end_ - p_ < 6) return false;
      const int unit = Hex4(p_ + 2);
      if (unit < 0 || (unit >= 0xDC00 && unit <= 0xDFFF)) return false;
      p_ += 6;
      if (unit >= 0xD800 && unit <= 0xDBFF) {  // a high surrogate needs its low one
        if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') return false;
        const int low = Hex4(p_ + 2);
        if (low < 0xDC00 || low > 0xDFFF) return false;
        p_ += 6;
      }
    }
    return false;
  }

  bool Number(JsonMember* out) {
    const char* start = p_;
    auto digits = [this] {
      const char* from = p_;
      while (p_ < end_ && absl::ascii_isdigit(static_cast<unsigned char>(*p_))) ++p_;
      return p_ > from;
    };
    if (*p_ == '-') ++p_;
    if (p_ < end_ && *p_ == '0') {
      ++p_;
    } else if (!digits()) {
      return false;
    }
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!digits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!digits()) return false;
    }
    out->type = JsonMember::kNumber;
    out->raw = absl::string_view(start, static_cast<size_t>(p_ - start));
    if (!absl::SimpleAtod(out->raw, &out->number)) out->number = 0;
    return true;
  }

  // One value; `out` (may be null) gets what it is.
  bool Value(int depth, JsonMember* out) {
    JsonMember ignored;
    if (out == nullptr) out = &ignored;
    SkipSpace();
    if (p_ == end_) return false;
    out->type = JsonMember::kOther;
    switch (*p_) {
      case '{': return Object(depth + 1, [](const JsonMember&, const JsonMember&) {});
      case '[': return Array(depth + 1);
      case '"': return String(out);
      case 't': return Literal("true");
      case 'f': return Literal("false");
      case 'n': return Literal("null");
      default: return (*p_ == '-' || absl::ascii_isdigit(static_cast<unsigned char>(*p_))) && Number(out);
    }
  }

  template <typename OnMember>
  bool Object(int depth, OnMember&& on_member) {
    if (depth > kMaxDepth) return false;
    ++p_;  // '{'
    if (Consume('}')) return true;
    while (true) {
      SkipSpace();
      JsonMember name, value;
      if (p_ == end_ || *p_ != '"' || !String(&name) || !Consume(':') || !Value(depth, &value)) return false;
      on_member(name, value);
      if (Consume('}')) return true;
      if (!Consume(',')) return false;
    }
  }

  bool Array(int depth) {
    if (depth > kMaxDepth) return false;
    ++p_;  // '['
    if (Consume(']')) return true;
    while (true) {
      if (!Value(depth, nullptr)) return false;
      if (Consume(']')) return true;
      if (!Consume(',')) return false;
    }
  }

  const char* p_;
  const char* end_;
};

bool IsRegexSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

}  // namespace

bool DecodeBase64(absl::string_view in, std::string* out) {
  size_t length = in.find('=');
  if (length == absl::string_view::npos) length = in.size();
  if (length % 4 == 1) return false;
  uint32_t bits = 0;
  int count = 0;
  for (size_t i = 0; i < length; ++i) {
    const int v = Base64Value(static_cast<unsigned char>(in[i]));
    if (v < 0) return false;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    if (++count == 4) {
      out->push_back(static_cast<char>(bits >> 16));
      out->push_back(static_cast<char>(bits >> 8));
      out->push_back(static_cast<char>(bits));
      bits = 0;
      count = 0;
    }
  }
  if (count == 2) out->push_back(static_cast<char>(bits >> 4));
  if (count == 3) {
    out->push_back(static_cast<char>(bits >> 10));
    out->push_back(static_cast<char>(bits >> 2));
  }
  return true;
}

absl::string_view JsonStringValue(const JsonMember& member, std::string* storage) {
  if (!member.escaped) return member.raw;
  storage->clear();
  Unescape(member.raw, [storage](char c) { storage->push_back(c); });
  return *storage;
}

bool JsonStringEquals(const JsonMember& member, absl::string_view text, bool ignore_case) {
  if (member.type != JsonMember::kString) return false;
  size_t at = 0;
  bool equal = true;
  auto compare = [&](char c) {
    if (at >= text.size()) {
      equal = false;
    } else if (ignore_case ? absl::ascii_tolower(static_cast<unsigned char>(c)) !=
                                 absl::ascii_tolower(static_cast<unsigned char>(text[at]))
                           : c != text[at]) {
      equal = false;
    }
    ++at;
  };
  if (member.escaped) {
    Unescape(member.raw, compare);
  } else {
    for (char c : member.raw) compare(c);
  }
  return equal && at == text.size();
}

absl::string_view TokenErrorText(TokenError error) {
  switch (error) {
    case TokenError::kNone: return "";
    case TokenError::kInvalidJson: return "invalid JSON";
    case TokenError::kInvalidTyp: return "invalid typ";
    case TokenError::kInvalidAlg: return "invalid alg";
    case TokenError::kInvalidSignature: return "invalid signature";
  }
  return "";
}

TokenError DecodeToken(absl::string_view token, absl::string_view key_claim_name, std::string* scratch,
                       DecodedToken* out) {
  *out = DecodedToken();
  const size_t first_dot = token.find('.');
  if (first_dot == absl::string_view::npos) return TokenError::kInvalidJson;
  const size_t second_dot = token.find('.', first_dot + 1);
  if (second_dot == absl::string_view::npos) return TokenError::kInvalidJson;
  // Every decoded segment lands in `scratch`, which never grows past this: views stay valid.
  scratch->clear();
  scratch->reserve(token.size() + 16);
  if (!DecodeBase64(token.substr(0, first_dot), scratch)) return TokenError::kInvalidJson;
  const size_t header_end = scratch->size();
  if (!DecodeBase64(token.substr(first_dot + 1, second_dot - first_dot - 1), scratch)) return TokenError::kInvalidJson;
  const size_t claims_end = scratch->size();
  const bool signature_ok = DecodeBase64(token.substr(second_dot + 1), scratch);
  const absl::string_view text(*scratch);

  JsonMember typ;
  auto same = [](const JsonMember& name, absl::string_view wanted) { return JsonStringEquals(name, wanted); };
  const bool header_ok = JsonScanner(text.substr(0, header_end)).Document([&](const JsonMember& name, const JsonMember& v) {
    if (same(name, "alg")) out->alg = v;
    if (same(name, "typ")) typ = v;
    if (same(name, key_claim_name)) out->header_key = v;
  });
  if (!header_ok) return TokenError::kInvalidJson;
  const bool claims_ok = JsonScanner(text.substr(header_end, claims_end - header_end))
                             .Document([&](const JsonMember& name, const JsonMember& v) {
                               if (same(name, key_claim_name)) out->claims_key = v;
                               if (same(name, "exp")) out->exp = v;
                               if (same(name, "nbf")) out->nbf = v;
                             });
  if (!claims_ok) return TokenError::kInvalidJson;
  if (typ.type != JsonMember::kMissing && !JsonStringEquals(typ, "JWT", /*ignore_case=*/true)) {
    return TokenError::kInvalidTyp;
  }
  bool known_alg = false;
  for (absl::string_view name : KongJwtAlgorithms()) {
    known_alg = known_alg || JsonStringEquals(out->alg, name);
  }
  if (!known_alg) return TokenError::kInvalidAlg;
  if (!signature_ok) return TokenError::kInvalidSignature;
  out->signing_input = token.substr(0, second_dot);
  out->signature = text.substr(claims_end);
  return TokenError::kNone;
}

absl::string_view BearerToken(absl::string_view value) {
  for (size_t i = 0; i + 6 <= value.size(); ++i) {
    if ((value[i] != 'B' && value[i] != 'b') || value.substr(i + 1, 5) != "earer") continue;
    size_t j = i + 6;
    while (j < value.size() && IsRegexSpace(value[j])) ++j;
    const size_t spaces = j - (i + 6);
    if (spaces == 0) continue;
    if (j < value.size()) return value.substr(j);
    if (spaces >= 2) return value.substr(value.size() - 1);  // `.+` takes the last space
  }
  return absl::string_view();
}

}  // namespace portico::dp::plugins::jwt
