// End-to-end tests of the proxy on loopback: a real ProxyServer, a real router, a blocking test
// upstream, and raw HTTP over sockets.
#include "data_plane/proxy/proxy_server.h"

#include <netinet/in.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proxy_test_util.h"

namespace portico::dp {
namespace {

using testing::ClientResponse;
using testing::MakeRoute;
using testing::MakeService;
using testing::RawClient;
using testing::ReceivedRequest;
using testing::SimpleResponse;
using testing::TestUpstream;
using testing::UpstreamReply;
using testing::WaitFor;

constexpr char kKongJson[] = "application/json; charset=utf-8";

// Echoes the body and reports the target it saw.
UpstreamReply Echo(const ReceivedRequest& request) {
  UpstreamReply reply;
  reply.raw = SimpleResponse(200, request.body, absl::StrCat("X-Seen-Target: ", request.target, "\r\n"));
  return reply;
}

std::string Get(const std::string& target, const std::string& extra = "", const std::string& host = "example.com") {
  return absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: ", host, "\r\n", extra, "\r\n");
}

class ProxyServerTest : public ::testing::Test {
 protected:
  void StartProxy(int workers = 1, size_t max_header_bytes = 64 * 1024, bool debug = false,
                  int64_t client_timeout_ms = 60 * 1000) {
    ProxyOptions options;
    options.client_timeout_ms = client_timeout_ms;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = workers;
    options.max_header_bytes = max_header_bytes;
    options.allow_debug_header = debug;
    absl::StatusOr<std::unique_ptr<ProxyServer>> started = ProxyServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    proxy_ = std::move(*started);
    ASSERT_NE(proxy_->port(), 0);
  }

  // An upstream answering every request with `body`, a proxy with `client_timeout_ms` and one route
  // /r to it; then a plain blocking socket (ConnectTo) that has sent GET /r/x. -1 on failure.
  int ServeBodyAndRequestIt(const std::string& body, int64_t client_timeout_ms, int receive_buffer = 0);

  void Publish(std::vector<config::v1::Service> services, std::vector<config::v1::Route> routes,
               uint64_t version = 1) {
    auto set = std::make_shared<ConfigSet>();
    set->services = std::move(services);
    set->routes = std::move(routes);
    ConfigVersion v;
    v.epoch = std::string(16, 'e');
    v.version = version;
    absl::StatusOr<std::shared_ptr<const RuntimeConfig>> compiled = RuntimeConfig::Compile(set, v, {}, proxy_->workers());
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    proxy_->Publish(*compiled);
  }

  // Upstream with the echo handler, proxy with one service (path `service_path`) and one route.
  void StartEchoSetup(const std::string& service_path = "", bool strip_path = true, bool preserve_host = false,
                      int workers = 1) {
    upstream_ = std::make_unique<TestUpstream>(Echo);
    StartProxy(workers);
    auto route = MakeRoute(2, {"/r"}, testing::Uuid(1), strip_path);
    route.set_preserve_host(preserve_host);
    Publish({MakeService(1, "127.0.0.1", upstream_->port(), service_path)}, {route});
  }

  std::unique_ptr<TestUpstream> upstream_;  // declared first: outlives the proxy
  std::unique_ptr<ProxyServer> proxy_;
};

TEST_F(ProxyServerTest, ConfigCompiledForFewerWorkersIsNotPublished) {
  StartEchoSetup("", true, false, /*workers=*/2);
  // A second config compiled for one worker (its balancers' per-worker state would be shared by
  // both workers): refused, the workers keep the first one.
  auto set = std::make_shared<ConfigSet>();
  set->services.push_back(MakeService(1, "127.0.0.1", upstream_->port()));
  ConfigVersion v;
  v.epoch = std::string(16, 'e');
  v.version = 2;
  absl::StatusOr<std::shared_ptr<const RuntimeConfig>> compiled = RuntimeConfig::Compile(set, v, {}, 1);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  proxy_->Publish(*compiled);  // has no route: applied, /r/x would be 404
  for (int i = 0; i < 4; ++i) {  // new connections, whichever worker takes them
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(Get("/r/x")));
    EXPECT_EQ(client.ReadResponse().status, 200);
  }
}

TEST_F(ProxyServerTest, RoutesRewritesPathAndSetsServiceHost) {
  StartEchoSetup("/s");
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r/x?a=1&b=%20")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("X-Seen-Target"), "/s/x?a=1&b=%20");
  EXPECT_EQ(response.Header("Via"), absl::StrCat("1.1 portico/", PORTICO_VERSION));
  ASSERT_EQ(upstream_->requests().size(), 1u);
  const ReceivedRequest seen = upstream_->requests()[0];
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.version, "HTTP/1.1");
  EXPECT_EQ(seen.Header("Host"), absl::StrCat("127.0.0.1:", upstream_->port()));
  EXPECT_EQ(seen.HeaderCount("Host"), 1u);
}

TEST_F(ProxyServerTest, StripPathFalseKeepsRoutePrefix) {
  StartEchoSetup("/s", /*strip_path=*/false);
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r/x/")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.Header("X-Seen-Target"), "/s/r/x/");
}

TEST_F(ProxyServerTest, AbsoluteFormTargetUsesItsPath) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("http://example.com/r/abs?q=1")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("X-Seen-Target"), "/abs?q=1");
}

TEST_F(ProxyServerTest, PreserveHostSendsClientHost) {
  StartEchoSetup("", true, /*preserve_host=*/true);
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r", "", "client.example:8080")));
  ASSERT_TRUE(client.ReadResponse().ok);
  ASSERT_EQ(upstream_->requests().size(), 1u);
  EXPECT_EQ(upstream_->requests()[0].Header("Host"), "client.example:8080");
}

TEST_F(ProxyServerTest, ForwardedHeadersAndHopByHopRemoval) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, "ok",
                               "Keep-Alive: timeout=5\r\nX-Hop: 1\r\nConnection: X-Hop\r\nX-End: yes\r\n"
                               "Via: 1.0 backend\r\n");
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r",
                              "X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 9.9.9.9\r\nX-Forwarded-Proto: https\r\n"
                              "Connection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: 1\r\nKeep-Alive: 5\r\n"
                              "TE: trailers\r\nX-End-To-End: kept\r\n",
                              "Example.com:9000")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "ok");
  EXPECT_FALSE(response.HasHeader("X-Hop"));
  EXPECT_FALSE(response.HasHeader("Keep-Alive"));
  EXPECT_FALSE(response.HasHeader("Connection"));
  EXPECT_EQ(response.Header("X-End"), "yes");
  EXPECT_EQ(response.Header("Via"), absl::StrCat("1.0 backend, 1.1 portico/", PORTICO_VERSION));

  ASSERT_EQ(upstream_->requests().size(), 1u);
  const ReceivedRequest seen = upstream_->requests()[0];
  EXPECT_EQ(seen.Header("X-Forwarded-For"), "1.2.3.4, 127.0.0.1");
  EXPECT_EQ(seen.Header("X-Real-IP"), "127.0.0.1");
  EXPECT_EQ(seen.Header("X-Forwarded-Proto"), "http");
  EXPECT_EQ(seen.Header("X-Forwarded-Host"), "Example.com");
  EXPECT_EQ(seen.Header("X-Forwarded-Port"), absl::StrCat(proxy_->port()));
  EXPECT_EQ(seen.HeaderCount("X-Real-IP"), 1u);
  EXPECT_EQ(seen.Header("X-End-To-End"), "kept");
  EXPECT_FALSE(seen.HeaderCount("Connection"));
  EXPECT_FALSE(seen.HeaderCount("X-Custom-Hop"));
  EXPECT_FALSE(seen.HeaderCount("Keep-Alive"));
  EXPECT_FALSE(seen.HeaderCount("TE"));
}

