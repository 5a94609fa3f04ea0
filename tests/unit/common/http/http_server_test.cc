#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/common/http_wire.h"

namespace portico {
namespace {

using TestClient = test_support::RawHttpClient;

// Echoes the parsed request so tests can assert on what the server understood.
class HttpServerTest : public testing::Test {
 protected:
  void StartServer(HttpServerOptions options = {}) {
    auto server = HttpServer::Start(
        "127.0.0.1", 0,
        [this](const HttpRequest& request) {
          {
            std::lock_guard<std::mutex> lock(mu_);
            requests_.push_back(request);
          }
          HttpResponse response = HttpResponse::Json(
              200, absl::StrCat(request.method, " ", request.path, "?", request.query, "|",
                                request.body));
          response.headers.emplace_back("X-Peer", request.peer_ip);
          response.headers.emplace_back("X-Target", request.target);
          if (request.path == "/close") response.headers.emplace_back("Connection", "close");
          if (request.path == "/big") response.body.assign(256 * 1024, 'b');
          if (request.path == "/nocontent") response.status = 204;
          return response;
        },
        options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_NE(server_->port(), 0);
  }

  size_t RequestCount() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_.size();
  }
  HttpRequest LastRequest() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_.back();
  }

  std::unique_ptr<HttpServer> server_;
  std::mutex mu_;
  std::vector<HttpRequest> requests_;
};

TEST_F(HttpServerTest, SimpleGet) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Custom: Value\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "GET /hello?|");
  ASSERT_TRUE(response.HasHeader("Content-Length"));
  EXPECT_EQ(response.Header("Content-Length"), std::to_string(response.body.size()));
  ASSERT_TRUE(response.HasHeader("Server"));
  EXPECT_EQ(response.Header("Server"), absl::StrCat("portico/", PORTICO_VERSION));
  ASSERT_TRUE(response.HasHeader("Date"));
  EXPECT_TRUE(absl::EndsWith(response.Header("Date"), " GMT"));
  EXPECT_FALSE(response.HasHeader("Connection"));
  EXPECT_EQ(response.Header("Content-Type"), "application/json; charset=utf-8");
  const HttpRequest request = LastRequest();
  EXPECT_EQ(request.method, "GET");
  ASSERT_EQ(request.headers.size(), 2u);
  EXPECT_EQ(request.headers[1].first, "X-Custom");
  EXPECT_EQ(request.headers[1].second, "Value");
  ASSERT_NE(request.Header("x-custom"), nullptr);
  EXPECT_EQ(request.peer_ip, "127.0.0.1");
  EXPECT_EQ(response.Header("X-Peer"), "127.0.0.1");
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto first = client.ReadResponse();
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(first.body, "GET /one?|");
  ASSERT_TRUE(client.Send("GET /two HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto second = client.ReadResponse();
  ASSERT_TRUE(second.ok);
  EXPECT_EQ(second.body, "GET /two?|");
  EXPECT_EQ(RequestCount(), 2u);
}

TEST_F(HttpServerTest, PipelinedRequestsAnsweredInOrder) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send(
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
      "GET /c?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"));
  for (const char* expected : {"GET /a?|", "POST /b?|xyz", "GET /c?q=1|"}) {
    auto response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << expected;
    EXPECT_EQ(response.body, expected);
  }
}

TEST_F(HttpServerTest, PipelinedRequestsSplitAcrossWrites) {
  StartServer();
  TestClient client(server_->port());
  const std::string bytes =
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
  for (char c : bytes) ASSERT_TRUE(client.Send(std::string(1, c)));
  auto first = client.ReadResponse();
  auto second = client.ReadResponse();
  ASSERT_TRUE(first.ok);
  ASSERT_TRUE(second.ok);
  EXPECT_EQ(first.body, "GET /a?|");
  EXPECT_EQ(second.body, "POST /b?|hello");
}

