// TlsTransport on a real loopback TCP connection, both ends on one libuv loop, with certificates
// generated at test time (the cluster CA helpers): handshake and verification, writes before the
// handshake, large transfers with the reader pausing, close_notify, a plaintext client on a TLS
// server, and the idle check the upstream pool relies on.
#include "common/net/tls_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/tls/tls_files.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico {
namespace {

class Recorder : public TransportCallbacks {
 public:
  void OnTransportConnected(int status) override { connected = status == 0 ? 1 : status; }
  void OnTransportRead(absl::string_view data) override {
    read.append(data.data(), data.size());
    ++reads;
    if (on_read) on_read(data);
  }
  void OnTransportEof() override { eof = true; }
  void OnTransportReadError(int status) override { read_error = status; }
  void OnTransportWritten(size_t bytes, int status) override {
    written += bytes;
    if (status < 0) write_error = true;
  }
  void OnTransportShutdown(int status) override { shutdown_status = status; }
  void OnTransportClosed() override { ++closed; }

  std::function<void(absl::string_view)> on_read;
  int connected = 0;
  std::string read;
  int reads = 0;
  bool eof = false, write_error = false;
  int read_error = 0;
  size_t written = 0;
  int shutdown_status = 1, closed = 0;
};

// One end: a TCP transport and the TLS transport over it.
struct End {
  End(uv_loop_t* loop, SSL_CTX* context, TlsTransport::Role role)
      : tcp(loop, cipher, sizeof(cipher)),
        tls(&tcp, SSL_new(context), role, plain, sizeof(plain), &recorder) {}
  char cipher[64 * 1024];
  char plain[80 * 1024];
  Recorder recorder;
  TcpTransport tcp;
  TlsTransport tls;
};

class TlsTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(GenerateClusterCertificates(certs_.path() + "/a", {}, "dp1").ok());
    ASSERT_TRUE(GenerateClusterCertificates(certs_.path() + "/b", {}, "dp1").ok());
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    server_context_ = SSL_CTX_new(TLS_server_method());
    ASSERT_EQ(SSL_CTX_use_certificate_chain_file(server_context_, (certs_.path() + "/a/cp.crt").c_str()), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey_file(server_context_, (certs_.path() + "/a/cp.key").c_str(), SSL_FILETYPE_PEM), 1);
    client_context_ = MakeClientContext(certs_.path() + "/a/ca.crt");

    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    address_ = address;
    ASSERT_EQ(::listen(listener_, 4), 0);
  }

  void TearDown() override {
    for (End* end : {client_.get(), server_.get()}) {
      if (end != nullptr && !end->tls.closing()) end->tls.Close();
    }
    RunUntil([&] {
      return (client_ == nullptr || client_->recorder.closed == 1) &&
             (server_ == nullptr || server_->recorder.closed == 1);
    });
    client_.reset();
    server_.reset();
    if (raw_peer_ >= 0) ::close(raw_peer_);
    ::close(listener_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    SSL_CTX_free(server_context_);
    SSL_CTX_free(client_context_);
  }

  static SSL_CTX* MakeClientContext(const std::string& ca_file) {
    SSL_CTX* context = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_load_verify_locations(context, ca_file.c_str(), nullptr);
    return context;
  }

  template <typename Predicate>
  bool RunUntil(Predicate done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done() && std::chrono::steady_clock::now() < until) uv_run(&loop_, UV_RUN_NOWAIT);
    return done();
  }

  // Starts a client towards the listener and accepts its server end (server reading).
  void StartPair(SSL_CTX* client_context) {
    client_ = std::make_unique<End>(&loop_, client_context, TlsTransport::Role::kClient);
    SSL_set1_host(client_->tls.ssl(), "localhost");
    SSL_set_tlsext_host_name(client_->tls.ssl(), "localhost");
    ASSERT_EQ(client_->tls.Connect(reinterpret_cast<const sockaddr*>(&address_)), 0);
    int fd = -1;
    ASSERT_TRUE(RunUntil([&] {
      if (fd < 0) fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
      return fd >= 0;
    }));
    server_ = std::make_unique<End>(&loop_, server_context_, TlsTransport::Role::kServer);
    ASSERT_TRUE(server_->tcp.Open(fd));
    server_->tls.StartReading();
  }

  test_support::TempDir certs_;
  uv_loop_t loop_;
  SSL_CTX* server_context_ = nullptr;
  SSL_CTX* client_context_ = nullptr;
  int listener_ = -1;
  int raw_peer_ = -1;
  sockaddr_in address_{};
  std::unique_ptr<End> client_;
  std::unique_ptr<End> server_;
};

