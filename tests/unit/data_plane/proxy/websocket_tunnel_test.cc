// WebSocket through the proxy on loopback: a real ProxyServer, a scripted raw-TCP upstream that
// answers the handshake and then does what each test needs (echo, flood, silence), and raw client
// sockets. Frames are opaque bytes to the proxy, so the tests send arbitrary bytes after the 101.
// Every socket has send/receive timeouts; every upstream thread is joined by its destructor.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "data_plane/proxy/proxy_server.h"
#include "data_plane/proxy/runtime_config.h"
#include "gtest/gtest.h"
#include "proxy_test_util.h"

namespace portico::dp {
namespace {

using testing::MakeRoute;
using testing::MakeService;
using testing::ReceivedRequest;
using testing::SimpleResponse;
using testing::TestUpstream;
using testing::UpstreamReply;
using testing::WaitFor;

constexpr int kSocketTimeoutMs = 5000;

void SetTimeouts(int fd, int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads until `*buffer` holds a blank line; the head goes to `*head`, the rest stays in `*buffer`.
bool ReadHead(int fd, std::string* buffer, std::string* head) {
  char chunk[4096];
  while (true) {
    const size_t end = buffer->find("\r\n\r\n");
    if (end != std::string::npos) {
      *head = buffer->substr(0, end + 4);
      buffer->erase(0, end + 4);
      return true;
    }
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer->append(chunk, static_cast<size_t>(n));
  }
}

// Reads until `*buffer` holds `size` bytes.
bool ReadAtLeast(int fd, std::string* buffer, size_t size) {
  char chunk[65536];
  while (buffer->size() < size) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer->append(chunk, static_cast<size_t>(n));
  }
  return true;
}

// True when the peer closes (EOF or reset) within `timeout_ms`; bytes before it are dropped.
bool WaitClosed(int fd, int timeout_ms) {
  SetTimeouts(fd, timeout_ms);
  char chunk[4096];
  while (true) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n == 0) return true;
    if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

int ConnectTo(uint16_t port, int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (receive_buffer > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  SetTimeouts(fd, kSocketTimeoutMs);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A raw TCP upstream: each accepted connection's request head is read, then `script` runs with
// the socket, the head and any bytes that came after it. The destructor shuts every socket down
// and joins the threads.
class ScriptedUpstream {
 public:
  using Script = std::function<void(int fd, const std::string& head, std::string rest)>;

  explicit ScriptedUpstream(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::listen(listen_fd_, 16);
    socklen_t length = sizeof(address);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~ScriptedUpstream() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    ::close(listen_fd_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& thread : threads_) thread.join();
    for (int fd : fds_) ::close(fd);
  }

  uint16_t port() const { return port_; }
  std::vector<std::string> heads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return heads_;
  }
  int finished() const { return finished_.load(); }

 private:
  void AcceptLoop() {
    while (!stop_) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      SetTimeouts(fd, kSocketTimeoutMs);
      std::lock_guard<std::mutex> lock(mu_);
      fds_.push_back(fd);
      threads_.emplace_back([this, fd] {
        std::string buffer, head;
        if (ReadHead(fd, &buffer, &head)) {
          {
            std::lock_guard<std::mutex> lock(mu_);
            heads_.push_back(head);
          }
          script_(fd, head, std::move(buffer));
        }
        ++finished_;
      });
    }
  }

  Script script_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> finished_{0};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<int> fds_;
  std::vector<std::string> heads_;
};

constexpr char kSwitching[] =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

std::string Handshake(const std::string& target, const std::string& extra = "") {
  return absl::StrCat("GET ", target,
                      " HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
                      extra, "\r\n");
}

// Answers the handshake, then echoes until EOF, then closes.
void EchoScript(int fd, const std::string&, std::string rest) {
  if (!SendAll(fd, kSwitching)) return;
  if (!rest.empty() && !SendAll(fd, rest)) return;
  char chunk[65536];
  while (true) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) break;
    if (!SendAll(fd, std::string(chunk, static_cast<size_t>(n)))) break;
  }
  ::shutdown(fd, SHUT_WR);
}