TEST_F(HttpServerTest, ChunkedBodyIsDecoded) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send(
      "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: t\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "POST /upload?|Wikipedia");
  // The connection stays usable.
  ASSERT_TRUE(client.Send("GET /after HTTP/1.1\r\n\r\n"));
  auto after = client.ReadResponse();
  ASSERT_TRUE(after.ok);
  EXPECT_EQ(after.body, "GET /after?|");
}

TEST_F(HttpServerTest, BodyOverLimitByContentLengthIs413AndCloses) {
  HttpServerOptions options;
  options.max_body_bytes = 10;
  StartServer(options);
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 413);
  EXPECT_EQ(response.body, R"({"message":"Payload too large"})");
  ASSERT_TRUE(response.HasHeader("Connection"));
  EXPECT_EQ(response.Header("Connection"), "close");
  EXPECT_TRUE(client.ReadsEof());
  EXPECT_EQ(RequestCount(), 0u);
}

TEST_F(HttpServerTest, BodyAtLimitIsAccepted) {
  HttpServerOptions options;
  options.max_body_bytes = 10;
  StartServer(options);
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "POST /x?|0123456789");
}

TEST_F(HttpServerTest, ChunkedBodyOverLimitIs413AndCloses) {
  HttpServerOptions options;
  options.max_body_bytes = 8;
  StartServer(options);
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send(
      "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n5\r\nfghij\r\n0\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 413);
  EXPECT_EQ(response.body, R"({"message":"Payload too large"})");
  EXPECT_TRUE(client.ReadsEof());
  EXPECT_EQ(RequestCount(), 0u);
}

TEST_F(HttpServerTest, HeaderSectionOverLimitIs400AndCloses) {
  HttpServerOptions options;
  options.max_header_bytes = 1024;
  StartServer(options);
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send(absl::StrCat("GET / HTTP/1.1\r\nHost: x\r\nCookie: ", std::string(2000, 'c'),
                                       "\r\n\r\n")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body, R"({"message":"Request header or cookie too large"})");
  EXPECT_TRUE(client.ReadsEof());
  EXPECT_EQ(RequestCount(), 0u);
}

TEST_F(HttpServerTest, ManySmallHeadersCountTowardsLimit) {
  HttpServerOptions options;
  options.max_header_bytes = 1024;
  StartServer(options);
  TestClient client(server_->port());
  std::string request = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 200; ++i) absl::StrAppend(&request, "X-", i, ": v\r\n");
  request += "\r\n";
  ASSERT_TRUE(client.Send(request));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 400);
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, LongUrlCountsTowardsHeaderLimit) {
  HttpServerOptions options;
  options.max_header_bytes = 1024;
  StartServer(options);
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send(absl::StrCat("GET /", std::string(4000, 'u'), " HTTP/1.1\r\n\r\n")));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body, R"({"message":"Request header or cookie too large"})");
}

TEST_F(HttpServerTest, MalformedRequestIs400AndCloses) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("THIS IS NOT HTTP\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.body, R"({"message":"Bad request"})");
  EXPECT_EQ(response.Header("Connection"), "close");
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, ErrorAfterGoodPipelinedRequestKeepsOrder) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /ok HTTP/1.1\r\n\r\nBROKEN\x01 / HTTP/1.1\r\n\r\n"));
  auto first = client.ReadResponse();
  auto second = client.ReadResponse();
  ASSERT_TRUE(first.ok);
  ASSERT_TRUE(second.ok);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(second.status, 400);
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, Http10ClosesByDefault) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /old HTTP/1.0\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "GET /old?|");
  EXPECT_EQ(response.Header("Connection"), "close");
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, Http10KeepAliveOnRequest) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto first = client.ReadResponse();
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(first.Header("Connection"), "keep-alive");
  ASSERT_TRUE(client.Send("GET /b HTTP/1.0\r\n\r\n"));
  auto second = client.ReadResponse();
  ASSERT_TRUE(second.ok);
  EXPECT_EQ(second.body, "GET /b?|");
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, ConnectionCloseRequestHeaderCloses) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.Header("Connection"), "close");
  EXPECT_TRUE(client.ReadsEof());
  EXPECT_EQ(RequestCount(), 1u);
}

