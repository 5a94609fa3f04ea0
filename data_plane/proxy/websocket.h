#pragma once
// The WebSocket opening handshake as the proxy sees it (RFC 6455 §4): which requests are
// WebSocket upgrades, which upstream answers accept one, and the 101 head relayed to the client.
// After the 101, the bytes are tunnelled (tunnel.h); frames are never parsed. Pure functions.
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/http/http1_codec.h"

namespace portico::dp {

// An HTTP/1.1 GET without a body whose Upgrade header lists "websocket" and whose Connection
// header lists "upgrade" (tokens, any case). Such a request goes upstream with exactly
// `Connection: upgrade` and `Upgrade: websocket`; every other Upgrade (h2c, ...) is dropped as a
// hop-by-hop header.
bool IsWebSocketUpgradeRequest(const MessageHead& request);

// A 101 response that completes a WebSocket handshake: its Upgrade header is "websocket" (RFC
// 6455 §4.1: anything else fails the connection). The Sec-WebSocket-Accept check is the client's.
bool IsWebSocketAcceptResponse(const MessageHead& response);

// The 101 head for the client: the upstream's end-to-end headers (hop-by-hop, `removed_headers`
// and framing dropped, Via added), `Upgrade: websocket`, `Connection: upgrade`, then
// `extra_headers`.
void AppendSwitchingProtocolsHead(std::string* out, const MessageHead& response,
                                  absl::Span<const std::pair<std::string, std::string>> extra_headers,
                                  absl::Span<const absl::string_view> removed_headers);

}  // namespace portico::dp