class WebSocketTunnelTest : public ::testing::Test {
 protected:
  void StartProxy() {
    ProxyOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 1;
    absl::StatusOr<std::unique_ptr<ProxyServer>> started = ProxyServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    proxy_ = std::move(*started);
  }

  // One service on `upstream_port` (read_timeout `read_timeout_ms`), one route /ws with `protocols`.
  void Publish(uint16_t upstream_port, int read_timeout_ms = 5000,
               std::vector<std::string> protocols = {"http", "https"}) {
    auto set = std::make_shared<ConfigSet>();
    config::v1::Service service = MakeService(1, "127.0.0.1", upstream_port);
    service.set_read_timeout(read_timeout_ms);
    config::v1::Route route = MakeRoute(2, {"/ws"}, testing::Uuid(1), /*strip_path=*/false);
    route.clear_protocols();
    for (const std::string& p : protocols) route.add_protocols(p);
    set->services = {service};
    set->routes = {route};
    ConfigVersion v;
    v.epoch = std::string(16, 'e');
    v.version = 1;
    absl::StatusOr<std::shared_ptr<const RuntimeConfig>> compiled = RuntimeConfig::Compile(set, v, {}, proxy_->workers());
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    proxy_->Publish(*compiled);
  }

  // Connects, sends the handshake for /ws and reads the 101 head. -1 on failure.
  int OpenTunnel(std::string* head, std::string* rest, int receive_buffer = 0) {
    const int fd = ConnectTo(proxy_->port(), receive_buffer);
    if (fd < 0) return -1;
    if (!SendAll(fd, Handshake("/ws/chat")) || !ReadHead(fd, rest, head)) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  std::unique_ptr<ProxyServer> proxy_;
};

TEST_F(WebSocketTunnelTest, HandshakeGoesUpstreamAndBytesEchoBothWays) {
  ScriptedUpstream upstream(EchoScript);
  StartProxy();
  Publish(upstream.port());
  std::string head, rest;
  const int fd = OpenTunnel(&head, &rest);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(absl::StartsWith(head, "HTTP/1.1 101 Switching Protocols\r\n")) << head;
  EXPECT_TRUE(absl::StrContains(head, "Upgrade: websocket\r\n")) << head;
  EXPECT_TRUE(absl::StrContains(head, "Connection: upgrade\r\n")) << head;
  EXPECT_TRUE(absl::StrContains(head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")) << head;
  EXPECT_FALSE(absl::StrContains(head, "Content-Length")) << head;
  // What the upstream saw: the handshake with exactly the proxy's upgrade headers.
  ASSERT_EQ(upstream.heads().size(), 1u);
  const std::string sent = upstream.heads()[0];
  EXPECT_TRUE(absl::StartsWith(sent, "GET /ws/chat HTTP/1.1\r\n")) << sent;
  EXPECT_TRUE(absl::StrContains(sent, "\r\nConnection: upgrade\r\n")) << sent;
  EXPECT_TRUE(absl::StrContains(sent, "\r\nUpgrade: websocket\r\n")) << sent;
  EXPECT_TRUE(absl::StrContains(sent, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")) << sent;
  EXPECT_TRUE(absl::StrContains(sent, "\r\nSec-WebSocket-Version: 13\r\n")) << sent;
  EXPECT_FALSE(absl::StrContains(sent, "keep-alive")) << sent;
  EXPECT_TRUE(WaitFor([&] { return proxy_->websocket_connections() == 1; }));
  EXPECT_EQ(proxy_->websocket_connections_opened(), 1u);

  // Small messages, then 4 MiB read concurrently (the tunnel must not stall on either side).
  ASSERT_TRUE(SendAll(fd, "hello"));
  ASSERT_TRUE(ReadAtLeast(fd, &rest, 5));
  EXPECT_EQ(rest, "hello");
  rest.clear();
  std::string big(4 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7) % 26);
  std::string echoed;
  std::thread reader([&] { ReadAtLeast(fd, &echoed, big.size()); });
  EXPECT_TRUE(SendAll(fd, big));
  reader.join();
  EXPECT_TRUE(echoed == big) << "echoed " << echoed.size() << " bytes";

  // The client's FIN reaches the upstream, whose close comes back as EOF.
  ::shutdown(fd, SHUT_WR);
  EXPECT_TRUE(WaitClosed(fd, 3000));
  ::close(fd);
  EXPECT_TRUE(WaitFor([&] { return proxy_->websocket_connections() == 0; }));
  EXPECT_TRUE(WaitFor([&] { return upstream.finished() == 1; }));
}

TEST_F(WebSocketTunnelTest, UpstreamFramesRightBehindThe101AreRelayed) {
  ScriptedUpstream upstream([](int fd, const std::string&, std::string) {
    SendAll(fd, std::string(kSwitching) + "welcome");  // one write: the head and the first frame
    char byte;
    ::recv(fd, &byte, 1, 0);  // until the client goes
  });
  StartProxy();
  Publish(upstream.port());
  std::string head, rest;
  const int fd = OpenTunnel(&head, &rest);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(ReadAtLeast(fd, &rest, 7));
  EXPECT_EQ(rest, "welcome");
  ::close(fd);
}

TEST_F(WebSocketTunnelTest, ClientBytesSentBeforeThe101GoFirst) {
  // The upstream answers late; the client's first frame, sent with its handshake, waits in the
  // proxy and must reach the upstream first, unchanged.
  ScriptedUpstream upstream([](int fd, const std::string&, std::string rest) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EchoScript(fd, "", std::move(rest));
  });
  StartProxy();
  Publish(upstream.port());
  const int fd = ConnectTo(proxy_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Handshake("/ws/chat") + "early-frame"));
  std::string head, rest;
  ASSERT_TRUE(ReadHead(fd, &rest, &head));
  EXPECT_TRUE(absl::StartsWith(head, "HTTP/1.1 101 ")) << head;
  ASSERT_TRUE(ReadAtLeast(fd, &rest, 11));
  EXPECT_EQ(rest, "early-frame");
  ::close(fd);
}

TEST_F(WebSocketTunnelTest, SlowReaderStopsTheUpstreamInsteadOfBuffering) {
  constexpr size_t kTotal = 48 << 20;
  std::atomic<size_t> written{0};
  ScriptedUpstream upstream([&](int fd, const std::string&, std::string) {
    const int send_buffer = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof(send_buffer));
    if (!SendAll(fd, kSwitching)) return;
    const std::string block(64 * 1024, 'x');
    while (written.load() < kTotal) {
      if (!SendAll(fd, block)) return;  // blocks while the proxy stops reading
      written += block.size();
    }
  });
  StartProxy();
  Publish(upstream.port());
  std::string head, rest;
  const int fd = OpenTunnel(&head, &rest, /*receive_buffer=*/64 * 1024);
  ASSERT_GE(fd, 0);
  // The client reads nothing for a while: the upstream must be held back, not drained into memory.
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const size_t while_stalled = written.load();
  EXPECT_LT(while_stalled, kTotal / 2) << "the proxy kept reading a client that does not read";
  // Then everything arrives once the client reads.
  EXPECT_TRUE(ReadAtLeast(fd, &rest, kTotal));
  EXPECT_EQ(rest.size(), kTotal);
  EXPECT_EQ(written.load(), kTotal);
  ::close(fd);
}

TEST_F(WebSocketTunnelTest, IdleTunnelClosesAfterTheServiceReadTimeout) {
  ScriptedUpstream upstream(EchoScript);
  StartProxy();
  Publish(upstream.port(), /*read_timeout_ms=*/400);
  std::string head, rest;
  const int fd = OpenTunnel(&head, &rest);
  ASSERT_GE(fd, 0);
  // Traffic keeps it open past the timeout...
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    ASSERT_TRUE(SendAll(fd, "x"));
    ASSERT_TRUE(ReadAtLeast(fd, &rest, 1));
    rest.clear();
  }
  // ...silence closes both ends.
  const auto silent_from = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitClosed(fd, 3000));
  const auto waited = std::chrono::steady_clock::now() - silent_from;
  EXPECT_GE(waited, std::chrono::milliseconds(300));
  EXPECT_LT(waited, std::chrono::milliseconds(2500));
  ::close(fd);
  EXPECT_TRUE(WaitFor([&] { return upstream.finished() == 1; }));  // the upstream saw its close
  EXPECT_TRUE(WaitFor([&] { return proxy_->websocket_connections() == 0; }));
}

