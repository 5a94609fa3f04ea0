// Socket-free tests of the HTTP/1 pieces: head building, framing choice, target splitting, the
// llhttp wrapper and RuntimeConfig compilation.
#include "data_plane/proxy/http1_messages.h"

#include <arpa/inet.h>

#include <cctype>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/common/collecting_codec.h"
#include "common/http/known_headers.h"
#include "data_plane/pipeline/upstream_request.h"
#include "data_plane/proxy/runtime_config.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

using dp::BuildUpstreamRequestHead;
using dp::kMsgNoRoute;
using dp::UpstreamRequestParams;
using test_support::CollectingCodec;

TEST(Http1ParserTest, CollectsHeadBodyAndStopsAtMessageBoundary) {
  CollectingCodec parser(Http1Codec::Kind::kRequest, 4096);
  CollectingCodec& collector = parser;
  const std::string input =
      "POST /a?b HTTP/1.1\r\nHost: x\r\nEmpty:\r\nX-Long: 1\r\nContent-Length: 3\r\n\r\nabc"
      "GET /next HTTP/1.0\r\n\r\n";
  CollectingCodec::Result r = parser.Execute(input.data(), input.size());
  ASSERT_EQ(r.outcome, Http1Codec::Event::kMessageDone);
  ASSERT_EQ(collector.heads.size(), 1u);
  const MessageHead& head = collector.heads[0];
  EXPECT_EQ(head.method, "POST");
  EXPECT_EQ(head.url, "/a?b");
  ASSERT_EQ(head.headers.size(), 4u);
  EXPECT_EQ(head.headers[1].first, "Empty");
  EXPECT_EQ(head.headers[1].second, "");
  EXPECT_EQ(head.headers[2].first, "X-Long");
  EXPECT_TRUE(head.has_content_length);
  EXPECT_TRUE(head.keep_alive);
  EXPECT_EQ(collector.body, "abc");
  EXPECT_EQ(input.substr(r.consumed), "GET /next HTTP/1.0\r\n\r\n");

  CollectingCodec::Result second = parser.Execute(input.data() + r.consumed, input.size() - r.consumed);
  EXPECT_EQ(second.outcome, Http1Codec::Event::kMessageDone);
  ASSERT_EQ(collector.heads.size(), 2u);
  EXPECT_EQ(collector.heads[1].version_minor, 0);
  EXPECT_FALSE(collector.heads[1].keep_alive);
}

TEST(Http1ParserTest, ReusedHeaderStringsNeverLeakBetweenMessages) {
  // The parser recycles header strings of earlier messages: every head must still carry exactly
  // its own headers, whatever the previous message looked like.
  CollectingCodec parser(Http1Codec::Kind::kRequest, 16384);
  CollectingCodec& collector = parser;
  const std::string long_value(300, 'v');
  const std::vector<std::string> messages = {
      absl::StrCat("GET /1 HTTP/1.1\r\nHost: first.example\r\nX-A: ", long_value, "\r\nX-B: b\r\n\r\n"),
      "GET /2 HTTP/1.1\r\nH: 2\r\n\r\n",
      "GET /3 HTTP/1.1\r\nOne: 1\r\nTwo: 22\r\nThree: 333\r\nFour: 4444\r\nEmpty:\r\n\r\n",
      "GET /4 HTTP/1.1\r\n\r\n",
  };
  std::string input;
  for (const std::string& message : messages) input += message;
  size_t offset = 0;
  while (offset < input.size()) {
    const CollectingCodec::Result r = parser.Execute(input.data() + offset, input.size() - offset);
    ASSERT_EQ(r.outcome, Http1Codec::Event::kMessageDone);
    offset += r.consumed;
  }
  ASSERT_EQ(collector.heads.size(), 4u);
  ASSERT_EQ(collector.heads[0].headers.size(), 3u);
  EXPECT_EQ(collector.heads[0].headers[1].second, long_value);
  ASSERT_EQ(collector.heads[1].headers.size(), 1u);
  EXPECT_EQ(collector.heads[1].headers[0], std::make_pair(std::string("H"), std::string("2")));
  EXPECT_EQ(collector.heads[1].url, "/2");
  ASSERT_EQ(collector.heads[2].headers.size(), 5u);
  EXPECT_EQ(collector.heads[2].headers[0], std::make_pair(std::string("One"), std::string("1")));
  EXPECT_EQ(collector.heads[2].headers[3], std::make_pair(std::string("Four"), std::string("4444")));
  EXPECT_EQ(collector.heads[2].headers[4], std::make_pair(std::string("Empty"), std::string()));
  EXPECT_TRUE(collector.heads[3].headers.empty());
  EXPECT_EQ(collector.heads[3].url, "/4");
  EXPECT_EQ(collector.heads[3].Find("host"), nullptr);
}

