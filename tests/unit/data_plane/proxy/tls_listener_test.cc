// The proxy's TLS listener in process: a ProxyServer with TLS on an ephemeral port, snapshots
// published with certificates, and a blocking OpenSSL client on loopback.
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "data_plane/proxy/proxy_server.h"
#include "data_plane/tls/self_signed.h"
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

UpstreamReply Ok(const ReceivedRequest&) {
  UpstreamReply reply;
  reply.raw = SimpleResponse(200, "hello");
  return reply;
}

int ConnectTo(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A blocking TLS client connection (certificate not verified).
class TlsClient {
 public:
  TlsClient(uint16_t port, const char* sni) : ctx_(SSL_CTX_new(TLS_client_method())) {
    fd_ = ConnectTo(port);
    ssl_ = SSL_new(ctx_);
    if (sni != nullptr) SSL_set_tlsext_host_name(ssl_, sni);
    SSL_set_fd(ssl_, fd_);
    connected_ = fd_ >= 0 && SSL_connect(ssl_) == 1;
  }
  ~TlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  std::string PeerCommonName() const {
    X509* cert = SSL_get0_peer_certificate(ssl_);
    char cn[256] = {0};
    if (cert != nullptr) X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
    return cn;
  }
  // Sends `request` and reads one response with a Content-Length body (enough for these tests).
  std::string Exchange(const std::string& request) {
    if (SSL_write(ssl_, request.data(), static_cast<int>(request.size())) <= 0) return "";
    std::string response;
    char buffer[4096];
    while (true) {
      const size_t head_end = response.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        const size_t at = response.find("Content-Length: ");
        const size_t length = at == std::string::npos ? 0 : std::stoul(response.substr(at + 16));
        if (response.size() >= head_end + 4 + length) return response;
      }
      const int n = SSL_read(ssl_, buffer, sizeof(buffer));
      if (n <= 0) return response;
      response.append(buffer, static_cast<size_t>(n));
    }
  }

 private:
  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
};

class TlsListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream_ = std::make_unique<TestUpstream>(Ok);
    ProxyOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 2;
    options.tls.enabled = true;
    options.tls.host = "127.0.0.1";
    options.tls.port = 0;
    absl::StatusOr<std::unique_ptr<ProxyServer>> started = ProxyServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    proxy_ = *std::move(started);
    ASSERT_NE(proxy_->tls_port(), 0);
    ASSERT_NE(proxy_->tls_port(), proxy_->port());
  }

  // One service and route /r, and a certificate with CN `cn` for the SNI "api.test".
  void Publish(const std::string& cn, uint64_t version) {
    auto set = std::make_shared<ConfigSet>();
    set->services = {MakeService(1, "127.0.0.1", upstream_->port())};
    set->routes = {MakeRoute(2, {"/r"}, testing::Uuid(1))};
    absl::StatusOr<PemCertificate> pem = GenerateSelfSignedCertificate(CertificateKeyType::kEcdsaP256, cn);
    ASSERT_TRUE(pem.ok()) << pem.status();
    config::v1::Certificate certificate;
    certificate.set_id(testing::Uuid(10));
    certificate.set_cert(pem->cert);
    certificate.set_key(pem->key);
    set->certificates = {certificate};
    config::v1::Sni sni;
    sni.set_id(testing::Uuid(11));
    sni.set_name("api.test");
    sni.set_certificate_id(certificate.id());
    set->snis = {sni};
    ConfigVersion v;
    v.epoch = std::string(16, 'e');
    v.version = version;
    absl::StatusOr<std::shared_ptr<const RuntimeConfig>> compiled = RuntimeConfig::Compile(set, v, {}, proxy_->workers());
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    proxy_->Publish(*compiled);
  }

  std::unique_ptr<TestUpstream> upstream_;  // outlives the proxy
  std::unique_ptr<ProxyServer> proxy_;
};