TEST_F(ProxyServerTest, KeepAliveReusesClientAndUpstreamConnections) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client.Send(Get(absl::StrCat("/r/", i))));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << i;
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.Header("X-Seen-Target"), absl::StrCat("/", i));
  }
  EXPECT_EQ(upstream_->accepted(), 1);
  for (const ReceivedRequest& r : upstream_->requests()) EXPECT_EQ(r.connection_index, 0);
  EXPECT_EQ(proxy_->requests_total(), 3u);
}

TEST_F(ProxyServerTest, PipelinedRequestsAnsweredInOrder) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  std::string batch;
  for (int i = 0; i < 5; ++i) batch += Get(absl::StrCat("/r/p", i));
  batch += "POST /r/post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
  batch += Get("/nowhere");  // 404 in the middle of a pipeline
  batch += Get("/r/last");
  ASSERT_TRUE(client.Send(batch));
  for (int i = 0; i < 5; ++i) {
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << i;
    EXPECT_EQ(response.Header("X-Seen-Target"), absl::StrCat("/p", i));
  }
  ClientResponse post = client.ReadResponse();
  ASSERT_TRUE(post.ok);
  EXPECT_EQ(post.body, "hello");
  ClientResponse not_found = client.ReadResponse();
  ASSERT_TRUE(not_found.ok);
  EXPECT_EQ(not_found.status, 404);
  ClientResponse last = client.ReadResponse();
  ASSERT_TRUE(last.ok);
  EXPECT_EQ(last.Header("X-Seen-Target"), "/last");
}

TEST_F(ProxyServerTest, ChunkedRequestBodyIsReframed) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(
      "POST /r/up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(client.Send("7;ext=1\r\n, world\r\n0\r\n\r\n"));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "hello, world");
  ASSERT_EQ(upstream_->requests().size(), 1u);
  EXPECT_TRUE(upstream_->requests()[0].chunked);
  EXPECT_EQ(upstream_->requests()[0].HeaderCount("Content-Length"), 0u);
}

TEST_F(ProxyServerTest, ChunkedResponseIsStreamed) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
    reply.pieces = {"4\r\ndefg\r\n", "0\r\n\r\n"};
    reply.piece_delay_ms = 20;
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  for (int i = 0; i < 2; ++i) {  // and the connection stays usable
    ASSERT_TRUE(client.Send(Get("/r")));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_TRUE(response.chunked);
    EXPECT_EQ(response.body, "abcdefg");
  }
  EXPECT_EQ(upstream_->accepted(), 1);
}

TEST_F(ProxyServerTest, CloseDelimitedResponseBecomesChunkedOrClose) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-";
    reply.pieces = {"close"};
    reply.piece_delay_ms = 10;
    reply.close_after = true;
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(Get("/r")));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_TRUE(response.chunked);
    EXPECT_EQ(response.body, "until-close");
    ASSERT_TRUE(client.Send(Get("/r")));  // HTTP/1.1 client keeps its connection
    EXPECT_EQ(client.ReadResponse().body, "until-close");
  }
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("GET /r HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_FALSE(response.chunked);
    EXPECT_EQ(response.body, "until-close");
    EXPECT_EQ(response.Header("Connection"), "close");
  }
}

TEST_F(ProxyServerTest, LargeBodiesStreamBothWays) {
  StartEchoSetup("", true, false, /*workers=*/2);
  std::string body(8 * 1024 * 1024, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + (i * 7919) % 26);
  RawClient client(proxy_->port(), 20000);
  ASSERT_TRUE(client.Send(absl::StrCat("POST /r/big HTTP/1.1\r\nHost: a\r\nContent-Length: ", body.size(),
                                       "\r\n\r\n")));
  ASSERT_TRUE(client.Send(body));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body.size(), body.size());
  EXPECT_TRUE(response.body == body);
  // Chunked upload of the same body, echoed with Content-Length.
  ASSERT_TRUE(client.Send("POST /r/big2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"));
  for (size_t offset = 0; offset < body.size(); offset += 1 << 20) {
    ASSERT_TRUE(client.Send(absl::StrCat(absl::Hex(1 << 20), "\r\n", body.substr(offset, 1 << 20), "\r\n")));
  }
  ASSERT_TRUE(client.Send("0\r\n\r\n"));
  ClientResponse second = client.ReadResponse();
  ASSERT_TRUE(second.ok);
  EXPECT_TRUE(second.body == body);
}

TEST_F(ProxyServerTest, NoRouteGives404WithKongBody) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/nothing")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.body, R"({"message":"no Route matched with those values"})");
  EXPECT_EQ(response.Header("Content-Type"), kKongJson);
  EXPECT_EQ(response.Header("Server"), absl::StrCat("portico/", PORTICO_VERSION));
  // Keep-alive survives a generated response, including one with a body to discard.
  ASSERT_TRUE(client.Send("POST /nothing HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"));
  EXPECT_EQ(client.ReadResponse().status, 404);
  ASSERT_TRUE(client.Send(Get("/r")));
  EXPECT_EQ(client.ReadResponse().status, 200);
  EXPECT_EQ(upstream_->requests().size(), 1u);
}

TEST_F(ProxyServerTest, NoConfigGives404) {
  StartProxy();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/")));
  EXPECT_EQ(client.ReadResponse().status, 404);
}

TEST_F(ProxyServerTest, RouteWithoutServiceGives503) {
  StartProxy();
  Publish({}, {MakeRoute(2, {"/r"}, "")});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body, R"({"message":"no Service found with those values"})");
  EXPECT_EQ(response.Header("Content-Type"), kKongJson);
}

TEST_F(ProxyServerTest, UnresolvedHostnameGives503) {
  StartProxy();
  Publish({MakeService(1, "backend.invalid", 80)}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r")));
  ClientResponse response = client.ReadResponse();
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.body, R"({"message":"name resolution failed"})");
}

TEST_F(ProxyServerTest, ConnectionRefusedGives502AndRetriesAreBounded) {
  StartProxy();
  auto service = MakeService(1, "localhost", test_support::ClosedLoopbackPort());
  service.set_retries(2);
  Publish({service}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 502);
  EXPECT_EQ(response.body, R"({"message":"An invalid response was received from the upstream server"})");
  ASSERT_TRUE(client.Send(Get("/r")));  // still usable
  EXPECT_EQ(client.ReadResponse().status, 502);
}

TEST_F(ProxyServerTest, InvalidUpstreamResponseGives502) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = "NOT HTTP AT ALL\r\n\r\n";
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 502);
}

TEST_F(ProxyServerTest, UpstreamClosingBeforeResponseGives502) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.close_after = true;  // no bytes
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r")));
  EXPECT_EQ(client.ReadResponse().status, 502);
}