TEST_F(TlsTransportTest, HandshakeThenEchoIncludingWritesQueuedBeforeTheHandshake) {
  StartPair(client_context_);
  server_->recorder.on_read = [&](absl::string_view data) { server_->tls.Write(data); };
  // Written before the handshake has even started: kept and sent after it.
  ASSERT_TRUE(client_->tls.Write("ping "));
  ASSERT_TRUE(client_->tls.Write("pong"));
  EXPECT_EQ(client_->tls.pending_write_bytes(), 9u);
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_EQ(client_->recorder.connected, 1) << client_->tls.error();
  EXPECT_TRUE(client_->tls.handshake_done());
  client_->tls.StartReading();
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.read.size() >= 9; }));
  EXPECT_EQ(client_->recorder.read, "ping pong");
  EXPECT_EQ(server_->recorder.read, "ping pong");
  EXPECT_EQ(client_->recorder.read_error, 0);
  EXPECT_TRUE(server_->tls.error().empty()) << server_->tls.error();
}

TEST_F(TlsTransportTest, ManyPartsAreCoalescedAndArriveInOrder) {
  StartPair(client_context_);
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_EQ(client_->recorder.connected, 1) << client_->tls.error();
  std::string big(20000, 'b');
  absl::string_view parts[] = {"head;", "x", big, "tail;", ""};
  ASSERT_TRUE(client_->tls.Write(parts, 5));
  ASSERT_TRUE(RunUntil([&] { return server_->recorder.read.size() >= 20011; }));
  EXPECT_EQ(server_->recorder.read, "head;x" + big + "tail;");
}

TEST_F(TlsTransportTest, AContextWithPartialWritesStillSendsEveryByte) {
  SSL_CTX_set_mode(client_context_, SSL_MODE_ENABLE_PARTIAL_WRITE);
  StartPair(client_context_);
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_EQ(client_->recorder.connected, 1) << client_->tls.error();
  std::string body;
  for (int i = 0; body.size() < 100000; ++i) body += std::to_string(i) + ";";
  absl::string_view parts[] = {"POST /x HTTP/1.1\r\n\r\n", body};
  ASSERT_TRUE(client_->tls.Write(parts, 2));
  ASSERT_TRUE(RunUntil([&] { return server_->recorder.read.size() >= parts[0].size() + body.size(); }));
  EXPECT_EQ(server_->recorder.read, std::string(parts[0]) + body);
}

TEST_F(TlsTransportTest, NeverSilentWhileDeliveringARead) {
  StartPair(client_context_);
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_EQ(client_->recorder.connected, 1) << client_->tls.error();
  int silent_inside = -1;
  bool buffered_inside = true;
  client_->recorder.on_read = [&](absl::string_view) {
    silent_inside = client_->tls.PeerSilent() ? 1 : 0;
    buffered_inside = client_->tls.has_buffered_input();
  };
  client_->tls.StartReading();
  ASSERT_TRUE(server_->tls.Write("response"));
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.read == "response"; }));
  EXPECT_EQ(silent_inside, 0);      // a pooled connection is never reused from its own delivery
  EXPECT_FALSE(buffered_inside);    // one record, all of it delivered
  client_->recorder.on_read = nullptr;
  client_->tls.StopReading();
  for (int i = 0; i < 20; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_TRUE(client_->tls.PeerSilent());
}

