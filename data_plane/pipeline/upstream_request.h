#pragma once
// The HTTP/1.1 request head the proxy sends upstream, built from the client's head (the
// upstream step of the pipeline). Pure functions; unit-tested and fuzzed.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "common/http/http1_codec.h"

namespace portico::dp {

struct UpstreamRequestParams {
  absl::string_view method;          // empty: the client's
  absl::string_view upstream_path;   // already joined by dp::BuildUpstreamPath
  absl::string_view query;           // without '?', empty when none; sent as received except
                                     // bytes >= 0x80, which are sent as %XX
  bool has_query = false;
  absl::string_view host_header;     // value of the Host header to send
  absl::string_view client_ip;
  absl::string_view client_host;     // client Host header without port (X-Forwarded-Host)
  uint16_t local_port = 0;           // X-Forwarded-Port
  absl::string_view forwarded_proto = "http";  // X-Forwarded-Proto: "https" for a TLS request
  // The body's framing as the parser decided it (never as the client's headers say): chunked
  // (re-framed by the proxy), or a Content-Length, or neither (no body).
  bool chunked_body = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  // A WebSocket handshake: `Connection: upgrade` and `Upgrade: websocket` go upstream (the
  // client's own Upgrade/Connection headers are hop-by-hop and never do).
  bool websocket_upgrade = false;
  // From plugins (RequestContext::upstream_headers*): headers to set, replacing the client's of
  // the same name, and client headers to drop (lowercase names). Null = none.
  const std::vector<std::pair<absl::string_view, absl::string_view>>* set_headers = nullptr;
  const std::vector<absl::string_view>* removed_headers = nullptr;
};

// The head sent upstream: HTTP/1.1 request line, Host, the client's end-to-end headers (minus
// Host, Expect, the X-Forwarded-*/X-Real-IP headers the proxy sets and the framing headers),
// X-Real-IP, X-Forwarded-For (appended), -Proto, -Host, -Port, and the framing the parser found:
// `Content-Length: <n>` or `Transfer-Encoding: chunked`. Framing headers are always written by
// the proxy, so no `Connection` token can remove them (docs/proxy.md, "Request framing policy").
std::string BuildUpstreamRequestHead(const MessageHead& request, const UpstreamRequestParams& params);
// The same head, appended to `out` (lets the caller reuse one buffer's capacity).
void AppendUpstreamRequestHead(std::string* out, const MessageHead& request, const UpstreamRequestParams& params);

// The header list of the same request to an HTTP/2 upstream (services grpc/grpcs), in order:
// :method, :scheme (`scheme`), :authority (params.host_header), :path (+ query); the client's
// end-to-end headers less RFC 9113 §8.2.2's connection-specific ones and those the HTTP/1 head
// also leaves out, with `te: trailers` kept when the client sent it; the plugins' headers; the
// X-Real-IP/X-Forwarded-* headers; content-length when the request has one. Names as given to
// `add`: the pseudo-headers and the proxy's own lowercase, the client's and plugins' as sent
// (the caller lowercases them).
void ForEachUpstreamHttp2Header(const MessageHead& request, const UpstreamRequestParams& params,
                                absl::string_view scheme,
                                absl::FunctionRef<void(absl::string_view, absl::string_view)> add);

}  // namespace portico::dp