TEST_F(ProxyServerTest, ReadTimeoutGives504) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.hang = true;
    return reply;
  });
  StartProxy();
  auto service = MakeService(1, "127.0.0.1", upstream_->port());
  service.set_read_timeout(150);
  Publish({service}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(client.Send(Get("/r")));
  ClientResponse response = client.ReadResponse();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 504);
  EXPECT_EQ(response.body, R"({"message":"The upstream server is timing out"})");
  EXPECT_GE(elapsed, std::chrono::milliseconds(140));
  EXPECT_LT(elapsed, std::chrono::milliseconds(3000));
}

TEST_F(ProxyServerTest, ReadTimeoutAfterResponseStartedClosesClient) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";
    reply.pieces = {"late"};
    reply.piece_delay_ms = 2000;
    return reply;
  });
  StartProxy();
  auto service = MakeService(1, "127.0.0.1", upstream_->port());
  service.set_read_timeout(150);
  Publish({service}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r")));
  ClientResponse response = client.ReadResponse();
  EXPECT_FALSE(response.ok);  // truncated: the connection closed mid-body
  EXPECT_EQ(response.status, 200);
}

TEST_F(ProxyServerTest, ConnectTimeoutGives504) {
  // A listener with a full accept queue drops further SYNs, so connect() hangs.
  uint16_t port = 0;
  const int fd = test_support::ListenOnLoopback(0, 0, &port);
  ASSERT_GE(fd, 0);
  std::vector<std::unique_ptr<RawClient>> fillers;
  for (int i = 0; i < 3; ++i) fillers.push_back(std::make_unique<RawClient>(port, 300));

  StartProxy();
  auto service = MakeService(1, "127.0.0.1", port);
  service.set_connect_timeout(200);
  Publish({service}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r")));
  ClientResponse response = client.ReadResponse();
  ::close(fd);
  ASSERT_TRUE(response.ok);
  if (response.status == 502) GTEST_SKIP() << "kernel refused instead of dropping the SYN";
  EXPECT_EQ(response.status, 504);
  EXPECT_EQ(response.body, R"({"message":"The upstream server is timing out"})");
}

TEST_F(ProxyServerTest, MalformedRequestGives400AndCloses) {
  StartEchoSetup();
  const std::vector<std::string> malformed = {
      "GET /r HTTP/1.1\r\nHost: a\r\nBad Header Name: x\r\n\r\n",
      "GET /r HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
      "GET /r HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "\x01\x02garbage\r\n\r\n",
      "POST /r HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
  };
  for (const std::string& request : malformed) {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(request));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << request;
    EXPECT_EQ(response.status, 400) << request;
    EXPECT_EQ(response.body, R"({"message":"Bad request"})");
    EXPECT_EQ(response.Header("Content-Type"), kKongJson);
    EXPECT_EQ(response.Header("Connection"), "close");
    EXPECT_TRUE(client.WaitClosed());
  }
  // The chunked POST's head was valid and went upstream, but its body broke: the upstream never
  // saw a complete request.
  EXPECT_TRUE(upstream_->requests().empty());
}

TEST_F(ProxyServerTest, TargetWithoutLeadingSlashGives400) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 400);
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(ProxyServerTest, OversizedHeadersGive400TooLarge) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  StartProxy(1, /*max_header_bytes=*/4096);
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(Get("/r", absl::StrCat("Cookie: ", std::string(3000, 'c'), "\r\n"))));
    EXPECT_EQ(client.ReadResponse().status, 200);  // under the limit
  }
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r", absl::StrCat("Cookie: ", std::string(5000, 'c'), "\r\n"))));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body, R"({"message":"Request header or cookie too large"})");
  EXPECT_TRUE(client.WaitClosed());
  EXPECT_EQ(upstream_->requests().size(), 1u);
}

TEST_F(ProxyServerTest, HeadRequestAndHttp10WithoutKeepAlive) {
  StartEchoSetup();
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("HEAD /r HTTP/1.1\r\nHost: a\r\n\r\n"));
    ClientResponse head = client.ReadResponse(/*head_request=*/true);
    ASSERT_TRUE(head.ok);
    EXPECT_EQ(head.status, 200);
    ASSERT_TRUE(client.Send(Get("/r/after-head")));
    ClientResponse next = client.ReadResponse();
    ASSERT_TRUE(next.ok);
    EXPECT_EQ(next.Header("X-Seen-Target"), "/after-head");
  }
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("GET /r/old HTTP/1.0\r\n\r\n"));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.Header("Connection"), "close");
    EXPECT_TRUE(client.WaitClosed());
  }
  {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(Get("/r/bye", "Connection: close\r\n")));
    ClientResponse response = client.ReadResponse();
    EXPECT_EQ(response.Header("Connection"), "close");
    EXPECT_TRUE(client.WaitClosed());
  }
}

TEST_F(ProxyServerTest, HalfClosedClientStillGetsItsResponses) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r/one") + Get("/r/two")));
  client.ShutdownWrite();
  EXPECT_EQ(client.ReadResponse().Header("X-Seen-Target"), "/one");
  EXPECT_EQ(client.ReadResponse().Header("X-Seen-Target"), "/two");
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(ProxyServerTest, ExpectContinueIsAnsweredByTheProxy) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send("POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(client.Send("data"));
  ClientResponse response = client.ReadResponse();  // skips the 100
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.body, "data");
  ASSERT_EQ(upstream_->requests().size(), 1u);
  EXPECT_EQ(upstream_->requests()[0].HeaderCount("Expect"), 0u);
}

TEST_F(ProxyServerTest, DebugHeaderAddsRouteAndServiceIds) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  StartProxy(1, 64 * 1024, /*debug=*/true);
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r", "Kong-Debug: 1\r\n")));
  ClientResponse response = client.ReadResponse();
  EXPECT_EQ(response.Header("Kong-Route-Id"), testing::Uuid(2));
  EXPECT_EQ(response.Header("Kong-Service-Name"), "service-1");
  ASSERT_TRUE(client.Send(Get("/r")));
  EXPECT_FALSE(client.ReadResponse().HasHeader("Kong-Route-Id"));
}

TEST_F(ProxyServerTest, DebugHeaderAnyValueAndOnGeneratedResponses) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  StartProxy(1, 64 * 1024, /*debug=*/true);
  auto no_service = MakeRoute(3, {"/orphan"}, "");
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1)), no_service});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r", "Kong-Debug: yes\r\n")));
  ClientResponse proxied = client.ReadResponse();
  EXPECT_EQ(proxied.Header("Kong-Route-Name"), "route-2");
  EXPECT_EQ(proxied.Header("Kong-Service-Id"), testing::Uuid(1));
  ASSERT_TRUE(client.Send(Get("/orphan", "Kong-Debug: 1\r\n")));
  ClientResponse orphan = client.ReadResponse();
  EXPECT_EQ(orphan.status, 503);
  EXPECT_EQ(orphan.Header("Kong-Route-Id"), testing::Uuid(3));
  EXPECT_FALSE(orphan.HasHeader("Kong-Service-Id"));
}

TEST_F(ProxyServerTest, DebugHeaderIgnoredWithoutTheOption) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r", "Kong-Debug: 1\r\n")));
  ClientResponse response = client.ReadResponse();
  EXPECT_EQ(response.status, 200);
  EXPECT_FALSE(response.HasHeader("Kong-Route-Id"));
}

