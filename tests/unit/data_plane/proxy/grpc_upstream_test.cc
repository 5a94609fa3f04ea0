// The upstream HTTP/2 side (services with protocol grpc/grpcs) against a real gRPC server: a
// ProxyServer on loopback, HTTP/1.1 clients on an http route (the HTTP/2 downstream is tested
// end to end in tests/integration/grpc_test.cc), and Debian's python3-grpcio as the upstream
// (tests/integration/grpc_upstream.py). Also Kong's gRPC route rules for HTTP/1.1 requests.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "data_plane/proxy/http2_upstream.h"
#include "data_plane/proxy/proxy_server.h"
#include "gtest/gtest.h"
#include "proxy_test_util.h"
#include "tests/common/temp_dir.h"

extern char** environ;

namespace portico::dp {
namespace {

using namespace std::chrono_literals;
using testing::MakeRoute;
using testing::MakeService;
using testing::RawClient;
using testing::WaitFor;

// One gRPC message frame: uncompressed flag, 4-byte big-endian length, the message.
std::string GrpcFrame(const std::string& message) {
  std::string frame(5, '\0');
  const uint32_t n = static_cast<uint32_t>(message.size());
  frame[1] = static_cast<char>(n >> 24);
  frame[2] = static_cast<char>(n >> 16);
  frame[3] = static_cast<char>(n >> 8);
  frame[4] = static_cast<char>(n);
  return frame + message;
}

// The messages of a gRPC body (empty on a malformed one).
std::vector<std::string> GrpcMessages(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at + 5 <= body.size()) {
    const uint32_t n = (static_cast<uint32_t>(static_cast<unsigned char>(body[at + 1])) << 24) |
                       (static_cast<uint32_t>(static_cast<unsigned char>(body[at + 2])) << 16) |
                       (static_cast<uint32_t>(static_cast<unsigned char>(body[at + 3])) << 8) |
                       static_cast<uint32_t>(static_cast<unsigned char>(body[at + 4]));
    if (at + 5 + n > body.size()) return {};
    out.push_back(body.substr(at + 5, n));
    at += 5 + n;
  }
  if (at != body.size()) return {};
  return out;
}

// The gRPC test server as a child process, stopped (SIGTERM, then SIGKILL) by its pid.
class GrpcServer {
 public:
  explicit GrpcServer(const std::string& dir, const std::string& cert = "", const std::string& key = "") {
    const std::string port_file = dir + "/grpc.port";
    log_ = dir + "/grpc.log";
    std::vector<std::string> args = {"/usr/bin/python3", PORTICO_GRPC_UPSTREAM_PY, "--port-file", port_file};
    if (!cert.empty()) args.insert(args.end(), {"--cert", cert, "--key", key});
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    if (pid_ < 0) return;
    if (WaitFor([&] { return access(port_file.c_str(), F_OK) == 0; }, 15s)) {
      std::ifstream in(port_file);
      in >> port_;
    }
  }
  ~GrpcServer() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  uint16_t port() const { return port_; }
  std::string Log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string log_;
};

class GrpcUpstreamTest : public ::testing::Test {
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
  void Publish(std::vector<config::v1::Service> services, std::vector<config::v1::Route> routes) {
    auto set = std::make_shared<ConfigSet>();
    set->services = std::move(services);
    set->routes = std::move(routes);
    ConfigVersion v;
    v.epoch = std::string(16, 'e');
    v.version = ++version_;
    absl::StatusOr<std::shared_ptr<const RuntimeConfig>> compiled = RuntimeConfig::Compile(set, v, {}, proxy_->workers());
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    proxy_->Publish(*compiled);
  }
  // A grpc service (grpcs with `tls`) at `port`, reached through an http route "/" (HTTP/1.1
  // clients may use it), and the proxy.
  void Setup(uint16_t port, bool tls = false, int64_t read_timeout_ms = 5000) {
    StartProxy();
    config::v1::Service service = MakeService(1, "127.0.0.1", port);
    service.set_protocol(tls ? "grpcs" : "grpc");
    service.set_read_timeout(read_timeout_ms);
    config::v1::Route route = MakeRoute(2, {"/"}, testing::Uuid(1), /*strip_path=*/false);
    Publish({service}, {route});
  }
  void StartServer(const std::string& cert = "", const std::string& key = "") {
    server_ = std::make_unique<GrpcServer>(dir_.path(), cert, key);
    ASSERT_NE(server_->port(), 0) << server_->Log();
  }
  // A gRPC call over HTTP/1.1 (chunked response; trailers are dropped by HTTP/1).
  testing::ClientResponse Call(const std::string& method, const std::string& body, const std::string& extra = "",
                               int timeout_ms = 10000) {
    RawClient client(proxy_->port(), timeout_ms);
    client.Send(absl::StrCat("POST /portico.test.Echo/", method, " HTTP/1.1\r\nHost: grpc.test\r\n",
                             "Content-Type: application/grpc\r\nTE: trailers\r\nContent-Length: ", body.size(),
                             "\r\n", extra, "\r\n", body));
    return client.ReadResponse();
  }
  std::string Stats() {
    testing::ClientResponse r = Call("Stats", GrpcFrame(""));
    std::vector<std::string> messages = GrpcMessages(r.body);
    return messages.size() == 1 ? messages[0] : "";
  }

