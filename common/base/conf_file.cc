#include "common/base/conf_file.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/host_port.h"

namespace portico {
namespace {

bool IsKeyChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

// The text before the first unescaped '#', with every "\#" turned into '#'.
std::string StripComment(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == '#') {
      out.push_back('#');
      ++i;
      continue;
    }
    if (text[i] == '#') break;
    out.push_back(text[i]);
  }
  return out;
}

}  // namespace

std::string PrintableExcerpt(absl::string_view text) {
  std::string out;
  for (char c : text.substr(0, 80)) {
    const unsigned char b = static_cast<unsigned char>(c);
    out.push_back(b < 0x20 || b >= 0x7f ? '?' : c);
  }
  if (text.size() > 80) out += "...";
  return out;
}

ConfText ParseConfText(absl::string_view text, absl::string_view path) {
  ConfText out;
  absl::ConsumePrefix(&text, "\xEF\xBB\xBF");  // UTF-8 byte order mark
  // Key material: its lines (base64 ending in '=') must not reach any message.
  int number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(raw), "-----BEGIN")) {
      out.errors.push_back(absl::StrCat(path, ":", number, ": this looks like a PEM file, not a configuration file"));
      return out;
    }
  }
  std::map<std::string, int> first_line;  // key -> line it was set on
  number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(raw), ";")) continue;  // kong.conf comment
    const std::string line = StripComment(raw);
    const absl::string_view content = absl::StripAsciiWhitespace(line);
    if (content.empty()) continue;
    auto error = [&](auto&&... parts) { out.errors.push_back(absl::StrCat(path, ":", number, ": ", parts...)); };
    const size_t eq = content.find('=');
    if (eq == absl::string_view::npos) {
      error("expected 'key = value'");  // the line itself is not shown (conf_file.h)
      continue;
    }
    const std::string key(absl::StripAsciiWhitespace(content.substr(0, eq)));
    if (key.empty()) {
      error("missing key before '='");
      continue;
    }
    bool key_ok = true;
    for (char c : key) key_ok = key_ok && IsKeyChar(c);
    if (!key_ok) {
      error("malformed key '", PrintableExcerpt(key), "' (keys are lower case letters, digits and '_')");
      continue;
    }
    if (auto [it, inserted] = first_line.emplace(key, number); !inserted) {
      error("duplicate key '", PrintableExcerpt(key), "' (first set on line ", it->second, ")");
      continue;
    }
    const absl::string_view value = absl::StripAsciiWhitespace(content.substr(eq + 1));
    if (value.empty()) continue;  // kong.conf: no value, the default applies
    bool value_ok = true;
    for (char c : value) value_ok = value_ok && !((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f);
    if (!value_ok) {
      error("control character in the value of '", PrintableExcerpt(key), "'");
      continue;
    }
    out.lines.push_back({key, std::string(value), number});
  }
  return out;
}

ConfKey RenamedKey(std::string key, std::string flag) {
  ConfKey k{std::move(key), {flag}, nullptr};
  k.translate = [flag](absl::string_view value) -> absl::StatusOr<FlagValues> {
    return FlagValues{{flag, std::string(value)}};
  };
  return k;
}

bool LooksLikeInlinePem(absl::string_view value) {
  if (absl::StartsWith(value, "-----BEGIN")) return true;
  if (value.size() >= 100 && !absl::StrContains(value, '/')) return true;
  std::string decoded;
  return value.size() >= 16 && absl::Base64Unescape(value, &decoded) && absl::StartsWith(decoded, "-----BEGIN");
}

ConfKey PathKey(std::string key, std::string flag) {
  ConfKey k{std::move(key), {flag}, nullptr};
  k.translate = [flag](absl::string_view value) -> absl::StatusOr<FlagValues> {
    if (LooksLikeInlinePem(value)) {
      return absl::InvalidArgumentError(
          "this looks like the key or certificate itself (PEM or base64): Portico takes a file path here");
    }
    return FlagValues{{flag, std::string(value)}};
  };
  return k;
}

