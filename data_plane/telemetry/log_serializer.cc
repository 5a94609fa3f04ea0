#include "data_plane/telemetry/log_serializer.h"

#include <time.h>
#include <uv.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/config/config_set.h"
#include "nlohmann/json.hpp"

namespace portico::dp {
namespace {

constexpr absl::string_view kSecretHeaders[] = {"authorization", "proxy-authorization", "cookie", "set-cookie",
                                                "apikey",        "x-api-key",           "api-key"};
constexpr absl::string_view kSecretQueryArguments[] = {"apikey", "api_key", "access_token", "jwt", "token", "password"};

void Str(absl::string_view text, std::string* out) {
  out->push_back('"');
  AppendJsonEscaped(text, out);
  out->push_back('"');
}

void Int(int64_t value, std::string* out) { absl::StrAppend(out, value); }

// Milliseconds with Kong's integer look when whole, else 3 decimals.
void Millis(double ms, std::string* out) {
  char buf[32];
  const int n = std::snprintf(buf, sizeof(buf), "%.3f", ms);
  size_t len = static_cast<size_t>(n);
  while (len > 0 && buf[len - 1] == '0') --len;
  if (len > 0 && buf[len - 1] == '.') --len;
  out->append(buf, len);
}

void Bool(bool value, std::string* out) { out->append(value ? "true" : "false"); }

void LowercaseStr(absl::string_view text, std::string* out) {
  out->push_back('"');
  const size_t start = out->size();
  AppendJsonEscaped(text, out);
  for (size_t i = start; i < out->size(); ++i) (*out)[i] = absl::ascii_tolower(static_cast<unsigned char>((*out)[i]));
  out->push_back('"');
}

bool Redacted(absl::string_view name, absl::Span<const std::string> extra) {
  if (IsSecretHeader(name)) return true;
  for (const std::string& e : extra) {
    if (absl::EqualsIgnoreCase(e, name)) return true;
  }
  return false;
}

// Kong's serializer reads at most 100 headers and 100 query arguments (its get_headers and
// get_query defaults); the limit also bounds the quadratic grouping of repeated names below.
constexpr size_t kMaxLoggedItems = 100;

// {"name": "value" | ["v1", "v2"], ...}: lowercase names, repeated headers as arrays.
template <typename Pairs>
void Headers(const Pairs& headers, absl::Span<const std::string> extra, std::string* out) {
  out->push_back('{');
  bool first = true;
  const size_t count = std::min<size_t>(headers.size(), kMaxLoggedItems);
  for (size_t i = 0; i < count; ++i) {
    const absl::string_view name = headers[i].first;
    bool seen = false;
    for (size_t j = 0; j < i && !seen; ++j) seen = absl::EqualsIgnoreCase(headers[j].first, name);
    if (seen) continue;
    size_t repeats = 0;
    for (size_t j = i; j < count; ++j) repeats += absl::EqualsIgnoreCase(headers[j].first, name) ? 1 : 0;
    if (!first) out->push_back(',');
    first = false;
    LowercaseStr(name, out);
    out->push_back(':');
    const bool secret = Redacted(name, extra);
    if (repeats > 1) out->push_back('[');
    bool first_value = true;
    for (size_t j = i; j < count; ++j) {
      if (!absl::EqualsIgnoreCase(headers[j].first, name)) continue;
      if (!first_value) out->push_back(',');
      first_value = false;
      Str(secret ? kRedacted : absl::string_view(headers[j].second), out);
    }
    if (repeats > 1) out->push_back(']');
  }
  out->push_back('}');
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// How many bytes at the end of buf[0, n) start a UTF-8 sequence that is not complete yet (0-3).
size_t IncompleteUtf8Tail(const char* buf, size_t n) {
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    const unsigned char b = static_cast<unsigned char>(buf[n - k]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    if (b < 0xC0) return 0;            // ASCII (or a stray byte): nothing pending
    const size_t length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    return length > k ? k : 0;
  }
  return 0;
}

// A query component percent-decoded ('+' is a space), as a JSON string body (no quotes), through
// a stack buffer; a UTF-8 sequence cut by a full buffer is carried into the next one.
void AppendDecoded(absl::string_view text, std::string* out) {
  char buf[256];
  size_t n = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 && HexValue(text[i + 2]) >= 0) {
      c = static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2]));
      i += 2;
    }
    buf[n++] = c;
    if (n == sizeof(buf)) {
      const size_t keep = IncompleteUtf8Tail(buf, n);
      AppendJsonEscaped(absl::string_view(buf, n - keep), out);
      std::memmove(buf, buf + n - keep, keep);
      n = keep;
    }
  }
  AppendJsonEscaped(absl::string_view(buf, n), out);
}

