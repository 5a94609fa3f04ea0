// HttpServer with a TLS context (the Admin API's --admin-ssl-listen): a blocking OpenSSL client
// on loopback, certificates generated per test with common/tls.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/http/http_server.h"
#include "common/tls/server_tls_context.h"
#include "common/tls/tls_files.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico {
namespace {

using test_support::TempDir;

int ConnectLoopback(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// A blocking TLS client (bounded by 5 s socket timeouts) that trusts `ca_pem`.
class TlsClient {
 public:
  TlsClient(uint16_t port, const std::string& ca_file, const std::string& cert_file = "",
            const std::string& key_file = "") {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (!cert_file.empty()) {
      SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str());
      SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM);
    }
    fd_ = ConnectLoopback(port);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, "localhost");
    SSL_set1_host(ssl_, "localhost");
    handshake_ok_ = fd_ >= 0 && SSL_connect(ssl_) == 1;
    ERR_clear_error();
  }
  ~TlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
  }
  bool handshake_ok() const { return handshake_ok_; }
  SSL* ssl() const { return ssl_; }

  // Sends one request and reads one response (Content-Length framed); "" on failure. With TLS 1.3
  // a refused client certificate shows here: the server's alert arrives on the first read.
  std::string RoundTrip(const std::string& request) {
    if (SSL_write(ssl_, request.data(), static_cast<int>(request.size())) <= 0) return "";
    std::string in;
    char buf[4096];
    for (;;) {
      const size_t head_end = in.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        const size_t cl = in.find("Content-Length: ");
        const size_t length = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
        if (in.size() >= head_end + 4 + length) return in.substr(0, head_end + 4 + length);
      }
      const int n = SSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) {
        ERR_clear_error();
        return "";
      }
      in.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool handshake_ok_ = false;
};

class HttpServerTlsTest : public testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);  // the client writes to sockets the server has closed
    ASSERT_TRUE(GenerateClusterCertificates(tmp_.File("pki"), {}, "client-1").ok());
    ASSERT_TRUE(GenerateClusterCertificates(tmp_.File("other"), {}, "client-2").ok());
  }

  void StartServer(bool require_client_cert) {
    absl::StatusOr<TlsMaterial> identity = LoadTlsMaterial(tmp_.File("pki/cp.crt"), tmp_.File("pki/cp.key"), "");
    ASSERT_TRUE(identity.ok()) << identity.status();
    std::string client_ca;
    if (require_client_cert) client_ca = *ReadFileToString(tmp_.File("pki/ca.crt"));
    absl::StatusOr<SslCtxPtr> ctx = MakeServerTlsContext(*identity, client_ca, "client CA");
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    HttpServerOptions options;
    options.tls_context = ctx->get();  // the server keeps its own reference
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(
        "127.0.0.1", 0,
        [](const HttpRequest& request) { return HttpResponse::Json(200, absl::StrCat("{\"path\":\"", request.path, "\"}")); },
        options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::string Ca() const { return tmp_.File("pki/ca.crt"); }

  TempDir tmp_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTlsTest, ServesKeepAliveRequestsOverTls) {
  StartServer(false);
  TlsClient client(server_->port(), Ca());
  ASSERT_TRUE(client.handshake_ok());
  EXPECT_GE(SSL_version(client.ssl()), TLS1_2_VERSION);
  for (const char* path : {"/one", "/two"}) {
    const std::string response = client.RoundTrip(absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200 OK\r\n")) << response;
    EXPECT_TRUE(absl::EndsWith(response, absl::StrCat("{\"path\":\"", path, "\"}"))) << response;
  }
}

TEST_F(HttpServerTlsTest, RefusesTlsBelow12) {
  StartServer(false);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(ctx, 0);
  SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
  const int fd = ConnectLoopback(server_->port());
  ASSERT_GE(fd, 0);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  EXPECT_NE(SSL_connect(ssl), 1);
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  TlsClient still(server_->port(), Ca());  // the server goes on
  EXPECT_TRUE(still.handshake_ok());
}

TEST_F(HttpServerTlsTest, PlainHttpOnTheTlsPortIsClosedWithoutAnAnswer) {
  StartServer(false);
  const int fd = ConnectLoopback(server_->port());
  ASSERT_GE(fd, 0);
  const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  char buf[512];
  std::string got;
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      EXPECT_TRUE(n == 0 || errno == ECONNRESET) << "no close within the timeout: " << errno;
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  EXPECT_EQ(got.find("HTTP/1.1"), std::string::npos) << got;
  TlsClient after(server_->port(), Ca());
  ASSERT_TRUE(after.handshake_ok());
  EXPECT_TRUE(absl::StartsWith(after.RoundTrip("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 200"));
}

TEST_F(HttpServerTlsTest, ClientCertificateFromTheCaIsRequired) {
  StartServer(true);
  const std::string request = "GET /secure HTTP/1.1\r\nHost: x\r\n\r\n";
  TlsClient with_cert(server_->port(), Ca(), tmp_.File("pki/dp.crt"), tmp_.File("pki/dp.key"));
  ASSERT_TRUE(with_cert.handshake_ok());
  EXPECT_TRUE(absl::StartsWith(with_cert.RoundTrip(request), "HTTP/1.1 200")) << "with a certificate";

  // TLS 1.3: the client's handshake may complete before the server refuses; no answer follows.
  TlsClient without(server_->port(), Ca());
  EXPECT_TRUE(!without.handshake_ok() || without.RoundTrip(request).empty());
  TlsClient other_ca(server_->port(), Ca(), tmp_.File("other/dp.crt"), tmp_.File("other/dp.key"));
  EXPECT_TRUE(!other_ca.handshake_ok() || other_ca.RoundTrip(request).empty());
}

}  // namespace
}  // namespace portico
