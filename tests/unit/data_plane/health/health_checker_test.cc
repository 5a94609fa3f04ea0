// The active checker against real loopback sockets: tcp and http probes, both directions of a
// state change, the probe request, a clean stop with probes in flight.
#include "data_plane/health/health_checker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <openssl/ssl.h>

#include "absl/strings/str_cat.h"
#include "common/tls/tls_files.h"
#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace portico::dp {
namespace {

// A listening socket on 127.0.0.1 (`port` 0: any).
int Listen(uint16_t port, uint16_t* bound) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 64) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *bound = ntohs(a.sin_port);
  return fd;
}

// Answers every request with `status`, remembering the last request head.
class TinyHttp {
 public:
  explicit TinyHttp(int status) : status_(status) {
    signal(SIGPIPE, SIG_IGN);  // a probe may close first
    fd_ = Listen(0, &port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        std::string head;
        char buf[1024];
        while (head.find("\r\n\r\n") == std::string::npos) {
          const ssize_t n = read(c, buf, sizeof(buf));
          if (n <= 0) break;
          head.append(buf, static_cast<size_t>(n));
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          last_ = head;
        }
        const std::string reply = absl::StrCat("HTTP/1.1 ", status_.load(), " X\r\nContent-Length: 0\r\n\r\n");
        (void)!write(c, reply.data(), reply.size());
        close(c);
      }
    });
  }
  ~TinyHttp() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  void set_status(int s) { status_ = s; }
  std::string last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> status_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string last_;
  std::thread thread_;
};

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

HealthTarget Target(HealthRegistry& registry, uint16_t port, const std::string& config) {
  HealthTarget t;
  t.upstream_id = "u1";
  t.upstream_name = "api";
  t.target = absl::StrCat("127.0.0.1:", port);
  t.config = *ParseHealthConfig(config);
  t.record = registry.Acquire(t.upstream_id, t.upstream_name, t.target, config);
  t.has_address = true;
  auto* in = reinterpret_cast<sockaddr_in*>(&t.address);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  t.host_header = absl::StrCat("backend.internal:", port);
  t.weight = 100;
  return t;
}

TEST(HealthCheckerTest, TcpProbesMarkADeadTargetUnhealthyAndBringItBack) {
  uint16_t port = 0;
  int fd = Listen(0, &port);
  ASSERT_GE(fd, 0);
  close(fd);  // nothing listens: connects are refused
  HealthRegistry registry;
  HealthChecker checker;
  ASSERT_TRUE(checker.Start().ok());
  HealthTarget t = Target(registry, port,
                          R"({"active":{"type":"tcp","healthy":{"interval":0.05,"successes":2},
                              "unhealthy":{"interval":0.05,"tcp_failures":2}}})");
  std::shared_ptr<TargetHealth> record = t.record;
  checker.Reconfigure({t});
  EXPECT_TRUE(WaitFor([&] { return !record->healthy(); })) << "two refused connects";
  fd = Listen(port, &port);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(WaitFor([&] { return record->healthy(); })) << "two accepted connects";
  checker.Stop();
  close(fd);
}

TEST(HealthCheckerTest, HttpProbesCompareTheStatusAndSendTheConfiguredRequest) {
  TinyHttp server(500);
  HealthRegistry registry;
  HealthChecker checker;
  ASSERT_TRUE(checker.Start().ok());
  HealthTarget t = Target(registry, server.port(),
                          R"({"active":{"http_path":"/health","headers":{"X-Probe":["yes"]},
                              "healthy":{"interval":0.05,"successes":1},
                              "unhealthy":{"interval":0.05,"http_failures":2}}})");
  std::shared_ptr<TargetHealth> record = t.record;
  checker.Reconfigure({t});
  EXPECT_TRUE(WaitFor([&] { return !record->healthy(); })) << "500 is in unhealthy.http_statuses";
  const std::string head = server.last();
  EXPECT_EQ(head.rfind("GET /health HTTP/1.1\r\n", 0), 0u) << head;
  EXPECT_NE(head.find(absl::StrCat("Host: backend.internal:", server.port(), "\r\n")), std::string::npos) << head;
  EXPECT_NE(head.find("X-Probe: yes\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Connection: close\r\n"), std::string::npos) << head;
  server.set_status(200);
  EXPECT_TRUE(WaitFor([&] { return record->healthy(); }));
  server.set_status(418);  // in neither list: counts nothing
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(record->healthy());
  checker.Stop();
}

