#include "data_plane/telemetry/batch_sender.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/http_collector.h"

namespace portico::dp {
namespace {

using namespace std::chrono_literals;

using Collector = test_support::HttpCollector;

bool WaitFor(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return predicate();
}

uint16_t ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);  // nothing listens there now
  return ntohs(addr.sin_port);
}

TEST(ParseHttpUrlTest, HostPortTargetAndRefusals) {
  absl::StatusOr<HttpUrl> url = ParseHttpUrl("http://collector.local:9200/logs?x=1");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "collector.local");
  EXPECT_EQ(url->port, 9200);
  EXPECT_EQ(url->target, "/logs?x=1");
  EXPECT_EQ(url->host_header, "collector.local:9200");
  url = ParseHttpUrl("http://[::1]/");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 80);
  url = ParseHttpUrl("http://a?x=1");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->target, "/?x=1");
  EXPECT_FALSE(ParseHttpUrl("https://a/").ok());
  EXPECT_FALSE(ParseHttpUrl("ftp://a/").ok());
  EXPECT_FALSE(ParseHttpUrl("http://a:0/").ok());
  EXPECT_FALSE(ParseHttpUrl("http://a:99999/").ok());
  EXPECT_FALSE(ParseHttpUrl("http:///x").ok());
  EXPECT_FALSE(ParseHttpUrl("http://a/b c").ok());
  EXPECT_FALSE(ParseHttpUrl("http://u:p@a/").ok());
  EXPECT_FALSE(ParseHttpUrl("http://a/#f").ok());
  EXPECT_FALSE(ParseHttpUrl("http://a\x7f/").ok());
}

