// Kong's get_upstream_uri_v0 (kong/router/utils.lua), re-derived from KONG-REFERENCE.md §3.5.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config/validate.h"
#include "data_plane/router/router.h"

namespace portico::dp {
namespace {

// Removes one leading ".", "..", "./" or "../" from the part of the path after the stripped prefix.
absl::string_view SanitizePostfix(absl::string_view postfix) {
  if (postfix == "." || postfix == "..") return "";
  if (absl::StartsWith(postfix, "./")) return postfix.substr(2);
  if (absl::StartsWith(postfix, "../")) return postfix.substr(3);
  return postfix;
}

// Kong's escape() keeps these bytes as they are (ESCAPE_PATTERN, matched case-insensitively), except
// '#': a request-target cannot carry it (it would start a fragment upstream), so it is encoded. Kong
// never meets one, as nginx has cut the fragment off ngx.var.uri.
bool KeptByEscape(unsigned char c) {
  return absl::ascii_isalnum(c) || (c < 0x80 && absl::StrContains("!$&'()*+,/:;=?@[]-_.~%", static_cast<char>(c)));
}

// True when the '%' at `i` starts a %XX triplet.
bool StartsTriplet(absl::string_view path, size_t i) {
  return i + 2 < path.size() && absl::ascii_isxdigit(static_cast<unsigned char>(path[i + 1])) &&
         absl::ascii_isxdigit(static_cast<unsigned char>(path[i + 2]));
}

bool HasStrayPercent(absl::string_view path) {
  for (size_t i = path.find('%'); i != absl::string_view::npos; i = path.find('%', i + 1)) {
    if (!StartsTriplet(path, i)) return true;
  }
  return false;
}

}  // namespace

std::string NormalizeRequestPath(absl::string_view raw_path) {
  if (!HasStrayPercent(raw_path)) return NormalizeUriPath(raw_path);
  // A '%' that starts no %XX triplet is a literal percent sign: it becomes %25 before decoding.
  // Kept bare, bytes decoded right after it could form a new triplet with it ("/%%32%65" would
  // give "/%2e", which the upstream decodes into a dot segment the router never saw), and the
  // result would not be normalised (found by tests/fuzz/path_normalize_fuzz).
  std::string encoded;
  encoded.reserve(raw_path.size() + 8);
  for (size_t i = 0; i < raw_path.size(); ++i) {
    encoded.push_back(raw_path[i]);
    if (raw_path[i] == '%' && !StartsTriplet(raw_path, i)) encoded.append("25");
  }
  return NormalizeUriPath(encoded);
}

std::string EscapeUpstreamPath(absl::string_view path) {
  if (std::all_of(path.begin(), path.end(), [](char c) { return KeptByEscape(static_cast<unsigned char>(c)); })) {
    return std::string(path);
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(path.size() + 16);
  for (char c : path) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (KeptByEscape(byte)) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xF]);
    }
  }
  return out;
}

std::string BuildUpstreamPath(absl::string_view service_path, absl::string_view request_path,
                              absl::string_view matched_path, bool strip_path) {
  const absl::string_view base = service_path.empty() ? absl::string_view("/") : service_path;
  const absl::string_view request = request_path.empty() ? absl::string_view("/") : request_path;

  absl::string_view postfix;
  if (strip_path && !matched_path.empty() && absl::StartsWith(request, matched_path)) {
    postfix = request.substr(matched_path.size());
  } else {
    postfix = request.substr(1);  // Kong: no prefix to strip -> the request path minus its '/'
  }
  postfix = SanitizePostfix(postfix);
  const bool request_ends_with_slash = request.back() == '/';

  if (base.back() == '/') {
    if (!strip_path) return absl::StrCat(base, request.substr(1));
    if (postfix.empty()) {
      if (base == "/") return "/";
      if (request_ends_with_slash) return std::string(base);
      return std::string(base.substr(0, base.size() - 1));
    }
    if (postfix.front() == '/') return absl::StrCat(base.substr(0, base.size() - 1), postfix);
    return absl::StrCat(base, postfix);
  }

  if (!strip_path) {
    if (request == "/") return std::string(base);
    return absl::StrCat(base, request);
  }
  if (postfix.empty()) {
    if (request.size() > 1 && request_ends_with_slash) return absl::StrCat(base, "/");
    return std::string(base);
  }
  if (postfix.front() == '/') return absl::StrCat(base, postfix);
  return absl::StrCat(base, "/", postfix);
}

}  // namespace portico::dp