void DecodedStr(absl::string_view text, std::string* out) {
  out->push_back('"');
  AppendDecoded(text, out);
  out->push_back('"');
}

// Whether the query argument named `raw_name` (as sent, percent-encoded or not) is redacted: its
// decoded name is a credential name or one of `extra`. A name too long to decode here is redacted.
bool RedactedQueryName(absl::string_view raw_name, absl::Span<const std::string> extra) {
  char buf[128];
  size_t n = 0;
  for (size_t i = 0; i < raw_name.size(); ++i) {
    if (n == sizeof(buf)) return true;
    char c = raw_name[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%' && i + 2 < raw_name.size() && HexValue(raw_name[i + 1]) >= 0 && HexValue(raw_name[i + 2]) >= 0) {
      c = static_cast<char>(HexValue(raw_name[i + 1]) * 16 + HexValue(raw_name[i + 2]));
      i += 2;
    }
    buf[n++] = c;
  }
  const absl::string_view name(buf, n);
  if (IsSecretQueryArgument(name)) return true;
  for (const std::string& e : extra) {
    if (absl::EqualsIgnoreCase(e, name)) return true;
  }
  return false;
}

// The query with credential-looking argument values replaced, JSON-escaped (for uri and url).
void RedactedQueryEscaped(absl::string_view query, absl::Span<const std::string> extra, std::string* out) {
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == absl::string_view::npos) end = query.size();
    const absl::string_view arg = query.substr(start, end - start);
    const size_t eq = arg.find('=');
    if (start != 0) out->push_back('&');
    if (eq != absl::string_view::npos && RedactedQueryName(arg.substr(0, eq), extra)) {
      AppendJsonEscaped(arg.substr(0, eq + 1), out);
      out->append(kRedacted.data(), kRedacted.size());
    } else {
      AppendJsonEscaped(arg, out);
    }
    start = end + 1;
  }
}

// Kong's querystring: {name: value | true (no '=') | [values]}, decoded, secrets redacted; the
// first kMaxLoggedItems arguments.
void QueryObject(absl::string_view query, absl::Span<const std::string> extra, std::string* out) {
  size_t arguments = 0;
  for (size_t at = 0; at < query.size(); ++at) {
    if (query[at] == '&' && ++arguments == kMaxLoggedItems) {
      query = query.substr(0, at);
      break;
    }
  }
  out->push_back('{');
  bool first = true;
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == absl::string_view::npos) end = query.size();
    const absl::string_view arg = query.substr(start, end - start);
    start = end + 1;
    if (arg.empty()) continue;
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    // Repeated names: the first occurrence writes them all as an array.
    bool seen = false;
    size_t repeats = 0;
    for (size_t s = 0; s < query.size();) {
      size_t e = query.find('&', s);
      if (e == absl::string_view::npos) e = query.size();
      const absl::string_view other = query.substr(s, e - s);
      if (other.substr(0, other.find('=')) == name && !other.empty()) {
        if (s < start - 1 - arg.size()) seen = true;
        ++repeats;
      }
      s = e + 1;
    }
    if (seen) continue;
    if (!first) out->push_back(',');
    first = false;
    DecodedStr(name, out);
    out->push_back(':');
    const bool secret = RedactedQueryName(name, extra);
    if (repeats > 1) out->push_back('[');
    bool first_value = true;
    for (size_t s = 0; s < query.size();) {
      size_t e = query.find('&', s);
      if (e == absl::string_view::npos) e = query.size();
      const absl::string_view other = query.substr(s, e - s);
      s = e + 1;
      if (other.empty()) continue;
      const size_t oeq = other.find('=');
      if (other.substr(0, oeq) != name) continue;
      if (!first_value) out->push_back(',');
      first_value = false;
      if (oeq == absl::string_view::npos) {
        out->append("true");
      } else if (secret) {
        Str(kRedacted, out);
      } else {
        DecodedStr(other.substr(oeq + 1), out);
      }
    }
    if (repeats > 1) out->push_back(']');
  }
  out->push_back('}');
}