TEST_F(TlsListenerTest, KeepAliveRequestsOverTlsWithTheSnisCertificateAndForwardedHeaders) {
  ASSERT_NO_FATAL_FAILURE(Publish("first", 1));
  TlsClient client(proxy_->tls_port(), "api.test");
  ASSERT_TRUE(client.connected());
  EXPECT_EQ(client.PeerCommonName(), "first");
  for (int i = 0; i < 3; ++i) {
    const std::string response = client.Exchange("GET /r/x HTTP/1.1\r\nHost: api.test\r\n\r\n");
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
    EXPECT_TRUE(absl::EndsWith(response, "hello")) << response;
  }
  // An idle keep-alive TLS connection holds no request-scoped state (as a cleartext one).
  EXPECT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 0; })) << proxy_->request_states_held();
  const std::vector<ReceivedRequest> seen = upstream_->requests();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].Header("X-Forwarded-Proto"), "https");
  EXPECT_EQ(seen[0].Header("X-Forwarded-Port"), std::to_string(proxy_->tls_port()));

  TlsClient other(proxy_->tls_port(), "other.test");
  ASSERT_TRUE(other.connected());
  EXPECT_EQ(other.PeerCommonName(), "localhost");  // the generated default certificate
}

TEST_F(TlsListenerTest, NewConnectionsGetTheNewSnapshotsCertificate) {
  ASSERT_NO_FATAL_FAILURE(Publish("first", 1));
  TlsClient before(proxy_->tls_port(), "api.test");
  ASSERT_TRUE(before.connected());
  EXPECT_EQ(before.PeerCommonName(), "first");
  ASSERT_NO_FATAL_FAILURE(Publish("second", 2));
  // Publishing is asynchronous (each worker adopts the config on its loop).
  bool switched = false;
  for (int i = 0; i < 200 && !switched; ++i) {
    TlsClient after(proxy_->tls_port(), "api.test");
    ASSERT_TRUE(after.connected());
    switched = after.PeerCommonName() == "second";
    if (!switched) ::usleep(10 * 1000);
  }
  EXPECT_TRUE(switched);
  // The connection made before keeps working.
  EXPECT_TRUE(absl::StartsWith(before.Exchange("GET /r HTTP/1.1\r\nHost: api.test\r\n\r\n"), "HTTP/1.1 200"));
}

TEST_F(TlsListenerTest, ProtocolMismatchesAreClosedWithoutAnAnswer) {
  ASSERT_NO_FATAL_FAILURE(Publish("first", 1));
  for (const bool tls_port : {true, false}) {
    SCOPED_TRACE(tls_port ? "plain HTTP on the TLS port" : "a ClientHello on the cleartext port");
    const int fd = ConnectTo(tls_port ? proxy_->tls_port() : proxy_->port());
    ASSERT_GE(fd, 0);
    // A (truncated) ClientHello record header, or a plaintext request.
    const std::string bytes = tls_port ? std::string("GET /r HTTP/1.1\r\nHost: a\r\n\r\n")
                                       : std::string("\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03", 11);
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    char buffer[256];
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    // Closed (EOF, or a reset) without an HTTP answer, well before the 5 s receive timeout.
    EXPECT_LE(n, 0) << std::string(buffer, n > 0 ? static_cast<size_t>(n) : 0);
    if (n < 0) {
      EXPECT_NE(errno, EAGAIN);
    }
    ::close(fd);
  }
  // Both listeners still serve.
  TlsClient client(proxy_->tls_port(), "api.test");
  ASSERT_TRUE(client.connected());
  EXPECT_TRUE(absl::StartsWith(client.Exchange("GET /r HTTP/1.1\r\nHost: a\r\n\r\n"), "HTTP/1.1 200"));
}

TEST(TlsListenerStartTest, ABadDefaultCertificateFailsTheStart) {
  ProxyOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.tls.enabled = true;
  options.tls.host = "127.0.0.1";
  options.tls.port = 0;
  options.tls.cert_file = "/nonexistent/cert.pem";
  options.tls.key_file = "/nonexistent/key.pem";
  absl::StatusOr<std::unique_ptr<ProxyServer>> started = ProxyServer::Start(options);
  ASSERT_FALSE(started.ok());
  EXPECT_TRUE(absl::StrContains(started.status().message(), "--ssl-cert")) << started.status();
  options.tls.key_file = "";
  EXPECT_FALSE(ProxyServer::Start(options).ok());  // one without the other
  options.tls.host = "not-an-ip";
  options.tls.cert_file = "";
  EXPECT_FALSE(ProxyServer::Start(options).ok());
}

}  // namespace
}  // namespace portico::dp