TEST_F(ProxyServerTest, PathIsNormalisedBeforeRoutingAndSentUpstreamNormalised) {
  StartEchoSetup("/s");
  RawClient client(proxy_->port());
  // %72 is "r": the normalised path is /r/a%2Fb/c d, stripped of /r, re-escaped upstream.
  ASSERT_TRUE(client.Send(Get("//x/../%72//a%2fb/./c%20d?q=%2e%20")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("X-Seen-Target"), "/s/a%2Fb/c%20d?q=%2e%20");
}

TEST_F(ProxyServerTest, EncodedPathThatNormalisesOutsideTheRouteIsNotRouted) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r/../other")));
  ClientResponse response = client.ReadResponse();
  EXPECT_EQ(response.status, 404);
  EXPECT_TRUE(upstream_->requests().empty());
}

TEST_F(ProxyServerTest, HttpsOnlyRouteAnswers426) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  StartProxy();
  auto route = MakeRoute(2, {"/secure"}, testing::Uuid(1));
  route.clear_protocols();
  route.add_protocols("https");
  route.set_https_redirect_status_code(426);
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {route});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/secure/x")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 426);
  EXPECT_EQ(response.body, "{\"message\":\"Please use HTTPS protocol\"}");
  EXPECT_EQ(response.Header("Connection"), "Upgrade");
  EXPECT_EQ(response.Header("Upgrade"), "TLS/1.2, HTTP/1.1");
  EXPECT_TRUE(upstream_->requests().empty());
  // The connection stays usable.
  ASSERT_TRUE(client.Send(Get("/secure/y")));
  EXPECT_EQ(client.ReadResponse().status, 426);
}

TEST_F(ProxyServerTest, HttpsOnlyRouteRedirectsKeepingTheQuery) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  StartProxy();
  std::vector<config::v1::Route> routes;
  const int codes[] = {301, 302, 307, 308};
  for (int i = 0; i < 4; ++i) {
    auto route = MakeRoute(10 + i, {absl::StrCat("/r", codes[i])}, testing::Uuid(1));
    route.clear_protocols();
    route.add_protocols("https");
    route.set_https_redirect_status_code(codes[i]);
    routes.push_back(route);
  }
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, routes);
  RawClient client(proxy_->port());
  for (int code : codes) {
    ASSERT_TRUE(client.Send(Get(absl::StrCat("/r", code, "/a?x=1&y=%20"), "", "Shop.example.com:8000")));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << code;
    EXPECT_EQ(response.status, code);
    EXPECT_EQ(response.Header("Location"), absl::StrCat("https://shop.example.com/r", code, "/a?x=1&y=%20"));
    EXPECT_EQ(response.body, "");
  }
  EXPECT_TRUE(upstream_->requests().empty());
}

TEST_F(ProxyServerTest, ConfigSwapKeepsInFlightRequestOnOldConfig) {
  auto slow = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, "old");
    reply.delay_ms = 300;
    return reply;
  });
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, "new");
    return reply;
  });
  StartProxy(2);
  Publish({MakeService(1, "127.0.0.1", slow->port())}, {MakeRoute(2, {"/x"}, testing::Uuid(1))}, 1);

  RawClient in_flight(proxy_->port());
  ASSERT_TRUE(in_flight.Send(Get("/x")));
  ASSERT_TRUE(WaitFor([&] { return slow->requests().size() == 1; }));

  Publish({MakeService(3, "127.0.0.1", upstream_->port())}, {MakeRoute(4, {"/x"}, testing::Uuid(3))}, 2);
  RawClient fresh(proxy_->port());
  ASSERT_TRUE(fresh.Send(Get("/x")));
  ClientResponse new_response = fresh.ReadResponse();
  ASSERT_TRUE(new_response.ok);
  EXPECT_EQ(new_response.body, "new");

  ClientResponse old_response = in_flight.ReadResponse();
  ASSERT_TRUE(old_response.ok);
  EXPECT_EQ(old_response.body, "old");
  // The next request on the old connection uses the new config.
  ASSERT_TRUE(in_flight.Send(Get("/x")));
  EXPECT_EQ(in_flight.ReadResponse().body, "new");
  proxy_->Stop();
  slow->Stop();
}

TEST_F(ProxyServerTest, UpstreamClosingPooledConnectionIsHandled) {
  // The upstream closes after each response without saying so: the pooled connection is dead
  // when the next request wants it.
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest& request) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, request.target);
    reply.close_after = true;
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(client.Send(Get(absl::StrCat("/r/", i))));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << i;
    EXPECT_EQ(response.status, 200) << i;
    EXPECT_EQ(response.body, absl::StrCat("/", i));
  }
  EXPECT_EQ(upstream_->accepted(), 4);
  // Pipelined: the second request takes the pooled connection right after the first response,
  // usually before its FIN has been read, and must be retried on a fresh connection.
  for (int round = 0; round < 10; ++round) {
    ASSERT_TRUE(client.Send(Get("/r/a") + Get("/r/b")));
    ClientResponse a = client.ReadResponse();
    ClientResponse b = client.ReadResponse();
    ASSERT_TRUE(a.ok && b.ok) << round;
    EXPECT_EQ(a.body, "/a");
    EXPECT_EQ(b.status, 200) << round;
    EXPECT_EQ(b.body, "/b");
  }
}

TEST_F(ProxyServerTest, ManyWorkersShareOnePort) {
  StartEchoSetup("", true, false, /*workers=*/4);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        RawClient client(proxy_->port());
        if (!client.Send(Get(absl::StrCat("/r/", t, "-", i)))) continue;
        ClientResponse response = client.ReadResponse();
        if (response.ok && response.Header("X-Seen-Target") == absl::StrCat("/", t, "-", i)) ++ok;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_EQ(proxy_->requests_total(), 40u);
}

TEST_F(ProxyServerTest, StartAndStopRepeatedlyWithOpenConnections) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  for (int round = 0; round < 15; ++round) {
    StartProxy(2);
    Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
    RawClient idle(proxy_->port());
    RawClient busy(proxy_->port());
    ASSERT_TRUE(busy.Send(Get("/r")));
    ASSERT_EQ(busy.ReadResponse().status, 200);
    ASSERT_TRUE(busy.Send("POST /r HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhalf"));
    proxy_->Stop();
    proxy_->Stop();  // idempotent
    EXPECT_TRUE(busy.WaitClosed());
    proxy_.reset();
  }
}

// ---- fast path: continuous client reads, try-write, gathered head + body --------------------

TEST_F(ProxyServerTest, PipelinedRequestsArrivingInTinyPieces) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  std::string batch = Get("/r/a");
  batch += "POST /r/b HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
  batch += "POST /r/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  batch += Get("/r/d");
  for (size_t offset = 0; offset < batch.size(); offset += 3) {  // every request split many times
    ASSERT_TRUE(client.Send(batch.substr(offset, 3)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ClientResponse a = client.ReadResponse();
  ASSERT_TRUE(a.ok);
  EXPECT_EQ(a.Header("X-Seen-Target"), "/a");
  ClientResponse b = client.ReadResponse();
  ASSERT_TRUE(b.ok);
  EXPECT_EQ(b.body, "hello world");
  ClientResponse c = client.ReadResponse();
  ASSERT_TRUE(c.ok);
  EXPECT_EQ(c.body, "abcde");
  ClientResponse d = client.ReadResponse();
  ASSERT_TRUE(d.ok);
  EXPECT_EQ(d.Header("X-Seen-Target"), "/d");
  EXPECT_EQ(upstream_->accepted(), 1);
}

TEST_F(ProxyServerTest, PipelinedRequestsQueuedWhileTheUpstreamIsSlow) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest& request) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, request.target);
    reply.delay_ms = 30;  // the next requests arrive while this exchange is in flight
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r/1")));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(client.Send(Get("/r/2") + Get("/r/3")));
  for (int i = 1; i <= 3; ++i) {
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << i;
    EXPECT_EQ(response.body, absl::StrCat("/", i));
  }
}

