#include "common/config/validate.h"

#include <arpa/inet.h>

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/base/host_port.h"
#include "common/base/uuid.h"
#include "common/config/jwt_algorithms.h"
#include "common/config/upstreams.h"
#include "common/config/utf8_fields.h"
#include "common/config/basic_auth_password.h"
#include "common/plugins/plugin_schema.h"
#include "common/tls/pem_checks.h"
#include "nlohmann/json.hpp"
#include "re2/re2.h"

namespace portico {
namespace {

using config::v1::CaCertificate;
using config::v1::Certificate;
using config::v1::Consumer;
using config::v1::Acl;
using config::v1::Sni;
using config::v1::BasicAuthCredential;
using config::v1::JwtSecret;
using config::v1::KeyAuthCredential;
using config::v1::KeyAuthDigest;
using config::v1::Plugin;
using config::v1::Route;
using config::v1::Service;
using config::v1::StringList;
using config::v1::Target;
using config::v1::Upstream;

constexpr int64_t kMaxTimeout = 2147483646;  // 2^31 - 2
const char kProtocolsList[] = "grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss";

bool IsKnownProtocol(absl::string_view p) {
  static const std::set<std::string, std::less<>> kProtocols = {
      "grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"};
  return kProtocols.count(p) > 0;
}

std::string Between(int64_t lo, int64_t hi) {
  return absl::StrCat("value should be between ", lo, " and ", hi);
}

void CheckRange(FieldErrors* errors, absl::string_view path, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) errors->Add(path, Between(lo, hi));
}

// Kong's utf8_name: alphanumerics, '.', '-', '_', '~' and any non-ASCII UTF-8 byte.
bool IsValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (c >= 0x80 || absl::ascii_isalnum(c) || c == '.' || c == '-' || c == '_' || c == '~') continue;
    return false;
  }
  return true;
}

void CheckName(FieldErrors* errors, bool has_name, const std::string& name, const char* field = "name") {
  if (!has_name) return;
  if (name.empty()) {
    errors->Add(field, "length must be at least 1");
  } else if (!IsValidName(name)) {
    errors->Add(field, absl::StrCat("invalid value '", name,
                                     "': it must only contain alphanumeric and '., -, _, ~' characters"));
  }
}

// Tags: printable ASCII except ',' and '/', or UTF-8 (bytes >= 0x80).
void CheckTags(FieldErrors* errors, bool has_tags, const StringList& tags) {
  if (!has_tags) return;
  for (int i = 0; i < tags.values_size(); ++i) {
    const std::string& tag = tags.values(i);
    bool ok = !tag.empty();
    for (unsigned char c : tag) {
      if (c >= 0x80) continue;
      if (c < 0x21 || c > 0x7e || c == ',' || c == '/') ok = false;
    }
    if (!ok) {
      errors->Add(absl::StrCat("tags.", i + 1),
                  absl::StrCat("invalid tag '", tag,
                               "': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"));
    }
  }
}

bool IsIpLiteral(absl::string_view host) {
  // inet_pton reads up to a NUL: "1.2.3.4\0junk" must not pass as 1.2.3.4.
  if (host.empty() || host.size() > 45 || host.find('\0') != absl::string_view::npos) return false;
  std::string text(host);
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

bool IsDnsName(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  if (host.back() == '.') host.remove_suffix(1);  // absolute name
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
    }
  }
  return true;
}

// Kong's typedefs.host: hostname or IP (IPv6 bare or bracketed), never with a port.
void CheckHost(FieldErrors* errors, absl::string_view path, absl::string_view host) {
  if (IsValidHostname(host)) return;
  // "name:port" or "[v6]:port" or "1.2.3.4:port" -> a port was given.
  size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos) {
    absl::string_view before = host.substr(0, colon);
    int port = 0;
    if (absl::SimpleAtoi(host.substr(colon + 1), &port) && !absl::StrContains(before, ':') &&
        IsValidHostname(before)) {
      errors->Add(path, "must not have a port");
      return;
    }
    if (absl::StartsWith(before, "[") && absl::EndsWith(before, "]")) {
      errors->Add(path, "must not have a port");
      return;
    }
  }
  errors->Add(path, absl::StrCat("invalid value: ", host));
}

// RFC 3986 characters allowed in a path: unreserved, sub-delims, ':', '@', '/', '%'.
bool IsPathChar(char c) {
  return absl::ascii_isalnum(c) || absl::StrContains("-._~!$&'()*+,;=:@/%", c);
}

// Kong's typedefs.path character rules: RFC 3986 characters and well-formed %XX. False (with
// the error added) when they fail. The caller has checked the leading '/'.
bool CheckPathCharacters(FieldErrors* errors, absl::string_view path_key, absl::string_view path) {
  for (size_t i = 0; i < path.size(); ++i) {
    if (!IsPathChar(path[i])) {
      errors->Add(path_key, absl::StrCat("invalid path: '", path,
                                         "' (characters outside of the reserved list of RFC 3986 found)"));
      return false;
    }
    if (path[i] == '%') {
      if (i + 2 >= path.size() + 0 || !absl::ascii_isxdigit(path[i + 1]) ||
          !absl::ascii_isxdigit(path[i + 2])) {
        errors->Add(path_key, absl::StrCat("invalid url-encoded value: '", path, "'"));
        return false;
      }
    }
  }
  return true;
}

// A plain route path: Kong's typedefs.path rules, then it must equal its normalised form
// (routes.lua validate_path_with_regexes).
void CheckPlainRoutePath(FieldErrors* errors, absl::string_view path_key, absl::string_view path) {
  if (!CheckPathCharacters(errors, path_key, path)) return;
  const std::string normalized = NormalizeUriPath(path);
  if (normalized == path) return;
  // Decoding can give bytes that are not UTF-8 (/%de); the message must stay UTF-8, so those
  // bytes are shown percent-encoded.
  std::string shown;
  if (IsValidUtf8(normalized)) {
    shown = normalized;
  } else {
    for (const char c : normalized) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte < 0x80) {
        shown.push_back(c);
      } else {
        absl::StrAppend(&shown, "%", absl::AsciiStrToUpper(absl::BytesToHexString(absl::string_view(&c, 1))));
      }
    }
  }
  errors->Add(path_key, absl::StrCat("non-normalized path, consider use '", shown, "' instead"));
}

// Checks a plain (non-regex) service path: leading '/', RFC 3986 characters, valid %XX, normalised.
void CheckPlainPath(FieldErrors* errors, absl::string_view path_key, absl::string_view path) {
  if (!absl::StartsWith(path, "/")) {
    errors->Add(path_key, "should start with: /");
    return;
  }
  if (!CheckPathCharacters(errors, path_key, path)) return;
  if (absl::StrContains(path, "//")) {
    errors->Add(path_key, "must not have empty segments");
    return;
  }
  for (absl::string_view segment : absl::StrSplit(path, '/')) {
    if (segment == "." || segment == "..") {
      errors->Add(path_key, "must not have dot segments");
      return;
    }
  }
}

// Route host: one '*' as the whole leftmost or rightmost label, optional ":port".
void CheckRouteHost(FieldErrors* errors, absl::string_view key, absl::string_view host) {
  size_t stars = std::count(host.begin(), host.end(), '*');
  if (stars > 1) {
    errors->Add(key, "invalid wildcard: must have at most one wildcard");
    return;
  }
  // The same split as the router's (SplitHostHeader); text left after a single colon, or after an
  // IPv6 literal's ']', is a port that is not a valid number.
  const HostAndPort split = SplitHostHeader(host);
  std::string name(split.name);
  if (!split.port.has_value()) {
    const size_t close = absl::StartsWith(name, "[") ? name.find(']') : std::string::npos;
    const bool text_after_literal = close != std::string::npos && close + 1 < name.size();
    const bool single_colon = close == std::string::npos && std::count(name.begin(), name.end(), ':') == 1;
    if (text_after_literal || single_colon) {
      errors->Add(key, absl::StrCat("invalid port number: ", host));
      return;
    }
  }
  if (absl::StartsWith(name, "[") && absl::EndsWith(name, "]")) name = name.substr(1, name.size() - 2);
  if (stars == 1) {
    if (absl::StartsWith(name, "*.") && name.size() > 2) {
      name = "x" + name.substr(1);
    } else if (absl::EndsWith(name, ".*") && name.size() > 2) {
      name = name.substr(0, name.size() - 1) + "x";
    } else {
      errors->Add(key, "invalid wildcard: must be placed at leftmost or rightmost label");
      return;
    }
  }
  if (!IsValidHostname(name)) errors->Add(key, absl::StrCat("invalid value: ", host));
}

