#include "data_plane/pipeline/upstream_request.h"

#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "common/http/header_lines.h"
#include "common/http/known_headers.h"

namespace portico::dp {
namespace {

// A client header that a plugin removes, or replaces with a value of its own.
bool DroppedByPlugins(absl::string_view name, const UpstreamRequestParams& params) {
  if (params.removed_headers != nullptr) {
    for (absl::string_view removed : *params.removed_headers) {
      if (absl::EqualsIgnoreCase(name, removed)) return true;
    }
  }
  if (params.set_headers != nullptr) {
    for (const auto& [set_name, unused] : *params.set_headers) {
      if (absl::EqualsIgnoreCase(name, set_name)) return true;
    }
  }
  return false;
}

void AppendListValue(std::string* list, absl::string_view value) {
  if (!list->empty()) *list += ", ";
  list->append(value.data(), value.size());
}

// Client headers never copied upstream: the proxy writes its own (Host, X-Real-IP, the
// X-Forwarded-* it sets, the framing from the parsed body) or drops them (Expect).
bool WrittenByProxy(KnownHeader kind) {
  switch (kind) {
    case KnownHeader::kHost:
    case KnownHeader::kExpect:
    case KnownHeader::kXRealIp:
    case KnownHeader::kXForwardedProto:
    case KnownHeader::kXForwardedHost:
    case KnownHeader::kXForwardedPort:
    case KnownHeader::kXForwardedPrefix:
    case KnownHeader::kContentLength:
    case KnownHeader::kTransferEncoding:
      return true;
    default:
      return false;
  }
}


// The query as received, except raw bytes >= 0x80 (which the parser accepts, as nginx does, but
// which a request line cannot carry): those become %XX, which an upstream decodes to the same byte.
void AppendQuery(std::string* out, absl::string_view query) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  size_t start = 0;
  for (size_t i = 0; i < query.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(query[i]);
    if (c < 0x80) continue;
    out->append(query.data() + start, i - start);
    const char escaped[3] = {'%', kHex[c >> 4], kHex[c & 15]};
    out->append(escaped, 3);
    start = i + 1;
  }
  out->append(query.data() + start, query.size() - start);
}

}  // namespace

void AppendUpstreamRequestHead(std::string* out_buffer, const MessageHead& request,
                               const UpstreamRequestParams& params) {
  std::string& out = *out_buffer;
  out.reserve(out.size() + 512 + request.headers.size() * 48);
  absl::StrAppend(&out, params.method.empty() ? absl::string_view(request.method) : params.method, " ",
                  params.upstream_path);
  if (params.has_query) {
    out.push_back('?');
    AppendQuery(&out, params.query);
  }
  out += " HTTP/1.1\r\n";
  AppendHeaderLine(&out, "Host", params.host_header);

  const HopByHopFilter hop(request);
  std::string forwarded_for;
  for (const auto& [name, value] : request.headers) {
    const KnownHeader kind = ClassifyHeader(name);
    if (hop.IsHopByHop(name, kind)) continue;
    if (kind == KnownHeader::kXForwardedFor) {
      AppendListValue(&forwarded_for, value);  // the proxy appends the client's address to them
      continue;
    }
    if (WrittenByProxy(kind)) continue;
    if (DroppedByPlugins(name, params)) continue;
    AppendHeaderLine(&out, name, value);
  }
  if (params.set_headers != nullptr) {
    for (const auto& [name, value] : *params.set_headers) AppendHeaderLine(&out, name, value);
  }
  AppendHeaderLine(&out, "X-Real-IP", params.client_ip);
  AppendListValue(&forwarded_for, params.client_ip);
  AppendHeaderLine(&out, "X-Forwarded-For", forwarded_for);
  AppendHeaderLine(&out, "X-Forwarded-Proto", params.forwarded_proto);
  if (!params.client_host.empty()) AppendHeaderLine(&out, "X-Forwarded-Host", params.client_host);
  AppendHeaderLine(&out, "X-Forwarded-Port", params.local_port);
  if (params.websocket_upgrade) {
    AppendHeaderLine(&out, "Connection", "upgrade");
    AppendHeaderLine(&out, "Upgrade", "websocket");
  }
  if (params.chunked_body) {
    AppendHeaderLine(&out, "Transfer-Encoding", "chunked");
  } else if (params.has_content_length) {
    AppendHeaderLine(&out, "Content-Length", params.content_length);
  }
  out += "\r\n";
}

void ForEachUpstreamHttp2Header(const MessageHead& request, const UpstreamRequestParams& params,
                                absl::string_view scheme,
                                absl::FunctionRef<void(absl::string_view, absl::string_view)> add) {
  add(":method", params.method.empty() ? absl::string_view(request.method) : params.method);
  add(":scheme", scheme);
  add(":authority", params.host_header);
  if (params.has_query) {
    std::string path(params.upstream_path);
    path.push_back('?');
    AppendQuery(&path, params.query);
    add(":path", path);
  } else {
    add(":path", params.upstream_path);
  }
  const HopByHopFilter hop(request);
  std::string forwarded_for;
  bool te_trailers = false;
  for (const auto& [name, value] : request.headers) {
    const KnownHeader kind = ClassifyHeader(name);
    if (kind == KnownHeader::kTe) {
      // RFC 9113 §8.2.2: TE may be sent, with no value other than "trailers".
      te_trailers |= ListHasToken(value, "trailers");
      continue;
    }
    if (hop.IsHopByHop(name, kind)) continue;
    if (!name.empty() && name[0] == ':') continue;  // pseudo-headers are written above
    if (kind == KnownHeader::kXForwardedFor) {
      AppendListValue(&forwarded_for, value);  // the proxy appends the client's address to them
      continue;
    }
    if (WrittenByProxy(kind)) continue;
    if (DroppedByPlugins(name, params)) continue;
    add(name, value);
  }
  if (te_trailers) add("te", "trailers");
  if (params.set_headers != nullptr) {
    for (const auto& [name, value] : *params.set_headers) add(name, value);
  }
  add("x-real-ip", params.client_ip);
  AppendListValue(&forwarded_for, params.client_ip);
  add("x-forwarded-for", forwarded_for);
  add("x-forwarded-proto", params.forwarded_proto);
  if (!params.client_host.empty()) add("x-forwarded-host", params.client_host);
  char port[8];
  const int port_length = snprintf(port, sizeof(port), "%u", static_cast<unsigned>(params.local_port));
  add("x-forwarded-port", absl::string_view(port, static_cast<size_t>(port_length)));
  if (params.has_content_length && !params.chunked_body) {
    char length[24];
    const int length_size = snprintf(length, sizeof(length), "%llu", static_cast<unsigned long long>(params.content_length));
    add("content-length", absl::string_view(length, static_cast<size_t>(length_size)));
  }
}

std::string BuildUpstreamRequestHead(const MessageHead& request, const UpstreamRequestParams& params) {
  std::string out;
  AppendUpstreamRequestHead(&out, request, params);
  return out;
}

}  // namespace portico::dp