TEST_F(ProxyServerTest, ClientHalfClosingDuringTheExchangeGetsTheResponse) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest& request) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, request.target);
    reply.delay_ms = 50;
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r/x")));
  std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the exchange is in flight
  client.ShutdownWrite();
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.body, "/x");
  EXPECT_TRUE(client.WaitClosed());
}

TEST_F(ProxyServerTest, LargeHeadersBothWays) {
  std::string response_headers;
  for (int i = 0; i < 40; ++i) absl::StrAppend(&response_headers, "X-Resp-", i, ": ", std::string(1000, 'r'), "\r\n");
  upstream_ = std::make_unique<TestUpstream>([response_headers](const ReceivedRequest& request) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, absl::StrCat("headers=", request.headers.size()), response_headers);
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  std::string request_headers;
  for (int i = 0; i < 48; ++i) absl::StrAppend(&request_headers, "X-Req-", i, ": ", std::string(1000, 'q'), "\r\n");
  RawClient client(proxy_->port());
  for (int round = 0; round < 2; ++round) {  // pipelined: both heads sent at once the second time
    const std::string one = Get("/r/big", request_headers);
    ASSERT_TRUE(client.Send(round == 0 ? one : one + one));
    for (int n = 0; n < round + 1; ++n) {
      ClientResponse response = client.ReadResponse();
      ASSERT_TRUE(response.ok) << round;
      EXPECT_EQ(response.status, 200);
      EXPECT_EQ(response.Header("X-Resp-39"), std::string(1000, 'r'));
      EXPECT_TRUE(absl::StartsWith(response.body, "headers="));
    }
  }
  const std::vector<ReceivedRequest> received = upstream_->requests();
  ASSERT_EQ(received.size(), 3u);
  for (const ReceivedRequest& request : received) {
    EXPECT_EQ(request.Header("X-Req-0"), std::string(1000, 'q'));
    EXPECT_EQ(request.Header("X-Req-47"), std::string(1000, 'q'));
  }
}

TEST_F(ProxyServerTest, ManyChunksInOneUpstreamReadAndHeadAloneInARead) {
  std::string chunks;
  std::string expected;
  for (int i = 0; i < 40; ++i) {  // more pieces than one gathered write holds
    const std::string data(static_cast<size_t>(i % 7 + 1), static_cast<char>('a' + i % 26));
    absl::StrAppend(&chunks, absl::Hex(data.size()), "\r\n", data, "\r\n");
    expected += data;
  }
  upstream_ = std::make_unique<TestUpstream>([chunks](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";  // the head alone first
    reply.pieces = {chunks + "0\r\n\r\n"};
    reply.piece_delay_ms = 30;
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(client.Send(Get("/r")));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_TRUE(response.chunked);
    EXPECT_EQ(response.body, expected);
  }
}

// A client that does not read a big response: the proxy stops reading the upstream instead of
// buffering the body, so the upstream's writes stall well before the end.
TEST_F(ProxyServerTest, SlowReaderWithBigResponseObeysBackpressure) {
  constexpr size_t kBodyBytes = 96u << 20;
  uint16_t upstream_port = 0;
  const int listen_fd = test_support::ListenOnLoopback(0, 4, &upstream_port);
  ASSERT_GE(listen_fd, 0);

  std::atomic<size_t> written{0};
  std::atomic<bool> stop{false};
  timeval tv{0, 100 * 1000};  // bounds every blocking call of the server thread
  ::setsockopt(listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::thread server([&] {
    int fd = -1;
    while (fd < 0 && !stop.load()) fd = ::accept(listen_fd, nullptr, nullptr);
    if (fd < 0) return;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string request;
    test_support::SocketReader(fd, &stop).ReadHead(&request);  // then answer, whole or not
    const std::string head = absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", kBodyBytes, "\r\n\r\n");
    ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    std::string block(64 * 1024, '\0');
    while (written.load() < kBodyBytes && !stop.load()) {
      const size_t offset = written.load();
      const size_t size = std::min(block.size(), kBodyBytes - offset);
      for (size_t i = 0; i < size; ++i) block[i] = static_cast<char>('a' + (offset + i) % 23);
      size_t sent = 0;
      while (sent < size && !stop.load()) {
        const ssize_t n = ::send(fd, block.data() + sent, size - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<size_t>(n);
          written.fetch_add(static_cast<size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          stop.store(true);
        }
      }
    }
    ::close(fd);
  });

  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_port)}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port(), 30000);
  ASSERT_TRUE(client.Send(Get("/r/big")));
  // Wait until the upstream's writes stall (no progress for 300 ms) or it wrote everything.
  size_t last = 0;
  int still = 0;
  for (int i = 0; i < 200 && still < 6 && written.load() < kBodyBytes; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const size_t now = written.load();
    still = now == last ? still + 1 : 0;
    last = now;
  }
  EXPECT_LT(written.load(), kBodyBytes / 2) << "the proxy buffered the body instead of pausing the upstream";
  ClientResponse response = client.ReadResponse();  // now read it all
  stop.store(true);
  server.join();
  ::close(listen_fd);
  ASSERT_TRUE(response.ok);
  ASSERT_EQ(response.body.size(), kBodyBytes);
  size_t mismatches = 0;
  for (size_t i = 0; i < response.body.size(); ++i) {
    if (response.body[i] != static_cast<char>('a' + i % 23)) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0u);
}