void StringList(const config::v1::StringList& list, bool present, std::string* out) {
  if (!present) {
    out->append("null");
    return;
  }
  out->push_back('[');
  for (int i = 0; i < list.values_size(); ++i) {
    if (i > 0) out->push_back(',');
    Str(list.values(i), out);
  }
  out->push_back(']');
}

void RouteObject(const config::v1::Route& route, std::string* out) {
  out->append("{\"id\":");
  Str(route.id(), out);
  out->append(",\"name\":");
  if (route.has_name()) Str(route.name(), out); else out->append("null");
  out->append(",\"protocols\":[");
  for (int i = 0; i < route.protocols_size(); ++i) {
    if (i > 0) out->push_back(',');
    Str(route.protocols(i), out);
  }
  out->append("],\"paths\":");
  StringList(route.paths(), route.has_paths(), out);
  out->append(",\"hosts\":");
  StringList(route.hosts(), route.has_hosts(), out);
  out->append(",\"methods\":");
  StringList(route.methods(), route.has_methods(), out);
  out->append(",\"strip_path\":");
  Bool(route.strip_path(), out);
  out->append(",\"preserve_host\":");
  Bool(route.preserve_host(), out);
  out->append(",\"created_at\":");
  Int(route.created_at(), out);
  out->append(",\"updated_at\":");
  Int(route.updated_at(), out);
  out->append(",\"service\":");
  if (route.has_service_id()) {
    out->append("{\"id\":");
    Str(route.service_id(), out);
    out->push_back('}');
  } else {
    out->append("null");
  }
  out->push_back('}');
}

void ServiceObject(const config::v1::Service& service, std::string* out) {
  out->append("{\"id\":");
  Str(service.id(), out);
  out->append(",\"name\":");
  if (service.has_name()) Str(service.name(), out); else out->append("null");
  out->append(",\"protocol\":");
  Str(service.protocol(), out);
  out->append(",\"host\":");
  Str(service.host(), out);
  out->append(",\"port\":");
  Int(service.port(), out);
  out->append(",\"path\":");
  if (service.has_path()) Str(service.path(), out); else out->append("null");
  out->append(",\"retries\":");
  Int(service.retries(), out);
  out->append(",\"connect_timeout\":");
  Int(service.connect_timeout(), out);
  out->append(",\"write_timeout\":");
  Int(service.write_timeout(), out);
  out->append(",\"read_timeout\":");
  Int(service.read_timeout(), out);
  out->append(",\"created_at\":");
  Int(service.created_at(), out);
  out->append(",\"updated_at\":");
  Int(service.updated_at(), out);
  out->push_back('}');
}

// The request-target the upstream got: from the HTTP/1 head's request line, or HTTP/2's :path.
absl::string_view UpstreamUri(const RequestContext& request) {
  if (!request.upstream_head.empty()) {
    const absl::string_view head = request.upstream_head;
    const size_t sp1 = head.find(' ');
    if (sp1 == absl::string_view::npos) return {};
    const size_t sp2 = head.find(' ', sp1 + 1);
    if (sp2 == absl::string_view::npos) return {};
    return head.substr(sp1 + 1, sp2 - sp1 - 1);
  }
  for (const auto& [name, value] : request.upstream_http2_headers.items()) {
    if (name == ":path") return value;
  }
  return {};
}

}  // namespace

bool IsSecretHeader(absl::string_view name) {
  for (absl::string_view secret : kSecretHeaders) {
    if (absl::EqualsIgnoreCase(secret, name)) return true;
  }
  return false;
}