TEST(Http1MessagesTest, ConnectionListedHeadersAreHopByHopCaseInsensitively) {
  MessageHead head;
  head.headers = {{"Connection", " Keep-Alive , X-Secret,x-other "}, {"X-Secret", "s"}};
  const HopByHopFilter filter(head);
  EXPECT_TRUE(filter.IsHopByHop("x-secret"));
  EXPECT_TRUE(filter.IsHopByHop("X-OTHER"));
  EXPECT_TRUE(filter.IsHopByHop("keep-alive"));
  EXPECT_TRUE(filter.IsHopByHop("Transfer-Encoding"));
  EXPECT_FALSE(filter.IsHopByHop("X-Public"));
}

TEST(Http1ParserTest, HeadLimitAndMalformedInput) {
  CollectingCodec small(Http1Codec::Kind::kRequest, 1024);
  const std::string big = "GET / HTTP/1.1\r\nX: " + std::string(2000, 'x') + "\r\n\r\n";
  EXPECT_EQ(small.Execute(big.data(), big.size()).outcome, Http1Codec::Event::kHeadTooLarge);
  CollectingCodec bad(Http1Codec::Kind::kRequest, 1024);
  const std::string junk = "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(bad.Execute(junk.data(), junk.size()).outcome, Http1Codec::Event::kError);
}

TEST(Http1ParserTest, ResponseUntilCloseFinishesOnEof) {
  CollectingCodec parser(Http1Codec::Kind::kResponse, 4096);
  CollectingCodec& collector = parser;
  const std::string input = "HTTP/1.1 200 OK\r\n\r\nbody";
  EXPECT_EQ(parser.Execute(input.data(), input.size()).outcome, Http1Codec::Event::kNeedMore);
  EXPECT_TRUE(parser.codec.NeedsEof());
  EXPECT_EQ(parser.codec.Finish(), Http1Codec::Event::kMessageDone);
  EXPECT_EQ(collector.body, "body");
  EXPECT_EQ(collector.heads[0].status, 200);
  EXPECT_EQ(collector.heads[0].reason, "OK");
}

MessageHead RequestHead() {
  MessageHead head;
  head.method = "GET";
  head.url = "/r/x";
  head.headers = {{"Host", "a.com:8000"},   {"Connection", "keep-alive, X-Hop"}, {"X-Hop", "1"},
                  {"X-Forwarded-For", "1.1.1.1"}, {"X-Forwarded-For", "2.2.2.2"}, {"Accept", "*/*"},
                  {"Upgrade", "websocket"},    {"Expect", "100-continue"}};
  return head;
}