void CheckSni(FieldErrors* errors, absl::string_view key, absl::string_view sni) {
  if (IsIpLiteral(sni)) {
    errors->Add(key, absl::StrCat("must not be an IP"));
    return;
  }
  std::string name(sni);
  if (absl::StartsWith(name, "*.") && name.size() > 2) name = "x" + name.substr(1);
  if (absl::StrContains(name, ':')) {
    errors->Add(key, "must not have a port");
  } else if (!IsDnsName(name)) {
    errors->Add(key, absl::StrCat("invalid value: ", sni));
  }
}

bool IsHeaderToken(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && !absl::StrContains("!#$%&'*+-.^_`|~", c)) return false;
  }
  return true;
}

bool HasAny(const Route& r, bool with_snis) {
  return (r.has_methods() && r.methods().values_size() > 0) ||
         (r.has_hosts() && r.hosts().values_size() > 0) ||
         (r.has_headers() && r.headers().values_size() > 0) ||
         (r.has_paths() && r.paths().values_size() > 0) ||
         (with_snis && r.has_snis() && r.snis().values_size() > 0);
}

bool NonEmpty(bool has, int size) { return has && size > 0; }

}  // namespace

bool IsValidHostname(absl::string_view host) {
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
    std::string text(host);
    unsigned char buf[16];
    return inet_pton(AF_INET6, text.c_str(), buf) == 1;
  }
  if (IsIpLiteral(host)) return true;
  // A name made only of digits and dots must be a valid IPv4 address.
  bool numeric = !host.empty();
  for (char c : host) numeric = numeric && (absl::ascii_isdigit(c) || c == '.');
  if (numeric) return false;
  return IsDnsName(host);
}

bool IsValidIpOrCidr(absl::string_view text) {
  size_t slash = text.find('/');
  absl::string_view ip = text.substr(0, slash);
  if (!IsIpLiteral(ip)) return false;
  if (slash == absl::string_view::npos) return true;
  int bits = 0;
  if (!absl::SimpleAtoi(text.substr(slash + 1), &bits)) return false;
  int max_bits = absl::StrContains(ip, ':') ? 128 : 32;
  return bits >= 0 && bits <= max_bits;
}

namespace {

// RFC 3986 reserved characters plus '%': Kong keeps them percent-encoded when normalising.
bool StaysEncoded(unsigned char c) {
  return c < 0x80 && absl::StrContains("!*'();:@&=+$,/?%#[]", static_cast<char>(c));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return absl::ascii_tolower(c) - 'a' + 10;
}

}  // namespace

std::string NormalizeUriPath(absl::string_view path) {
  if (path.empty() || path == "/") return std::string(path);
  // 1. Percent-decoding of everything but reserved characters.
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size() && absl::ascii_isxdigit(path[i + 1]) &&
        absl::ascii_isxdigit(path[i + 2])) {
      const unsigned char byte = static_cast<unsigned char>(HexValue(path[i + 1]) * 16 + HexValue(path[i + 2]));
      if (StaysEncoded(byte)) {
        decoded.push_back('%');
        decoded.push_back(absl::ascii_toupper(path[i + 1]));
        decoded.push_back(absl::ascii_toupper(path[i + 2]));
      } else {
        decoded.push_back(static_cast<char>(byte));
      }
      i += 2;
    } else {
      decoded.push_back(path[i]);
    }
  }
  if (!absl::StrContains(decoded, '.') && !absl::StrContains(decoded, "//")) return decoded;

  // 2+3. Dot segments and merged slashes; `segments` holds output pieces ("/seg" or a first
  // relative "seg"), `in` is what is left of the input.
  std::vector<absl::string_view> segments;
  absl::string_view in = decoded;
  auto pop = [&segments] {
    if (!segments.empty()) segments.pop_back();
  };
  while (!in.empty()) {
    if (in == "/.") {
      in = "/";
    } else if (in == "/..") {
      in = "/";
      pop();
    } else if (in == "." || in == "..") {
      in = "";
    } else if (absl::StartsWith(in, "../")) {
      in.remove_prefix(3);
    } else if (absl::StartsWith(in, "./")) {
      in.remove_prefix(2);
    } else if (absl::StartsWith(in, "/./")) {
      in.remove_prefix(2);
    } else if (absl::StartsWith(in, "/../")) {
      in.remove_prefix(3);
      pop();
    } else if (absl::StartsWith(in, "//")) {
      in.remove_prefix(1);
    } else {
      const size_t next = in.find('/', 1);
      segments.push_back(in.substr(0, next));
      in = next == absl::string_view::npos ? absl::string_view() : in.substr(next);
    }
  }
  return absl::StrJoin(segments, "");
}

std::string RoutePathRegexPattern(absl::string_view tilde_path) {
  absl::string_view regex = tilde_path;
  if (absl::StartsWith(regex, "~")) regex.remove_prefix(1);
  return absl::StrCat("^", absl::StrReplaceAll(regex, {{"?<", "?P<"}}));
}

std::string HeaderValueRegexPattern(absl::string_view tilde_star_value) {
  absl::string_view regex = tilde_star_value;
  if (absl::StartsWith(regex, "~*")) regex.remove_prefix(2);
  return absl::AsciiStrToLower(regex);
}

std::string Re2CompileError(absl::string_view pattern) {
  const re2::RE2 compiled(re2::StringPiece(pattern.data(), pattern.size()), re2::RE2::Quiet);
  return compiled.ok() ? std::string() : compiled.error();
}

