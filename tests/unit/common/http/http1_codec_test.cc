// The HTTP/1 codec's event contract: a head and a message end are events returned by Execute
// (outside llhttp's callbacks), only body pieces are delivered during it.
#include "common/http/http1_codec.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/common/collecting_codec.h"

namespace portico {
namespace {

TEST(Http1CodecTest, HeadThenMessageEndEvenWithNoBytesLeft) {
  test_support::CollectingCodec c(Http1Codec::Kind::kRequest);
  const std::string get = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  Http1Codec::Result r = c.codec.Execute(get.data(), get.size());
  EXPECT_EQ(r.event, Http1Codec::Event::kHead);
  EXPECT_EQ(r.consumed, get.size());
  EXPECT_EQ(c.codec.head().url, "/a");
  r = c.codec.Execute(nullptr, 0);  // nothing left, yet the message ends
  EXPECT_EQ(r.event, Http1Codec::Event::kMessageDone);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(Http1CodecTest, EmptyExecuteInTheMiddleOfABodyKeepsThePiecesRight) {
  test_support::CollectingCodec c(Http1Codec::Kind::kRequest);
  const std::string head = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n";
  ASSERT_EQ(c.codec.Execute(head.data(), head.size()).event, Http1Codec::Event::kHead);
  EXPECT_EQ(c.codec.Execute("01234", 5).event, Http1Codec::Event::kNeedMore);
  EXPECT_EQ(c.codec.Execute(nullptr, 0).event, Http1Codec::Event::kNeedMore);  // (llhttp must not see a null span)
  EXPECT_EQ(c.codec.Execute("", 0).event, Http1Codec::Event::kNeedMore);
  EXPECT_EQ(c.codec.Execute("56789", 5).event, Http1Codec::Event::kMessageDone);
  EXPECT_EQ(c.body, "0123456789");
}

TEST(Http1CodecTest, SkipBodyAfterAHeadEndsTheMessageWhateverItsLength) {
  test_support::CollectingCodec c(Http1Codec::Kind::kResponse);
  const std::string response = "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  Http1Codec::Result r = c.codec.Execute(response.data(), response.size());
  ASSERT_EQ(r.event, Http1Codec::Event::kHead);
  c.codec.SkipBody();
  size_t at = r.consumed;
  r = c.codec.Execute(response.data() + at, response.size() - at);
  EXPECT_EQ(r.event, Http1Codec::Event::kMessageDone);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(c.body, "");
  const test_support::CollectingCodec::Result next = c.Execute(response.data() + at, response.size() - at);
  EXPECT_EQ(next.outcome, Http1Codec::Event::kMessageDone);
  EXPECT_EQ(c.heads.back().status, 200);
  EXPECT_EQ(c.body, "ok");
}

}  // namespace
}  // namespace portico