TEST_F(HttpServerTest, HandlerConnectionCloseCloses) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /close HTTP/1.1\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("Connection"), "close");
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, QueryIsSplitFromPath) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /services/a%20b?size=2&offset=x%3D HTTP/1.1\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  const HttpRequest request = LastRequest();
  EXPECT_EQ(request.target, "/services/a%20b?size=2&offset=x%3D");
  EXPECT_EQ(request.path, "/services/a%20b");
  EXPECT_EQ(request.query, "size=2&offset=x%3D");
  ASSERT_TRUE(client.Send("GET /p? HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(client.ReadResponse().ok);
  EXPECT_EQ(LastRequest().path, "/p");
  EXPECT_EQ(LastRequest().query, "");
}

TEST_F(HttpServerTest, HeadResponseHasLengthButNoBody) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("HEAD /h HTTP/1.1\r\n\r\n"));
  auto head = client.ReadResponse(/*head_request=*/true);
  ASSERT_TRUE(head.ok);
  EXPECT_EQ(head.Header("Content-Length"), std::to_string(std::string("HEAD /h?|").size()));
  // If a body had been sent, it would corrupt the next response's status line.
  ASSERT_TRUE(client.Send("GET /next HTTP/1.1\r\n\r\n"));
  auto next = client.ReadResponse();
  ASSERT_TRUE(next.ok);
  EXPECT_EQ(next.body, "GET /next?|");
}

TEST_F(HttpServerTest, NoContentHasNoBodyOrLength) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /nocontent HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n"));
  auto first = client.ReadResponse();
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(first.status, 204);
  EXPECT_FALSE(first.HasHeader("Content-Length"));
  auto next = client.ReadResponse();
  ASSERT_TRUE(next.ok);
  EXPECT_EQ(next.body, "GET /next?|");
}

TEST_F(HttpServerTest, HalfClosedPeerStillGetsResponse) {
  StartServer();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /half HTTP/1.1\r\n\r\n"));
  client.ShutdownWrite();
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.body, "GET /half?|");
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, PartialRequestThenEofIsDropped) {
  StartServer();
  {
    TestClient client(server_->port());
    ASSERT_TRUE(client.Send("GET /partial HTTP/1.1\r\nHost: x"));
    client.ShutdownWrite();
    EXPECT_TRUE(client.ReadsEof());
  }
  EXPECT_EQ(RequestCount(), 0u);
  TestClient again(server_->port());  // the server is still healthy
  ASSERT_TRUE(again.Send("GET / HTTP/1.1\r\n\r\n"));
  EXPECT_TRUE(again.ReadResponse().ok);
}

TEST_F(HttpServerTest, IdleConnectionIsClosedAfterTimeout) {
  HttpServerOptions options;
  options.idle_timeout_ms = 200;
  StartServer(options);
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /partial HTTP/1.1\r\n"));  // slowloris-style partial head
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.ReadsEof());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST_F(HttpServerTest, LargeResponsesWithBackpressure) {
  HttpServerOptions options;
  options.max_pending_write_bytes = 64 * 1024;
  StartServer(options);
  TestClient client(server_->port());
  std::string requests;
  for (int i = 0; i < 20; ++i) requests += "GET /big HTTP/1.1\r\n\r\n";
  ASSERT_TRUE(client.Send(requests));
  for (int i = 0; i < 20; ++i) {
    auto response = client.ReadResponse();
    ASSERT_TRUE(response.ok) << i;
    EXPECT_EQ(response.body.size(), 256u * 1024u);
  }
}