TEST_F(WebSocketTunnelTest, UpstreamRefusingTheUpgradeIsAnOrdinaryResponse) {
  TestUpstream upstream([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, "no websocket here");
    return reply;
  });
  StartProxy();
  Publish(upstream.port());
  testing::RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Handshake("/ws/chat")));
  testing::ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "no websocket here");
  EXPECT_EQ(response.Header("Upgrade"), "<absent>");
  ASSERT_EQ(upstream.requests().size(), 1u);
  EXPECT_EQ(upstream.requests()[0].Header("Upgrade"), "websocket");
  // Still an HTTP connection.
  ASSERT_TRUE(client.Send("GET /ws/again HTTP/1.1\r\nHost: example.com\r\n\r\n"));
  EXPECT_EQ(client.ReadResponse().status, 200);
  ASSERT_EQ(upstream.requests().size(), 2u);
  EXPECT_EQ(upstream.requests()[1].Header("Upgrade"), "<absent>");
  EXPECT_EQ(proxy_->websocket_connections_opened(), 0u);
}

TEST_F(WebSocketTunnelTest, SwitchingProtocolsNobodyAskedForGives502) {
  TestUpstream upstream([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = kSwitching;
    return reply;
  });
  StartProxy();
  Publish(upstream.port());
  // A plain request: the 101 is refused.
  testing::ClientResponse plain =
      test_support::RawHttp(proxy_->port(), "GET /ws/x HTTP/1.1\r\nHost: example.com\r\n\r\n");
  ASSERT_TRUE(plain.ok);
  EXPECT_EQ(plain.status, 502);
  // An upgrade to another protocol is not forwarded as one (Upgrade and what Connection lists
  // are hop-by-hop), so its 101 is refused too. (h2c is the proxy's own: http2_test.cc.)
  testing::ClientResponse other = test_support::RawHttp(
      proxy_->port(),
      "GET /ws/x HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, X-Proto-Settings\r\nUpgrade: IRC/6.9\r\n"
      "X-Proto-Settings: abc\r\n\r\n");
  ASSERT_TRUE(other.ok);
  EXPECT_EQ(other.status, 502);
  ASSERT_EQ(upstream.requests().size(), 2u);
  EXPECT_EQ(upstream.requests()[1].Header("Upgrade"), "<absent>");
  EXPECT_EQ(upstream.requests()[1].Header("Connection"), "<absent>");
  EXPECT_EQ(upstream.requests()[1].Header("X-Proto-Settings"), "<absent>");
  EXPECT_EQ(proxy_->websocket_connections_opened(), 0u);
}