TEST(Http1MessagesTest, UpstreamHeadRewritesOnlyWhatMustChange) {
  UpstreamRequestParams params;
  params.upstream_path = "/s/x";
  params.query = "a=1";
  params.has_query = true;
  params.host_header = "backend:8080";
  params.client_ip = "10.0.0.1";
  params.client_host = "a.com";
  params.local_port = 8000;
  const std::string head = BuildUpstreamRequestHead(RequestHead(), params);
  EXPECT_TRUE(absl::StartsWith(head, "GET /s/x?a=1 HTTP/1.1\r\nHost: backend:8080\r\n")) << head;
  EXPECT_TRUE(absl::StrContains(head, "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.1\r\n")) << head;
  EXPECT_TRUE(absl::StrContains(head, "Accept: */*\r\n"));
  EXPECT_TRUE(absl::StrContains(head, "X-Forwarded-Host: a.com\r\n"));
  EXPECT_TRUE(absl::StrContains(head, "X-Forwarded-Port: 8000\r\n"));
  EXPECT_FALSE(absl::StrContains(head, "X-Hop"));
  EXPECT_FALSE(absl::StrContains(head, "Connection"));
  EXPECT_FALSE(absl::StrContains(head, "Upgrade"));
  EXPECT_FALSE(absl::StrContains(head, "Expect"));
  EXPECT_TRUE(absl::EndsWith(head, "\r\n\r\n"));
  EXPECT_TRUE(absl::StrContains(head, "X-Forwarded-Proto: http\r\n")) << head;

  params.forwarded_proto = "https";  // a request that came over TLS
  params.local_port = 8443;
  const std::string over_tls = BuildUpstreamRequestHead(RequestHead(), params);
  EXPECT_TRUE(absl::StrContains(over_tls, "X-Forwarded-Proto: https\r\n")) << over_tls;
  EXPECT_TRUE(absl::StrContains(over_tls, "X-Forwarded-Port: 8443\r\n")) << over_tls;
  EXPECT_FALSE(absl::StrContains(over_tls, "X-Forwarded-Proto: http\r\n")) << over_tls;
}

TEST(Http1MessagesTest, QueryIsForwardedAsReceivedExceptRawBytesAbove0x7f) {
  UpstreamRequestParams params;
  params.upstream_path = "/x";
  params.query = "a=%zz&b=\xc3\xa9&c=%20+d\xff";
  params.has_query = true;
  params.host_header = "backend";
  params.client_ip = "10.0.0.1";
  const std::string head = BuildUpstreamRequestHead(RequestHead(), params);
  EXPECT_TRUE(absl::StartsWith(head, "GET /x?a=%zz&b=%C3%A9&c=%20+d%FF HTTP/1.1\r\n")) << head;
}