namespace {

// The rules of one kind, on an entity whose strings may still be ill-formed UTF-8 (see
// WithUtf8Check).
FieldErrors ServiceRules(const Service& s) {
  FieldErrors errors;
  if (!s.id().empty() && !IsUuid(s.id())) errors.Add("id", "expected a valid UUID");
  CheckName(&errors, s.has_name(), s.name());
  CheckRange(&errors, "retries", s.retries(), 0, 32767);
  const bool protocol_ok = IsKnownProtocol(s.protocol());
  if (s.protocol().empty()) {
    errors.Add("protocol", "required field missing");
  } else if (!protocol_ok) {
    errors.Add("protocol", absl::StrCat("expected one of: ", kProtocolsList));
  }
  if (s.host().empty()) {
    errors.Add("host", "required field missing");
  } else {
    CheckHost(&errors, "host", s.host());
  }
  CheckRange(&errors, "port", s.port(), 0, 65535);
  if (s.has_path()) {
    if (s.path().empty()) {
      errors.Add("path", "length must be at least 1");
    } else {
      CheckPlainPath(&errors, "path", s.path());
    }
  }
  CheckRange(&errors, "connect_timeout", s.connect_timeout(), 1, kMaxTimeout);
  CheckRange(&errors, "write_timeout", s.write_timeout(), 1, kMaxTimeout);
  CheckRange(&errors, "read_timeout", s.read_timeout(), 1, kMaxTimeout);
  CheckTags(&errors, s.has_tags(), s.tags());
  if (s.has_client_certificate_id() && !IsUuid(s.client_certificate_id())) {
    errors.Add("client_certificate.id", "expected a valid UUID");
  }
  if (s.has_tls_verify_depth()) CheckRange(&errors, "tls_verify_depth", s.tls_verify_depth(), 0, 64);
  if (s.has_ca_certificates()) {
    for (int i = 0; i < s.ca_certificates().values_size(); ++i) {
      if (!IsUuid(s.ca_certificates().values(i))) {
        errors.Add(absl::StrCat("ca_certificates.", i + 1), "expected a valid UUID");
      }
    }
  }
  // Conditional fields (Kong's entity checks on services).
  const std::string& p = s.protocol();
  const bool stream_or_grpc = p == "tcp" || p == "tls" || p == "udp" || p == "grpc" || p == "grpcs" ||
                              p == "tls_passthrough";
  if (protocol_ok && stream_or_grpc && s.has_path()) errors.Add("path", "value must be null");
  const bool tls_upstream = p == "https" || p == "tls" || p == "grpcs" || p == "wss";
  if (protocol_ok && !tls_upstream) {
    if (s.has_client_certificate_id()) errors.Add("client_certificate", "value must be null");
    if (s.has_tls_verify()) errors.Add("tls_verify", "value must be null");
    if (s.has_tls_verify_depth()) errors.Add("tls_verify_depth", "value must be null");
    if (NonEmpty(s.has_ca_certificates(), s.ca_certificates().values_size())) {
      errors.Add("ca_certificates", "value must be null");
    }
  }
  return errors;
}

FieldErrors RouteRules(const Route& r) {
  FieldErrors errors;
  if (!r.id().empty() && !IsUuid(r.id())) errors.Add("id", "expected a valid UUID");
  CheckName(&errors, r.has_name(), r.name());

  // Protocols: known values, one group only.
  std::set<std::string> protocols;
  bool protocols_ok = true;
  if (r.protocols_size() == 0) {
    errors.Add("protocols", "length must be at least 1");
    protocols_ok = false;
  }
  for (int i = 0; i < r.protocols_size(); ++i) {
    if (!IsKnownProtocol(r.protocols(i))) {
      errors.Add(absl::StrCat("protocols.", i + 1), absl::StrCat("expected one of: ", kProtocolsList));
      protocols_ok = false;
    }
    protocols.insert(r.protocols(i));
  }
  auto group_of = [](const std::string& p) {
    if (p == "http" || p == "https") return 0;
    if (p == "tcp" || p == "tls" || p == "udp") return 1;
    if (p == "tls_passthrough") return 2;
    if (p == "ws" || p == "wss") return 4;  // Kong EE's WebSocket routes
    return 3;  // grpc, grpcs
  };
  if (protocols_ok) {
    std::set<int> groups;
    for (const auto& p : protocols) groups.insert(group_of(p));
    if (groups.size() > 1) {
      errors.Add("protocols",
                 "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), "
                 "('tls_passthrough'), ('grpc', 'grpcs'), ('ws', 'wss')");
      protocols_ok = false;
    }
  }

  if (r.has_methods()) {
    for (int i = 0; i < r.methods().values_size(); ++i) {
      const std::string& m = r.methods().values(i);
      bool upper = !m.empty();
      for (char c : m) upper = upper && c >= 'A' && c <= 'Z';
      if (!upper) errors.Add(absl::StrCat("methods.", i + 1), absl::StrCat("invalid value: ", m));
    }
  }
  if (r.has_hosts()) {
    for (int i = 0; i < r.hosts().values_size(); ++i) {
      CheckRouteHost(&errors, absl::StrCat("hosts.", i + 1), r.hosts().values(i));
    }
  }
  if (r.has_paths()) {
    for (int i = 0; i < r.paths().values_size(); ++i) {
      const std::string& path = r.paths().values(i);
      std::string key = absl::StrCat("paths.", i + 1);
      if (absl::StartsWith(path, "~")) {
        if (path.size() == 1) {
          errors.Add(key, "length must be at least 2");
        } else if (std::string error = Re2CompileError(RoutePathRegexPattern(path)); !error.empty()) {
          // Kong: "invalid regex: '<re>' (PCRE returned: <err>)"; the engine here is RE2.
          errors.Add(key, absl::StrCat("invalid regex: '", path.substr(1), "' (RE2 returned: ", error, ")"));
        }
      } else if (!absl::StartsWith(path, "/")) {
        errors.Add(key, "should start with: / (fixed path) or ~ (regex path)");
      } else {
        CheckPlainRoutePath(&errors, key, path);
      }
    }
  }
  if (r.has_headers()) {
    for (const auto& [name, values] : r.headers().values()) {
      if (absl::EqualsIgnoreCase(name, "host")) {
        errors.Add("headers", "cannot contain 'host' header");
      } else if (!IsHeaderToken(name)) {
        errors.Add("headers", absl::StrCat("invalid header name: ", name));
      } else if (values.values_size() == 0) {
        errors.Add(absl::StrCat("headers.", name), "length must be at least 1");
      } else {
        for (const std::string& value : values.values()) {
          if (!absl::StartsWith(value, "~*")) continue;
          if (std::string error = Re2CompileError(HeaderValueRegexPattern(value)); !error.empty()) {
            errors.Add(absl::StrCat("headers.", name),
                       absl::StrCat("invalid regex: '", value.substr(2), "' (RE2 returned: ", error, ")"));
            break;
          }
        }
      }
    }
  }
  if (r.has_snis()) {
    for (int i = 0; i < r.snis().values_size(); ++i) {
      CheckSni(&errors, absl::StrCat("snis.", i + 1), r.snis().values(i));
    }
  }
  for (const auto* list : {&r.sources(), &r.destinations()}) {
    const char* field = list == &r.sources() ? "sources" : "destinations";
    for (int i = 0; i < list->values_size(); ++i) {
      const auto& cp = list->values(i);
      std::string key = absl::StrCat(field, ".", i + 1);
      if (!cp.has_ip() && !cp.has_port()) {
        errors.Add(key, "at least one of these fields must be non-empty: 'ip', 'port'");
      }
      if (cp.has_ip() && !IsValidIpOrCidr(cp.ip())) errors.Add(key + ".ip", "invalid ip or cidr range: '" + cp.ip() + "'");
      if (cp.has_port()) CheckRange(&errors, key + ".port", cp.port(), 0, 65535);
    }
  }
  static const std::set<int32_t> kRedirectCodes = {426, 301, 302, 307, 308};
  if (kRedirectCodes.count(r.https_redirect_status_code()) == 0) {
    errors.Add("https_redirect_status_code", "expected one of: 426, 301, 302, 307, 308");
  }
  if (r.path_handling() != "v0" && r.path_handling() != "v1") {
    errors.Add("path_handling", "expected one of: v0, v1");
  }
  if (r.has_service_id() && !IsUuid(r.service_id())) errors.Add("service.id", "expected a valid UUID");
  CheckTags(&errors, r.has_tags(), r.tags());

  // Entity checks that depend on the protocol group.
  if (protocols_ok) {
    const bool http = protocols.count("http") > 0, https = protocols.count("https") > 0;
    const bool grpc = protocols.count("grpc") > 0, grpcs = protocols.count("grpcs") > 0;
    const bool tls_passthrough = protocols.count("tls_passthrough") > 0;
    const bool stream = protocols.count("tcp") || protocols.count("tls") || protocols.count("udp");
    const bool has_snis = NonEmpty(r.has_snis(), r.snis().values_size());
    const bool has_sources = NonEmpty(r.has_sources(), r.sources().values_size());
    const bool has_destinations = NonEmpty(r.has_destinations(), r.destinations().values_size());
    if (https) {
      if (!HasAny(r, true)) {
        errors.AddEntity("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'");
      }
    } else if (http) {
      if (!HasAny(r, false)) {
        errors.AddEntity("must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'");
      }
    }
    if (grpc || grpcs) {
      if (!(NonEmpty(r.has_hosts(), r.hosts().values_size()) ||
            NonEmpty(r.has_headers(), r.headers().values_size()) ||
            NonEmpty(r.has_paths(), r.paths().values_size()) || (grpcs && has_snis))) {
        errors.AddEntity(grpcs ? "must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'"
                               : "must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'");
      }
      if (r.strip_path()) errors.Add("strip_path", "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'");
      if (NonEmpty(r.has_methods(), r.methods().values_size())) {
        errors.Add("methods", "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'");
      }
    }
    const bool ws = protocols.count("ws") > 0, wss = protocols.count("wss") > 0;
    if (wss) {
      if (!HasAny(r, true)) {
        errors.AddEntity("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'wss'");
      }
    } else if (ws) {
      if (!HasAny(r, false)) {
        errors.AddEntity("must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'ws'");
      }
    }
    if (stream && !(has_sources || has_destinations || has_snis)) {
      errors.AddEntity("must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'");
    }
    if (tls_passthrough && !has_snis) {
      errors.AddEntity("must set snis when 'protocols' is 'tls_passthrough'");
    }
    const bool sni_allowed = https || grpcs || wss || protocols.count("tls") || tls_passthrough;
    if (has_snis && !sni_allowed) {
      errors.AddEntity(
          "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls', 'tls_passthrough' or 'wss'");
    }
    if ((has_sources || has_destinations) && !stream && !tls_passthrough) {
      errors.AddEntity("'sources' and 'destinations' can only be set when 'protocols' is 'tcp', 'tls', "
                       "'tls_passthrough' or 'udp'");
    }
  }
  return errors;
}

// UTF-8 first: an ill-formed string is reported at its path, and no other error that could
// echo its bytes is kept: errors of the same top-level field (its first path segment), errors
// whose text is not UTF-8, and entity-level errors (computed from the bad values) are dropped.
// Errors of other fields still come along.
template <typename Entity, typename Rules>
FieldErrors WithUtf8Check(const Entity& entity, Rules rules) {
  FieldErrors utf8;
  CheckUtf8Fields(entity, &utf8);
  FieldErrors rule_errors = rules(entity);
  if (utf8.empty()) return rule_errors;
  auto top = [](absl::string_view path) { return path.substr(0, path.find('.')); };
  FieldErrors out = utf8;
  for (const auto& [path, message] : rule_errors.errors()) {
    bool keep = path != FieldErrors::kEntity && IsValidUtf8(path) && IsValidUtf8(message);
    for (const auto& [bad_path, unused] : utf8.errors()) keep = keep && top(path) != top(bad_path);
    if (keep) out.Add(path, message);
  }
  return out;
}

// An id fit for a message: itself when it is UTF-8, else C-escaped.
std::string PrintableId(const std::string& id) { return IsValidUtf8(id) ? id : absl::CHexEscape(id); }

}  // namespace

