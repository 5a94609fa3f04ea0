// The worker's upstream keep-alive pool, driven by hand on one loop (no proxy around it), so that
// the order of events is exact: bytes an upstream sends on an idle pooled connection before the
// loop has read them must keep that connection from being handed to the next request.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "data_plane/proxy/runtime_config.h"
#include "data_plane/proxy/upstream_connection.h"
#include "data_plane/proxy/worker.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

int ListeningSocket(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) return -1;
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  *port = ntohs(address.sin_port);
  return fd;
}

// Records the callbacks; releases the connection to the pool when the response completes.
class Observer : public UpstreamObserver {
 public:
  explicit Observer(UpstreamConnection** connection) : connection_(connection) {}
  void OnUpstreamConnected() override { connected = true; }
  UpstreamHeadAction OnUpstreamHead(const MessageHead& head) override {
    status = head.status;
    return UpstreamHeadAction::kContinue;
  }
  void OnUpstreamBody(absl::string_view) override {}
  void OnUpstreamComplete() override {
    complete = true;
    (*connection_)->Release(/*reusable=*/true);
  }
  void OnUpstreamFailure(UpstreamError, bool) override { failed = true; }
  void OnUpstreamWriteDrained() override {}
  void OnUpstreamReadEnd() override {}
  bool connected = false, complete = false, failed = false;
  int status = 0;

 private:
  UpstreamConnection** connection_;
};

class UpstreamPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream_listener_ = ListeningSocket(&upstream_port_);
    ASSERT_GE(upstream_listener_, 0);
    ASSERT_EQ(::listen(upstream_listener_, 4), 0);
    config::v1::Service service;
    service.set_id("00000000-0000-4000-8000-000000000001");
    service.set_protocol("http");
    service.set_host("127.0.0.1");
    service.set_port(upstream_port_);
    service.set_connect_timeout(5000);
    service.set_read_timeout(5000);
    service.set_write_timeout(5000);
    absl::StatusOr<dp::UpstreamService> compiled = dp::CompileUpstreamService(service);
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    ASSERT_EQ(compiled->destinations.size(), 1u);
    target_ = compiled->destinations.at(0);
    uint16_t proxy_port = 0;
    const int proxy_listener = ListeningSocket(&proxy_port);
    ASSERT_GE(proxy_listener, 0);
    ASSERT_TRUE(worker_.Init(proxy_listener, proxy_port).ok());
  }

  void TearDown() override {
    worker_.RequestStop();
    worker_.Run();  // closes every handle and runs the loop out
    if (upstream_side_ >= 0) ::close(upstream_side_);
    ::close(upstream_listener_);
  }

  // Runs the loop until `done` or 5 s.
  template <typename Predicate>
  bool RunUntil(Predicate done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < until) uv_run(worker_.loop(), UV_RUN_NOWAIT);
    return done();
  }

  // One request/response on a new connection, which then goes idle into the pool.
  UpstreamConnection* PooledConnection(Observer* observer, UpstreamConnection** slot) {
    absl::StatusOr<UpstreamConnection*> connection = worker_.ConnectUpstream(target_, target_.pool_key);
    if (!connection.ok()) return nullptr;
    *slot = *connection;
    (*slot)->Attach(observer, UpstreamTimeouts{});
    if (!RunUntil([&] { return observer->connected || observer->failed; }) || observer->failed) return nullptr;
    upstream_side_ = ::accept(upstream_listener_, nullptr, nullptr);
    (*slot)->Write("GET / HTTP/1.1\r\nHost: u\r\n\r\n");
    const std::string response = "HTTP/1.1 204 No Content\r\n\r\n";
    if (::send(upstream_side_, response.data(), response.size(), 0) != static_cast<ssize_t>(response.size())) {
      return nullptr;
    }
    if (!RunUntil([&] { return observer->complete || observer->failed; }) || observer->failed) return nullptr;
    return *slot;
  }

  Worker worker_{0, ProxyOptions{}};
  int upstream_listener_ = -1;
  int upstream_side_ = -1;
  uint16_t upstream_port_ = 0;
  dp::Target target_;
};

TEST_F(UpstreamPoolTest, QuietIdleConnectionIsReused) {
  UpstreamConnection* slot = nullptr;
  Observer observer(&slot);
  UpstreamConnection* pooled = PooledConnection(&observer, &slot);
  ASSERT_NE(pooled, nullptr);
  EXPECT_EQ(observer.status, 204);
  EXPECT_EQ(worker_.idle_upstream_count(), 1u);
  EXPECT_EQ(worker_.AcquireIdle(target_.pool_key), pooled);
  pooled->Abort();
}

TEST_F(UpstreamPoolTest, StrayBytesOnAnIdleConnectionKeepItFromTheNextRequest) {
  UpstreamConnection* slot = nullptr;
  Observer observer(&slot);
  UpstreamConnection* pooled = PooledConnection(&observer, &slot);
  ASSERT_NE(pooled, nullptr);
  ASSERT_EQ(worker_.idle_upstream_count(), 1u);
  // An unsolicited second response arrives; the loop has not run since, so the idle connection's
  // read callback has not seen it yet: only the pool's check can.
  const std::string stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nSTRAY";
  ASSERT_EQ(::send(upstream_side_, stray.data(), stray.size(), 0), static_cast<ssize_t>(stray.size()));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // loopback delivery, no loop run
  EXPECT_EQ(worker_.AcquireIdle(target_.pool_key), nullptr);
  EXPECT_EQ(worker_.idle_upstream_count(), 0u);
  // The emptied pool key is gone too (keys come from targets and client-chosen SNIs), after a
  // stale connection was closed inside AcquireIdle (Close -> RemoveIdle on the same list).
  EXPECT_EQ(worker_.idle_upstream_keys(), 0u);
}

TEST_F(UpstreamPoolTest, UpstreamCloseOnAnIdleConnectionKeepsItFromTheNextRequest) {
  UpstreamConnection* slot = nullptr;
  Observer observer(&slot);
  ASSERT_NE(PooledConnection(&observer, &slot), nullptr);
  ::close(upstream_side_);
  upstream_side_ = -1;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(worker_.AcquireIdle(target_.pool_key), nullptr);
}

}  // namespace
}  // namespace portico::dp