// Idle keep-alive connections give their request-scoped state (exchange, head storage, input
// buffer) back to the worker; the next request on them takes it again. Large and pipelined
// heads, and a head split over several reads, work on such shrunk connections.
TEST_F(ProxyServerTest, IdleConnectionsReleaseRequestStateAndStillServeEverything) {
  StartEchoSetup();
  constexpr int kClients = 20;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<RawClient>(proxy_->port()));
    ASSERT_TRUE(clients.back()->Send(Get(absl::StrCat("/r/warm", i))));
    ClientResponse response = clients.back()->ReadResponse();
    ASSERT_TRUE(response.ok) << i;
    EXPECT_EQ(response.Header("X-Seen-Target"), absl::StrCat("/warm", i));
  }
  // Twenty connections open and idle, none holds request state.
  EXPECT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 0; })) << proxy_->request_states_held();

  // A head split over two reads keeps its state while incomplete.
  RawClient& split = *clients[0];
  ASSERT_TRUE(split.Send("GET /r/split HTTP/1.1\r\nHost: exa"));
  EXPECT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 1; })) << proxy_->request_states_held();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(split.Send("mple.com\r\nX-Tail: 1\r\n\r\n"));
  ClientResponse split_response = split.ReadResponse();
  ASSERT_TRUE(split_response.ok);
  EXPECT_EQ(split_response.Header("X-Seen-Target"), "/split");
  EXPECT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 0; }));

  // Large heads (too large to be pooled afterwards) on a shrunk connection, twice.
  std::string big_headers;
  for (int i = 0; i < 20; ++i) absl::StrAppend(&big_headers, "X-Big-", i, ": ", std::string(1000, 'b'), "\r\n");
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(clients[1]->Send(Get(absl::StrCat("/r/big", round), big_headers)));
    ClientResponse response = clients[1]->ReadResponse();
    ASSERT_TRUE(response.ok) << round;
    EXPECT_EQ(response.Header("X-Seen-Target"), absl::StrCat("/big", round));
  }
  // Pipelined requests (with a body) on shrunk connections.
  for (int i = 2; i < kClients; ++i) {
    std::string batch = Get(absl::StrCat("/r/a", i)) +
                        "POST /r/post HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + Get(absl::StrCat("/r/b", i));
    ASSERT_TRUE(clients[i]->Send(batch));
  }
  for (int i = 2; i < kClients; ++i) {
    ClientResponse a = clients[i]->ReadResponse();
    ClientResponse post = clients[i]->ReadResponse();
    ClientResponse b = clients[i]->ReadResponse();
    ASSERT_TRUE(a.ok && post.ok && b.ok) << i;
    EXPECT_EQ(a.Header("X-Seen-Target"), absl::StrCat("/a", i));
    EXPECT_EQ(post.body, "hello");
    EXPECT_EQ(b.Header("X-Seen-Target"), absl::StrCat("/b", i));
  }
  EXPECT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 0; })) << proxy_->request_states_held();
  const std::vector<ReceivedRequest> received = upstream_->requests();
  const auto big = std::find_if(received.begin(), received.end(),
                                [](const ReceivedRequest& r) { return r.target == "/big1"; });
  ASSERT_NE(big, received.end());
  EXPECT_EQ(big->Header("X-Big-19"), std::string(1000, 'b'));
}

// Connection: close (and HTTP/1.0) exchanges that were read completely are closed without a
// lingering read; the response must still arrive whole, followed by a clean FIN (never a RST),
// also when the response is still queued in the proxy when it completes.
TEST_F(ProxyServerTest, ConnectionCloseResponsesArriveCompleteWithCleanEof) {
  const std::string big(4 * 1024 * 1024, 'z');
  upstream_ = std::make_unique<TestUpstream>([&big](const ReceivedRequest& request) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, request.target == "/big" ? big : absl::StrCat("small ", request.target));
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});

  for (int i = 0; i < 20; ++i) {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(Get(absl::StrCat("/r/", i), "Connection: close\r\n")));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << i;
    EXPECT_EQ(response.body, absl::StrCat("small /", i));
    EXPECT_EQ(response.Header("Connection"), "close");
    EXPECT_TRUE(client.WaitCleanEof()) << i;
    // Closed at once, without a lingering read.
    if (i == 0) {
      EXPECT_TRUE(client.PeerSocketGone());
    }
  }
  {  // HTTP/1.0 without keep-alive
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send("GET /r/old HTTP/1.0\r\nHost: a\r\n\r\n"));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_EQ(response.body, "small /old");
    EXPECT_TRUE(client.WaitCleanEof());
  }
  {  // a big response still queued in the proxy when the exchange completes: the client reads late
    RawClient client(proxy_->port(), 10000);
    ASSERT_TRUE(client.Send(Get("/r/big", "Connection: close\r\n")));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_EQ(response.body.size(), big.size());
    EXPECT_TRUE(response.body == big);
    EXPECT_TRUE(client.WaitCleanEof());
  }
  {  // bytes after a Connection: close request: the proxy lingers, the response is still whole
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(Get("/r/first", "Connection: close\r\n") + Get("/r/ignored")));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_EQ(response.body, "small /first");
    EXPECT_TRUE(client.WaitCleanEof());
    EXPECT_FALSE(client.PeerSocketGone());  // still lingering: more bytes are read and dropped
  }
  for (const ReceivedRequest& r : upstream_->requests()) EXPECT_NE(r.target, "/ignored");
  EXPECT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 0; }));
}

// A plain blocking client socket, for reading at a chosen pace.
int ConnectTo(uint16_t port, int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  // Set before connect so that the window is sized from it: less is buffered in the kernel.
  if (receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  timeval tv{5, 0};  // bounds every blocking call
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int ProxyServerTest::ServeBodyAndRequestIt(const std::string& body, int64_t client_timeout_ms, int receive_buffer) {
  upstream_ = std::make_unique<TestUpstream>([&body](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, body);
    return reply;
  });
  StartProxy(1, 64 * 1024, false, client_timeout_ms);
  if (proxy_ == nullptr) return -1;
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  const int fd = ConnectTo(proxy_->port(), receive_buffer);
  if (fd < 0) return -1;
  const std::string request = Get("/r/x");
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A client that stops reading a response is dropped after the client timeout without write
// progress, which also ends the exchange (and its upstream connection) instead of holding them.
TEST_F(ProxyServerTest, ClientThatStopsReadingIsDroppedAfterTheClientTimeout) {
  const std::string huge(32 * 1024 * 1024, 'h');
  const int fd = ServeBodyAndRequestIt(huge, /*client_timeout_ms=*/400);
  ASSERT_GE(fd, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(proxy_->request_states_held(), 1u);  // the exchange is waiting for us
  EXPECT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 0; }, std::chrono::milliseconds(4000)));
  // What arrives is cut short: the connection was closed, not completed.
  size_t received = 0;
  char buffer[64 * 1024];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    received += static_cast<size_t>(n);
  }
  ::close(fd);
  EXPECT_GT(received, 0u);
  EXPECT_LT(received, huge.size());
}

// A reader slower than the response is long but never stalled for the client timeout gets the
// whole response: the timeout counts from the last write progress (nginx's send_timeout).
TEST_F(ProxyServerTest, SlowButSteadyReaderGetsTheWholeResponse) {
  // Long enough that the exchange itself (not only the drain after it) outlasts the timeout.
  const std::string big(12 * 1024 * 1024, 'b');
  // The timeout is long enough for loopback's zero-window probes (their backoff starts at 200 ms).
  const int fd = ServeBodyAndRequestIt(big, /*client_timeout_ms=*/1000, /*receive_buffer=*/128 * 1024);
  ASSERT_GE(fd, 0);
  std::string received;
  char buffer[64 * 1024];
  const auto start = std::chrono::steady_clock::now();
  size_t expected = std::string::npos;
  while (received.size() < expected) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    received.append(buffer, static_cast<size_t>(n));
    const size_t head_end = received.find("\r\n\r\n");
    if (expected == std::string::npos && head_end != std::string::npos) expected = head_end + 4 + big.size();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // about 3 MB/s at most
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ::close(fd);
  ASSERT_NE(expected, std::string::npos);
  EXPECT_EQ(received.size(), expected);
  // The whole transfer took much longer than the client timeout.
  EXPECT_GT(elapsed, std::chrono::milliseconds(3000));
}