TEST(Http1MessagesTest, ResponseFraming) {
  MessageHead response;
  response.status = 200;
  EXPECT_EQ(ChooseResponseFraming(response, false, true), ResponseFraming::kChunked);
  EXPECT_EQ(ChooseResponseFraming(response, false, false), ResponseFraming::kUntilClose);
  EXPECT_EQ(ChooseResponseFraming(response, true, true), ResponseFraming::kHeadResponse);
  response.has_content_length = true;
  EXPECT_EQ(ChooseResponseFraming(response, false, false), ResponseFraming::kContentLength);
  response.status = 304;
  EXPECT_EQ(ChooseResponseFraming(response, false, true), ResponseFraming::kNoBody);
  EXPECT_EQ(ChooseResponseFraming(response, true, true), ResponseFraming::kNoBody);
  response.status = 204;
  EXPECT_EQ(ChooseResponseFraming(response, false, true), ResponseFraming::kNoBody);

  MessageHead chunked;
  chunked.status = 201;
  chunked.reason = "Made";
  chunked.chunked = true;
  chunked.headers = {{"Transfer-Encoding", "chunked"}, {"Keep-Alive", "timeout=4"}, {"X-A", "b"}};
  const std::string head =
      BuildDownstreamResponseHead(chunked, ResponseFraming::kChunked, /*keep_alive=*/false, true);
  EXPECT_TRUE(absl::StartsWith(head, "HTTP/1.1 201 Made\r\nX-A: b\r\nVia: 1.1 portico/")) << head;
  EXPECT_TRUE(absl::StrContains(head, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")) << head;
  EXPECT_FALSE(absl::StrContains(head, "Keep-Alive"));
}

TEST(Http1MessagesTest, StepsReplaceOrClearUpstreamResponseHeaders) {
  MessageHead response;
  response.status = 200;
  response.has_content_length = true;
  response.headers = {{"access-control-allow-origin", "*"}, {"Vary", "Accept"}, {"X-A", "b"}};
  const std::pair<std::string, std::string> added[] = {{"Vary", "Origin"},
                                                       {"Access-Control-Allow-Origin", "https://a.example"}};
  const absl::string_view removed[] = {"access-control-allow-origin"};
  const std::string head = BuildDownstreamResponseHead(response, ResponseFraming::kContentLength, true, true, added,
                                                       removed);
  EXPECT_TRUE(absl::StartsWith(head, "HTTP/1.1 200 OK\r\nVary: Accept\r\nX-A: b\r\nVia: ")) << head;
  EXPECT_TRUE(absl::EndsWith(head, "Vary: Origin\r\nAccess-Control-Allow-Origin: https://a.example\r\n\r\n")) << head;
  EXPECT_EQ(head.find("Access-Control-Allow-Origin: *"), std::string::npos) << "replaced, never sent twice";
}

TEST(Http1MessagesTest, KongResponseAndChunks) {
  const std::string response = BuildKongResponse(404, kMsgNoRoute, false);
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 404 Not Found\r\n"));
  EXPECT_TRUE(absl::StrContains(response, "Content-Type: application/json; charset=utf-8\r\n"));
  EXPECT_TRUE(absl::StrContains(response, "Content-Length: 48\r\n"));
  EXPECT_TRUE(absl::EndsWith(response, "\r\n\r\n{\"message\":\"no Route matched with those values\"}"));
  EXPECT_FALSE(absl::StrContains(response, "Connection"));
  char buffer[24];
  EXPECT_EQ(ChunkSizeLine(17, buffer), "11\r\n");
  EXPECT_EQ(ChunkSizeLine(0, buffer), "0\r\n");
  EXPECT_EQ(ChunkSizeLine(65536, buffer), "10000\r\n");
  EXPECT_EQ(ChunkSizeLine(~size_t{0}, buffer), "ffffffffffffffff\r\n");
}

TEST(Http1MessagesTest, ClassifyHeaderRecognisesEveryKnownNameInAnyCaseAndNothingElse) {
  const std::vector<std::pair<std::string, KnownHeader>> known = {
      {"connection", KnownHeader::kConnection},         {"keep-alive", KnownHeader::kKeepAlive},
      {"proxy-connection", KnownHeader::kProxyConnection}, {"te", KnownHeader::kTe},
      {"trailer", KnownHeader::kTrailer},               {"transfer-encoding", KnownHeader::kTransferEncoding},
      {"upgrade", KnownHeader::kUpgrade},               {"host", KnownHeader::kHost},
      {"expect", KnownHeader::kExpect},                 {"content-length", KnownHeader::kContentLength},
      {"via", KnownHeader::kVia},                       {"x-real-ip", KnownHeader::kXRealIp},
      {"x-forwarded-for", KnownHeader::kXForwardedFor}, {"x-forwarded-proto", KnownHeader::kXForwardedProto},
      {"x-forwarded-host", KnownHeader::kXForwardedHost}, {"x-forwarded-port", KnownHeader::kXForwardedPort},
      {"x-forwarded-prefix", KnownHeader::kXForwardedPrefix},
  };
  for (const auto& [name, kind] : known) {
    EXPECT_EQ(ClassifyHeader(name), kind) << name;
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(ClassifyHeader(upper), kind) << upper;
    std::string mixed = name;
    mixed[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(mixed[0])));
    EXPECT_EQ(ClassifyHeader(mixed), kind) << mixed;
    // Near misses: one character longer, shorter, or changed.
    EXPECT_EQ(ClassifyHeader(name + "s"), KnownHeader::kOther) << name;
    EXPECT_EQ(ClassifyHeader(name.substr(0, name.size() - 1)), KnownHeader::kOther) << name;
    std::string changed = name;
    changed.back() = changed.back() == 'z' ? 'y' : 'z';
    EXPECT_EQ(ClassifyHeader(changed), KnownHeader::kOther) << changed;
  }
  for (const char* other : {"", "t", "User-Agent", "Kong-Debug", "Accept", "Content-Type", "X-Forwarded-Path"}) {
    EXPECT_EQ(ClassifyHeader(other), KnownHeader::kOther) << other;
  }
  MessageHead head;
  head.headers = {{"Connection", "close, X-Custom"}, {"X-Custom", "1"}, {"X-Other", "2"}};
  const HopByHopFilter hop(head);
  EXPECT_TRUE(hop.IsHopByHop("x-custom"));
  EXPECT_TRUE(hop.IsHopByHop("TE"));
  EXPECT_FALSE(hop.IsHopByHop("X-Other"));
}

TEST(Http1MessagesTest, StripPortSplitsAsTheRouterDoes) {
  EXPECT_EQ(StripPort("a.com:80"), "a.com");
  EXPECT_EQ(StripPort("[::1]:80"), "[::1]");
  EXPECT_EQ(StripPort("a.com"), "a.com");
  EXPECT_EQ(StripPort("a.com:x"), "a.com:x");  // not a port: the router sees the same name
}

TEST(RuntimeConfigTest, CompilesServiceTargets) {
  config::v1::Service service;
  service.set_id("s1");
  service.set_host("localhost");
  service.set_port(8080);
  absl::StatusOr<dp::UpstreamService> t = dp::CompileUpstreamService(service);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->destinations.size(), 1u);
  EXPECT_EQ(t->destinations.at(0).ip, "127.0.0.1");
  EXPECT_EQ(t->destinations.at(0).pool_key, "127.0.0.1:8080");
  ASSERT_EQ(t->destinations.at(0).address.ss_family, AF_INET);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&t->destinations.at(0).address)->sin_port), 8080);
  EXPECT_EQ(ntohl(reinterpret_cast<const sockaddr_in*>(&t->destinations.at(0).address)->sin_addr.s_addr), 0x7f000001u);
  EXPECT_EQ(t->host_header, "localhost:8080");
  EXPECT_EQ(t->read_timeout_ms, 60000);
  service.set_host("::1");
  service.set_port(80);
  t = dp::CompileUpstreamService(service);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->destinations.size(), 1u);
  EXPECT_EQ(t->destinations.at(0).ip, "::1");
  EXPECT_EQ(t->destinations.at(0).pool_key, "[::1]:80");
  ASSERT_EQ(t->destinations.at(0).address.ss_family, AF_INET6);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6*>(&t->destinations.at(0).address)->sin6_port), 80);
  EXPECT_EQ(t->host_header, "[::1]");
  service.set_host("db.example");
  t = dp::CompileUpstreamService(service);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->destinations.empty());  // a DNS name: no target (this build does not resolve)
  service.set_port(-1);
  EXPECT_FALSE(dp::CompileUpstreamService(service).ok());
  service.set_port(0);  // valid for Kong and the validator: compiles (connecting to it fails)
  EXPECT_TRUE(dp::CompileUpstreamService(service).ok());

  auto set = std::make_shared<ConfigSet>();
  service.set_port(81);
  service.set_host("127.0.0.1");
  service.set_enabled(true);
  set->services.push_back(service);
  ConfigVersion version;
  version.version = 7;
  absl::StatusOr<std::shared_ptr<const RuntimeConfig>> compiled = RuntimeConfig::Compile(set, version);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ((*compiled)->version().version, 7u);
  const dp::UpstreamService* found = (*compiled)->FindService(&set->services[0]);
  ASSERT_NE(found, nullptr);
  ASSERT_EQ(found->destinations.size(), 1u);
  EXPECT_EQ(found->destinations.at(0).port, 81);
  // Only the router's pointers (into this config's services) are looked up.
  config::v1::Service copy = service;
  EXPECT_EQ((*compiled)->FindService(&copy), nullptr);
  EXPECT_EQ((*compiled)->FindService(nullptr), nullptr);
}

}  // namespace
}  // namespace portico::dp

