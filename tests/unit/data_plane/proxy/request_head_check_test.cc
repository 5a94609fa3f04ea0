// Socket-free tests of what the proxy refuses before anything is forwarded: the parser's rules on
// top of llhttp (obs-fold, chunk CRLF, header tokens), the request-head rules (target, Host,
// Transfer-Encoding, version) and the framing headers the proxy writes itself.
#include "common/http/http1_checks.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "data_plane/proxy/http1_messages.h"
#include "data_plane/pipeline/upstream_request.h"
#include "tests/common/collecting_codec.h"
#include "gtest/gtest.h"

namespace portico::dp {
namespace {

using dp::BuildUpstreamRequestHead;
using dp::UpstreamRequestParams;
using test_support::CollectingCodec;

// Feeds `input` split at `split` (two Execute calls) to `collector`, stopping at the first
// complete message.
Http1Codec::Event ParseSplit(const std::string& input, size_t split, CollectingCodec* collector) {
  CollectingCodec::Result first = collector->Execute(input.data(), split);
  if (first.outcome != Http1Codec::Event::kNeedMore) return first.outcome;
  return collector->Execute(input.data() + split, input.size() - split).outcome;
}

Http1Codec::Event ParseRequest(const std::string& input, CollectingCodec* collector) {
  return ParseSplit(input, input.size(), collector);
}

MessageHead ParsedHead(const std::string& input) {
  CollectingCodec collector(Http1Codec::Kind::kRequest);
  collector.Execute(input.data(), input.size());
  return collector.heads.empty() ? MessageHead() : collector.heads[0];
}

TEST(Http1ParserStrictnessTest, ChunkDataMustBeFollowedByCrlfAtEverySplitPoint) {
  const std::string good = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  const std::string bad = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n";
  for (size_t split = 0; split <= good.size(); ++split) {
    CollectingCodec collector(Http1Codec::Kind::kRequest);
    EXPECT_EQ(ParseSplit(good, split, &collector), Http1Codec::Event::kMessageDone)
        << "split " << split;
    EXPECT_EQ(collector.body, "hello") << "split " << split;
  }
  for (size_t split = 0; split <= bad.size(); ++split) {
    CollectingCodec collector(Http1Codec::Kind::kRequest);
    EXPECT_EQ(ParseSplit(bad, split, &collector), Http1Codec::Event::kError)
        << "split " << split;
  }
  // Only one of the two bytes wrong, and a chunked response.
  CollectingCodec collector(Http1Codec::Kind::kRequest);
  EXPECT_EQ(ParseRequest("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\rX0\r\n\r\n",
                         &collector),
            Http1Codec::Event::kError);
  const std::string response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokZZ0\r\n\r\n";
  CollectingCodec response_codec(Http1Codec::Kind::kResponse);
  EXPECT_EQ(ParseSplit(response, response.size(), &response_codec),
            Http1Codec::Event::kError);
}

TEST(Http1ParserStrictnessTest, ObsFoldIsRefusedAtEverySplitPointButSplitValuesAreNot) {
  const std::string folded = "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n";
  const std::string folded_empty = "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n";
  const std::string spaced = "GET / HTTP/1.1\r\nHost: a\r\nX-A: one two  three\r\n\r\n";
  for (size_t split = 0; split <= folded.size(); ++split) {
    CollectingCodec collector(Http1Codec::Kind::kRequest);
    EXPECT_EQ(ParseSplit(folded, split, &collector), Http1Codec::Event::kError)
        << "split " << split;
  }
  for (size_t split = 0; split <= folded_empty.size(); ++split) {
    CollectingCodec collector(Http1Codec::Kind::kRequest);
    EXPECT_EQ(ParseSplit(folded_empty, split, &collector),
              Http1Codec::Event::kError)
        << "split " << split;
  }
  for (size_t split = 0; split <= spaced.size(); ++split) {
    CollectingCodec collector(Http1Codec::Kind::kRequest);
    ASSERT_EQ(ParseSplit(spaced, split, &collector),
              Http1Codec::Event::kMessageDone)
        << "split " << split;
    EXPECT_EQ(*collector.heads[0].Find("x-a"), "one two  three") << "split " << split;
  }
  CollectingCodec response_codec(Http1Codec::Kind::kResponse);
  EXPECT_EQ(ParseSplit("HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\nContent-Length: 0\r\n\r\n", 48, &response_codec),
            Http1Codec::Event::kError);
}

TEST(Http1ParserStrictnessTest, MalformedSyntaxIsRefused) {
  const std::vector<std::string> refused = {
      "GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",                        // space before the colon
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",                      // bare CR in a value
      "GET / HTTP/1.1\nHost: a\n\n",                                        // bare LF line ends
      std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 36),      // NUL in a value
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
  };
  for (const std::string& input : refused) {
    CollectingCodec collector(Http1Codec::Kind::kRequest);
    EXPECT_EQ(ParseRequest(input, &collector), Http1Codec::Event::kError) << input;
  }
}

TEST(RequestTargetTest, OriginAndAbsoluteFormsOnly) {
  RequestTarget t;
  ASSERT_TRUE(ParseRequestTarget("/a/b?x=1?y", &t));
  EXPECT_EQ(t.path, "/a/b");
  EXPECT_EQ(t.query, "x=1?y");
  EXPECT_TRUE(t.has_query);
  EXPECT_TRUE(t.authority.empty());
  ASSERT_TRUE(ParseRequestTarget("http://h:1/p", &t));
  EXPECT_EQ(t.path, "/p");
  EXPECT_EQ(t.authority, "h:1");
  EXPECT_FALSE(t.has_query);
  ASSERT_TRUE(ParseRequestTarget("HTTPS://[::1]:8443", &t));
  EXPECT_EQ(t.path, "/");
  EXPECT_EQ(t.authority, "[::1]:8443");
  ASSERT_TRUE(ParseRequestTarget("/caf\xc3\xa9?q=\xc3\xa9", &t));  // raw UTF-8, as nginx accepts
  for (const char* bad : {"*", "a/b", "", "/a#b", "/public#/../admin", "/a?b#c", "http://h?q", "ftp://h/",
                          "http:///p", "http://user@h/p", "http://h/p#f", "http://h h/", "http://h:x/",
                          "http://:80/", "/a\tb", "/a\fb", "//host/p#"}) {
    EXPECT_FALSE(ParseRequestTarget(bad, &t)) << bad;
  }
}

TEST(RequestTargetTest, HostValues) {
  for (const char* good : {"", "a", "a.example.com", "a.example.com.", "a.com:8000", "a.com:", "[::1]",
                           "[::1]:80", "1.2.3.4:0", "xn--bcher-kva.example", "a_b.c", "%41.com"}) {
    EXPECT_TRUE(IsValidHostValue(good)) << good;
  }
  for (const char* bad : {"a b", "a/b", "a@b", "a\\b", ".a", "a..b", "a.com:80x", "a.com:123456", ":80", "[::1",
                          "[]", "[::1]x", "[::g]", "a\xc3\xa9.com", "a?b", "a#b", "%4", "%zz", "a.com:80:80"}) {
    EXPECT_FALSE(IsValidHostValue(bad)) << bad;
  }
}

TEST(RequestHeadCheckTest, StatusForEachRule) {
  struct Row {
    std::string request;
    int status;
  };
  const std::vector<Row> rows = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
      {"GET / HTTP/1.0\r\n\r\n", 0},                                                    // 1.0 needs no Host
      {"GET / HTTP/1.1\r\n\r\n", 400},                                                  // no Host
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},                            // two, even equal
      {"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a@evil\r\n\r\n", 400},
      {"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},                                    // fragment
      {"GET http://other/p HTTP/1.1\r\nHost: a\r\n\r\n", 0},                            // authority wins
      {"GET http://u@other/p HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
      {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n", 0},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
  };
  for (const Row& row : rows) {
    const MessageHead head = ParsedHead(row.request);
    ASSERT_FALSE(head.method.empty()) << row.request;
    EXPECT_EQ(CheckRequestHead(head).status, row.status) << row.request;
  }
  const MessageHead absolute_head = ParsedHead("GET http://other:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n");
  const RequestHeadCheck absolute = CheckRequestHead(absolute_head);  // views into absolute_head
  EXPECT_EQ(absolute.host, "other:81");
  EXPECT_TRUE(absolute.has_host);
  EXPECT_EQ(absolute.target.path, "/p");
  EXPECT_EQ(absolute.target.query, "q");
  EXPECT_FALSE(CheckRequestHead(ParsedHead("GET / HTTP/1.0\r\n\r\n")).has_host);
}

TEST(RequestHeadCheckTest, ResponseTransferEncodingMustBeExactlyChunkedOnHttp11) {
  auto head = [](const std::string& raw) {
    CollectingCodec collector(Http1Codec::Kind::kResponse);
    collector.Execute(raw.data(), raw.size());
    return collector.heads.empty() ? MessageHead() : collector.heads[0];
  };
  EXPECT_TRUE(IsForwardableResponseHead(head("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")));
  EXPECT_TRUE(IsForwardableResponseHead(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")));
  EXPECT_FALSE(IsForwardableResponseHead(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n")));
  EXPECT_FALSE(IsForwardableResponseHead(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")));
  EXPECT_FALSE(IsForwardableResponseHead(head("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")));
}

TEST(FramingHeadersTest, UpstreamHeadCarriesTheParsedFramingWhateverConnectionLists) {
  UpstreamRequestParams params;
  params.upstream_path = "/x";
  params.host_header = "backend";
  params.client_ip = "10.0.0.1";
  params.local_port = 8000;
  params.has_content_length = true;
  params.content_length = 58;
  const MessageHead head = ParsedHead(
      "POST /x HTTP/1.1\r\nHost: a\r\nConnection: content-length, transfer-encoding, host\r\n"
      "Content-Length: 058\r\n\r\n");
  ASSERT_EQ(CheckRequestHead(head).status, 0);
  const std::string out = BuildUpstreamRequestHead(head, params);
  EXPECT_TRUE(absl::StrContains(out, "\r\nContent-Length: 58\r\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\r\nHost: backend\r\n")) << out;
  EXPECT_FALSE(absl::StrContains(out, "058")) << out;
  EXPECT_FALSE(absl::StrContains(out, "Transfer-Encoding")) << out;
  params.has_content_length = false;
  params.chunked_body = true;
  const std::string chunked = BuildUpstreamRequestHead(head, params);
  EXPECT_TRUE(absl::StrContains(chunked, "\r\nTransfer-Encoding: chunked\r\n")) << chunked;
  EXPECT_FALSE(absl::StrContains(chunked, "Content-Length")) << chunked;
  params.chunked_body = false;
  const std::string bodiless = BuildUpstreamRequestHead(ParsedHead("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), params);
  EXPECT_FALSE(absl::StrContains(bodiless, "Content-Length")) << bodiless;
}

TEST(FramingHeadersTest, DownstreamHeadCarriesTheParsedFramingWhateverConnectionLists) {
  MessageHead response;
  response.status = 200;
  response.has_content_length = true;
  response.content_length = 5;
  response.headers = {{"Connection", "content-length, transfer-encoding"}, {"Content-Length", "005"}};
  const std::string out = BuildDownstreamResponseHead(response, ResponseFraming::kContentLength, true, true);
  EXPECT_TRUE(absl::StrContains(out, "\r\nContent-Length: 5\r\n")) << out;
  EXPECT_FALSE(absl::StrContains(out, "005")) << out;
  // HEAD passes the length on; 204 and 304 carry no framing headers at all.
  EXPECT_TRUE(absl::StrContains(BuildDownstreamResponseHead(response, ResponseFraming::kHeadResponse, true, true),
                                "\r\nContent-Length: 5\r\n"));
  for (int status : {204, 304}) {
    response.status = status;
    const std::string none = BuildDownstreamResponseHead(response, ResponseFraming::kNoBody, true, true);
    EXPECT_FALSE(absl::StrContains(none, "Content-Length")) << none;
    EXPECT_FALSE(absl::StrContains(none, "Transfer-Encoding")) << none;
  }
}

}  // namespace
}  // namespace portico::dp
