// Socket-free tests of the HTTP/2 upstream request's header list and of grpc-timeout parsing.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "data_plane/pipeline/upstream_request.h"
#include "data_plane/proxy/grpc_timeout.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

Headers Http2Headers(const MessageHead& request, const UpstreamRequestParams& params, absl::string_view scheme) {
  Headers out;
  ForEachUpstreamHttp2Header(request, params, scheme, [&](absl::string_view name, absl::string_view value) {
    out.emplace_back(std::string(name), std::string(value));
  });
  return out;
}

MessageHead GrpcRequest() {
  MessageHead head;
  head.method = "POST";
  head.url = "/pkg.Svc/Method";
  head.version_major = 2;
  head.version_minor = 0;
  head.chunked = true;  // an HTTP/2 body without content-length
  head.headers = {{"host", "client.example"},
                  {"content-type", "application/grpc"},
                  {"te", "trailers"},
                  {"x-forwarded-for", "1.1.1.1"},
                  {"connection", "x-hop"},
                  {"x-hop", "1"},
                  {"keep-alive", "5"},
                  {"transfer-encoding", "chunked"},
                  {"upgrade", "h2c"},
                  {"X-Custom-Bin", "AAEC"},
                  {"grpc-timeout", "1S"}};
  return head;
}

TEST(UpstreamHttp2HeadersTest, PseudoHeadersFirstThenEndToEndHeadersAndForwarding) {
  UpstreamRequestParams params;
  params.upstream_path = "/pkg.Svc/Method";
  params.host_header = "backend:50051";
  params.client_ip = "10.0.0.1";
  params.client_host = "client.example";
  params.local_port = 8000;
  params.chunked_body = true;
  const Headers h = Http2Headers(GrpcRequest(), params, "http");
  ASSERT_GE(h.size(), 4u);
  EXPECT_EQ(h[0], (std::pair<std::string, std::string>{":method", "POST"}));
  EXPECT_EQ(h[1], (std::pair<std::string, std::string>{":scheme", "http"}));
  EXPECT_EQ(h[2], (std::pair<std::string, std::string>{":authority", "backend:50051"}));
  EXPECT_EQ(h[3], (std::pair<std::string, std::string>{":path", "/pkg.Svc/Method"}));
  auto find = [&](const std::string& name) -> std::optional<std::string> {
    for (const auto& [n, v] : h) {
      if (n == name) return v;
    }
    return std::nullopt;
  };
  EXPECT_EQ(find("content-type"), "application/grpc");
  EXPECT_EQ(find("te"), "trailers");
  EXPECT_EQ(find("grpc-timeout"), "1S");
  EXPECT_EQ(find("X-Custom-Bin"), "AAEC");  // as sent: the caller lowercases
  EXPECT_EQ(find("x-forwarded-for"), "1.1.1.1, 10.0.0.1");
  EXPECT_EQ(find("x-real-ip"), "10.0.0.1");
  EXPECT_EQ(find("x-forwarded-proto"), "http");
  EXPECT_EQ(find("x-forwarded-host"), "client.example");
  EXPECT_EQ(find("x-forwarded-port"), "8000");
  // RFC 9113 §8.2.2: no connection-specific header; Host is :authority; no framing of HTTP/1.
  for (const char* gone : {"host", "connection", "x-hop", "keep-alive", "transfer-encoding", "upgrade",
                           "content-length"}) {
    EXPECT_FALSE(find(gone).has_value()) << gone;
  }
}

TEST(UpstreamHttp2HeadersTest, TeOtherThanTrailersIsDroppedAndQueryAndLengthKept) {
  MessageHead head = GrpcRequest();
  head.headers = {{"TE", "gzip, trailers"}, {"Content-Length", "12"}};
  head.chunked = false;
  head.has_content_length = true;
  head.content_length = 12;
  UpstreamRequestParams params;
  params.method = "PUT";
  params.upstream_path = "/p";
  params.query = "a=\xff";
  params.has_query = true;
  params.host_header = "h";
  params.client_ip = "10.0.0.1";
  params.has_content_length = true;
  params.content_length = 12;
  const Headers h = Http2Headers(head, params, "https");
  EXPECT_EQ(h[0].second, "PUT");
  EXPECT_EQ(h[1].second, "https");
  EXPECT_EQ(h[3].second, "/p?a=%FF");
  int te = 0;
  for (const auto& [n, v] : h) {
    if (n == "te") {
      ++te;
      EXPECT_EQ(v, "trailers");
    }
    EXPECT_NE(n, "TE");
    EXPECT_NE(n, "Content-Length");
  }
  EXPECT_EQ(te, 1);
  EXPECT_EQ(h.back(), (std::pair<std::string, std::string>{"content-length", "12"}));

  head.headers = {{"te", "gzip"}};
  for (const auto& [n, v] : Http2Headers(head, params, "http")) EXPECT_NE(n, "te");
}

TEST(GrpcTimeoutTest, ParsesEveryUnitRoundingUp) {
  EXPECT_EQ(ParseGrpcTimeoutMs("1H"), 3600 * 1000);
  EXPECT_EQ(ParseGrpcTimeoutMs("2M"), 120 * 1000);
  EXPECT_EQ(ParseGrpcTimeoutMs("3S"), 3000);
  EXPECT_EQ(ParseGrpcTimeoutMs("250m"), 250);
  EXPECT_EQ(ParseGrpcTimeoutMs("1500u"), 2);
  EXPECT_EQ(ParseGrpcTimeoutMs("1n"), 1);
  EXPECT_EQ(ParseGrpcTimeoutMs("0m"), 0);
  EXPECT_EQ(ParseGrpcTimeoutMs("99999999S"), int64_t{99999999} * 1000);
}

TEST(GrpcTimeoutTest, RefusesWhatTheGrammarDoesNotAllow) {
  for (const char* bad : {"", "S", "10", "10s", "123456789S", "-1S", " 1S", "1 S", "1.5S", "1SS"}) {
    EXPECT_FALSE(ParseGrpcTimeoutMs(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace portico::dp