TEST_F(HttpServerTest, StopWithOpenConnectionsReturnsPromptly) {
  StartServer();
  TestClient idle(server_->port());
  TestClient partial(server_->port());
  TestClient served(server_->port());
  ASSERT_TRUE(partial.Send("POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc"));
  ASSERT_TRUE(served.Send("GET / HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(served.ReadResponse().ok);
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_TRUE(idle.ReadsEof());
  EXPECT_TRUE(partial.ReadsEof());
  EXPECT_TRUE(served.ReadsEof());
  server_->Stop();  // idempotent
  TestClient refused(server_->port());
  EXPECT_FALSE(refused.connected());
}

TEST_F(HttpServerTest, ManyConcurrentClients) {
  StartServer();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      TestClient client(server_->port());
      for (int i = 0; i < 20; ++i) {
        const std::string path = absl::StrCat("/t", t, "/", i);
        if (!client.Send(absl::StrCat("GET ", path, " HTTP/1.1\r\n\r\n"))) return;
        auto response = client.ReadResponse();
        if (response.ok && response.body == absl::StrCat("GET ", path, "?|")) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 160);
}

TEST(HttpServerStartTest, RejectsBadAddress) {
  auto handler = [](const HttpRequest&) { return HttpResponse{}; };
  auto server = HttpServer::Start("not-an-ip", 0, handler);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(HttpServer::Start("127.0.0.1", 0, nullptr).ok());
}

TEST(HttpServerStartTest, PortInUseIsUnavailable) {
  auto handler = [](const HttpRequest&) { return HttpResponse{}; };
  auto first = HttpServer::Start("127.0.0.1", 0, handler);
  ASSERT_TRUE(first.ok());
  auto second = HttpServer::Start("127.0.0.1", (*first)->port(), handler);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(HttpServerStartTest, BindsIpv6Loopback) {
  auto handler = [](const HttpRequest& r) { return HttpResponse::Json(200, r.peer_ip); };
  auto server = HttpServer::Start("[::1]", 0, handler);
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback: " << server.status();
  const int fd = socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons((*server)->port());
  addr.sin6_addr = in6addr_loopback;
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string request = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string received;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) received.append(buffer, n);
  close(fd);
  EXPECT_TRUE(absl::StartsWith(received, "HTTP/1.1 200 OK\r\n")) << received;
  EXPECT_TRUE(absl::EndsWith(received, "::1")) << received;
}

// ---- parsing edge cases, as llhttp 8.1 (non-strict build) treats them ----
struct ParseCase {
  const char* name;
  std::string raw;
  int expected_status;
  bool expect_close;
};

void PrintTo(const ParseCase& c, std::ostream* os) { *os << c.name; }

class HttpParseEdgeCaseTest : public HttpServerTest, public testing::WithParamInterface<ParseCase> {};

TEST_P(HttpParseEdgeCaseTest, StatusAndConnectionFate) {
  StartServer();
  const ParseCase& c = GetParam();
  TestClient client(server_->port());
  ASSERT_TRUE(client.Send(c.raw));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.ok);
  EXPECT_EQ(response.status, c.expected_status);
  if (c.expect_close) {
    ASSERT_TRUE(response.HasHeader("Connection"));
    EXPECT_EQ(response.Header("Connection"), "close");
    EXPECT_TRUE(client.ReadsEof());
  } else {
    EXPECT_FALSE(response.HasHeader("Connection"));
    ASSERT_TRUE(client.Send("GET /again HTTP/1.1\r\n\r\n"));
    auto again = client.ReadResponse();
    ASSERT_TRUE(again.ok);
    EXPECT_EQ(again.status, 200);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Llhttp, HttpParseEdgeCaseTest,
    testing::Values(
        // The server shares the proxy's HTTP/1 codec, which refuses obs-fold (RFC 9112 §5.2 allows it).
        ParseCase{"ObsFoldHeader", "GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n", 400, true},
        ParseCase{"BadChunkSize", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n", 400, true},
        ParseCase{"InvalidMethod", "FETCH / HTTP/1.1\r\n\r\n", 400, true},
        ParseCase{"LowercaseMethod", "get / HTTP/1.1\r\n\r\n", 400, true},
        ParseCase{"LfOnlyLineEndingsRejected", "GET / HTTP/1.1\nHost: x\n\n", 400, true},
        ParseCase{"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, true},
        ParseCase{"ContentLengthAndChunked",
                  "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400, true},
        ParseCase{"DuplicateContentLength", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, true},
        ParseCase{"NegativeContentLength", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, true},
        ParseCase{"ChunkedNotLast", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, true},
        ParseCase{"BadVersion", "GET / HTTP/7.1\r\n\r\n", 400, true},
        ParseCase{"Http09RequestLine", "GET /\r\n\r\n", 400, true},
        ParseCase{"NulInHeaderValue", std::string("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 27), 400, true},
        ParseCase{"NonTokenHeaderName", "GET / HTTP/1.1\r\nX(A): v\r\n\r\n", 400, true},
        ParseCase{"EmptyHeaderValueIsFine", "GET / HTTP/1.1\r\nX-A:\r\n\r\n", 200, false},
        ParseCase{"Http11WithoutHostIsAccepted", "GET / HTTP/1.1\r\n\r\n", 200, false},
        ParseCase{"ControlCharInUrl", "GET /a\x7f HTTP/1.1\r\n\r\n", 400, true},
        ParseCase{"UpgradeIsAnsweredThenClosed", "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 200, true},
        ParseCase{"ConnectIsAnsweredThenClosed", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 200, true}),
    [](const testing::TestParamInfo<ParseCase>& info) { return std::string(info.param.name); });


TEST_F(HttpServerTest, BeginStopFinishesARequestInFlightClosesIdleOnesAndRefusesNewOnes) {
  StartServer();
  TestClient idle(server_->port());
  ASSERT_TRUE(idle.Send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_EQ(idle.ReadResponse().status, 200);
  auto busy = std::make_unique<TestClient>(server_->port());
  ASSERT_TRUE(busy->Send("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello"));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server_->BeginStop(5000);
  idle.set_deadline(std::chrono::steady_clock::now() + std::chrono::seconds(2));
  test_support::HttpReply closed = idle.ReadResponse();
  EXPECT_FALSE(closed.ok);
  EXPECT_TRUE(closed.peer_closed);
  TestClient refused(server_->port());
  EXPECT_FALSE(refused.connected());
  ASSERT_TRUE(busy->Send("world"));
  test_support::HttpReply answered = busy->ReadResponse();
  ASSERT_TRUE(answered.ok) << answered.error;
  EXPECT_EQ(answered.status, 200);
  EXPECT_EQ(answered.body, R"(POST /b?|helloworld)");
  EXPECT_EQ(answered.Header("Connection"), "close");
  busy.reset();  // the client closes as told
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();  // the last connection is gone: no wait for the grace period
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(HttpServerTest, BeginStopAnswersAConnectionAcceptedBeforeItWhoseRequestComesAfter) {
  StartServer();
  auto fresh = std::make_unique<TestClient>(server_->port());
  ASSERT_TRUE(fresh->connected());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // accepted by the server
  server_->BeginStop(5000);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fresh->Send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n"));
  test_support::HttpReply answered = fresh->ReadResponse();
  ASSERT_TRUE(answered.ok) << answered.error;
  EXPECT_EQ(answered.status, 200);
  EXPECT_EQ(answered.Header("Connection"), "close");
  fresh.reset();
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(HttpServerTest, BeginStopClosesWhatIsLeftAfterTheGracePeriod) {
  StartServer();
  TestClient stuck(server_->port());
  ASSERT_TRUE(stuck.Send("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel"));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto start = std::chrono::steady_clock::now();
  server_->BeginStop(300);
  server_->Stop();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(250));
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_FALSE(stuck.ReadResponse().ok);
}

}  // namespace
}  // namespace portico
