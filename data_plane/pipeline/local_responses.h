#pragma once
// The responses the proxy makes itself, with Kong's messages (KONG-REFERENCE.md §3.7, §4.4).
#include <string>

#include "absl/strings/string_view.h"
#include "data_plane/pipeline/pipeline.h"

namespace portico::dp {

inline constexpr absl::string_view kMsgBadRequest = "Bad request";
inline constexpr absl::string_view kMsgHeaderTooLarge = "Request header or cookie too large";
inline constexpr absl::string_view kMsgNoRoute = "no Route matched with those values";
inline constexpr absl::string_view kMsgNoService = "no Service found with those values";
inline constexpr absl::string_view kMsgBadGateway = "An invalid response was received from the upstream server";
inline constexpr absl::string_view kMsgTimeout = "The upstream server is timing out";
inline constexpr absl::string_view kMsgNameResolution = "name resolution failed";
// An upstream with no target that can take traffic (none, all weight 0, none resolved).
inline constexpr absl::string_view kMsgNoPeer = "failure to get a peer from the ring-balancer";
inline constexpr absl::string_view kMsgUnexpected = "An unexpected error occurred";
inline constexpr absl::string_view kMsgHttpsRequired = "Please use HTTPS protocol";
inline constexpr absl::string_view kMsgWebSocketRequired = "Please use WebSocket protocol";
// Kong's answers on gRPC routes (KONG-REFERENCE.md §3.7; GrpcRouteStep).
inline constexpr absl::string_view kMsgHttp2Required = "Please use HTTP2 protocol";
inline constexpr absl::string_view kMsgNonGrpcRequest = "Non-gRPC request matched gRPC route";
inline constexpr absl::string_view kMsgGrpcsRequired = "gRPC request matched gRPCs route";
inline constexpr absl::string_view kMsgRequestTooLarge = "Request size limit exceeded";  // request-size-limiting

// Kong's answer when an https-only route is hit over plain HTTP: `redirect_status` 426 ->
// `Please use HTTPS protocol` with `Connection: Upgrade` and `Upgrade: TLS/1.2, HTTP/1.1`;
// 301/302/307/308 -> no body and `Location: https://<host without port, lowercase><path>[?query]`.
// Other values are treated as 426.
LocalResponse HttpsRequiredResponse(int redirect_status, absl::string_view host, absl::string_view path_and_query,
                                    bool close);

// A request that is not a WebSocket handshake on a ws/wss-only route: 426 `Please use WebSocket
// protocol` with `Connection: Upgrade` and `Upgrade: websocket` (the shape of Kong's other 426s).
LocalResponse WebSocketRequiredResponse();

}  // namespace portico::dp