std::vector<std::string> ConfiguredCredentialNames(const ConfigSet& snapshot) {
  std::vector<std::string> names;
  auto add_array = [&names](const nlohmann::json& config, const char* field) {
    auto it = config.find(field);
    if (it == config.end() || !it->is_array()) return;
    for (const nlohmann::json& name : *it) {
      if (!name.is_string()) continue;
      std::string lower = absl::AsciiStrToLower(name.get<std::string>());
      if (!lower.empty() && std::find(names.begin(), names.end(), lower) == names.end()) names.push_back(std::move(lower));
    }
  };
  for (const config::v1::Plugin& plugin : snapshot.plugins) {
    const bool key_auth = plugin.name() == "key-auth";
    const bool jwt = plugin.name() == "jwt";
    if (!key_auth && !jwt) continue;
    const nlohmann::json config = nlohmann::json::parse(plugin.config(), nullptr, false);
    if (!config.is_object()) continue;
    if (key_auth) add_array(config, "key_names");
    if (jwt) {
      add_array(config, "header_names");
      add_array(config, "uri_param_names");
      add_array(config, "cookie_names");
    }
  }
  return names;
}

bool IsSecretQueryArgument(absl::string_view name) {
  for (absl::string_view secret : kSecretQueryArguments) {
    if (absl::EqualsIgnoreCase(secret, name)) return true;
  }
  return false;
}

int64_t UnixNowMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void AppendJsonEscaped(absl::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t i = 0;
  while (i < text.size()) {
    // A run of printable ASCII other than " and \ goes in one append.
    size_t run = i;
    while (run < text.size()) {
      const unsigned char r = static_cast<unsigned char>(text[run]);
      if (r < 0x20 || r >= 0x7f || r == '"' || r == '\\') break;
      ++run;
    }
    if (run > i) {
      out->append(text.data() + i, run - i);
      i = run;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out->push_back('\\');
        out->push_back(static_cast<char>(c));
      } else if (c < 0x20 || c == 0x7f) {
        const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out->append(esc, sizeof(esc));
      } else {
        out->push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence is copied; anything else becomes U+FFFD.
    size_t len = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      min = 0x10000;
    }
    bool ok = len != 0 && i + len <= text.size();
    uint32_t cp = ok ? (c & (0x7F >> len)) : 0;
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (ok) {
      out->append(text.data() + i, len);
      i += len;
    } else {
      out->append("\xEF\xBF\xBD");
      ++i;
    }
  }
}

