#include "data_plane/proxy/websocket.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/http/known_headers.h"
#include "common/http/header_lines.h"
#include "data_plane/proxy/http1_messages.h"

namespace portico::dp {
namespace {

// Some header `name` has `token` in its comma-separated list (case-insensitive).
bool HeaderListsToken(const MessageHead& head, absl::string_view name, absl::string_view token) {
  for (const auto& [header, value] : head.headers) {
    if (absl::EqualsIgnoreCase(header, name) && ListHasToken(value, token)) return true;
  }
  return false;
}

}  // namespace

bool IsWebSocketUpgradeRequest(const MessageHead& request) {
  // llhttp's flag (Upgrade plus Connection: upgrade) first: free for every other request.
  if (!request.upgrade) return false;
  if (request.version_major != 1 || request.version_minor < 1 || request.method != "GET") return false;
  if (request.chunked || request.content_length > 0) return false;  // a handshake has no body
  return HeaderListsToken(request, "upgrade", "websocket") && HeaderListsToken(request, "connection", "upgrade");
}

bool IsWebSocketAcceptResponse(const MessageHead& response) {
  return response.status == 101 && HeaderListsToken(response, "upgrade", "websocket");
}

void AppendSwitchingProtocolsHead(std::string* out, const MessageHead& response,
                                  absl::Span<const std::pair<std::string, std::string>> extra_headers,
                                  absl::Span<const absl::string_view> removed_headers) {
  // The ordinary head (hop-by-hop removed, no framing for a 1xx, Via), then the upgrade headers
  // before the extra ones.
  AppendDownstreamResponseHead(out, response, ResponseFraming::kNoBody, /*keep_alive=*/true,
                               /*client_is_http11=*/true, {}, removed_headers);
  out->resize(out->size() - 2);  // the blank line
  AppendHeaderLine(out, "Upgrade", "websocket");
  AppendHeaderLine(out, "Connection", "upgrade");
  for (const auto& [name, value] : extra_headers) AppendHeaderLine(out, name, value);
  out->append("\r\n");
}

}  // namespace portico::dp