FieldErrors ValidateServiceFields(const Service& service) { return WithUtf8Check(service, &ServiceRules); }

FieldErrors ValidateRouteFields(const Route& route) { return WithUtf8Check(route, &RouteRules); }

namespace {

constexpr const char* kPluginProtocols[] = {"grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough",
                                            "udp", "ws", "wss"};

// The plugin's config checked (and normalized) against its schema; errors under "config".
nlohmann::json NormalizedPluginConfig(const plugins::PluginSchema& schema, const std::string& text,
                                      FieldErrors* errors) {
  const nlohmann::json config = text.empty() ? nlohmann::json::object()
                                             : nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return plugins::NormalizePluginConfig(schema, config, errors);
}

FieldErrors PluginRules(const Plugin& p) {
  FieldErrors errors;
  if (!p.id().empty() && !IsUuid(p.id())) errors.Add("id", "expected a valid UUID");
  CheckName(&errors, p.has_instance_name(), p.instance_name(), "instance_name");
  if (p.protocols_size() == 0) errors.Add("protocols", "length must be at least 1");
  for (int i = 0; i < p.protocols_size(); ++i) {
    bool known = false;
    for (const char* protocol : kPluginProtocols) known |= p.protocols(i) == protocol;
    if (!known) {
      errors.Add(absl::StrCat("protocols.", i + 1),
                 "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss");
    }
  }
  if (p.name().empty()) {
    errors.Add("name", "required field missing");
    return errors;
  }
  const plugins::PluginSchema* schema = plugins::FindPluginSchema(p.name());
  if (schema == nullptr) {
    errors.Add("name", plugins::PluginNotEnabledMessage(p.name()));
    return errors;
  }
  if (schema->no_consumer && p.has_consumer_id()) errors.Add("consumer", "value must be null");
  NormalizedPluginConfig(*schema, p.config(), &errors);
  return errors;
}


// --- upstreams and targets (Kong 3.x kong/db/schema/entities/upstreams.lua, targets.lua) ---

const std::vector<std::string> kUpstreamAlgorithms = {"consistent-hashing", "least-connections", "round-robin",
                                                      "latency"};
const std::vector<std::string> kHashOn = {"none", "consumer", "ip", "header", "cookie", "path", "query_arg",
                                          "uri_capture"};

bool OneOf(const std::string& value, const std::vector<std::string>& list) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

void CheckOneOf(FieldErrors* errors, const char* field, const std::string& value, const std::vector<std::string>& list) {
  if (!OneOf(value, list)) errors->Add(field, absl::StrCat("expected one of: ", absl::StrJoin(list, ", ")));
}

// A nullable string: when set, not empty, and `check` (may be null) finds nothing wrong.
void CheckOptionalString(FieldErrors* errors, const char* field, bool has, const std::string& value,
                         std::string (*check)(absl::string_view) = nullptr) {
  if (!has) return;
  if (value.empty()) {
    errors->Add(field, "length must be at least 1");
  } else if (check != nullptr) {
    if (std::string problem = check(value); !problem.empty()) errors->Add(field, problem);
  }
}

std::string HostWithOptionalPortError(absl::string_view host) {
  absl::StatusOr<KongAddress> address = ParseKongAddress(host);
  return address.ok() ? std::string() : std::string(address.status().message());
}

// The upstream's `healthchecks` text checked against Kong's record (errors under "healthchecks").
void CheckHealthchecks(FieldErrors* errors, const std::string& text) {
  const nlohmann::json record =
      text.empty() ? nlohmann::json::object() : nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!record.is_object()) {
    errors->Add("healthchecks", "expected a record");
    return;
  }
  FieldErrors nested;
  NormalizeUpstreamHealthchecks(record, &nested);
  errors->Merge("healthchecks", nested);
}

// Kong's `conditional` entity check: the field's error, and the entity-level one naming the
// field the condition is on.
void ConditionFailed(FieldErrors* errors, const char* if_field, const char* then_field, absl::string_view message) {
  errors->AddEntity(absl::StrCat("failed conditional validation given value of field '", if_field, "'"));
  errors->Add(then_field, message);
}

void RequireWhen(FieldErrors* errors, const char* if_field, const std::string& value, const char* match,
                 const char* then_field, bool has_then) {
  if (value == match && !has_then) ConditionFailed(errors, if_field, then_field, "required field missing");
}

void Distinct(FieldErrors* errors, const char* a, bool has_a, const std::string& value_a, const char* b, bool has_b,
              const std::string& value_b) {
  if (has_a && has_b && value_a == value_b) {
    errors->AddEntity(absl::StrCat("values of these fields must be distinct: '", a, "', '", b, "'"));
  }
}

FieldErrors UpstreamRules(const Upstream& u) {
  FieldErrors errors;
  if (!u.id().empty() && !IsUuid(u.id())) errors.Add("id", "expected a valid UUID");
  if (u.name().empty()) {
    errors.Add("name", "required field missing");
  } else {
    absl::StatusOr<KongAddress> address = ParseKongAddress(u.name());
    const std::string prefix = absl::StrCat("Invalid name ('", u.name(), "'); ");
    if (!address.ok()) {
      errors.Add("name", prefix + "must be a valid hostname");
    } else if (address->type != KongAddress::Type::kName) {
      errors.Add("name", prefix + "no ip addresses allowed");
    } else if (address->port) {
      errors.Add("name", prefix + "no port allowed");
    }
  }
  CheckOneOf(&errors, "algorithm", u.algorithm(), kUpstreamAlgorithms);
  CheckOneOf(&errors, "hash_on", u.hash_on(), kHashOn);
  CheckOneOf(&errors, "hash_fallback", u.hash_fallback(), kHashOn);
  CheckOptionalString(&errors, "hash_on_header", u.has_hash_on_header(), u.hash_on_header(), &KongHeaderNameError);
  CheckOptionalString(&errors, "hash_fallback_header", u.has_hash_fallback_header(), u.hash_fallback_header(),
                      &KongHeaderNameError);
  CheckOptionalString(&errors, "hash_on_cookie", u.has_hash_on_cookie(), u.hash_on_cookie(), &KongCookieNameError);
  CheckOptionalString(&errors, "hash_on_cookie_path", true, u.hash_on_cookie_path(), &KongPathError);
  CheckOptionalString(&errors, "hash_on_query_arg", u.has_hash_on_query_arg(), u.hash_on_query_arg());
  CheckOptionalString(&errors, "hash_fallback_query_arg", u.has_hash_fallback_query_arg(), u.hash_fallback_query_arg());
  CheckOptionalString(&errors, "hash_on_uri_capture", u.has_hash_on_uri_capture(), u.hash_on_uri_capture());
  CheckOptionalString(&errors, "hash_fallback_uri_capture", u.has_hash_fallback_uri_capture(),
                      u.hash_fallback_uri_capture());
  CheckRange(&errors, "slots", u.slots(), 10, 65536);
  CheckHealthchecks(&errors, u.healthchecks());
  CheckOptionalString(&errors, "host_header", u.has_host_header(), u.host_header(), &HostWithOptionalPortError);
  if (u.has_client_certificate_id() && !IsUuid(u.client_certificate_id())) {
    errors.Add("client_certificate.id", "expected a valid UUID");
  }
  CheckTags(&errors, u.has_tags(), u.tags());
  if (!errors.empty()) return errors;  // Kong runs entity checks on valid fields only

  // Kong's entity checks, in its order.
  const std::string& on = u.hash_on();
  const std::string& fallback = u.hash_fallback();
  RequireWhen(&errors, "hash_on", on, "header", "hash_on_header", u.has_hash_on_header());
  RequireWhen(&errors, "hash_fallback", fallback, "header", "hash_fallback_header", u.has_hash_fallback_header());
  RequireWhen(&errors, "hash_on", on, "cookie", "hash_on_cookie", u.has_hash_on_cookie());
  RequireWhen(&errors, "hash_fallback", fallback, "cookie", "hash_on_cookie", u.has_hash_on_cookie());
  // What hash_fallback may be for each hash_on ("header", "query_arg", "uri_capture": anything).
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kFallbacks = {
      {"none", {"none"}},
      {"cookie", {"none"}},
      {"consumer", {"none", "ip", "header", "cookie", "path", "query_arg", "uri_capture"}},
      {"ip", {"none", "consumer", "header", "cookie", "path", "query_arg", "uri_capture"}},
      {"path", {"none", "consumer", "header", "cookie", "query_arg", "ip", "uri_capture"}},
  };
  for (const auto& [hash_on, allowed] : kFallbacks) {
    if (on == hash_on && !OneOf(fallback, allowed)) {
      ConditionFailed(&errors, "hash_on", "hash_fallback", absl::StrCat("expected one of: ", absl::StrJoin(allowed, ", ")));
    }
  }
  Distinct(&errors, "hash_on_header", u.has_hash_on_header(), u.hash_on_header(), "hash_fallback_header",
           u.has_hash_fallback_header(), u.hash_fallback_header());
  RequireWhen(&errors, "hash_on", on, "query_arg", "hash_on_query_arg", u.has_hash_on_query_arg());
  RequireWhen(&errors, "hash_fallback", fallback, "query_arg", "hash_fallback_query_arg",
              u.has_hash_fallback_query_arg());
  Distinct(&errors, "hash_on_query_arg", u.has_hash_on_query_arg(), u.hash_on_query_arg(), "hash_fallback_query_arg",
           u.has_hash_fallback_query_arg(), u.hash_fallback_query_arg());
  RequireWhen(&errors, "hash_on", on, "uri_capture", "hash_on_uri_capture", u.has_hash_on_uri_capture());
  RequireWhen(&errors, "hash_fallback", fallback, "uri_capture", "hash_fallback_uri_capture",
              u.has_hash_fallback_uri_capture());
  Distinct(&errors, "hash_on_uri_capture", u.has_hash_on_uri_capture(), u.hash_on_uri_capture(),
           "hash_fallback_uri_capture", u.has_hash_fallback_uri_capture(), u.hash_fallback_uri_capture());
  return errors;
}