  test_support::TempDir dir_;
  std::unique_ptr<GrpcServer> server_;  // declared before the proxy: outlives it
  std::unique_ptr<ProxyServer> proxy_;
  uint64_t version_ = 0;
};

TEST_F(GrpcUpstreamTest, UnaryCallGoesOverHttp2WithProxyHeaders) {
  StartServer();
  Setup(server_->port());
  testing::ClientResponse r = Call("Echo", GrpcFrame("hello"), "X-Echo: metadata-in\r\n");
  ASSERT_TRUE(r.ok) << r.error << server_->Log();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "application/grpc");
  EXPECT_EQ(r.Header("x-echo"), "metadata-in");
  EXPECT_TRUE(absl::StartsWith(r.Header("x-peer"), "ipv4:127.0.0.1:")) << r.Header("x-peer");
  ASSERT_EQ(GrpcMessages(r.body), std::vector<std::string>{"hello"});
  // What the upstream got: the client's metadata and the proxy's forwarding headers.
  const std::string stats = Stats();
  EXPECT_TRUE(absl::StrContains(stats, "\"x-forwarded-for\": \"127.0.0.1\"")) << stats;
  EXPECT_TRUE(absl::StrContains(stats, "\"x-real-ip\": \"127.0.0.1\"")) << stats;
  EXPECT_TRUE(absl::StrContains(stats, "\"x-echo\": \"metadata-in\"")) << stats;
}

TEST_F(GrpcUpstreamTest, ErrorStatusOfATrailersOnlyResponseReachesTheClient) {
  StartServer();
  Setup(server_->port());
  testing::ClientResponse r = Call("Fail", GrpcFrame("x"));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("grpc-status"), "5");  // NOT_FOUND
  EXPECT_EQ(r.Header("grpc-message"), "no such thing");
}

TEST_F(GrpcUpstreamTest, AResponseHeaderListAboveTheLimitIs502) {
  StartServer();
  Setup(server_->port());
  testing::ClientResponse small = Call("BigHead", GrpcFrame("1000"));
  ASSERT_TRUE(small.ok) << small.error << server_->Log();
  EXPECT_EQ(small.status, 200);
  EXPECT_EQ(small.Header("x-big").size(), 1000u);
  // Past kMaxUpstreamHeaderListBytes the stream fails, as an HTTP/1 head past the limit does.
  testing::ClientResponse big = Call("BigHead", GrpcFrame(std::to_string(kMaxUpstreamHeaderListBytes + 1000)));
  ASSERT_TRUE(big.ok) << big.error << server_->Log();
  EXPECT_EQ(big.status, 502);
}

TEST_F(GrpcUpstreamTest, MegabyteMessagesBothWays) {
  StartServer();
  Setup(server_->port());
  testing::ClientResponse down = Call("Repeat", GrpcFrame("3:1048576"));
  ASSERT_TRUE(down.ok) << down.error;
  std::vector<std::string> messages = GrpcMessages(down.body);
  ASSERT_EQ(messages.size(), 3u) << down.body.size();
  EXPECT_EQ(messages[0], std::string(1048576, 'a'));
  EXPECT_EQ(messages[2], std::string(1048576, 'c'));
  // Client streaming: three messages in one request body (2 MiB + 1 MiB + 1 byte).
  testing::ClientResponse up =
      Call("Sum", GrpcFrame(std::string(2 << 20, 'x')) + GrpcFrame(std::string(1 << 20, 'y')) + GrpcFrame("z"));
  ASSERT_TRUE(up.ok) << up.error;
  EXPECT_EQ(GrpcMessages(up.body), std::vector<std::string>{std::to_string((3 << 20) + 1)});
}

TEST_F(GrpcUpstreamTest, ConcurrentCallsShareOneConnection) {
  StartServer();
  Setup(server_->port());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      testing::ClientResponse r = Call("Slow", GrpcFrame("300"));
      if (r.ok && r.status == 200 && GrpcMessages(r.body) == std::vector<std::string>{"slept"}) ++ok;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  // Every call (and Stats) on one HTTP/2 connection: one peer.
  const std::string stats = Stats();
  EXPECT_TRUE(absl::StrContains(stats, "\"peers\": [\"ipv4:127.0.0.1:")) << stats;
  EXPECT_FALSE(absl::StrContains(stats, "\", \"ipv4")) << stats;
}