TEST(HealthCheckerTest, ASilentTargetTimesOutAndStopCancelsProbesInFlight) {
  uint16_t port = 0;
  const int fd = Listen(0, &port);  // accepts (backlog) and never answers
  ASSERT_GE(fd, 0);
  HealthRegistry registry;
  HealthTarget t = Target(registry, port,
                          R"({"active":{"timeout":0.1,"healthy":{"interval":0.05},
                              "unhealthy":{"interval":0.05,"timeouts":1}}})");
  std::shared_ptr<TargetHealth> record = t.record;
  {
    HealthChecker checker;
    checker.Reconfigure({t});  // before Start: applied when it starts
    ASSERT_TRUE(checker.Start().ok());
    EXPECT_TRUE(WaitFor([&] { return !record->healthy(); }));
    // Probes keep going to the unhealthy target; the destructor stops with one likely in flight.
  }
  close(fd);
}

TEST(HealthCheckerTest, AReconfigureKeepsTheProbeInFlightAndStartsNoSecondOne) {
  uint16_t port = 0;
  const int fd = Listen(0, &port);
  ASSERT_GE(fd, 0);
  // Accepts and holds every connection without answering: a probe stays in flight until its timeout.
  std::atomic<int> accepted{0};
  std::atomic<bool> stop{false};
  std::vector<int> held;
  std::thread acceptor([&] {
    while (!stop) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      const int c = accept(fd, nullptr, nullptr);
      if (c < 0) continue;
      held.push_back(c);
      ++accepted;
    }
  });
  HealthRegistry registry;
  HealthChecker checker;
  ASSERT_TRUE(checker.Start().ok());
  const HealthTarget t = Target(registry, port,
                                R"({"active":{"timeout":3,"healthy":{"interval":0.05},
                                    "unhealthy":{"interval":0.05,"timeouts":1}}})");
  checker.Reconfigure({t});
  EXPECT_TRUE(WaitFor([&] { return accepted.load() >= 1; }));
  for (int i = 0; i < 5; ++i) {  // every published snapshot reconfigures the checker
    checker.Reconfigure({t});
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  EXPECT_EQ(accepted.load(), 1) << "one probe in flight (3 s timeout), none started beside it";
  checker.Stop();
  stop = true;
  acceptor.join();
  for (int c : held) close(c);
  close(fd);
}

// A TLS server (the cluster CA's cp.crt: SAN localhost / 127.0.0.1, a CA no system trusts)
// answering every request with `status`.
class TinyHttps {
 public:
  // `require_client_cert`: a handshake without a client certificate fails (any one is accepted).
  TinyHttps(const std::string& cert, const std::string& key, int status, bool require_client_cert = false)
      : status_(status) {
    signal(SIGPIPE, SIG_IGN);  // a probe that refuses the certificate closes first
    ctx_ = SSL_CTX_new(TLS_server_method());
    ok_ = ctx_ != nullptr && SSL_CTX_use_certificate_chain_file(ctx_, cert.c_str()) == 1 &&
          SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) == 1;
    if (ctx_ != nullptr && require_client_cert) {
      SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                         [](int, X509_STORE_CTX*) { return 1; });
    }
    fd_ = Listen(0, &port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        SSL* ssl = SSL_new(ctx_);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1) {
          std::string head;
          char buf[1024];
          while (head.find("\r\n\r\n") == std::string::npos) {
            const int n = SSL_read(ssl, buf, sizeof(buf));
            if (n <= 0) break;
            head.append(buf, static_cast<size_t>(n));
          }
          {
            std::lock_guard<std::mutex> lock(mu_);
            last_ = head;
          }
          const std::string reply = absl::StrCat("HTTP/1.1 ", status_, " X\r\nContent-Length: 0\r\n\r\n");
          SSL_write(ssl, reply.data(), static_cast<int>(reply.size()));
          SSL_shutdown(ssl);
        } else {
          ++handshake_failures_;
        }
        SSL_free(ssl);
        close(c);
      }
    });
  }
  ~TinyHttps() {
    stop_ = true;
    thread_.join();
    close(fd_);
    SSL_CTX_free(ctx_);
  }
  bool ok() const { return ok_ && fd_ >= 0; }
  uint16_t port() const { return port_; }
  int handshake_failures() const { return handshake_failures_.load(); }
  std::string last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  bool ok_ = false;
  int fd_ = -1;
  uint16_t port_ = 0;
  int status_;
  std::atomic<bool> stop_{false};
  std::atomic<int> handshake_failures_{0};
  std::mutex mu_;
  std::string last_;
  std::thread thread_;
};