TEST_F(WebSocketTunnelTest, SwitchingToAnotherProtocolThanWebSocketGives502) {
  ScriptedUpstream upstream([](int fd, const std::string&, std::string) {
    SendAll(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n");
    char byte;
    ::recv(fd, &byte, 1, 0);
  });
  StartProxy();
  Publish(upstream.port());
  testing::ClientResponse response = test_support::RawHttp(proxy_->port(), Handshake("/ws/x"));
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 502);
}

TEST_F(WebSocketTunnelTest, ClientClosingMidTunnelClosesTheUpstream) {
  ScriptedUpstream upstream(EchoScript);
  StartProxy();
  Publish(upstream.port());
  std::string head, rest;
  const int fd = OpenTunnel(&head, &rest);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "ping"));
  ASSERT_TRUE(ReadAtLeast(fd, &rest, 4));
  // Gone with bytes in flight: the proxy closes the upstream side too.
  ASSERT_TRUE(SendAll(fd, std::string(100000, 'z')));
  const linger hard{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));  // a reset
  ::close(fd);
  EXPECT_TRUE(WaitFor([&] { return upstream.finished() == 1; }));
  EXPECT_TRUE(WaitFor([&] { return proxy_->websocket_connections() == 0; }));
  // The worker still serves.
  const int again = OpenTunnel(&head, &rest);
  ASSERT_GE(again, 0);
  ::close(again);
}

