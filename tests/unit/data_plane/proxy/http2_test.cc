// HTTP/2 downstream on loopback: a real ProxyServer, a blocking HTTP/1.1 test upstream and an
// nghttp2 client (h2_test_client.h) speaking h2c with prior knowledge or through Upgrade: h2c.
#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "data_plane/proxy/http2_client_connection.h"
#include "data_plane/proxy/proxy_server.h"
#include "data_plane/proxy/worker.h"  // kDrainGoAwayDelayMs
#include "gtest/gtest.h"
#include "h2_test_client.h"
#include "proxy_test_util.h"

namespace portico::dp {
namespace {

using testing::H2ClientOptions;
using testing::H2TestClient;
using testing::MakeRoute;
using testing::MakeService;
using testing::ReceivedRequest;
using testing::SimpleResponse;
using testing::TestUpstream;
using testing::UpstreamReply;

// Echoes the body; reports the target and how the body was framed; adds hop-by-hop headers that
// must not reach an HTTP/2 client.
UpstreamReply Echo(const ReceivedRequest& request) {
  UpstreamReply reply;
  reply.raw = SimpleResponse(200, request.body,
                             absl::StrCat("X-Seen-Target: ", request.target, "\r\nX-Seen-Chunked: ",
                                          request.chunked ? "yes" : "no", "\r\nX-Seen-TE: ", request.Header("TE"),
                                          "\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n",
                                          "X-Mixed-Case: Value\r\n"));
  return reply;
}

class Http2Test : public ::testing::Test {
 protected:
  void Start(testing::UpstreamHandler handler = Echo, int64_t client_timeout_ms = 60 * 1000) {
    std::signal(SIGPIPE, SIG_IGN);  // as portico-dp: a GOAWAY written to a client that left
    upstream_ = std::make_unique<TestUpstream>(std::move(handler));
    ProxyOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.workers = 1;
    options.client_timeout_ms = client_timeout_ms;
    absl::StatusOr<std::unique_ptr<ProxyServer>> started = ProxyServer::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    proxy_ = std::move(*started);
    auto set = std::make_shared<ConfigSet>();
    set->services = {MakeService(1, "127.0.0.1", upstream_->port())};
    set->routes = {MakeRoute(2, {"/r"}, testing::Uuid(1))};
    ConfigVersion v;
    v.epoch = std::string(16, 'e');
    v.version = 1;
    absl::StatusOr<std::shared_ptr<const RuntimeConfig>> compiled = RuntimeConfig::Compile(set, v, {}, 1);
    ASSERT_TRUE(compiled.ok()) << compiled.status();
    proxy_->Publish(*compiled);
  }