void AppendLogEntry(const RequestContext& request, int status, int64_t now_unix_ms, uint64_t now_ns,
                    std::string* out, absl::Span<const std::string> extra_redacted) {
  const RequestLatencies latencies = ComputeLatencies(request);
  const MessageHead* head = request.head;
  const absl::string_view path = request.target.path;
  const absl::string_view query = request.target.query;

  out->append("{\"request\":{\"method\":");
  Str(head != nullptr ? absl::string_view(head->method) : absl::string_view(), out);
  out->append(",\"uri\":\"");
  AppendJsonEscaped(path, out);
  if (request.target.has_query) {
    out->push_back('?');
    RedactedQueryEscaped(query, extra_redacted, out);
  }
  out->append("\",\"url\":\"");
  out->append(request.tls ? "https" : "http");
  out->append("://");
  {
    absl::string_view host = request.host;
    // The host without its port (Kong's url has the listener's port).
    if (!host.empty() && host.front() != '[') {
      if (size_t colon = host.rfind(':'); colon != absl::string_view::npos) host = host.substr(0, colon);
    } else if (!host.empty()) {
      if (size_t close = host.find(']'); close != absl::string_view::npos) host = host.substr(0, close + 1);
    }
    AppendJsonEscaped(host, out);
  }
  out->push_back(':');
  Int(request.local_port, out);
  AppendJsonEscaped(path, out);
  if (request.target.has_query) {
    out->push_back('?');
    RedactedQueryEscaped(query, extra_redacted, out);
  }
  out->append("\",\"querystring\":");
  QueryObject(request.target.has_query ? query : absl::string_view(), extra_redacted, out);
  out->append(",\"headers\":");
  if (head != nullptr) {
    Headers(head->headers, extra_redacted, out);
  } else {
    out->append("{}");
  }
  out->append(",\"size\":");
  Int(static_cast<int64_t>(RequestSizeBytes(request)), out);
  if (!request.request_id.empty()) {
    out->append(",\"id\":");
    Str(request.request_id, out);
  }
  out->append("},\"response\":{\"status\":");
  Int(status, out);
  out->append(",\"headers\":");
  Headers(request.response_headers.items(), extra_redacted, out);
  out->append(",\"size\":");
  Int(static_cast<int64_t>(request.response_bytes), out);
  out->append("},\"latencies\":{\"kong\":");
  Millis(latencies.kong_ms, out);
  out->append(",\"proxy\":");
  Millis(latencies.proxy_ms, out);
  out->append(",\"request\":");
  Millis(latencies.request_ms, out);
  out->append(",\"receive\":0}");

  out->append(",\"upstream_uri\":\"");
  {
    const absl::string_view upstream_uri = UpstreamUri(request);
    const size_t question = upstream_uri.find('?');
    AppendJsonEscaped(upstream_uri.substr(0, question), out);
    if (question != absl::string_view::npos) {
      out->push_back('?');
      RedactedQueryEscaped(upstream_uri.substr(question + 1), extra_redacted, out);
    }
  }
  out->push_back('"');
  out->append(",\"upstream_status\":");
  if (request.upstream_status != 0) Int(request.upstream_status, out); else out->append("null");

  // Kong's tries: one per upstream attempt. The last one is the address that answered (or
  // failed last); earlier ones are listed with state "next" (they failed over to a retry).
  out->append(",\"tries\":[");
  // request.attempt counts the retries; there was a first attempt when a target was picked.
  const int attempts = request.upstream_target != nullptr ? request.attempt + 1 : 0;
  for (int i = 0; i < attempts; ++i) {
    if (i > 0) out->push_back(',');
    const bool last = i == attempts - 1;
    out->append("{\"balancer_latency\":0");
    if (last && request.upstream_target != nullptr) {
      out->append(",\"ip\":");
      Str(request.upstream_target->ip, out);
      out->append(",\"port\":");
      Int(request.upstream_target->port, out);
    }
    if (!last) out->append(",\"state\":\"next\"");
    out->push_back('}');
  }
  out->push_back(']');

  const config::v1::Route* route = request.match.has_value() ? request.match->route : nullptr;
  const config::v1::Service* service = request.match.has_value() ? request.match->service : nullptr;
  out->append(",\"route\":");
  if (route != nullptr) RouteObject(*route, out); else out->append("null");
  out->append(",\"service\":");
  if (service != nullptr) ServiceObject(*service, out); else out->append("null");
  out->append(",\"consumer\":");
  if (request.consumer != nullptr) {
    out->append("{\"id\":");
    Str(request.consumer->id(), out);
    out->append(",\"username\":");
    if (request.consumer->has_username()) Str(request.consumer->username(), out); else out->append("null");
    out->append(",\"custom_id\":");
    if (request.consumer->has_custom_id()) Str(request.consumer->custom_id(), out); else out->append("null");
    out->append(",\"created_at\":");
    Int(request.consumer->created_at(), out);
    out->push_back('}');
  } else {
    out->append("null");
  }
  out->append(",\"authenticated_entity\":");
  if (!request.credential_id.empty()) {
    out->append("{\"id\":");
    Str(request.credential_id, out);
    out->push_back('}');
  } else {
    out->append("null");
  }
  out->append(",\"client_ip\":");
  Str(request.client_ip, out);
  out->append(",\"started_at\":");
  const uint64_t age_ns = (request.received_ns != 0 && now_ns >= request.received_ns) ? now_ns - request.received_ns : 0;
  Int(now_unix_ms - static_cast<int64_t>(age_ns / 1000000), out);
  // Kong's source (kong/pdk/log.lua): "upstream" when the service answered, "kong" when the
  // gateway or a plugin did (an exit or an error).
  out->append(request.upstream_status != 0 ? ",\"source\":\"upstream\"" : ",\"source\":\"kong\"");
  out->append(",\"workspace\":null,\"workspace_name\":\"default\"}");
}

}  // namespace portico::dp