TEST_F(WebSocketTunnelTest, WebSocketOnlyRouteRefusesPlainRequestsWith426) {
  ScriptedUpstream upstream(EchoScript);
  StartProxy();
  Publish(upstream.port(), 5000, {"ws", "wss"});
  testing::ClientResponse plain =
      test_support::RawHttp(proxy_->port(), "GET /ws/x HTTP/1.1\r\nHost: example.com\r\n\r\n");
  ASSERT_TRUE(plain.ok);
  EXPECT_EQ(plain.status, 426);
  EXPECT_EQ(plain.body, "{\"message\":\"Please use WebSocket protocol\"}");
  EXPECT_EQ(plain.Header("Upgrade"), "websocket");
  EXPECT_TRUE(upstream.heads().empty());
  // The handshake itself is proxied.
  std::string head, rest;
  const int fd = OpenTunnel(&head, &rest);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(absl::StartsWith(head, "HTTP/1.1 101 ")) << head;
  ASSERT_TRUE(SendAll(fd, "hi"));
  ASSERT_TRUE(ReadAtLeast(fd, &rest, 2));
  EXPECT_EQ(rest, "hi");
  ::close(fd);
}

TEST_F(WebSocketTunnelTest, WssOnlyRouteOverCleartextGetsTheHttpsAnswer) {
  ScriptedUpstream upstream(EchoScript);
  StartProxy();
  Publish(upstream.port(), 5000, {"wss"});
  testing::ClientResponse response = test_support::RawHttp(proxy_->port(), Handshake("/ws/x"));
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 426);
  EXPECT_EQ(response.body, "{\"message\":\"Please use HTTPS protocol\"}");
  EXPECT_TRUE(upstream.heads().empty());
}

TEST_F(WebSocketTunnelTest, StoppingTheProxyClosesOpenTunnels) {
  ScriptedUpstream upstream(EchoScript);
  StartProxy();
  Publish(upstream.port());
  std::string head, rest;
  const int fd = OpenTunnel(&head, &rest);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "ping"));
  ASSERT_TRUE(ReadAtLeast(fd, &rest, 4));
  proxy_->Stop();
  EXPECT_TRUE(WaitClosed(fd, 3000));
  EXPECT_TRUE(WaitFor([&] { return upstream.finished() == 1; }));
  EXPECT_EQ(proxy_->websocket_connections_opened(), 1u);
  ::close(fd);
}

TEST_F(WebSocketTunnelTest, ADrainKeepsTunnelsOpenUntilTheStopCutsThem) {
  ScriptedUpstream upstream(EchoScript);
  StartProxy();
  Publish(upstream.port());
  std::string head, rest;
  const int fd = OpenTunnel(&head, &rest);
  ASSERT_GE(fd, 0);
  proxy_->BeginDrain();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // The tunnel still carries bytes both ways and holds the drain (it never ends by itself).
  ASSERT_TRUE(SendAll(fd, "during-drain"));
  ASSERT_TRUE(ReadAtLeast(fd, &rest, 12));
  EXPECT_EQ(rest, "during-drain");
  EXPECT_FALSE(proxy_->drained());
  proxy_->Stop();  // the drain timeout
  EXPECT_TRUE(WaitClosed(fd, 3000));
  EXPECT_TRUE(WaitFor([&] { return upstream.finished() == 1; }));
  EXPECT_EQ(proxy_->drain_counts().open_at_drain, 1);
  EXPECT_EQ(proxy_->drain_counts().cut_at_stop, 1);
  ::close(fd);
}

}  // namespace
}  // namespace portico::dp