TEST(HealthCheckerTest, HttpsProbesSpeakTlsAndVerifyTheCertificateWhenAsked) {
  test_support::TempDir dir;
  ASSERT_TRUE(GenerateClusterCertificates(dir.path(), {}, "dp-test").ok());
  TinyHttps server(dir.File("cp.crt"), dir.File("cp.key"), 200);
  ASSERT_TRUE(server.ok());
  HealthRegistry registry;
  HealthChecker checker;
  ASSERT_TRUE(checker.Start().ok());
  // Without verification: a 200 over TLS brings an unhealthy target back.
  HealthTarget plain = Target(registry, server.port(),
                              R"({"active":{"type":"https","https_verify_certificate":false,"http_path":"/tls",
                                  "healthy":{"interval":0.05,"successes":1},
                                  "unhealthy":{"interval":0.05,"tcp_failures":1}}})");
  plain.record->Set(false, "test");
  checker.Reconfigure({plain});
  EXPECT_TRUE(WaitFor([&] { return plain.record->healthy(); })) << "an https probe succeeded";
  EXPECT_EQ(server.last().rfind("GET /tls HTTP/1.1\r\n", 0), 0u) << server.last();
  // With verification (Kong's default): the system CAs do not know the cluster CA: a tcp failure.
  HealthTarget verified = Target(registry, server.port(),
                                 R"({"active":{"type":"https","healthy":{"interval":0.05,"successes":1},
                                     "unhealthy":{"interval":0.05,"tcp_failures":1}}})");
  checker.Reconfigure({verified});
  EXPECT_TRUE(WaitFor([&] { return !verified.record->healthy(); })) << "the certificate is not trusted";
  EXPECT_TRUE(WaitFor([&] { return server.handshake_failures() >= 1; })) << "the probe aborted the handshake";
  checker.Stop();
}

TEST(HealthCheckerTest, HttpsProbesPresentTheUpstreamClientCertificate) {
  test_support::TempDir dir;
  ASSERT_TRUE(GenerateClusterCertificates(dir.path(), {}, "dp-test").ok());
  TinyHttps server(dir.File("cp.crt"), dir.File("cp.key"), 200, /*require_client_cert=*/true);
  ASSERT_TRUE(server.ok());
  HealthRegistry registry;
  HealthChecker checker;
  ASSERT_TRUE(checker.Start().ok());
  const char* config = R"({"active":{"type":"https","https_verify_certificate":false,
                           "healthy":{"interval":0.05,"successes":1},
                           "unhealthy":{"interval":0.05,"tcp_failures":1}}})";
  // Without a client certificate the server refuses the handshake: a tcp failure.
  HealthTarget anonymous = Target(registry, server.port(), config);
  checker.Reconfigure({anonymous});
  EXPECT_TRUE(WaitFor([&] { return !anonymous.record->healthy(); })) << "the server wants a client certificate";
  // The upstream's client certificate (what RuntimeConfig::HealthTargets attaches): healthy again.
  HealthTarget presenting = Target(registry, server.port(), config);
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  ASSERT_EQ(SSL_CTX_use_certificate_chain_file(ctx.get(), dir.File("dp.crt").c_str()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(ctx.get(), dir.File("dp.key").c_str(), SSL_FILETYPE_PEM), 1);
  presenting.probe_tls_no_verify = ctx;
  presenting.record->Set(false, "test");
  checker.Reconfigure({presenting});
  EXPECT_TRUE(WaitFor([&] { return presenting.record->healthy(); })) << "the probe presented a certificate";
  checker.Stop();
}

TEST(HealthCheckerTest, GrpcAndChecksOffAreNotProbed) {
  uint16_t port = 0;
  const int fd = Listen(0, &port);
  ASSERT_GE(fd, 0);
  close(fd);
  HealthRegistry registry;
  HealthChecker checker;
  ASSERT_TRUE(checker.Start().ok());
  HealthTarget grpc = Target(registry, port,
                             R"({"active":{"type":"grpc","healthy":{"interval":0.05},
                                 "unhealthy":{"interval":0.05,"tcp_failures":1}}})");
  HealthTarget off = Target(registry, port, R"({"active":{"type":"tcp","unhealthy":{"tcp_failures":1}}})");
  off.target = "127.0.0.1:1";  // another key
  checker.Reconfigure({grpc, off});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(grpc.record->healthy()) << "grpc probes are not built: not probed";
  EXPECT_TRUE(off.record->healthy()) << "no interval: not probed";
  checker.Stop();
}

}  // namespace
}  // namespace portico::dp