  std::unique_ptr<TestUpstream> upstream_;  // outlives the proxy
  std::unique_ptr<ProxyServer> proxy_;
};

TEST_F(Http2Test, GetAndPostWithPriorKnowledge) {
  Start();
  H2TestClient client;
  ASSERT_TRUE(client.Connect(proxy_->port()));
  const int32_t get = client.Submit("GET", "/r/a?x=1", {{"te", "trailers"}});
  const std::string body(300 * 1024, 'b');
  const int32_t post = client.Submit("POST", "/r/b", {{"content-length", absl::StrCat(body.size())}}, &body);
  const std::string streamed = "no length given";
  const int32_t chunked = client.Submit("POST", "/r/c", {}, &streamed);
  ASSERT_TRUE(client.WaitClosed(get));
  ASSERT_TRUE(client.WaitClosed(post));
  ASSERT_TRUE(client.WaitClosed(chunked));

  EXPECT_EQ(client.stream(get).status, 200);
  EXPECT_EQ(client.stream(get).Header("x-seen-target"), "/a?x=1");
  EXPECT_EQ(client.stream(get).Header("x-seen-te"), "<absent>");  // hop-by-hop: not forwarded
  // Connection-specific fields from the upstream never reach an HTTP/2 client; names are lowercase.
  EXPECT_EQ(client.stream(get).Header("connection"), "<absent>");
  EXPECT_EQ(client.stream(get).Header("keep-alive"), "<absent>");
  EXPECT_EQ(client.stream(get).Header("x-hop"), "<absent>");
  EXPECT_EQ(client.stream(get).Header("x-mixed-case"), "Value");
  EXPECT_EQ(client.stream(get).Header("via"), "1.1 portico/" PORTICO_VERSION);

  EXPECT_EQ(client.stream(post).status, 200);
  EXPECT_EQ(client.stream(post).body, body);
  EXPECT_EQ(client.stream(post).Header("x-seen-chunked"), "no");
  EXPECT_EQ(client.stream(chunked).body, streamed);
  EXPECT_EQ(client.stream(chunked).Header("x-seen-chunked"), "yes");

  // The upstream got well-formed HTTP/1.1 with a Host from :authority.
  const std::vector<ReceivedRequest> seen = upstream_->requests();
  ASSERT_EQ(seen.size(), 3u);
  for (const ReceivedRequest& r : seen) EXPECT_EQ(r.Header("Host"), "127.0.0.1:" + std::to_string(upstream_->port()));
}

TEST_F(Http2Test, ManyStreamsOnOneConnection) {
  Start();
  H2TestClient client;
  ASSERT_TRUE(client.Connect(proxy_->port()));
  std::vector<int32_t> ids;
  for (int i = 0; i < 60; ++i) {
    const std::string body = absl::StrCat("request ", i);
    ids.push_back(client.Submit("POST", absl::StrCat("/r/", i), {}, &body));
  }
  ASSERT_TRUE(client.RunUntil([&] {
    for (int32_t id : ids) {
      if (!client.stream(id).closed) return false;
    }
    return true;
  }));
  for (int i = 0; i < 60; ++i) {
    EXPECT_EQ(client.stream(ids[i]).status, 200);
    EXPECT_EQ(client.stream(ids[i]).body, absl::StrCat("request ", i));
    EXPECT_EQ(client.stream(ids[i]).Header("x-seen-target"), absl::StrCat("/", i));
  }
}

TEST_F(Http2Test, UpgradeFromHttp11ServesTheRequestAsStreamOne) {
  Start();
  H2TestClient client;
  ASSERT_TRUE(client.ConnectUpgrade(proxy_->port(), "GET", "/r/upgraded"));
  ASSERT_TRUE(client.WaitClosed(1));
  EXPECT_EQ(client.stream(1).status, 200);
  EXPECT_EQ(client.stream(1).Header("x-seen-target"), "/upgraded");
  // The connection then carries more requests.
  const int32_t next = client.Submit("GET", "/r/next");
  ASSERT_TRUE(client.WaitClosed(next));
  EXPECT_EQ(client.stream(next).Header("x-seen-target"), "/next");
  // Neither request carried the upgrade headers upstream.
  for (const ReceivedRequest& r : upstream_->requests()) {
    EXPECT_EQ(r.Header("Upgrade"), "<absent>");
    EXPECT_EQ(r.Header("HTTP2-Settings"), "<absent>");
  }
}

TEST_F(Http2Test, GrpcRequestsGetGatewayErrorsAsGrpcStatus) {
  Start();
  H2TestClient client;
  ASSERT_TRUE(client.Connect(proxy_->port()));
  const int32_t id = client.Submit("POST", "/nowhere/pkg.Svc/Call",
                                   {{"content-type", "application/grpc"}, {"te", "trailers"}});
  const int32_t plain = client.Submit("GET", "/nowhere");
  ASSERT_TRUE(client.WaitClosed(id));
  ASSERT_TRUE(client.WaitClosed(plain));
  EXPECT_EQ(client.stream(id).status, 200);
  EXPECT_EQ(client.stream(id).Header("content-type"), "application/grpc");
  EXPECT_EQ(client.stream(id).Header("grpc-status"), "12");  // 404 → UNIMPLEMENTED
  EXPECT_EQ(client.stream(id).Header("grpc-message"), "no Route matched with those values");
  EXPECT_TRUE(client.stream(id).body.empty());
  EXPECT_EQ(client.stream(plain).status, 404);
  EXPECT_EQ(client.stream(plain).body, "{\"message\":\"no Route matched with those values\"}");
}

TEST_F(Http2Test, MalformedRequestsAreStreamErrorsAndNeverReachTheUpstream) {
  Start();
  H2TestClient client;  // nghttp2's own outbound checks are off: the proxy sees what we send
  ASSERT_TRUE(client.Connect(proxy_->port()));
  const std::string ten = "0123456789";
  const std::string twenty = ten + ten;
  const int32_t upper = client.Submit("GET", "/r/upper", {{"X-Upper", "1"}});
  const int32_t connection = client.Submit("GET", "/r/conn", {{"connection", "keep-alive"}});
  const int32_t te = client.Submit("GET", "/r/te", {{"te", "gzip"}});
  const int32_t too_long = client.Submit("POST", "/r/long", {{"content-length", "10"}}, &twenty);
  const int32_t too_short = client.Submit("POST", "/r/short", {{"content-length", "20"}}, &ten);
  const int32_t ok = client.Submit("GET", "/r/fine");
  for (int32_t id : {upper, connection, te, too_long, too_short, ok}) ASSERT_TRUE(client.WaitClosed(id)) << id;
  for (int32_t id : {upper, connection, te, too_long, too_short}) {
    EXPECT_EQ(client.stream(id).close_error, static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR)) << id;
    EXPECT_EQ(client.stream(id).status, 0) << id;
  }
  EXPECT_EQ(client.stream(ok).status, 200);
  EXPECT_FALSE(client.goaway());
  // Only the good request was ever complete at the upstream.
  const std::vector<ReceivedRequest> seen = upstream_->requests();
  for (const ReceivedRequest& r : seen) {
    std::string all;
    for (const auto& [n, v] : r.headers) absl::StrAppend(&all, n, "=", v, " ");
    SCOPED_TRACE(absl::StrCat(r.target, ": ", all));
    EXPECT_EQ(r.target, "/fine");
  }
  EXPECT_EQ(seen.size(), 1u);
}

TEST_F(Http2Test, BadHpackIsAConnectionError) {
  Start();
  H2TestClient client;
  ASSERT_TRUE(client.Connect(proxy_->port()));
  // HEADERS, END_HEADERS|END_STREAM, stream 1, with an HPACK block that indexes a table entry
  // that does not exist.
  const std::string frame("\x00\x00\x02\x01\x05\x00\x00\x00\x01\xff\x7f", 11);
  ASSERT_TRUE(client.WriteRaw(frame));
  ASSERT_TRUE(client.RunUntil([&] { return client.goaway() || client.connection_closed(); }));
  EXPECT_TRUE(client.goaway());
  EXPECT_EQ(client.goaway_error(), static_cast<uint32_t>(NGHTTP2_COMPRESSION_ERROR));
  // The proxy still serves others.
  H2TestClient other;
  ASSERT_TRUE(other.Connect(proxy_->port()));
  const int32_t id = other.Submit("GET", "/r/after");
  ASSERT_TRUE(other.WaitClosed(id));
  EXPECT_EQ(other.stream(id).status, 200);
}

TEST_F(Http2Test, StreamsAboveTheConcurrencyLimitAreRefused) {
  Start([](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.hang = true;  // every stream stays open
    return reply;
  });
  H2ClientOptions options;
  options.peer_max_concurrent_streams = 1000;  // the client does not hold streams back itself
  H2TestClient client(options);
  ASSERT_TRUE(client.Connect(proxy_->port()));
  const int total = static_cast<int>(kHttp2MaxConcurrentStreams) + 12;
  std::vector<int32_t> ids;
  for (int i = 0; i < total; ++i) ids.push_back(client.SubmitOpen("POST", "/r/hold"));
  auto refused = [&] {
    int n = 0;
    for (int32_t id : ids) {
      n += client.stream(id).reset && client.stream(id).close_error == NGHTTP2_REFUSED_STREAM ? 1 : 0;
    }
    return n;
  };
  ASSERT_TRUE(client.RunUntil([&] { return refused() >= 12; }, 5000)) << refused();
  EXPECT_EQ(refused(), 12);
  EXPECT_FALSE(client.goaway());
  EXPECT_LE(upstream_->accepted(), static_cast<int>(kHttp2MaxConcurrentStreams));
}

TEST_F(Http2Test, RapidResetClientIsCutOffWithoutHurtingOthers) {
  Start();
  H2TestClient attacker;
  ASSERT_TRUE(attacker.Connect(proxy_->port()));
  H2TestClient good;
  ASSERT_TRUE(good.Connect(proxy_->port()));
  int good_ok = 0;
  for (int round = 0; round < 40 && !attacker.goaway() && !attacker.connection_closed(); ++round) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 50; ++i) ids.push_back(attacker.Submit("GET", "/r/flood"));
    attacker.Send();
    for (int32_t id : ids) {
      if (id > 0) attacker.ResetStream(id);
    }
    attacker.Send();
    attacker.RunUntil([&] { return attacker.goaway(); }, 20);
    const int32_t id = good.Submit("GET", "/r/good");
    if (good.WaitClosed(id, 3000) && good.stream(id).status == 200) ++good_ok;
  }
  ASSERT_TRUE(attacker.RunUntil([&] { return attacker.goaway() || attacker.connection_closed(); }, 3000));
  EXPECT_TRUE(attacker.goaway());
  EXPECT_GT(good_ok, 0);
  const int32_t last = good.Submit("GET", "/r/after");
  ASSERT_TRUE(good.WaitClosed(last));
  EXPECT_EQ(good.stream(last).status, 200);
  EXPECT_FALSE(good.goaway());
}

