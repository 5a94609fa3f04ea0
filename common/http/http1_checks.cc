#include "common/http/http1_checks.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/http/known_headers.h"

namespace portico {
namespace {

// RFC 3986 reg-name characters: unreserved, sub-delims and '%' (of %XX).
constexpr std::array<bool, 256> kRegNameChars = [] {
  std::array<bool, 256> table{};
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (char c : absl::string_view("-._~!$&'()*+,;=%")) table[static_cast<unsigned char>(c)] = true;
  return table;
}();

// Bytes a request-target may carry as llhttp hands it over: visible ASCII except '#' (a
// fragment), and bytes >= 0x80 (raw UTF-8, accepted as nginx does; the proxy escapes them in the
// upstream path). llhttp's loose mode also lets HTAB and FF through: refused here.
constexpr std::array<bool, 256> kTargetChars = [] {
  std::array<bool, 256> table{};
  for (int c = 0x21; c < 0x7f; ++c) table[c] = c != '#';
  for (int c = 0x80; c < 0x100; ++c) table[c] = true;
  return table;
}();

bool IsValidPort(absl::string_view port) {
  if (port.size() > 5) return false;
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;  // empty is allowed by RFC 3986 ("host:")
}

bool IsValidRegName(absl::string_view name) {
  char previous = '.';  // refuses a leading '.', and ".." anywhere
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!kRegNameChars[static_cast<unsigned char>(c)]) return false;
    if (c == '.' && previous == '.' && i > 0) return false;
    if (c == '%' && (i + 2 >= name.size() || !absl::ascii_isxdigit(static_cast<unsigned char>(name[i + 1])) ||
                     !absl::ascii_isxdigit(static_cast<unsigned char>(name[i + 2])))) {
      return false;
    }
    previous = c;
  }
  return name.empty() || name.front() != '.';
}

bool IsChunkedOnly(absl::string_view value) {
  return absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(value), "chunked");
}

}  // namespace

bool IsValidHostValue(absl::string_view host) {
  if (host.empty()) return true;
  absl::string_view rest;
  if (host.front() == '[') {
    const size_t close = host.find(']');
    if (close == absl::string_view::npos || close < 2) return false;
    for (char c : host.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
    }
    rest = host.substr(close + 1);
  } else {
    const size_t colon = host.find(':');
    if (!IsValidRegName(host.substr(0, colon))) return false;
    if (colon == 0) return false;  // ":80": a port without a host
    rest = colon == absl::string_view::npos ? absl::string_view() : host.substr(colon);
  }
  if (rest.empty()) return true;
  return rest.front() == ':' && IsValidPort(rest.substr(1));
}

bool ParseRequestTarget(absl::string_view target, RequestTarget* out) {
  *out = RequestTarget();
  for (char c : target) {
    if (!kTargetChars[static_cast<unsigned char>(c)]) return false;
  }
  absl::string_view rest = target;
  if (!absl::StartsWith(rest, "/")) {
    // Absolute-form: "http" or "https", "://", authority, then path-abempty and query.
    const size_t scheme_end = rest.find("://");
    if (scheme_end == absl::string_view::npos) return false;
    const absl::string_view scheme = rest.substr(0, scheme_end);
    if (!absl::EqualsIgnoreCase(scheme, "http") && !absl::EqualsIgnoreCase(scheme, "https")) return false;
    rest.remove_prefix(scheme_end + 3);
    const size_t authority_end = rest.find_first_of("/?");
    out->authority = rest.substr(0, authority_end);
    // No userinfo (RFC 9110 §4.2.4), a real host, nothing but host[:port].
    if (out->authority.empty() || out->authority.front() == ':' || !IsValidHostValue(out->authority)) return false;
    if (authority_end == absl::string_view::npos) {
      rest = "/";
    } else if (rest[authority_end] == '?') {
      return false;  // "http://h?q": no path
    } else {
      rest.remove_prefix(authority_end);
    }
  }
  const size_t question = rest.find('?');
  out->has_query = question != absl::string_view::npos;
  out->path = rest.substr(0, question);
  out->query = out->has_query ? rest.substr(question + 1) : absl::string_view();
  return !out->path.empty() && out->path.front() == '/';
}

RequestHeadCheck CheckRequestHead(const MessageHead& head) {
  RequestHeadCheck check;
  auto fail = [&check](int status, const char* reason) {
    check.status = status;
    check.reason = reason;
    return check;
  };
  if (head.version_major != 1 || head.version_minor > 1) {
    return fail(505, "HTTP version other than 1.0 and 1.1");
  }
  const bool http11 = head.version_minor == 1;
  if (!ParseRequestTarget(head.url, &check.target)) return fail(400, "invalid request-target");
  const std::string* host = nullptr;
  int host_count = 0, content_length_count = 0, transfer_encoding_count = 0;
  bool transfer_encoding_chunked = true;
  for (const auto& [name, value] : head.headers) {
    switch (ClassifyHeader(name)) {
      case KnownHeader::kHost:
        host = &value;
        ++host_count;
        break;
      case KnownHeader::kContentLength:
        ++content_length_count;
        break;
      case KnownHeader::kTransferEncoding:
        ++transfer_encoding_count;
        transfer_encoding_chunked = transfer_encoding_chunked && IsChunkedOnly(value);
        break;
      case KnownHeader::kExpect:
        check.expects_continue = check.expects_continue || (http11 && absl::EqualsIgnoreCase(value, "100-continue"));
        break;
      default:
        break;
    }
  }
  if (host_count > 1) return fail(400, "more than one Host header");
  if (http11 && host_count == 0) return fail(400, "HTTP/1.1 request without Host");
  if (host != nullptr && !IsValidHostValue(*host)) return fail(400, "invalid Host header");
  if (content_length_count > 1) return fail(400, "more than one Content-Length header");
  if (transfer_encoding_count > 0 || head.transfer_encoding) {
    if (!http11) return fail(400, "Transfer-Encoding on HTTP/1.0");
    if (transfer_encoding_count > 1) return fail(400, "more than one Transfer-Encoding header");
    if (!transfer_encoding_chunked || !head.chunked) return fail(501, "transfer coding other than chunked");
    if (content_length_count > 0 || head.has_content_length) {
      return fail(400, "Content-Length with Transfer-Encoding");
    }
  }
  if (!check.target.authority.empty()) {
    check.host = check.target.authority;
    check.has_host = true;
  } else if (host != nullptr) {
    check.host = *host;
    check.has_host = true;
  }
  return check;
}

bool IsForwardableResponseHead(const MessageHead& head) {
  if (!head.transfer_encoding) return true;
  if (head.version_major != 1 || head.version_minor < 1) return false;
  int count = 0;
  for (const auto& [name, value] : head.headers) {
    if (ClassifyHeader(name) != KnownHeader::kTransferEncoding) continue;
    if (++count > 1 || !IsChunkedOnly(value)) return false;
  }
  return head.chunked && !head.has_content_length;
}

}  // namespace portico