ConfKey KongListenKey(std::string key, std::string plain_flag, std::string ssl_flag) {
  ConfKey k{key, {plain_flag}, nullptr};
  if (!ssl_flag.empty()) k.flags.push_back(ssl_flag);
  k.translate = [plain_flag, ssl_flag](absl::string_view value) -> absl::StatusOr<FlagValues> {
    std::string plain, ssl;
    for (absl::string_view entry : absl::StrSplit(value, ',')) {
      entry = absl::StripAsciiWhitespace(entry);
      std::vector<absl::string_view> words = absl::StrSplit(entry, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (words.empty()) return absl::InvalidArgumentError("empty listener entry");
      if (words[0] == "off") {
        return absl::InvalidArgumentError(absl::StrCat("'off' is not accepted: Portico needs --", plain_flag));
      }
      if (absl::StatusOr<HostPort> addr = ParseHostPort(words[0]); !addr.ok()) return addr.status();
      bool is_ssl = false;
      for (size_t i = 1; i < words.size(); ++i) {
        const absl::string_view w = words[i];
        int backlog = 0;
        if (w == "ssl" && !ssl_flag.empty()) {
          is_ssl = true;
        } else if (w == "reuseport" || w == "deferred" || w == "bind" || w == "http2") {
          // accepted, no effect (conf_file.h)
        } else if (absl::StartsWith(w, "backlog=") && absl::SimpleAtoi(w.substr(8), &backlog) && backlog > 0) {
          // accepted, no effect
        } else {
          return absl::InvalidArgumentError(absl::StrCat(
              "listener flag '", PrintableExcerpt(w), "' is not supported (accepted: ",
              ssl_flag.empty() ? "" : "ssl, ", "reuseport, backlog=N, deferred, bind, http2)"));
        }
      }
      std::string& slot = is_ssl ? ssl : plain;
      if (!slot.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("more than one ", is_ssl ? "ssl" : "plain",
                                                       " entry: Portico has one such listener (--",
                                                       is_ssl ? ssl_flag : plain_flag, ")"));
      }
      slot = std::string(words[0]);
    }
    if (plain.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("an entry without 'ssl' is required (--", plain_flag, " cannot be off)"));
    }
    FlagValues out{{plain_flag, plain}};
    if (!ssl_flag.empty()) out.emplace_back(ssl_flag, ssl.empty() ? "off" : ssl);
    return out;
  };
  return k;
}

ConfKey KongRoleKey(std::string expected, std::string binary) {
  ConfKey k{"role", {}, nullptr};
  k.translate = [expected, binary](absl::string_view value) -> absl::StatusOr<FlagValues> {
    if (value == expected) return FlagValues{};
    return absl::InvalidArgumentError(absl::StrCat("role must be ", expected, " for ", binary, ", not '",
                                                   PrintableExcerpt(value), "'"));
  };
  return k;
}

ConfKey KongLogLevelKey() {
  ConfKey k{"log_level", {"log-level"}, nullptr};
  k.translate = [](absl::string_view value) -> absl::StatusOr<FlagValues> {
    std::string level(value);
    if (level == "notice") level = "info";
    if (level == "crit" || level == "alert" || level == "emerg") level = "error";
    return FlagValues{{"log-level", level}};
  };
  return k;
}

ConfKey KongClusterMtlsKey() {
  ConfKey k{"cluster_mtls", {}, nullptr};
  k.translate = [](absl::string_view value) -> absl::StatusOr<FlagValues> {
    if (value == "pki") return FlagValues{};
    return absl::InvalidArgumentError(absl::StrCat(
        "Portico's cluster always works as Kong's pki mode (each node has its own certificate, chained to "
        "cluster_ca_cert): cluster_mtls must be pki, not '", PrintableExcerpt(value), "'"));
  };
  return k;
}

bool ParseNginxSize(absl::string_view text, uint64_t* bytes) {
  uint64_t unit = 1;
  if (!text.empty()) {
    switch (absl::ascii_tolower(static_cast<unsigned char>(text.back()))) {
      case 'k': unit = uint64_t{1} << 10; break;
      case 'm': unit = uint64_t{1} << 20; break;
      case 'g': unit = uint64_t{1} << 30; break;
      default: break;
    }
    if (unit != 1) text.remove_suffix(1);
  }
  uint64_t n = 0;
  if (text.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(text[0])) || !absl::SimpleAtoi(text, &n) ||
      n == 0 || n > (uint64_t{1} << 53) / unit) {
    return false;
  }
  *bytes = n * unit;
  return true;
}

}  // namespace portico