FieldErrors TargetRules(const Target& t) {
  FieldErrors errors;
  if (!t.id().empty() && !IsUuid(t.id())) errors.Add("id", "expected a valid UUID");
  if (!t.has_upstream_id()) {
    errors.Add("upstream", "required field missing");
  } else if (!IsUuid(t.upstream_id())) {
    errors.Add("upstream.id", "expected a valid UUID");
  }
  if (t.target().empty()) {
    errors.Add("target", "required field missing");
  } else if (std::optional<std::string> formatted = FormatTarget(t.target()); !formatted) {
    errors.Add("target", absl::StrCat("Invalid target ('", t.target(), "'); not a valid hostname or ip address"));
  } else if (*formatted != t.target()) {
    // Stored and exported targets are in Kong's form (the descriptor's normalize writes it).
    errors.Add("target", absl::StrCat("not in its normalized form '", *formatted, "'"));
  }
  CheckRange(&errors, "weight", t.weight(), 0, 65535);
  CheckTags(&errors, t.has_tags(), t.tags());
  return errors;
}

}  // namespace

FieldErrors ValidateUpstreamFields(const Upstream& upstream) { return WithUtf8Check(upstream, &UpstreamRules); }
FieldErrors ValidateTargetFields(const Target& target) { return WithUtf8Check(target, &TargetRules); }

