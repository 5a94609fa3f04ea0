#pragma once
// Pure functions that build the HTTP/1 bytes the proxy writes to clients: local (Kong-style)
// responses and the response head relayed from an upstream. No sockets; unit-tested directly.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "common/http/message.h"
#include "common/http/http1_codec.h"
#include "common/http/known_headers.h"
#include "data_plane/pipeline/local_responses.h"

#ifndef PORTICO_VERSION
#define PORTICO_VERSION "0.0.0"
#endif

namespace portico::dp {

inline constexpr absl::string_view kServerToken = "portico/" PORTICO_VERSION;

// A local response as HTTP/1.1 bytes: with a message, Content-Type and Content-Length of Kong's
// JSON body {"message": ...}, Server, `Connection: close` when `close`, the response's headers;
// without one, its headers (e.g. Location), `Content-Length: 0`, Server, Connection. Then
// `context_headers` (the request's response headers: debug headers, plugins).
std::string SerializeLocalResponse(const dp::LocalResponse& response, bool close,
                                   absl::Span<const std::pair<std::string, std::string>> context_headers);

// The body of a local response and its content type (empty when there is no body): the step's
// own body, else {"message": ...}, else none. Shared by the HTTP/1 and HTTP/2 serializers.
std::string LocalResponseBody(const dp::LocalResponse& response, std::string* content_type);

// SerializeLocalResponse of {status, message}.
std::string BuildKongResponse(int status, absl::string_view message, bool close,
                              absl::Span<const std::pair<std::string, std::string>> extra_headers = {});

// SerializeLocalResponse of dp::HttpsRequiredResponse.
std::string BuildHttpsRequiredResponse(int redirect_status, absl::string_view host, absl::string_view path_and_query,
                                       bool close,
                                       absl::Span<const std::pair<std::string, std::string>> extra_headers = {});

// How the response body is framed towards the client.
enum class ResponseFraming {
  kNoBody,          // 1xx, 204, 304: no body and no framing headers
  kHeadResponse,    // response to HEAD: no body; the upstream's Content-Length is passed on
  kContentLength,   // upstream's Content-Length passed through
  kChunked,         // re-framed as chunked (upstream chunked or close-delimited; HTTP/1.1 client)
  kUntilClose,      // close-delimited (HTTP/1.0 client and no Content-Length)
};

ResponseFraming ChooseResponseFraming(const MessageHead& response, bool request_is_head,
                                      bool client_is_http11);

// The head sent to the client: status line, end-to-end headers (but `removed_headers`, lowercase
// names), Via, framing headers, `Connection: close` / `Connection: keep-alive` as decided by the
// caller, and `extra_headers`. The upstream's
// Content-Length and Transfer-Encoding are never copied: the framing headers are written from
// `framing` and the parsed length, so a `Connection` token cannot remove them.
std::string BuildDownstreamResponseHead(const MessageHead& response, ResponseFraming framing,
                                        bool keep_alive, bool client_is_http11,
                                        absl::Span<const std::pair<std::string, std::string>> extra_headers = {},
                                        absl::Span<const absl::string_view> removed_headers = {});
// The same head, appended to `out` (lets the caller reuse one buffer's capacity).
void AppendDownstreamResponseHead(std::string* out, const MessageHead& response, ResponseFraming framing,
                                  bool keep_alive, bool client_is_http11,
                                  absl::Span<const std::pair<std::string, std::string>> extra_headers = {},
                                  absl::Span<const absl::string_view> removed_headers = {});

// The size line of one chunk of chunked encoding ("<hex size>\r\n"), written into `buffer`.
absl::string_view ChunkSizeLine(size_t size, char (&buffer)[24]);
inline constexpr absl::string_view kLastChunk = "0\r\n\r\n";

// Host header without the port ("a.com:8000" -> "a.com", "[::1]:80" -> "[::1]"), split as the
// router splits it (SplitHostHeader: text after a colon that is not a valid port stays).
absl::string_view StripPort(absl::string_view host);

}  // namespace portico::dp