// The client timeout also closes an idle keep-alive connection, a request head that never
// completes (more bytes do not restart it), and a connection whose request body stops coming
// after the proxy already answered locally (404 while the body is still being discarded).
TEST_F(ProxyServerTest, ClientTimeoutClosesIdleHalfHeadAndStalledDiscard) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  StartProxy(1, 64 * 1024, false, /*client_timeout_ms=*/400);
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  const auto closes_within = [](RawClient& client, int ms) {
    const auto start = std::chrono::steady_clock::now();
    const bool closed = client.WaitClosed();
    return closed && std::chrono::steady_clock::now() - start < std::chrono::milliseconds(ms);
  };
  {  // idle after one keep-alive request
    RawClient client(proxy_->port(), 5000);
    ASSERT_TRUE(client.Send(Get("/r/idle")));
    ASSERT_TRUE(client.ReadResponse().ok);
    EXPECT_TRUE(closes_within(client, 3000));
  }
  {  // a head trickling in: each byte is progress, but the head as a whole must finish in time
    RawClient client(proxy_->port(), 5000);
    const auto start = std::chrono::steady_clock::now();
    bool sent = true;
    for (int i = 0; i < 12 && sent; ++i) {
      sent = client.Send(i == 0 ? "GET /r/slow HTTP/1.1\r\n" : "X-A: b\r\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_FALSE(sent && !client.PeerSocketGone()) << "still open after 1.2 s of a 400 ms timeout";
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  }
  {  // 404 sent, the declared body never completes
    RawClient client(proxy_->port(), 5000);
    ASSERT_TRUE(client.Send("POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\npartial"));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok);
    EXPECT_EQ(response.status, 404);
    EXPECT_TRUE(closes_within(client, 3000));
  }
  EXPECT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 0; }));
}

// The lingering read after a close with unread bytes ends after the linger timeout (2 s, expired
// by the worker's deadline sweep) even when the client never closes.
TEST_F(ProxyServerTest, LingeringCloseEndsAfterItsTimeout) {
  StartEchoSetup();
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r/first", "Connection: close\r\n") + Get("/r/more")));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.Header("X-Seen-Target"), "/first");
  EXPECT_TRUE(client.WaitCleanEof());
  const auto lingering_since = std::chrono::steady_clock::now();
  EXPECT_FALSE(client.PeerSocketGone());  // still reading and dropping what we send
  EXPECT_TRUE(WaitFor([&] { return client.PeerSocketGone(); }, std::chrono::milliseconds(4000)));
  const auto lingered = std::chrono::steady_clock::now() - lingering_since;
  EXPECT_GE(lingered, std::chrono::milliseconds(1500));
  EXPECT_LE(lingered, std::chrono::milliseconds(3500));
}

// The client address comes from the worker's own accept4 (no getpeername): IPv4 is checked in
// ForwardedHeadersAndHopByHopRemoval; here an IPv6 listener and client.
TEST_F(ProxyServerTest, ClientAddressFromAcceptOverIpv6) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  ProxyOptions options;
  options.host = "::1";
  options.port = 0;
  absl::StatusOr<std::unique_ptr<ProxyServer>> started = ProxyServer::Start(options);
  if (!started.ok()) GTEST_SKIP() << "no IPv6 loopback: " << started.status();
  proxy_ = std::move(*started);
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  address.sin6_port = htons(proxy_->port());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const std::string request = Get("/r/six", "Connection: close\r\n");
  ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  const std::vector<ReceivedRequest> received = upstream_->requests();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].Header("X-Real-IP"), "::1");
  EXPECT_EQ(received[0].Header("X-Forwarded-For"), "::1");
}

// ---- hostile input (issue 9): each test failed before its fix ---------------------------------

TEST_F(ProxyServerTest, ConnectionHeaderCannotStripRequestFraming) {
  StartEchoSetup();
  const std::string smuggled = "GET /POISON HTTP/1.1\r\nHost: internal\r\nX-Real-IP: 10.9.9.9\r\n\r\n";
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(absl::StrCat("POST /r HTTP/1.1\r\nHost: example.com\r\nConnection: content-length\r\n",
                                       "Content-Length: ", smuggled.size(), "\r\n\r\n", smuggled)));
  ClientResponse response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, smuggled);  // echoed: it arrived as the body
  // The same through a chunked body whose Transfer-Encoding is named in Connection.
  ASSERT_TRUE(client.Send(absl::StrCat("POST /r HTTP/1.1\r\nHost: example.com\r\nConnection: transfer-encoding\r\n",
                                       "Transfer-Encoding: chunked\r\n\r\n", absl::Hex(smuggled.size()), "\r\n",
                                       smuggled, "\r\n0\r\n\r\n")));
  response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.body, smuggled);
  ASSERT_EQ(upstream_->requests().size(), 2u);
  for (const ReceivedRequest& seen : upstream_->requests()) {
    EXPECT_EQ(seen.target, "/");
    EXPECT_EQ(seen.body, smuggled);
  }
}

TEST_F(ProxyServerTest, ConnectionHeaderCannotStripResponseFraming) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest& request) {
    UpstreamReply reply;
    reply.raw = absl::StrCat("HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding\r\n",
                             "Content-Length: 5\r\n\r\n", request.target == "/a" ? "first" : "other");
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  ASSERT_TRUE(client.Send(Get("/r/a") + Get("/r/b")));  // pipelined, one keep-alive connection
  ClientResponse first = client.ReadResponse();
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(first.Header("Content-Length"), "5");
  EXPECT_EQ(first.body, "first");
  ClientResponse second = client.ReadResponse();
  ASSERT_TRUE(second.ok);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, "other");
}

TEST_F(ProxyServerTest, FragmentInTargetIsRefusedAndNeverRouted) {
  upstream_ = std::make_unique<TestUpstream>(Echo);
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())},
          {MakeRoute(2, {"/public"}, testing::Uuid(1)), MakeRoute(3, {"/admin"}, testing::Uuid(1))});
  for (const char* target : {"/public#/../admin", "/public#x", "/public?q#/../admin", "http://example.com/public#x"}) {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(Get(target)));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << target;
    EXPECT_EQ(response.status, 400) << target;
    EXPECT_TRUE(client.WaitClosed()) << target;
  }
  EXPECT_EQ(upstream_->accepted(), 0);
}