TEST(BatchSenderTest, EntriesArriveInBatchesAsJsonArraysWithTheConfiguredRequest) {
  Collector collector;
  BatchSenderOptions options;
  options.name = "test";
  options.url = "http://127.0.0.1:" + std::to_string(collector.port()) + "/logs";
  options.method = "PUT";
  options.headers = {{"X-Token", "t1"}};
  options.max_batch_size = 3;
  options.max_coalescing_delay_ms = 50;
  options.producers = 2;
  absl::StatusOr<std::unique_ptr<BatchSender>> sender = BatchSender::Start(options);
  ASSERT_TRUE(sender.ok()) << sender.status();
  for (int i = 0; i < 7; ++i) ASSERT_TRUE((*sender)->Enqueue(i % 2, "{\"n\":" + std::to_string(i) + "}"));
  ASSERT_TRUE(WaitFor([&] { return (*sender)->stats().sent == 7; }, 5s)) << (*sender)->stats().sent;
  std::vector<int> seen;
  for (const std::string& body : collector.bodies()) {
    nlohmann::json batch = nlohmann::json::parse(body, nullptr, false);
    ASSERT_TRUE(batch.is_array()) << body;
    EXPECT_LE(batch.size(), 3u);
    for (const auto& entry : batch) seen.push_back(entry["n"].get<int>());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
  const std::string head = collector.heads().at(0);
  EXPECT_TRUE(absl::StartsWith(head, "PUT /logs HTTP/1.1\r\n")) << head;
  EXPECT_NE(head.find("X-Token: t1\r\n"), std::string::npos);
  EXPECT_NE(head.find("Content-Type: application/json\r\n"), std::string::npos);
  const BatchSenderStats stats = (*sender)->stats();
  EXPECT_GE(stats.batches_sent, 3u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.failed, 0u);
}

TEST(BatchSenderTest, FailedBatchesAreRetriedWithBackoffThenDroppedAndCounted) {
  Collector collector;
  collector.set_status(500);
  BatchSenderOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(collector.port()) + "/";
  options.max_batch_size = 1;
  options.initial_retry_delay_ms = 10;
  options.max_retry_delay_ms = 40;
  options.max_retry_time_ms = 200;
  absl::StatusOr<std::unique_ptr<BatchSender>> sender = BatchSender::Start(options);
  ASSERT_TRUE(sender.ok()) << sender.status();
  ASSERT_TRUE((*sender)->Enqueue(0, "{}"));
  ASSERT_TRUE(WaitFor([&] { return (*sender)->stats().failed == 1; }, 5s));
  const BatchSenderStats stats = (*sender)->stats();
  EXPECT_EQ(stats.sent, 0u);
  // 10, 20, 40, 40, ... ms apart within 200 ms: several tries, each one reached the collector.
  EXPECT_GE(stats.retries, 3u);
  EXPECT_EQ(collector.bodies().size(), stats.retries + 1);
  // The collector recovers: the next entry goes through.
  collector.set_status(200);
  ASSERT_TRUE((*sender)->Enqueue(0, "{\"after\":1}"));
  ASSERT_TRUE(WaitFor([&] { return (*sender)->stats().sent == 1; }, 5s));
}

TEST(BatchSenderTest, WithTheCollectorDownTheQueueStaysBoundedAndDropsTheOldest) {
  BatchSenderOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(ClosedPort()) + "/";
  options.max_batch_size = 2;
  options.max_coalescing_delay_ms = 1;
  options.max_entries = 5;
  options.initial_retry_delay_ms = 50;
  options.max_retry_delay_ms = 50;
  options.max_retry_time_ms = 60000;
  absl::StatusOr<std::unique_ptr<BatchSender>> sender = BatchSender::Start(options);
  ASSERT_TRUE(sender.ok()) << sender.status();
  for (int i = 0; i < 200; ++i) {
    (*sender)->Enqueue(0, "{\"n\":" + std::to_string(i) + "}");
    if (i % 20 == 0) std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(WaitFor([&] { return (*sender)->stats().dropped >= 190; }, 5s))
      << (*sender)->stats().dropped;
  const BatchSenderStats stats = (*sender)->stats();
  EXPECT_LE(stats.queued, 5u + 2u);  // the queue bound, plus the batch being retried
  EXPECT_GT(stats.retries, 0u);
  EXPECT_EQ(stats.sent, 0u);
  (*sender)->Stop();
  EXPECT_EQ((*sender)->stats().dropped + (*sender)->stats().failed, 200u);
}

// Kong's http-log counts any status below 400 as delivered: with max_delivered_status 399 a
// redirect is not retried.
TEST(BatchSenderTest, ARedirectCountsAsDeliveredWhenConfiguredAsInKong) {
  Collector collector;
  collector.set_status(302);
  BatchSenderOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(collector.port()) + "/";
  options.max_batch_size = 1;
  options.initial_retry_delay_ms = 10;
  options.max_retry_time_ms = 200;
  options.max_delivered_status = 399;  // what http-log sets
  absl::StatusOr<std::unique_ptr<BatchSender>> sender = BatchSender::Start(options);
  ASSERT_TRUE(sender.ok()) << sender.status();
  ASSERT_TRUE((*sender)->Enqueue(0, "{}"));
  ASSERT_TRUE(WaitFor([&] { return (*sender)->stats().sent + (*sender)->stats().failed >= 1; }, 5s));
  EXPECT_EQ((*sender)->stats().sent, 1u);
  EXPECT_EQ((*sender)->stats().retries, 0u);
  EXPECT_EQ(collector.bodies().size(), 1u);
}

// A collector that accepts connections and never answers: each try ends at `timeout`, and the
// batch is dropped once max_retry_time has passed.
TEST(BatchSenderTest, ACollectorThatNeverAnswersTimesOutAndTheBatchFails) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  ASSERT_EQ(::listen(listener, 64), 0);  // the kernel completes connections; nobody accepts
  BatchSenderOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  options.max_batch_size = 1;
  options.timeout_ms = 100;
  options.initial_retry_delay_ms = 10;
  options.max_retry_delay_ms = 10;
  options.max_retry_time_ms = 300;
  absl::StatusOr<std::unique_ptr<BatchSender>> sender = BatchSender::Start(options);
  ASSERT_TRUE(sender.ok()) << sender.status();
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE((*sender)->Enqueue(0, "{}"));
  ASSERT_TRUE(WaitFor([&] { return (*sender)->stats().failed == 1; }, 5s)) << (*sender)->stats().retries;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_GE((*sender)->stats().retries, 1u);
  EXPECT_EQ((*sender)->stats().sent, 0u);
  (*sender)->Stop();
  ::close(listener);
}

TEST(BatchSenderTest, HttpsIsRefusedAtStart) {
  BatchSenderOptions options;
  options.url = "https://127.0.0.1/";
  absl::StatusOr<std::unique_ptr<BatchSender>> sender = BatchSender::Start(options);
  ASSERT_FALSE(sender.ok());
  EXPECT_NE(sender.status().message().find("https"), absl::string_view::npos);
}

}  // namespace
}  // namespace portico::dp