TEST_F(TlsTransportTest, LargeTransferSurvivesTheReaderPausing) {
  StartPair(client_context_);
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_EQ(client_->recorder.connected, 1) << client_->tls.error();
  std::string payload;
  for (int i = 0; payload.size() < 16 * 1024 * 1024; ++i) payload += std::to_string(i) + ",";
  // The server sends all of it in one call; the client pauses after its first delivery.
  bool paused = false;
  client_->recorder.on_read = [&](absl::string_view) {
    if (!paused) {
      paused = true;
      client_->tls.StopReading();
    }
  };
  client_->tls.StartReading();
  ASSERT_TRUE(server_->tls.Write(payload));
  ASSERT_TRUE(RunUntil([&] { return paused; }));
  const size_t at_pause = client_->recorder.read.size();
  for (int i = 0; i < 200; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(client_->recorder.read.size(), at_pause);  // nothing delivered while paused
  EXPECT_GT(server_->tls.pending_write_bytes(), 0u);    // and the sender is held back (more than the socket buffers hold)
  client_->tls.StartReading();
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.read.size() >= payload.size(); }));
  EXPECT_EQ(client_->recorder.read, payload);
  ASSERT_TRUE(RunUntil([&] { return server_->tls.pending_write_bytes() == 0; }));
}

TEST_F(TlsTransportTest, ClientRefusesACertificateFromAnotherCa) {
  SSL_CTX* other = MakeClientContext(certs_.path() + "/b/ca.crt");
  StartPair(other);
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  EXPECT_EQ(client_->recorder.connected, kTlsError);
  EXPECT_FALSE(client_->tls.handshake_done());
  EXPECT_NE(client_->tls.error().find("certificate verify failed"), std::string::npos) << client_->tls.error();
  EXPECT_FALSE(client_->tls.Write("late"));  // a failed transport takes no more writes
  // The server sees the client's alert as a failed handshake, not as data.
  ASSERT_TRUE(RunUntil([&] { return server_->recorder.read_error != 0 || server_->recorder.eof; }));
  EXPECT_TRUE(server_->recorder.read.empty());
  SSL_CTX_free(other);
}

TEST_F(TlsTransportTest, ClientRefusesTheWrongHostName) {
  client_ = std::make_unique<End>(&loop_, client_context_, TlsTransport::Role::kClient);
  SSL_set1_host(client_->tls.ssl(), "not-this-host.example");
  ASSERT_EQ(client_->tls.Connect(reinterpret_cast<const sockaddr*>(&address_)), 0);
  int fd = -1;
  ASSERT_TRUE(RunUntil([&] { if (fd < 0) fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
    return fd >= 0; }));
  server_ = std::make_unique<End>(&loop_, server_context_, TlsTransport::Role::kServer);
  ASSERT_TRUE(server_->tcp.Open(fd));
  server_->tls.StartReading();
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  EXPECT_EQ(client_->recorder.connected, kTlsError);
  EXPECT_NE(client_->tls.error().find("hostname mismatch"), std::string::npos) << client_->tls.error();
}

TEST_F(TlsTransportTest, PlainHttpOnTheTlsSideIsAReadErrorWithAReason) {
  const int raw = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(::connect(raw, reinterpret_cast<const sockaddr*>(&address_), sizeof(address_)), 0);
  raw_peer_ = raw;
  int fd = -1;
  ASSERT_TRUE(RunUntil([&] { if (fd < 0) fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
    return fd >= 0; }));
  server_ = std::make_unique<End>(&loop_, server_context_, TlsTransport::Role::kServer);
  ASSERT_TRUE(server_->tcp.Open(fd));
  server_->tls.StartReading();
  const std::string request = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
  ASSERT_EQ(::send(raw, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  ASSERT_TRUE(RunUntil([&] { return server_->recorder.read_error != 0; }));
  EXPECT_EQ(server_->recorder.read_error, kTlsError);
  EXPECT_TRUE(server_->recorder.read.empty());
  EXPECT_NE(server_->tls.error().find("http request"), std::string::npos) << server_->tls.error();
}

TEST_F(TlsTransportTest, ShutdownSendsCloseNotifyWhichThePeerSeesAsEof) {
  StartPair(client_context_);
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_EQ(client_->recorder.connected, 1);
  client_->tls.StartReading();
  ASSERT_TRUE(client_->tls.Write("bye"));
  ASSERT_TRUE(RunUntil([&] { return server_->recorder.read == "bye"; }));
  ASSERT_TRUE(server_->tls.Write("last words"));
  ASSERT_TRUE(server_->tls.Shutdown());
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.eof; }));
  EXPECT_EQ(client_->recorder.read, "last words");
  EXPECT_EQ(client_->recorder.read_error, 0);
  EXPECT_EQ(server_->recorder.shutdown_status, 0);
}

