#pragma once
// Pure functions that build the bytes the proxy writes: Kong-style generated responses, the
// upstream request head and the downstream response head. No sockets; unit-tested directly.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "common/http/message.h"
#include "data_plane/proxy/http1_parser.h"

#ifndef PORTICO_VERSION
#define PORTICO_VERSION "0.0.0"
#endif

namespace portico::proxy {

inline constexpr absl::string_view kServerToken = "portico/" PORTICO_VERSION;

// Kong's messages for the responses the proxy generates itself (KONG-REFERENCE.md §3.7, §4.4).
inline constexpr absl::string_view kMsgBadRequest = "Bad request";
inline constexpr absl::string_view kMsgHeaderTooLarge = "Request header or cookie too large";
inline constexpr absl::string_view kMsgNoRoute = "no Route matched with those values";
inline constexpr absl::string_view kMsgNoService = "no Service found with those values";
inline constexpr absl::string_view kMsgBadGateway = "An invalid response was received from the upstream server";
inline constexpr absl::string_view kMsgTimeout = "The upstream server is timing out";
inline constexpr absl::string_view kMsgNameResolution = "name resolution failed";
inline constexpr absl::string_view kMsgUnexpected = "An unexpected error occurred";
inline constexpr absl::string_view kMsgHttpsRequired = "Please use HTTPS protocol";


// A complete response: JSON body {"message":...}, Content-Type, Content-Length, Server, and
// `Connection: close` when `close` is true. `extra_headers` go before the body.
std::string BuildKongResponse(int status, absl::string_view message, bool close,
                              const std::vector<std::pair<std::string, std::string>>& extra_headers = {});

// Kong's answer when an https-only route is hit over plain HTTP (KONG-REFERENCE.md §3.7):
// `redirect_status` 426 → `Please use HTTPS protocol` with `Connection: Upgrade` and
// `Upgrade: TLS/1.2, HTTP/1.1`; 301/302/307/308 → empty body and
// `Location: https://<host without port><path>[?query]`. Other values are treated as 426.
std::string BuildHttpsRequiredResponse(int redirect_status, absl::string_view host, absl::string_view path_and_query,
                                       bool close,
                                       const std::vector<std::pair<std::string, std::string>>& extra_headers = {});

// The header names the proxy treats specially, recognised with one switch on the length and at
// most a few case-insensitive compares (instead of comparing every header against every list).
enum class KnownHeader {
  kOther,
  // hop-by-hop
  kConnection, kKeepAlive, kProxyConnection, kTe, kTrailer, kTransferEncoding, kUpgrade,
  // rewritten or dropped by the proxy
  kHost, kExpect, kContentLength, kVia, kXRealIp, kXForwardedFor, kXForwardedProto, kXForwardedHost,
  kXForwardedPort, kXForwardedPrefix,
};
KnownHeader ClassifyHeader(absl::string_view name);

// True for headers that apply to one hop only: Connection, Keep-Alive, Proxy-Connection, TE,
// Trailer, Transfer-Encoding, Upgrade, and any name listed in the message's Connection headers.
class HopByHopFilter {
 public:
  // REQUIRES: `head` outlives the filter (the listed names point into its values).
  explicit HopByHopFilter(const Http1Head& head);
  bool IsHopByHop(absl::string_view name) const { return IsHopByHop(name, ClassifyHeader(name)); }
  // With the name's classification already known.
  bool IsHopByHop(absl::string_view name, KnownHeader kind) const;

 private:
  absl::InlinedVector<absl::string_view, 4> listed_;  // names from Connection headers, as sent
};

struct UpstreamRequestParams {
  absl::string_view upstream_path;   // already joined by router::BuildUpstreamPath
  absl::string_view query;           // without '?', empty when none; sent as received except
                                     // bytes >= 0x80, which are sent as %XX
  bool has_query = false;
  absl::string_view host_header;     // value of the Host header to send
  absl::string_view client_ip;
  absl::string_view client_host;     // client Host header without port (X-Forwarded-Host)
  uint16_t local_port = 0;           // X-Forwarded-Port
  // The body's framing as the parser decided it (never as the client's headers say): chunked
  // (re-framed by the proxy), or a Content-Length, or neither (no body).
  bool chunked_body = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
};

// The head sent upstream: HTTP/1.1 request line, Host, the client's end-to-end headers (minus
// Host, Expect, the X-Forwarded-*/X-Real-IP headers the proxy sets and the framing headers),
// X-Real-IP, X-Forwarded-For (appended), -Proto, -Host, -Port, and the framing the parser found:
// `Content-Length: <n>` or `Transfer-Encoding: chunked`. Framing headers are always written by
// the proxy, so no `Connection` token can remove them (docs/proxy.md, "Request framing policy").
std::string BuildUpstreamRequestHead(const Http1Head& request, const UpstreamRequestParams& params);
// The same head, appended to `out` (lets the caller reuse one buffer's capacity).
void AppendUpstreamRequestHead(std::string* out, const Http1Head& request, const UpstreamRequestParams& params);

// How the response body is framed towards the client.
enum class ResponseFraming {
  kNoBody,          // 1xx, 204, 304: no body and no framing headers
  kHeadResponse,    // response to HEAD: no body; the upstream's Content-Length is passed on
  kContentLength,   // upstream's Content-Length passed through
  kChunked,         // re-framed as chunked (upstream chunked or close-delimited; HTTP/1.1 client)
  kUntilClose,      // close-delimited (HTTP/1.0 client and no Content-Length)
};

ResponseFraming ChooseResponseFraming(const Http1Head& response, bool request_is_head,
                                      bool client_is_http11);

// The head sent to the client: status line, end-to-end headers, Via, framing headers, and
// `Connection: close` / `Connection: keep-alive` as decided by the caller. The upstream's
// Content-Length and Transfer-Encoding are never copied: the framing headers are written from
// `framing` and the parsed length, so a `Connection` token cannot remove them.
std::string BuildDownstreamResponseHead(const Http1Head& response, ResponseFraming framing,
                                        bool keep_alive, bool client_is_http11,
                                        const std::vector<std::pair<std::string, std::string>>& extra_headers = {});
// The same head, appended to `out` (lets the caller reuse one buffer's capacity).
void AppendDownstreamResponseHead(std::string* out, const Http1Head& response, ResponseFraming framing,
                                  bool keep_alive, bool client_is_http11,
                                  const std::vector<std::pair<std::string, std::string>>& extra_headers = {});

// The size line of one chunk of chunked encoding ("<hex size>\r\n"), written into `buffer`.
absl::string_view ChunkSizeLine(size_t size, char (&buffer)[24]);
inline constexpr absl::string_view kLastChunk = "0\r\n\r\n";

// Host header without the port ("a.com:8000" -> "a.com", "[::1]:80" -> "[::1]"), split as the
// router splits it (SplitHostHeader: text after a colon that is not a valid port stays).
absl::string_view StripPort(absl::string_view host);

}  // namespace portico::proxy