TEST_F(Http2Test, StreamsResetForTheClientsErrorsSpendTheResetBudgetToo) {
  // "MadeYouReset" (CVE-2025-8671): malformed streams the proxy must reset itself (a body longer
  // than its content-length) instead of resets the client sends.
  Start();
  H2TestClient attacker;
  ASSERT_TRUE(attacker.Connect(proxy_->port()));
  const std::string two = "xx";
  for (int round = 0; round < 20 && !attacker.goaway(); ++round) {
    for (int i = 0; i < 50; ++i) attacker.Submit("POST", "/r/made", {{"content-length", "1"}}, &two);
    attacker.RunUntil([&] { return attacker.goaway(); }, 20);
  }
  ASSERT_TRUE(attacker.RunUntil([&] { return attacker.goaway() || attacker.connection_closed(); }, 3000));
  EXPECT_TRUE(attacker.goaway());
  EXPECT_EQ(attacker.goaway_error(), static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  H2TestClient good;
  ASSERT_TRUE(good.Connect(proxy_->port()));
  const int32_t id = good.Submit("GET", "/r/after");
  ASSERT_TRUE(good.WaitClosed(id));
  EXPECT_EQ(good.stream(id).status, 200);
}

TEST_F(Http2Test, PrefaceSplitAcrossReadsStillSwitches) {
  Start();
  H2TestClient client;  // only its socket: the bytes below are written raw
  ASSERT_TRUE(client.Connect(proxy_->port()));
  ASSERT_EQ(send(client.fd(), "PRI", 3, MSG_NOSIGNAL), 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a read of its own
  const std::string rest = std::string(" * HTTP/2.0\r\n\r\nSM\r\n\r\n") + std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
  ASSERT_EQ(send(client.fd(), rest.data(), rest.size(), MSG_NOSIGNAL), static_cast<ssize_t>(rest.size()));
  // An HTTP/2 server answers with its SETTINGS frame (type 4), not an HTTP/1.1 400.
  timeval timeout{5, 0};
  setsockopt(client.fd(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char buffer[9] = {};
  ASSERT_EQ(recv(client.fd(), buffer, 9, MSG_WAITALL), 9);
  EXPECT_NE(std::string(buffer, 4), "HTTP");
  EXPECT_EQ(buffer[3], 0x04);
}

TEST_F(Http2Test, SlowReaderIsBoundedByFlowControlAndGetsEverything) {
  const std::string big(2 * 1024 * 1024, 'x');
  Start([&](const ReceivedRequest&) {
    UpstreamReply reply;
    reply.raw = SimpleResponse(200, big);
    return reply;
  });
  H2ClientOptions options;
  options.manual_window = true;
  H2TestClient client(options);
  ASSERT_TRUE(client.Connect(proxy_->port()));
  const int32_t id = client.Submit("GET", "/r/big");
  // Without window updates the proxy sends at most the initial window.
  client.RunUntil([&] { return false; }, 500);
  EXPECT_LE(client.stream(id).body.size(), 65535u);
  EXPECT_GT(client.stream(id).body.size(), 0u);
  // Reading resumes the response, which arrives whole.
  size_t consumed = 0;
  ASSERT_TRUE(client.RunUntil(
      [&] {
        const size_t have = client.stream(id).body.size();
        if (have > consumed) {
          client.Consume(id, have - consumed);
          consumed = have;
        }
        return client.stream(id).closed;
      },
      10000));
  EXPECT_EQ(client.stream(id).status, 200);
  EXPECT_EQ(client.stream(id).body.size(), big.size());
  EXPECT_EQ(client.stream(id).body, big);
}

TEST_F(Http2Test, AStreamHeldByAClosedWindowIsResetAfterTheClientTimeout) {
  const std::string big(512 * 1024, 'y');
  Start(
      [&](const ReceivedRequest& request) {
        UpstreamReply reply;
        reply.raw = SimpleResponse(200, request.method == "HEAD" ? "" : big);
        return reply;
      },
      /*client_timeout_ms=*/400);
  H2ClientOptions options;
  options.manual_window = true;
  H2TestClient client(options);
  ASSERT_TRUE(client.Connect(proxy_->port()));
  const int32_t held = client.Submit("GET", "/r/held");
  // Other streams keep the connection busy meanwhile; the held one is still reset in time.
  const auto started = std::chrono::steady_clock::now();
  int others = 0;
  while (!client.stream(held).closed && std::chrono::steady_clock::now() - started < std::chrono::seconds(5)) {
    const int32_t other = client.Submit("HEAD", "/r/other");
    ASSERT_TRUE(client.WaitClosed(other));
    EXPECT_EQ(client.stream(other).status, 200);
    ++others;
    client.RunUntil([&] { return client.stream(held).closed; }, 100);
  }
  ASSERT_TRUE(client.stream(held).closed);
  EXPECT_EQ(client.stream(held).close_error, static_cast<uint32_t>(NGHTTP2_CANCEL));
  EXPECT_LT(client.stream(held).body.size(), big.size());
  EXPECT_GT(others, 1);
  EXPECT_FALSE(client.goaway());
  const int32_t after = client.Submit("HEAD", "/r/after");
  ASSERT_TRUE(client.WaitClosed(after));
  EXPECT_EQ(client.stream(after).status, 200);
}

TEST_F(Http2Test, IdleConnectionGetsGoawayAndClose) {
  Start(Echo, /*client_timeout_ms=*/300);
  H2TestClient client;
  ASSERT_TRUE(client.Connect(proxy_->port()));
  const int32_t id = client.Submit("GET", "/r/once");
  ASSERT_TRUE(client.WaitClosed(id));
  ASSERT_TRUE(client.RunUntil([&] { return client.connection_closed(); }, 3000));
  EXPECT_TRUE(client.goaway());
  EXPECT_EQ(client.goaway_error(), static_cast<uint32_t>(NGHTTP2_NO_ERROR));
}

TEST_F(Http2Test, StoppingTheProxySendsGoaway) {
  Start();
  H2TestClient client;
  ASSERT_TRUE(client.Connect(proxy_->port()));
  const int32_t id = client.Submit("GET", "/r/before");
  ASSERT_TRUE(client.WaitClosed(id));
  proxy_->Stop();
  ASSERT_TRUE(client.RunUntil([&] { return client.connection_closed(); }, 3000));
  EXPECT_TRUE(client.goaway());
}

TEST_F(Http2Test, AConnectionWhosePrefaceComesAfterTheDrainBeganIsServed) {
  Start();
  H2TestClient client;
  ASSERT_TRUE(client.Connect(proxy_->port()));  // connected; the preface is only queued
  ASSERT_TRUE(testing::WaitFor([&] { return proxy_->connections_active() == 1; }));
  proxy_->BeginDrain();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // The preface alone (as after a TLS handshake that chose h2: the switch comes before any stream).
  ASSERT_TRUE(client.Send());
  const auto preface_sent = std::chrono::steady_clock::now();  // the switch, so the notice, follows
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Two streams sent before the client reads any GOAWAY: both are served.
  const int32_t first = client.Submit("GET", "/r/first");
  const int32_t second = client.Submit("GET", "/r/second");
  ASSERT_TRUE(client.RunUntil([&] { return client.stream(first).closed && client.stream(second).closed; }));
  EXPECT_EQ(client.stream(first).status, 200);
  EXPECT_EQ(client.stream(second).status, 200);
  // The notice (last id 2^31-1) came first; the final GOAWAY follows kDrainGoAwayDelayMs later
  // (nghttp2, as a client, reads nothing after a GOAWAY once its streams are done), then the
  // connection closes and the drain ends.
  ASSERT_FALSE(client.goaway_last_stream_ids().empty());
  EXPECT_EQ(client.goaway_last_stream_ids().front(), (1u << 31) - 1);
  ASSERT_TRUE(client.RunUntil([&] { return client.connection_closed(); }, 4000));
  // Timed from the switch on the worker's loop clock (whole milliseconds, cached per iteration).
  EXPECT_GE(std::chrono::steady_clock::now() - preface_sent, std::chrono::milliseconds(kDrainGoAwayDelayMs - 50));
  EXPECT_TRUE(testing::WaitFor([&] { return proxy_->drained(); }));
  proxy_->Stop();
}

TEST(GrpcStatusTest, MapsHttpStatusAndEncodesMessages) {
  EXPECT_EQ(GrpcStatusForHttpStatus(404), 12);
  EXPECT_EQ(GrpcStatusForHttpStatus(401), 16);
  EXPECT_EQ(GrpcStatusForHttpStatus(403), 7);
  EXPECT_EQ(GrpcStatusForHttpStatus(503), 14);
  EXPECT_EQ(GrpcStatusForHttpStatus(504), 4);
  EXPECT_EQ(GrpcStatusForHttpStatus(500), 2);
  EXPECT_EQ(PercentEncodeGrpcMessage("a 100% ok\n\xc3\xa9"), "a 100%25 ok%0A%C3%A9");
}

}  // namespace
}  // namespace portico::dp