TEST_F(TlsTransportTest, AnIdleClientIsSilentAfterSessionTicketsAndNotAfterThePeerCloses) {
  StartPair(client_context_);
  server_->recorder.on_read = [&](absl::string_view data) { server_->tls.Write(data); };
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_EQ(client_->recorder.connected, 1);
  // Like a pooled upstream connection: not reading between requests. TLS 1.3 tickets the
  // server sent after the handshake are waiting on the socket and must not count as data.
  ASSERT_TRUE(client_->tls.Write("one"));
  client_->tls.StartReading();
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.read == "one"; }));
  client_->tls.StopReading();
  for (int i = 0; i < 50; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_TRUE(client_->tls.PeerSilent());
  // Reused: a second round trip works.
  ASSERT_TRUE(client_->tls.Write("two"));
  client_->tls.StartReading();
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.read == "onetwo"; }));
  client_->tls.StopReading();
  server_->tls.Shutdown();
  server_->tls.Close();
  ASSERT_TRUE(RunUntil([&] { return server_->recorder.closed == 1; }));
  for (int i = 0; i < 50; ++i) uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_FALSE(client_->tls.PeerSilent());
}

TEST_F(TlsTransportTest, SessionResumesWithATicket) {
  StartPair(client_context_);
  server_->recorder.on_read = [&](absl::string_view data) { server_->tls.Write(data); };
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_TRUE(client_->tls.Write("x"));
  client_->tls.StartReading();
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.read == "x"; }));  // tickets read by now
  SSL_SESSION* session = SSL_get1_session(client_->tls.ssl());
  ASSERT_NE(session, nullptr);
  EXPECT_FALSE(SSL_session_reused(client_->tls.ssl()));
  client_->tls.Close();
  server_->tls.Close();
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.closed == 1 && server_->recorder.closed == 1; }));
  client_.reset();
  server_.reset();
  EXPECT_TRUE(SSL_SESSION_is_resumable(session));  // closing without close_notify did not spoil it

  client_ = std::make_unique<End>(&loop_, client_context_, TlsTransport::Role::kClient);
  SSL_set1_host(client_->tls.ssl(), "localhost");
  SSL_set_tlsext_host_name(client_->tls.ssl(), "localhost");
  SSL_set_session(client_->tls.ssl(), session);
  SSL_SESSION_free(session);
  ASSERT_EQ(client_->tls.Connect(reinterpret_cast<const sockaddr*>(&address_)), 0);
  int fd = -1;
  ASSERT_TRUE(RunUntil([&] { if (fd < 0) fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
    return fd >= 0; }));
  server_ = std::make_unique<End>(&loop_, server_context_, TlsTransport::Role::kServer);
  ASSERT_TRUE(server_->tcp.Open(fd));
  server_->tls.StartReading();
  ASSERT_TRUE(RunUntil([&] { return client_->recorder.connected != 0; }));
  ASSERT_EQ(client_->recorder.connected, 1) << client_->tls.error();
  EXPECT_TRUE(SSL_session_reused(client_->tls.ssl()));
}

}  // namespace
}  // namespace portico