void NormalizeUpstream(Upstream* upstream, FieldErrors* errors) {
  const nlohmann::json record = upstream->healthchecks().empty()
                                    ? nlohmann::json::object()
                                    : nlohmann::json::parse(upstream->healthchecks(), nullptr, false);
  if (!record.is_object()) return;  // reported by the rules
  FieldErrors nested;
  const nlohmann::json normalized = NormalizeUpstreamHealthchecks(record, &nested);
  if (!nested.empty()) {
    errors->Merge("healthchecks", nested);
    return;
  }
  upstream->set_healthchecks(normalized.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void NormalizeTarget(Target* target) {
  if (std::optional<std::string> formatted = FormatTarget(target->target())) target->set_target(*formatted);
}

namespace {

FieldErrors ConsumerRules(const Consumer& c) {
  FieldErrors errors;
  if (!c.id().empty() && !IsUuid(c.id())) errors.Add("id", "expected a valid UUID");
  if (c.has_username() && c.username().empty()) errors.Add("username", "length must be at least 1");
  if (c.has_custom_id() && c.custom_id().empty()) errors.Add("custom_id", "length must be at least 1");
  if (!c.has_username() && !c.has_custom_id()) {
    errors.AddEntity("at least one of these fields must be non-empty: 'custom_id', 'username'");
  }
  return errors;
}

FieldErrors KeyAuthRules(const KeyAuthCredential& k) {
  FieldErrors errors;
  if (!k.id().empty() && !IsUuid(k.id())) errors.Add("id", "expected a valid UUID");
  if (!k.has_consumer_id()) errors.Add("consumer", "required field missing");
  if (k.key().empty()) errors.Add("key", "length must be at least 1");
  return errors;
}

FieldErrors BasicAuthRules(const BasicAuthCredential& b) {
  FieldErrors errors;
  if (!b.id().empty() && !IsUuid(b.id())) errors.Add("id", "expected a valid UUID");
  if (!b.has_consumer_id()) errors.Add("consumer", "required field missing");
  if (b.username().empty()) errors.Add("username", "required field missing");
  if (b.password().empty()) {
    errors.Add("password", "required field missing");
  } else if (!IsHashedBasicAuthPassword(b.password())) {
    errors.Add("password", "not hashed (expected sha256$<salt>$<digest>)");
  }
  return errors;
}

FieldErrors AclRules(const Acl& a) {
  FieldErrors errors;
  if (!a.id().empty() && !IsUuid(a.id())) errors.Add("id", "expected a valid UUID");
  if (!a.has_consumer_id()) errors.Add("consumer", "required field missing");
  if (a.group().empty()) errors.Add("group", "required field missing");
  return errors;
}

// Kong's jwt_secrets rules, and only algorithms the DP verifies: an RS or ES algorithm needs a PEM
// public key OpenSSL parses (and of the algorithm's kind).
FieldErrors JwtSecretRules(const JwtSecret& j) {
  FieldErrors errors;
  if (!j.id().empty() && !IsUuid(j.id())) errors.Add("id", "expected a valid UUID");
  if (!j.has_consumer_id()) errors.Add("consumer", "required field missing");
  if (j.key().empty()) errors.Add("key", "length must be at least 1");
  if (j.secret().empty()) errors.Add("secret", "length must be at least 1");
  if (j.has_rsa_public_key() && j.rsa_public_key().empty()) errors.Add("rsa_public_key", "length must be at least 1");
  if (!IsKongJwtAlgorithm(j.algorithm())) {
    errors.Add("algorithm", absl::StrCat("expected one of: ", KongJwtAlgorithmList()));
    return errors;
  }
  const JwtAlgorithm* algorithm = FindJwtAlgorithm(j.algorithm());
  if (algorithm == nullptr) {
    errors.Add("algorithm", absl::StrCat("'", j.algorithm(), "' is not supported by Portico yet"));
    return errors;
  }
  if (algorithm->family == JwtAlgorithmFamily::kHmac) return errors;
  std::string problem;
  if (!j.has_rsa_public_key()) {
    problem = "required field missing";
  } else if (!j.rsa_public_key().empty()) {
    absl::StatusOr<EvpPkeyPtr> key = ParseJwtPublicKey(j.rsa_public_key(), *algorithm);
    if (!key.ok()) problem = std::string(key.status().message());
  }
  if (!problem.empty()) errors.Add("rsa_public_key", problem);
  return errors;
}

}  // namespace

FieldErrors ValidateBasicAuthCredentialFields(const BasicAuthCredential& credential) {
  return WithUtf8Check(credential, &BasicAuthRules);
}
FieldErrors ValidateAclFields(const Acl& acl) { return WithUtf8Check(acl, &AclRules); }

FieldErrors ValidatePluginFields(const Plugin& plugin) { return WithUtf8Check(plugin, &PluginRules); }
FieldErrors ValidateConsumerFields(const Consumer& consumer) { return WithUtf8Check(consumer, &ConsumerRules); }
FieldErrors ValidateKeyAuthCredentialFields(const KeyAuthCredential& credential) {
  return WithUtf8Check(credential, &KeyAuthRules);
}
FieldErrors ValidateJwtSecretFields(const JwtSecret& secret) { return WithUtf8Check(secret, &JwtSecretRules); }

namespace {

constexpr char kExpired[] = "certificate expired, \"Not After\" time is in the past";

// One PEM certificate field: its facts, or its error ("invalid certificate: <reason>") recorded.
std::optional<PemCertificateFacts> CheckCertificatePem(FieldErrors* errors, const char* field, const std::string& pem,
                                                       std::optional<int64_t> now) {
  if (pem.empty()) {
    errors->Add(field, "length must be at least 1");
    return std::nullopt;
  }
  absl::StatusOr<PemCertificateFacts> facts = InspectPemCertificate(pem);
  if (!facts.ok()) {
    errors->Add(field, absl::StrCat("invalid certificate: ", facts.status().message()));
    return std::nullopt;
  }
  if (now.has_value() && facts->not_after < *now) errors->Add(field, kExpired);
  return *std::move(facts);
}

// One PEM key field; its error names OpenSSL's reason only, never the key.
std::optional<PemKeyFacts> CheckKeyPem(FieldErrors* errors, const char* field, const std::string& pem) {
  if (pem.empty()) {
    errors->Add(field, "length must be at least 1");
    return std::nullopt;
  }
  absl::StatusOr<PemKeyFacts> facts = InspectPemPrivateKey(pem);
  if (!facts.ok()) {
    errors->Add(field, absl::StrCat("invalid key: ", facts.status().message()));
    return std::nullopt;
  }
  return *std::move(facts);
}

FieldErrors CertificateRules(const Certificate& c, std::optional<int64_t> now) {
  FieldErrors errors;
  if (!c.id().empty() && !IsUuid(c.id())) errors.Add("id", "expected a valid UUID");
  std::optional<PemCertificateFacts> cert, cert_alt;
  std::optional<PemKeyFacts> key, key_alt;
  if (c.cert().empty()) {
    errors.Add("cert", "required field missing");
  } else {
    cert = CheckCertificatePem(&errors, "cert", c.cert(), now);
  }
  if (c.key().empty()) {
    errors.Add("key", "required field missing");
  } else {
    key = CheckKeyPem(&errors, "key", c.key());
  }
  if (c.has_cert_alt()) cert_alt = CheckCertificatePem(&errors, "cert_alt", c.cert_alt(), now);
  if (c.has_key_alt()) key_alt = CheckKeyPem(&errors, "key_alt", c.key_alt());
  CheckTags(&errors, c.has_tags(), c.tags());
  // Kong's entity checks, in its order.
  if (c.has_cert_alt() != c.has_key_alt()) {
    errors.AddEntity("all or none of these fields must be set: 'cert_alt', 'key_alt'");
  }
  if (cert && key && !KeyMatchesCertificate(*key, *cert)) errors.AddEntity("certificate does not match key");
  if (cert_alt && key_alt && !KeyMatchesCertificate(*key_alt, *cert_alt)) {
    errors.AddEntity("alternative certificate does not match key");
  }
  if (cert && cert_alt && cert->key_type == cert_alt->key_type) {
    errors.AddEntity(
        "certificate and alternative certificate need to have different type (e.g. RSA and ECDSA), the provided "
        "certificates were both of the same type");
  }
  return errors;
}

FieldErrors SniRules(const Sni& s) {
  FieldErrors errors;
  if (!s.id().empty() && !IsUuid(s.id())) errors.Add("id", "expected a valid UUID");
  if (s.name().empty()) {
    errors.Add("name", "required field missing");
  } else if (std::string problem = WildcardHostError(s.name()); !problem.empty()) {
    errors.Add("name", problem);
  } else if (absl::AsciiStrToLower(s.name()) != s.name()) {
    errors.Add("name", "must be lowercase");
  }
  if (!s.has_certificate_id()) {
    errors.Add("certificate", "required field missing");
  } else if (!IsUuid(s.certificate_id())) {
    errors.Add("certificate.id", "expected a valid UUID");
  }
  CheckTags(&errors, s.has_tags(), s.tags());
  return errors;
}

FieldErrors CaCertificateRules(const CaCertificate& c, std::optional<int64_t> now) {
  FieldErrors errors;
  if (!c.id().empty() && !IsUuid(c.id())) errors.Add("id", "expected a valid UUID");
  std::optional<PemCertificateFacts> cert;
  if (c.cert().empty()) {
    errors.Add("cert", "required field missing");
  } else {
    // Expiry is an entity check here, as Kong reports it for CA certificates.
    cert = CheckCertificatePem(&errors, "cert", c.cert(), std::nullopt);
  }
  CheckTags(&errors, c.has_tags(), c.tags());
  if (!cert) return errors;
  if (c.has_cert_digest() && c.cert_digest() != cert->sha256_hex) {
    errors.Add("cert_digest", "does not match the certificate (expected its SHA-256, lowercase hex)");
  }
  if (cert->certificates > 1) {
    errors.AddEntity("please submit only one certificate at a time");
  } else if (now.has_value() && cert->not_after < *now) {
    errors.AddEntity(kExpired);
  } else if (!cert->is_ca) {
    errors.AddEntity("certificate does not appear to be a CA because it is missing the \"CA\" basic constraint");
  }
  return errors;
}

}  // namespace

std::string WildcardHostError(absl::string_view name) {
  std::string host(name);
  if (const size_t star = host.find('*'); star != std::string::npos) {
    if (star != 0 && star != host.size() - 1) return "wildcard must be leftmost or rightmost character";
    if (std::count(host.begin(), host.end(), '*') > 1) return "only one wildcard must be specified";
    host = absl::StrReplaceAll(host, {{"*", "wildcard"}});
  }
  absl::string_view bare = host;
  if (absl::StartsWith(bare, "[")) {
    const size_t close = bare.find(']');
    if (close != absl::string_view::npos && IsIpLiteral(bare.substr(1, close - 1))) return "must not be an IP";
  }
  if (IsIpLiteral(bare)) return "must not be an IP";
  if (const size_t colon = bare.rfind(':'); colon != absl::string_view::npos) {
    absl::string_view before = bare.substr(0, colon);
    absl::string_view port = bare.substr(colon + 1);
    if (IsIpLiteral(before)) return "must not be an IP";
    const bool numeric = !port.empty() && std::all_of(port.begin(), port.end(), absl::ascii_isdigit);
    if (numeric && IsDnsName(before)) return "must not have a port";
    return absl::StrCat("invalid value: ", host);
  }
  if (!IsDnsName(bare)) return absl::StrCat("invalid value: ", host);
  return "";
}

FieldErrors ValidateCertificateFields(const Certificate& certificate, std::optional<int64_t> now) {
  return WithUtf8Check(certificate, [now](const Certificate& c) { return CertificateRules(c, now); });
}

FieldErrors ValidateSniFields(const Sni& sni) { return WithUtf8Check(sni, &SniRules); }

FieldErrors ValidateCaCertificateFields(const CaCertificate& ca_certificate, std::optional<int64_t> now) {
  return WithUtf8Check(ca_certificate, [now](const CaCertificate& c) { return CaCertificateRules(c, now); });
}

void NormalizeCaCertificate(CaCertificate* ca_certificate) {
  absl::StatusOr<PemCertificateFacts> facts = InspectPemCertificate(ca_certificate->cert());
  if (facts.ok()) ca_certificate->set_cert_digest(facts->sha256_hex);
}

void NormalizeSni(Sni* sni) { sni->set_name(absl::AsciiStrToLower(sni->name())); }

void NormalizePlugin(Plugin* plugin, FieldErrors* errors) {
  const plugins::PluginSchema* schema = plugins::FindPluginSchema(plugin->name());
  if (schema == nullptr) return;  // reported by the rules
  FieldErrors config_errors;
  nlohmann::json normalized = NormalizedPluginConfig(*schema, plugin->config(), &config_errors);
  if (!config_errors.empty()) {
    for (const auto& [path, message] : config_errors.errors()) errors->Add(path, message);
    return;
  }
  plugin->set_config(normalized.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

FieldErrors ValidateEntityUtf8First(const google::protobuf::Message& entity,
                                    FieldErrors (*rules)(const google::protobuf::Message&)) {
  return WithUtf8Check(entity, rules);
}

absl::Status ValidateService(const Service& service) {
  return ValidateServiceFields(service).ToStatus(absl::StrCat("service ", PrintableId(service.id()), ": "));
}

absl::Status ValidateRoute(const Route& route) {
  return ValidateRouteFields(route).ToStatus(absl::StrCat("route ", PrintableId(route.id()), ": "));
}

namespace {

// One kind's list in a set: every entity has a UUID id, passes `validate` (its own rules, UTF-8
// first), and has an id and a name no other entity of the kind has; then `check_references`.
using ViewSet = absl::flat_hash_set<absl::string_view>;

// Whether an entity's own rules must run: always, unless the caller listed what changed.
bool OwnRulesDue(const ChangedEntities* only_changed, absl::string_view kind, absl::string_view id) {
  return only_changed == nullptr || only_changed->Contains(kind, id);
}

absl::Status NotUuidError(absl::string_view singular, const std::string& id) {
  return absl::InvalidArgumentError(absl::StrCat(singular, " '", PrintableId(id), "': id is not a UUID"));
}
absl::Status DuplicateNameError(absl::string_view singular, absl::string_view id, absl::string_view name) {
  return absl::InvalidArgumentError(absl::StrCat(singular, " ", id, ": duplicate name '", name, "'"));
}

// The ids of one kind, for the references to it: a hash set, or a binary search in the kind's
// list when that is sorted by id (no set to build).
class KindIds {
 public:
  bool Insert(absl::string_view id) { return set_.insert(id).second; }
  void Reserve(size_t n) { set_.reserve(n); }
  template <typename Entity>
  void UseSorted(const std::vector<Entity>& sorted) {
    in_sorted_ = [&sorted](absl::string_view id) {
      auto at = std::lower_bound(sorted.begin(), sorted.end(), id,
                                 [](const Entity& e, absl::string_view key) { return e.id() < key; });
      return at != sorted.end() && at->id() == id;
    };
  }
  size_t count(absl::string_view id) const { return in_sorted_ ? (in_sorted_(id) ? 1 : 0) : set_.count(id); }

 private:
  ViewSet set_;
  std::function<bool(absl::string_view)> in_sorted_;
};

// Above this many changes of one kind, the whole kind is checked (a name scan per change costs more).
constexpr size_t kMaxChangesCheckedAlone = 32;

// Only the changed entities of a kind checked against the rest, when `only_changed` lists every
// upsert and delete and the list is sorted by id (strictly: no duplicate id). The others passed
// in the base: their ids, names and own rules stand, and so do their references unless an entity
// of a kind in `referenced_kinds` was deleted. Returns nullopt when this does not apply.
template <typename Entity, typename Validate, typename CheckReferences>
std::optional<absl::Status> ValidateChangesOfKind(const std::vector<Entity>& entities, absl::string_view kind,
                                                  absl::string_view singular, Validate validate,
                                                  const ChangedEntities* only_changed, KindIds& ids,
                                                  std::initializer_list<absl::string_view> referenced_kinds,
                                                  CheckReferences check_references) {
  if (only_changed == nullptr || !only_changed->ListsDeletes()) return std::nullopt;
  const absl::flat_hash_set<std::string>* changed = only_changed->IdsOf(kind);
  if (changed != nullptr && changed->size() > kMaxChangesCheckedAlone) return std::nullopt;
  for (size_t i = 1; i < entities.size(); ++i) {
    if (!(entities[i - 1].id() < entities[i].id())) return std::nullopt;
  }
  ids.UseSorted(entities);
  if (changed != nullptr) {
    for (const std::string& id : *changed) {
      auto at = std::lower_bound(entities.begin(), entities.end(), id,
                                 [](const Entity& e, absl::string_view key) { return e.id() < key; });
      if (at == entities.end() || at->id() != id) continue;  // (listed but not in the set: nothing to check)
      const Entity& e = *at;
      if (!IsUuid(e.id())) return NotUuidError(singular, e.id());
      if (absl::Status st = validate(e); !st.ok()) return st;
      if (e.has_name()) {
        for (const Entity& other : entities) {
          if (other.has_name() && other.name() == e.name() && other.id() != e.id()) {
            return DuplicateNameError(singular, e.id(), e.name());
          }
        }
      }
      if (absl::Status st = check_references(e); !st.ok()) return st;
    }
  }
  bool references_may_break = false;
  for (absl::string_view referenced : referenced_kinds) references_may_break |= only_changed->AnyDeleted(referenced);
  if (references_may_break) {
    for (const Entity& e : entities) {
      if (absl::Status st = check_references(e); !st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

// Inserts the ids into `ids`. The first failure names the kind (`singular`) and the id.
template <typename Entity, typename Validate, typename CheckReferences>
absl::Status ValidateKindOfSet(const std::vector<Entity>& entities, absl::string_view kind, absl::string_view singular,
                               Validate validate, const ChangedEntities* only_changed, KindIds& ids,
                               std::initializer_list<absl::string_view> referenced_kinds,
                               CheckReferences check_references) {
  if (std::optional<absl::Status> alone = ValidateChangesOfKind(entities, kind, singular, validate, only_changed, ids,
                                                                referenced_kinds, check_references)) {
    return *alone;
  }
  ViewSet names;
  names.reserve(entities.size());
  ids.Reserve(entities.size());
  // The kind's changed ids, looked up once (null with only_changed: none of this kind changed).
  const absl::flat_hash_set<std::string>* changed = only_changed != nullptr ? only_changed->IdsOf(kind) : nullptr;
  for (const Entity& e : entities) {
    if (!IsUuid(e.id())) return NotUuidError(singular, e.id());
    if (only_changed == nullptr || (changed != nullptr && changed->contains(e.id()))) {
      if (absl::Status st = validate(e); !st.ok()) return st;
    }
    if (!ids.Insert(e.id())) {
      return absl::InvalidArgumentError(absl::StrCat(singular, " ", e.id(), ": duplicate id"));
    }
    if (e.has_name() && !names.insert(e.name()).second) return DuplicateNameError(singular, e.id(), e.name());
    if (absl::Status st = check_references(e); !st.ok()) return st;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateConfigSet(const ConfigSet& config, const ChangedEntities* only_changed) {
  // Per entity: id, then its own rules (UTF-8 first), then uniqueness, so that a message never
  // carries bytes that are not UTF-8.
  // TLS material first: services, upstreams and SNIs reference it.
  ViewSet certificate_ids, sni_ids, sni_names, ca_certificate_ids, ca_digests;
  for (const Certificate& c : config.certificates) {
    const std::string context = absl::StrCat("certificate ", PrintableId(c.id()), ": ");
    if (!IsUuid(c.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "certificates", c.id())) {
      if (absl::Status st = ValidateCertificateFields(c).ToStatus(context); !st.ok()) return st;
    }
    if (!certificate_ids.insert(c.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
  }
  for (const Sni& s : config.snis) {
    const std::string context = absl::StrCat("sni ", PrintableId(s.id()), ": ");
    if (!IsUuid(s.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "snis", s.id())) {
      if (absl::Status st = ValidateSniFields(s).ToStatus(context); !st.ok()) return st;
    }
    if (!sni_ids.insert(s.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (!sni_names.insert(s.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate name '", s.name(), "'"));
    }
    if (certificate_ids.count(s.certificate_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "certificate ", s.certificate_id(), " does not exist"));
    }
  }
  for (const CaCertificate& c : config.ca_certificates) {
    const std::string context = absl::StrCat("ca_certificate ", PrintableId(c.id()), ": ");
    if (!IsUuid(c.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "ca_certificates", c.id())) {
      if (absl::Status st = ValidateCaCertificateFields(c).ToStatus(context); !st.ok()) return st;
    }
    if (!ca_certificate_ids.insert(c.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (c.has_cert_digest() && !ca_digests.insert(c.cert_digest()).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate cert_digest"));
    }
  }
  KindIds service_ids, route_ids;
  absl::Status services = ValidateKindOfSet(
      config.services, "services", "service", &ValidateService, only_changed, service_ids,
      {"certificates", "ca_certificates"}, [&](const Service& s) {
        if (s.has_client_certificate_id() && certificate_ids.count(s.client_certificate_id()) == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("service ", s.id(), ": client_certificate ", s.client_certificate_id(), " does not exist"));
        }
        if (s.has_ca_certificates()) {
          for (const std::string& ca : s.ca_certificates().values()) {
            if (ca_certificate_ids.count(ca) == 0) {
              return absl::InvalidArgumentError(absl::StrCat("service ", s.id(), ": ca_certificate ", ca, " does not exist"));
            }
          }
        }
        return absl::OkStatus();
      });
  if (!services.ok()) return services;
  absl::Status routes =
      ValidateKindOfSet(config.routes, "routes", "route", &ValidateRoute, only_changed, route_ids, {"services"},
                        [&service_ids](const Route& r) {
        if (r.has_service_id() && service_ids.count(r.service_id()) == 0) {
          return absl::InvalidArgumentError(absl::StrCat("route ", r.id(), ": service ", r.service_id(), " does not exist"));
        }
        return absl::OkStatus();
      });
  if (!routes.ok()) return routes;
  // Consumers: rules, unique ids, usernames and custom ids.
  ViewSet consumer_ids, usernames, custom_ids;
  for (const Consumer& c : config.consumers) {
    const std::string context = absl::StrCat("consumer ", PrintableId(c.id()), ": ");
    if (!IsUuid(c.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "consumers", c.id())) {
      if (absl::Status st = ValidateConsumerFields(c).ToStatus(context); !st.ok()) return st;
    }
    if (!consumer_ids.insert(c.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (c.has_username() && !usernames.insert(c.username()).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate username"));
    }
    if (c.has_custom_id() && !custom_ids.insert(c.custom_id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate custom_id"));
    }
  }
  // Key-auth credentials (CP side, with keys) and digests (DP side).
  ViewSet credential_ids, keys;
  for (const KeyAuthCredential& k : config.keyauth_credentials) {
    const std::string context = absl::StrCat("key-auth credential ", PrintableId(k.id()), ": ");
    if (!IsUuid(k.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "keyauth_credentials", k.id())) {
      if (absl::Status st = ValidateKeyAuthCredentialFields(k).ToStatus(context); !st.ok()) return st;
    }
    if (!credential_ids.insert(k.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (!keys.insert(k.key()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate key"));
    if (consumer_ids.count(k.consumer_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "consumer ", PrintableId(k.consumer_id()), " does not exist"));
    }
  }
  absl::flat_hash_set<std::string> digests;
  for (const KeyAuthDigest& d : config.keyauth_digests) {
    const std::string context = absl::StrCat("key-auth credential ", PrintableId(d.id()), ": ");
    if (!IsUuid(d.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (d.salt().size() != 16 || d.key_sha256().size() != 32) {
      return absl::InvalidArgumentError(absl::StrCat(context, "salt or digest has the wrong length"));
    }
    if (!credential_ids.insert(d.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (!digests.insert(d.salt() + d.key_sha256()).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate key"));
    }
    if (consumer_ids.count(d.consumer_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "consumer ", PrintableId(d.consumer_id()), " does not exist"));
    }
  }
  // Basic-auth credentials: unique usernames; ACL groups: one membership per consumer and group.
  ViewSet basic_ids, acl_ids, usernames_basic;
  absl::flat_hash_set<std::string> memberships;
  for (const BasicAuthCredential& b : config.basicauth_credentials) {
    const std::string context = absl::StrCat("basic-auth credential ", PrintableId(b.id()), ": ");
    if (!IsUuid(b.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "basicauth_credentials", b.id())) {
      if (absl::Status st = ValidateBasicAuthCredentialFields(b).ToStatus(context); !st.ok()) return st;
    }
    if (!basic_ids.insert(b.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (!usernames_basic.insert(b.username()).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate username"));
    }
    if (consumer_ids.count(b.consumer_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "consumer ", PrintableId(b.consumer_id()), " does not exist"));
    }
  }
  for (const Acl& a : config.acls) {
    const std::string context = absl::StrCat("acl ", PrintableId(a.id()), ": ");
    if (!IsUuid(a.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "acls", a.id())) {
      if (absl::Status st = ValidateAclFields(a).ToStatus(context); !st.ok()) return st;
    }
    if (!acl_ids.insert(a.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (!memberships.insert(absl::StrCat(a.consumer_id(), "|", a.group())).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate group for its consumer"));
    }
    if (consumer_ids.count(a.consumer_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "consumer ", PrintableId(a.consumer_id()), " does not exist"));
    }
  }
  // JWT credentials: rules, unique ids and keys, an existing consumer.
  ViewSet jwt_ids, jwt_keys;
  for (const JwtSecret& j : config.jwt_secrets) {
    const std::string context = absl::StrCat("jwt credential ", PrintableId(j.id()), ": ");
    if (!IsUuid(j.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "jwt_secrets", j.id())) {
      if (absl::Status st = ValidateJwtSecretFields(j).ToStatus(context); !st.ok()) return st;
    }
    if (!jwt_ids.insert(j.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (!jwt_keys.insert(j.key()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate key"));
    if (consumer_ids.count(j.consumer_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "consumer ", PrintableId(j.consumer_id()), " does not exist"));
    }
  }
  // Upstreams: rules, unique ids and names; targets: rules, unique ids, an upstream of the set and
  // one entity per (upstream, target) (Kong's cache key).
  ViewSet upstream_ids, upstream_names, target_ids;
  absl::flat_hash_set<std::string> upstream_targets;
  for (const Upstream& u : config.upstreams) {
    const std::string context = absl::StrCat("upstream ", PrintableId(u.id()), ": ");
    if (!IsUuid(u.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "upstreams", u.id())) {
      if (absl::Status st = ValidateUpstreamFields(u).ToStatus(context); !st.ok()) return st;
    }
    if (!upstream_ids.insert(u.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (!upstream_names.insert(u.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate name '", u.name(), "'"));
    }
    if (u.has_client_certificate_id() && certificate_ids.count(u.client_certificate_id()) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(context, "client_certificate ", u.client_certificate_id(), " does not exist"));
    }
  }
  for (const Target& t : config.targets) {
    const std::string context = absl::StrCat("target ", PrintableId(t.id()), ": ");
    if (!IsUuid(t.id())) return absl::InvalidArgumentError(absl::StrCat(context, "id is not a UUID"));
    if (OwnRulesDue(only_changed, "targets", t.id())) {
      if (absl::Status st = ValidateTargetFields(t).ToStatus(context); !st.ok()) return st;
    }
    if (!target_ids.insert(t.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (upstream_ids.count(t.upstream_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "upstream ", t.upstream_id(), " does not exist"));
    }
    if (!upstream_targets.insert(absl::StrCat(t.upstream_id(), "|", t.target())).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "a second '", t.target(), "' target of its upstream"));
    }
  }
  // Plugins: their own rules (config against the plugin's schema), unique ids and instance names,
  // references, and one instance per plugin name and scope (Kong's cache key).
  ViewSet plugin_ids, instance_names;
  absl::flat_hash_set<std::string> scopes;
  for (const Plugin& p : config.plugins) {
    if (!IsUuid(p.id())) {
      return absl::InvalidArgumentError(absl::StrCat("plugin '", PrintableId(p.id()), "': id is not a UUID"));
    }
    const std::string context = absl::StrCat("plugin ", p.id(), " (", PrintableId(p.name()), "): ");
    if (OwnRulesDue(only_changed, "plugins", p.id())) {
      if (absl::Status st = ValidatePluginFields(p).ToStatus(context); !st.ok()) return st;
    }
    if (!plugin_ids.insert(p.id()).second) return absl::InvalidArgumentError(absl::StrCat(context, "duplicate id"));
    if (p.has_instance_name() && !instance_names.insert(p.instance_name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "duplicate instance_name '", p.instance_name(), "'"));
    }
    if (p.has_service_id() && service_ids.count(p.service_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "service ", p.service_id(), " does not exist"));
    }
    if (p.has_route_id() && route_ids.count(p.route_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "route ", p.route_id(), " does not exist"));
    }
    if (p.has_consumer_id() && consumer_ids.count(p.consumer_id()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(context, "consumer ", p.consumer_id(), " does not exist"));
    }
    if (!scopes.insert(absl::StrCat(p.name(), "|", p.route_id(), "|", p.service_id(), "|", p.consumer_id())).second) {
      return absl::InvalidArgumentError(absl::StrCat(context, "a second '", p.name(), "' plugin on the same scope"));
    }
  }
  return absl::OkStatus();
}

void ChangedEntities::AddDeleted(absl::string_view kind, absl::string_view id) {
  deleted_by_kind_[kind].emplace(id);
}

const absl::flat_hash_set<std::string>* ChangedEntities::DeletedIdsOf(absl::string_view kind) const {
  auto it = deleted_by_kind_.find(kind);
  return it != deleted_by_kind_.end() ? &it->second : nullptr;
}

void ChangedEntities::Add(absl::string_view kind, absl::string_view id) {
  if (ids_by_kind_[kind].emplace(id).second) ++size_;
}

const absl::flat_hash_set<std::string>* ChangedEntities::IdsOf(absl::string_view kind) const {
  auto it = ids_by_kind_.find(kind);
  return it != ids_by_kind_.end() ? &it->second : nullptr;
}

bool ChangedEntities::Contains(absl::string_view kind, absl::string_view id) const {
  auto it = ids_by_kind_.find(kind);
  return it != ids_by_kind_.end() && it->second.contains(id);
}

}  // namespace portico