namespace portico::dp {
namespace {

TEST(HttpsRequiredResponseTest, Kong426WithUpgradeHeaders) {
  const std::string response = BuildHttpsRequiredResponse(426, "a.com:8000", "/p?q=1", false);
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 426 Upgrade Required\r\n")) << response;
  EXPECT_TRUE(absl::StrContains(response, "\r\nConnection: Upgrade\r\n"));
  EXPECT_TRUE(absl::StrContains(response, "\r\nUpgrade: TLS/1.2, HTTP/1.1\r\n"));
  EXPECT_TRUE(absl::EndsWith(response, "{\"message\":\"Please use HTTPS protocol\"}"));
  EXPECT_FALSE(absl::StrContains(response, "Location"));
}

TEST(HttpsRequiredResponseTest, RedirectsKeepPathAndQueryAndDropPort) {
  for (int status : {301, 302, 307, 308}) {
    const std::string response =
        BuildHttpsRequiredResponse(status, "Shop.Example.com:8000", "/a%2Fb?x=1&y", true, {{"Kong-Route-Id", "r"}});
    EXPECT_TRUE(absl::StartsWith(response, absl::StrCat("HTTP/1.1 ", status, " "))) << response;
    EXPECT_TRUE(absl::StrContains(response, "\r\nLocation: https://shop.example.com/a%2Fb?x=1&y\r\n")) << response;
    EXPECT_TRUE(absl::StrContains(response, "\r\nContent-Length: 0\r\n"));
    EXPECT_TRUE(absl::StrContains(response, "\r\nConnection: close\r\n"));
    EXPECT_TRUE(absl::StrContains(response, "\r\nKong-Route-Id: r\r\n"));
    EXPECT_TRUE(absl::EndsWith(response, "\r\n\r\n"));
  }
}

TEST(HttpsRequiredResponseTest, UnsetStatusMeans426) {
  EXPECT_TRUE(absl::StartsWith(BuildHttpsRequiredResponse(0, "a", "/", false), "HTTP/1.1 426 "));
}

TEST(KnownHeadersTest, TokenListsGrpcTypesAndConnectionSpecificFields) {
  EXPECT_TRUE(ListHasToken("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(ListHasToken(" h2c ", "h2c"));
  EXPECT_FALSE(ListHasToken("h2c-ish, x", "h2c"));
  EXPECT_FALSE(ListHasToken("", "trailers"));
  EXPECT_TRUE(IsGrpcContentType("application/grpc"));
  EXPECT_TRUE(IsGrpcContentType("Application/GRPC+proto"));
  EXPECT_TRUE(IsGrpcContentType("application/grpc; charset=utf-8"));
  EXPECT_FALSE(IsGrpcContentType("application/grpc-web"));
  EXPECT_FALSE(IsGrpcContentType("application/json"));
  for (const char* name : {"Connection", "keep-alive", "Proxy-Connection", "transfer-encoding", "Upgrade"}) {
    EXPECT_TRUE(IsConnectionSpecific(ClassifyHeader(name))) << name;
  }
  EXPECT_FALSE(IsConnectionSpecific(ClassifyHeader("te")));  // its own rule (trailers only)
  EXPECT_FALSE(IsConnectionSpecific(ClassifyHeader("content-length")));
}

}  // namespace
}  // namespace portico::dp
