#include "common/base/http_url.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace portico {

absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url) {
  constexpr absl::string_view kHttp = "http://";
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("the URL has a space or control character");
    }
  }
  if (absl::StrContains(url, '#')) return absl::InvalidArgumentError("the URL has a fragment ('#'), which is never sent");
  if (absl::StartsWithIgnoreCase(url, "https://")) {
    return absl::InvalidArgumentError("https endpoints are not supported yet (use http://)");
  }
  if (!absl::StartsWithIgnoreCase(url, kHttp)) return absl::InvalidArgumentError("expected an http:// URL");
  absl::string_view rest = url.substr(kHttp.size());
  const size_t slash = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, slash);
  HttpUrl out;
  if (slash == absl::string_view::npos) {
    out.target = "/";
  } else {
    // "http://host?q" asks for "/?q".
    out.target = absl::StrCat(rest[slash] == '?' ? "/" : "", rest.substr(slash));
  }
  if (absl::StrContains(authority, '@')) {
    return absl::InvalidArgumentError("user info (user:password@) in the URL is not supported; send credentials with `headers`");
  }
  if (authority.empty()) return absl::InvalidArgumentError("the URL needs a host");
  out.host_header = std::string(authority);
  absl::string_view host = authority;
  absl::string_view port;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return absl::InvalidArgumentError("unclosed '[' in the URL's host");
    host = authority.substr(1, close - 1);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return absl::InvalidArgumentError("bad port in the URL");
      port = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != absl::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return absl::InvalidArgumentError("the URL needs a host");
  out.host = std::string(host);
  if (!port.empty()) {
    int value = 0;
    if (!absl::SimpleAtoi(port, &value) || value < 1 || value > 65535) {
      return absl::InvalidArgumentError("the URL's port must be in 1..65535");
    }
    out.port = static_cast<uint16_t>(value);
  }
  return out;
}

}  // namespace portico
