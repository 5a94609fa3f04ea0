// Socket-free tests of the WebSocket handshake rules (data_plane/proxy/websocket.h) and of the
// upgrade headers the upstream head carries.
#include "data_plane/proxy/websocket.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "data_plane/pipeline/upstream_request.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

MessageHead Handshake() {
  MessageHead head;
  head.method = "GET";
  head.url = "/chat";
  head.version_major = 1;
  head.version_minor = 1;
  head.upgrade = true;  // as llhttp sets it for Upgrade plus Connection: upgrade
  head.headers = {{"Host", "example.com"},
                  {"Connection", "keep-alive, Upgrade"},
                  {"Upgrade", "websocket"},
                  {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                  {"Sec-WebSocket-Version", "13"}};
  return head;
}

TEST(WebSocketHandshakeTest, RecognisesHandshakesOnly) {
  EXPECT_TRUE(IsWebSocketUpgradeRequest(Handshake()));
  MessageHead any_case = Handshake();
  any_case.headers[1] = {"connection", "UPGRADE"};
  any_case.headers[2] = {"UPGRADE", "WebSocket"};
  EXPECT_TRUE(IsWebSocketUpgradeRequest(any_case));
  MessageHead listed = Handshake();
  listed.headers[2].second = "foo/2, websocket";
  EXPECT_TRUE(IsWebSocketUpgradeRequest(listed));

  MessageHead not_flagged = Handshake();  // the parser saw no upgrade: not looked at further
  not_flagged.upgrade = false;
  EXPECT_FALSE(IsWebSocketUpgradeRequest(not_flagged));

  MessageHead post = Handshake();
  post.method = "POST";
  EXPECT_FALSE(IsWebSocketUpgradeRequest(post));
  MessageHead http10 = Handshake();
  http10.version_minor = 0;
  EXPECT_FALSE(IsWebSocketUpgradeRequest(http10));
  MessageHead http2 = Handshake();
  http2.version_major = 2;
  http2.version_minor = 0;
  EXPECT_FALSE(IsWebSocketUpgradeRequest(http2));
  MessageHead with_body = Handshake();
  with_body.has_content_length = true;
  with_body.content_length = 5;
  EXPECT_FALSE(IsWebSocketUpgradeRequest(with_body));
  MessageHead chunked = Handshake();
  chunked.chunked = true;
  EXPECT_FALSE(IsWebSocketUpgradeRequest(chunked));
  MessageHead no_connection_token = Handshake();
  no_connection_token.headers[1].second = "keep-alive";
  EXPECT_FALSE(IsWebSocketUpgradeRequest(no_connection_token));
  MessageHead other_protocol = Handshake();
  other_protocol.headers[2].second = "h2c";
  EXPECT_FALSE(IsWebSocketUpgradeRequest(other_protocol));
  MessageHead websockets_prefix = Handshake();
  websockets_prefix.headers[2].second = "websocketx";
  EXPECT_FALSE(IsWebSocketUpgradeRequest(websockets_prefix));
}

TEST(WebSocketHandshakeTest, AcceptNeedsA101ToWebSocket) {
  MessageHead response;
  response.status = 101;
  response.headers = {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}};
  EXPECT_TRUE(IsWebSocketAcceptResponse(response));
  response.headers[0].second = "h2c";
  EXPECT_FALSE(IsWebSocketAcceptResponse(response));
  response.headers.clear();
  EXPECT_FALSE(IsWebSocketAcceptResponse(response));
  MessageHead ok;
  ok.status = 200;
  ok.headers = {{"Upgrade", "websocket"}};
  EXPECT_FALSE(IsWebSocketAcceptResponse(ok));
}

TEST(WebSocketHandshakeTest, SwitchingProtocolsHeadKeepsEndToEndHeadersOnly) {
  MessageHead response;
  response.status = 101;
  response.reason = "Switching Protocols";
  response.headers = {{"Upgrade", "websocket"},
                      {"Connection", "Upgrade, X-Hop"},
                      {"X-Hop", "dropped"},
                      {"Keep-Alive", "timeout=5"},
                      {"Content-Length", "0"},
                      {"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
                      {"Sec-WebSocket-Protocol", "chat"},
                      {"X-Secret", "removed by a plugin"}};
  const std::vector<std::pair<std::string, std::string>> extra = {{"X-Added", "1"}};
  const std::vector<absl::string_view> removed = {"x-secret"};
  std::string out;
  AppendSwitchingProtocolsHead(&out, response, extra, removed);
  EXPECT_TRUE(absl::StartsWith(out, "HTTP/1.1 101 Switching Protocols\r\n")) << out;
  EXPECT_TRUE(absl::EndsWith(out, "Upgrade: websocket\r\nConnection: upgrade\r\nX-Added: 1\r\n\r\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "Sec-WebSocket-Protocol: chat\r\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "Via: 1.1 portico/")) << out;
  for (absl::string_view gone : {"X-Hop", "Keep-Alive", "Content-Length", "X-Secret", "Connection: Upgrade"}) {
    EXPECT_FALSE(absl::StrContains(out, gone)) << gone << " in\n" << out;
  }
  // Exactly one Upgrade and one Connection line.
  EXPECT_EQ(out.find("Upgrade: "), out.rfind("Upgrade: ")) << out;
  EXPECT_EQ(out.find("Connection: "), out.rfind("Connection: ")) << out;
}

TEST(WebSocketHandshakeTest, UpstreamHeadCarriesTheProxysUpgradeHeadersOnly) {
  const MessageHead request = Handshake();
  UpstreamRequestParams params;
  params.upstream_path = "/chat";
  params.host_header = "backend:8080";
  params.client_ip = "10.0.0.1";
  params.local_port = 8000;
  const std::string plain = BuildUpstreamRequestHead(request, params);
  EXPECT_FALSE(absl::StrContains(plain, "Upgrade")) << plain;  // not asked for: hop-by-hop
  EXPECT_FALSE(absl::StrContains(plain, "Connection")) << plain;
  params.websocket_upgrade = true;
  const std::string upgrade = BuildUpstreamRequestHead(request, params);
  EXPECT_TRUE(absl::StrContains(upgrade, "\r\nConnection: upgrade\r\nUpgrade: websocket\r\n")) << upgrade;
  EXPECT_TRUE(absl::StrContains(upgrade, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")) << upgrade;
  EXPECT_FALSE(absl::StrContains(upgrade, "keep-alive")) << upgrade;
}

}  // namespace
}  // namespace portico::dp