TEST_F(ProxyServerTest, BadlyFramedRequestsNeverReachTheUpstream) {
  StartEchoSetup();
  struct Row {
    std::string request;
    int status;
  };
  const std::vector<Row> rows = {
      {"POST /r HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501},
      {"POST /r HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\nabc", 501},
      {"POST /r HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
      {"POST /r HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"GET /r HTTP/1.1\r\n\r\n", 400},
      {"GET /r HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET /r HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
      {"GET /r HTTP/2.0\r\nHost: a\r\n\r\n", 505},
      {"GET /r HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
  };
  for (const Row& row : rows) {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(row.request));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << row.request;
    EXPECT_EQ(response.status, row.status) << row.request;
    EXPECT_EQ(response.Header("Connection"), "close") << row.request;
    EXPECT_TRUE(client.WaitClosed()) << row.request;
  }
  EXPECT_EQ(upstream_->accepted(), 0);
}

TEST_F(ProxyServerTest, NoBodyResponsesCarryNoFramingAndStrayBodyBytesAreDropped) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest& request) {
    UpstreamReply reply;
    if (request.target == "/204") reply.raw = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello";
    if (request.target == "/304") reply.raw = "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n";
    if (request.target == "/head") reply.raw = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
    if (reply.raw.empty()) reply.raw = SimpleResponse(200, "after");
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  RawClient client(proxy_->port());
  for (const char* target : {"/r/204", "/r/304"}) {
    ASSERT_TRUE(client.Send(Get(target)));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << target;
    EXPECT_FALSE(response.HasHeader("Content-Length")) << target;
    EXPECT_FALSE(response.HasHeader("Transfer-Encoding")) << target;
  }
  ASSERT_TRUE(client.Send("HEAD /r/head HTTP/1.1\r\nHost: example.com\r\n\r\n"));
  ClientResponse head = client.ReadResponse(/*head_request=*/true);
  ASSERT_TRUE(head.ok);
  EXPECT_EQ(head.Header("Content-Length"), "7");
  // The bytes after the 204 were not framed as anything: neither forwarded nor taken as the
  // next response (the next request gets its own).
  ASSERT_TRUE(client.Send(Get("/r/next")));
  ClientResponse next = client.ReadResponse();
  ASSERT_TRUE(next.ok);
  EXPECT_EQ(next.body, "after");
}

TEST_F(ProxyServerTest, UnknownResponseTransferCodingGives502) {
  upstream_ = std::make_unique<TestUpstream>([](const ReceivedRequest& request) {
    UpstreamReply reply;
    reply.raw = request.target == "/gzip" ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz"
                                          : "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    reply.close_after = true;
    return reply;
  });
  StartProxy();
  Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  for (const char* target : {"/r/gzip", "/r/http10"}) {
    RawClient client(proxy_->port());
    ASSERT_TRUE(client.Send(Get(target)));
    ClientResponse response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << target;
    EXPECT_EQ(response.status, 502) << target;
  }
}

TEST(ProxyServerStartTest, RejectsBadOptions) {
  ProxyOptions options;
  options.port = 0;
  options.workers = 0;
  EXPECT_FALSE(ProxyServer::Start(options).ok());
  options.workers = 1;
  options.host = "not-an-ip";
  EXPECT_FALSE(ProxyServer::Start(options).ok());
}


// ---- graceful drain (docs/operations.md "Graceful drain") ----------------------------------------

// /r/slow answers after 1500 ms (far above the 400 ms the drain tests allow for what must happen
// at once, on a loaded machine too), everything else at once.
UpstreamReply SlowOrEcho(const ReceivedRequest& request) {
  UpstreamReply reply = Echo(request);
  if (absl::StrContains(request.target, "slow")) reply.delay_ms = 1500;
  return reply;
}

class ProxyDrainTest : public ProxyServerTest {
 protected:
  void StartSlowSetup(ProxyOptions options = {}) {
    upstream_ = std::make_unique<TestUpstream>(SlowOrEcho);
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 2;
    absl::StatusOr<std::unique_ptr<ProxyServer>> started = ProxyServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    proxy_ = std::move(*started);
    EXPECT_EQ(proxy_->listening(), options.accept_at_start);  // listen() ran in Start()
    Publish({MakeService(1, "127.0.0.1", upstream_->port())}, {MakeRoute(2, {"/r"}, testing::Uuid(1))});
  }
};

TEST_F(ProxyDrainTest, IdleConnectionsCloseAtOnceAndTheRequestInFlightEndsWithConnectionClose) {
  ASSERT_NO_FATAL_FAILURE(StartSlowSetup());
  RawClient idle(proxy_->port());
  ASSERT_TRUE(idle.Send(Get("/r/warm")));
  ASSERT_EQ(idle.ReadResponse().status, 200);
  RawClient busy(proxy_->port());
  ASSERT_TRUE(busy.Send(Get("/r/warm")));
  ASSERT_EQ(busy.ReadResponse().status, 200);
  ASSERT_TRUE(busy.Send(Get("/r/slow")));
  ASSERT_TRUE(WaitFor([&] { return upstream_->requests().size() == 3; }));

  const auto start = std::chrono::steady_clock::now();
  proxy_->BeginDrain();
  // The idle keep-alive connection is closed without an answer, long before the slow one ends.
  idle.set_deadline(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  ClientResponse closed = idle.ReadResponse();
  EXPECT_FALSE(closed.ok);
  EXPECT_TRUE(closed.peer_closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(400));
  EXPECT_FALSE(proxy_->drained());
  // The listeners are closed (each worker closes its own on its loop).
  EXPECT_TRUE(WaitFor([&] { return !RawClient(proxy_->port()).connected(); }, std::chrono::milliseconds(500)));

  ClientResponse last = busy.ReadResponse();
  ASSERT_TRUE(last.ok) << last.error;
  EXPECT_EQ(last.status, 200);
  EXPECT_EQ(last.Header("Connection"), "close");
  EXPECT_TRUE(WaitFor([&] { return proxy_->drained(); }));
  proxy_->Stop();
  EXPECT_EQ(proxy_->drain_counts().open_at_drain, 2);
  EXPECT_EQ(proxy_->drain_counts().cut_at_stop, 0);
}

TEST_F(ProxyDrainTest, AFreshConnectionsFirstRequestIsAnsweredAndWhatIsLeftIsCutAtStop) {
  ASSERT_NO_FATAL_FAILURE(StartSlowSetup());
  auto fresh = std::make_unique<RawClient>(proxy_->port());  // its request comes after the drain began
  RawClient hanging(proxy_->port());
  ASSERT_TRUE(hanging.Send("GET /r/x HTTP/1.1\r\nHost: exa"));  // a head that never completes
  ASSERT_TRUE(WaitFor([&] { return proxy_->request_states_held() == 1; }));
  // Both accepted (each by the worker the kernel chose) before the listeners close.
  ASSERT_TRUE(WaitFor([&] { return proxy_->connections_active() == 2; }));
  proxy_->BeginDrain();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fresh->Send(Get("/r/late")));
  ClientResponse late = fresh->ReadResponse();
  ASSERT_TRUE(late.ok) << late.error;
  EXPECT_EQ(late.status, 200);
  EXPECT_EQ(late.Header("Connection"), "close");
  fresh.reset();  // the client closes as told (the proxy lingers until then)
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(proxy_->drained());  // the unfinished head holds the drain
  proxy_->Stop();
  EXPECT_EQ(proxy_->drain_counts().open_at_drain, 2);
  EXPECT_EQ(proxy_->drain_counts().cut_at_stop, 1);
  EXPECT_FALSE(hanging.ReadResponse().ok);
}

TEST_F(ProxyDrainTest, ListenersBoundButNotAcceptingUntilStartAccepting) {
  ProxyOptions options;
  options.accept_at_start = false;
  ASSERT_NO_FATAL_FAILURE(StartSlowSetup(options));
  EXPECT_FALSE(proxy_->listening());
  RawClient early(proxy_->port());
  EXPECT_FALSE(early.connected()) << "connected before StartAccepting";
  EXPECT_EQ(early.connect_error(), ECONNREFUSED);
  // The port is taken all the same: a second server without SO_REUSEPORT cannot bind it.
  const int other = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(proxy_->port());
  EXPECT_NE(::bind(other, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ::close(other);
  proxy_->StartAccepting();
  proxy_->StartAccepting();  // idempotent
  // listening() turns true once every worker's listen() ran, and then a connection is accepted.
  ASSERT_TRUE(WaitFor([&] { return proxy_->listening(); }));
  EXPECT_FALSE(proxy_->listen_failed());
  {
    RawClient first(proxy_->port());
    EXPECT_TRUE(first.connected());
  }
  ASSERT_TRUE(WaitFor([&] {
    RawClient client(proxy_->port());
    return client.connected() && client.Send(Get("/r/x")) && client.ReadResponse().status == 200;
  }));
}

}  // namespace
}  // namespace portico::dp