TEST_F(GrpcUpstreamTest, GrpcTimeoutEndsTheCallAtItsDeadlineAndTheUpstreamSeesTheCancel) {
  StartServer();
  Setup(server_->port());
  const auto start = std::chrono::steady_clock::now();
  testing::ClientResponse r = Call("Slow", GrpcFrame("5000"), "grpc-timeout: 300m\r\n");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok) << r.error;
  // The proxy's timer (504), or the upstream's own deadline (grpc-timeout is forwarded) when its
  // DEADLINE_EXCEEDED answer wins the race: either way the call ends at its deadline.
  EXPECT_TRUE(r.status == 504 || (r.status == 200 && r.Header("grpc-status") == "4"))
      << r.status << " grpc-status " << r.Header("grpc-status");
  EXPECT_LT(took, 3s);
  EXPECT_GE(took, 250ms);
  // The upstream saw the RST_STREAM (CANCEL).
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(Stats(), "\"cancelled\": 1"); }, 5s)) << Stats();
}

// An upstream that accepts and never answers (not even SETTINGS): only the proxy's own
// grpc-timeout deadline can end the call.
TEST_F(GrpcUpstreamTest, ProxyEnforcesGrpcTimeoutOnASilentUpstream) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 8), 0);
  socklen_t length = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &length);
  Setup(ntohs(addr.sin_port), /*tls=*/false, /*read_timeout_ms=*/10000);
  const auto start = std::chrono::steady_clock::now();
  testing::ClientResponse r = Call("Echo", GrpcFrame("x"), "grpc-timeout: 300m\r\n");
  const auto took = std::chrono::steady_clock::now() - start;
  close(listener);  // (the accepted connection, if any, goes with the process's backlog)
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 504);
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
}

TEST_F(GrpcUpstreamTest, ReadTimeoutShorterThanGrpcTimeoutWins) {
  StartServer();
  Setup(server_->port(), /*tls=*/false, /*read_timeout_ms=*/300);
  const auto start = std::chrono::steady_clock::now();
  testing::ClientResponse r = Call("Slow", GrpcFrame("5000"), "grpc-timeout: 10S\r\n");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 504);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(GrpcUpstreamTest, UpstreamDownIs502) {
  // A port nobody listens on: bind one, note it, close it.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t length = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  close(fd);
  Setup(ntohs(addr.sin_port));
  testing::ClientResponse r = Call("Echo", GrpcFrame("x"));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.status, 502);
}

TEST_F(GrpcUpstreamTest, GrpcsServiceSpeaksHttp2OverTls) {
  const std::string cert = dir_.path() + "/cert.pem", key = dir_.path() + "/key.pem";
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext "
      "subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
      key, " -out ", cert, " >/dev/null 2>&1");
  ASSERT_EQ(std::system(command.c_str()), 0);
  StartServer(cert, key);
  Setup(server_->port(), /*tls=*/true);
  testing::ClientResponse r = Call("Echo", GrpcFrame("over tls"));
  ASSERT_TRUE(r.ok) << r.error << server_->Log();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(GrpcMessages(r.body), std::vector<std::string>{"over tls"});
  EXPECT_TRUE(absl::StrContains(Stats(), "\"x-forwarded-proto\": \"http\""));
}

// Kong's rules for gRPC routes, for requests that cannot be gRPC (HTTP/1.1).
TEST_F(GrpcUpstreamTest, GrpcRouteRefusesHttp1AndNonGrpcRequests) {
  StartProxy();
  config::v1::Service service = MakeService(1, "127.0.0.1", 9);
  service.set_protocol("grpc");
  config::v1::Route route = MakeRoute(2, {"/"}, testing::Uuid(1), /*strip_path=*/false);
  route.clear_protocols();
  route.add_protocols("grpc");
  route.add_protocols("grpcs");
  Publish({service}, {route});
  testing::ClientResponse grpc_over_h1 = Call("Echo", GrpcFrame("x"));
  ASSERT_TRUE(grpc_over_h1.ok) << grpc_over_h1.error;
  EXPECT_EQ(grpc_over_h1.status, 426);
  EXPECT_EQ(grpc_over_h1.Header("upgrade"), "HTTP/2");
  EXPECT_TRUE(absl::StrContains(grpc_over_h1.body, "Please use HTTP2 protocol")) << grpc_over_h1.body;

  RawClient client(proxy_->port());
  client.Send("GET /portico.test.Echo/Echo HTTP/1.1\r\nHost: grpc.test\r\n\r\n");
  testing::ClientResponse plain = client.ReadResponse();
  ASSERT_TRUE(plain.ok) << plain.error;
  EXPECT_EQ(plain.status, 415);
  EXPECT_TRUE(absl::StrContains(plain.body, "Non-gRPC request matched gRPC route")) << plain.body;
}

}  // namespace
}  // namespace portico::dp
