// TcpTransport on a real loopback TCP connection, driven on one libuv loop: reads, queued writes
// beyond the socket buffer, shutdown, close, and the peer check the upstream pool relies on.
#include "common/net/tcp_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace portico {
namespace {

// Records every callback.
class Recorder : public TransportCallbacks {
 public:
  void OnTransportConnected(int status) override { connected = status == 0 ? 1 : -1; }
  void OnTransportRead(absl::string_view data) override { read.append(data.data(), data.size()); }
  void OnTransportEof() override { eof = true; }
  void OnTransportReadError(int) override { read_error = true; }
  void OnTransportWritten(size_t bytes, int status) override {
    written += bytes;
    if (status < 0) write_error = true;
  }
  void OnTransportShutdown(int status) override { shutdown_status = status; ++shutdowns; }
  void OnTransportClosed() override { ++closed; }

  int connected = 0;
  std::string read;
  bool eof = false, read_error = false, write_error = false;
  size_t written = 0;
  int shutdown_status = 1, shutdowns = 0, closed = 0;
};

class TcpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    address_ = address;
    ASSERT_EQ(::listen(listener_, 4), 0);
    transport_ = std::make_unique<TcpTransport>(&loop_, buffer_, sizeof(buffer_), &recorder_);
  }
  void TearDown() override {
    if (!transport_->closing()) transport_->Close();
    RunUntil([&] { return recorder_.closed == 1; });
    transport_.reset();
    if (peer_ >= 0) ::close(peer_);
    ::close(listener_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  template <typename Predicate>
  bool RunUntil(Predicate done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < until) uv_run(&loop_, UV_RUN_NOWAIT);
    return done();
  }

  // Connects the transport to the listener; `peer_` is the accepted end.
  void Connect() {
    ASSERT_EQ(transport_->Connect(reinterpret_cast<const sockaddr*>(&address_)), 0);
    ASSERT_TRUE(RunUntil([&] { return recorder_.connected != 0; }));
    ASSERT_EQ(recorder_.connected, 1);
    peer_ = ::accept(listener_, nullptr, nullptr);
    ASSERT_GE(peer_, 0);
  }

  std::string ReadPeer(size_t bytes) {
    std::string out;
    char chunk[65536];
    while (out.size() < bytes) {
      uv_run(&loop_, UV_RUN_NOWAIT);  // let queued writes go out
      const ssize_t n = ::recv(peer_, chunk, sizeof(chunk), MSG_DONTWAIT);
      if (n > 0) out.append(chunk, static_cast<size_t>(n));
      if (n == 0) break;
    }
    return out;
  }

  uv_loop_t loop_;
  char buffer_[4096];
  Recorder recorder_;
  std::unique_ptr<TcpTransport> transport_;
  int listener_ = -1;
  int peer_ = -1;
  sockaddr_in address_{};
};

TEST_F(TcpTransportTest, ReadsEveryByteInOrderThenEof) {
  Connect();
  transport_->StartReading();
  std::string sent;
  for (int i = 0; i < 100; ++i) sent += std::to_string(i) + ",";
  ASSERT_EQ(::send(peer_, sent.data(), sent.size(), 0), static_cast<ssize_t>(sent.size()));
  ::shutdown(peer_, SHUT_WR);
  ASSERT_TRUE(RunUntil([&] { return recorder_.eof; }));
  EXPECT_EQ(recorder_.read, sent);
  EXPECT_FALSE(transport_->reading());
}

TEST_F(TcpTransportTest, WritesWhatTheKernelTakesAndQueuesTheRestInOrder) {
  Connect();
  const std::string small = "abc";
  const absl::string_view parts[] = {small, "", "def"};
  ASSERT_TRUE(transport_->Write(parts, 3));
  EXPECT_EQ(transport_->pending_write_bytes(), 0u);  // the kernel took it: nothing queued, no callback
  std::string big(8 * 1024 * 1024, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  ASSERT_TRUE(transport_->Write(big));
  EXPECT_GT(transport_->pending_write_bytes(), 0u);  // more than the socket buffers hold
  const std::string tail = "tail";
  ASSERT_TRUE(transport_->Write(tail));  // after the queued bytes, never before
  const std::string received = ReadPeer(6 + big.size() + tail.size());
  ASSERT_EQ(received.size(), 6 + big.size() + tail.size());
  EXPECT_EQ(received.substr(0, 6), "abcdef");
  EXPECT_TRUE(received.substr(6, big.size()) == big);
  EXPECT_EQ(received.substr(6 + big.size()), "tail");
  ASSERT_TRUE(RunUntil([&] { return transport_->pending_write_bytes() == 0; }));
  EXPECT_GT(recorder_.written, 0u);
  EXPECT_FALSE(recorder_.write_error);
}

TEST_F(TcpTransportTest, ShutdownSendsTheFinAfterQueuedBytes) {
  Connect();
  const std::string big(4 * 1024 * 1024, 'y');
  ASSERT_TRUE(transport_->Write(big));
  ASSERT_TRUE(transport_->Shutdown());
  const std::string received = ReadPeer(big.size() + 1);  // stops at EOF
  EXPECT_EQ(received.size(), big.size());
  ASSERT_TRUE(RunUntil([&] { return recorder_.shutdowns == 1; }));
  EXPECT_EQ(recorder_.shutdown_status, 0);
}

TEST_F(TcpTransportTest, CloseCallsBackOnceAndNeverFromInsideClose) {
  Connect();
  transport_->StartReading();
  transport_->Close();
  EXPECT_EQ(recorder_.closed, 0);  // not from inside Close()
  EXPECT_TRUE(transport_->closing());
  EXPECT_FALSE(transport_->Write("late"));  // nothing is queued after Close()
  ASSERT_TRUE(RunUntil([&] { return recorder_.closed == 1; }));
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(recorder_.closed, 1);
}

TEST_F(TcpTransportTest, PeerSilentSeesWaitingBytesAndEofWithoutReadingThem) {
  Connect();
  EXPECT_TRUE(transport_->PeerSilent());
  ASSERT_EQ(::send(peer_, "z", 1, 0), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(transport_->PeerSilent());
  EXPECT_FALSE(transport_->PeerSilent());  // a peek: the byte is still there
  transport_->StartReading();
  ASSERT_TRUE(RunUntil([&] { return recorder_.read == "z"; }));
  EXPECT_TRUE(transport_->PeerSilent());
  ::close(peer_);
  peer_ = -1;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(transport_->PeerSilent());  // EOF is waiting
}

}  // namespace
}  // namespace portico
